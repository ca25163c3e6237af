"""Platform spend reports arriving as EventBridge events (detail-type `AdPlatform.SpendReported`): what
a platform says it spent per project and day, kept for the daily reconciliation against the bills, like
the service route (`POST /v1/internal/wallet/spend-reports`)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, Field

from shared.dynamo import dynamodb_resource
from shared.errors import InvalidRequestError, NotFoundError
from shared.observability import logger, metrics, tracer
from shared.orgs.repository import OrgRepository
from shared.reconcile.models import SpendReport
from shared.reconcile.repository import ReconcileRepository
from shared.reconcile.support import ReconcileDesk
from shared.settings import ApiSettings
from shared.wiring import build_services


class PlatformSpendReport(BaseModel):
    org_id: str
    platform: str
    project_id: str
    day: date
    amount_minor: int = Field(ge=0)
    currency: str
    report_id: str


class SpendReportedEvent(EventBridgeModel):
    detail: PlatformSpendReport


@cache
def desk() -> ReconcileDesk:
    settings = ApiSettings.from_env()
    table = dynamodb_resource().Table(settings.table_name)
    return ReconcileDesk(build_services(settings, table=table).orgs, OrgRepository(table), ReconcileRepository(table))


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=SpendReportedEvent)
def lambda_handler(event: SpendReportedEvent, context: LambdaContext) -> dict[str, Any]:
    got = event.detail
    report = SpendReport(
        **got.model_dump(exclude={"day"}), day=got.day.isoformat(), reported_at=event.time.astimezone(UTC).isoformat()
    )
    try:
        kept = desk().report_spend(report)
    except (InvalidRequestError, NotFoundError) as refused:  # final: a retry would be refused again
        logger.error("spend report refused", extra={"code": refused.code, "report_id": got.report_id})
        metrics.add_metric(name="SpendReportsRefused", unit=MetricUnit.Count, value=1)
        return {"refused": refused.code, "report_id": got.report_id}
    metrics.add_metric(name="SpendReportsKept", unit=MetricUnit.Count, value=int(kept))
    return {"report_id": got.report_id, "kept": kept, "at": datetime.now(UTC).isoformat()}

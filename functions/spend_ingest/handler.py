"""Platform bills arriving as EventBridge events (detail-type `AdPlatform.BillRecorded`): each is
recorded once, exactly like the service route (`POST /v1/internal/wallet/bills`)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date
from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from shared.deadline import within_lambda_time
from shared.errors import InvalidRequestError, NotFoundError
from shared.observability import logger, metrics, tracer
from shared.settings import ApiSettings
from shared.wallet.service import Bill, WalletNotAvailableError
from shared.wiring import Services, build_services


class PlatformBill(BaseModel):
    org_id: str
    platform: str
    bill_id: str
    project_id: str
    amount_minor: int  # negative: a platform credit
    currency: str
    billed_on: date
    hold_id: str | None = None


class BillRecordedEvent(EventBridgeModel):
    detail: PlatformBill


@cache
def services() -> Services:
    return build_services(ApiSettings.from_env())


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
@within_lambda_time
@event_parser(model=BillRecordedEvent)
def lambda_handler(event: BillRecordedEvent, context: LambdaContext) -> dict[str, Any]:
    bill = event.detail
    try:
        result = services().wallet.record_bill(Bill(**bill.model_dump(), actor=f"eventbridge:{event.source}"))
    except (InvalidRequestError, NotFoundError, WalletNotAvailableError) as refused:  # (not a busy wallet: retried)
        # A refusal is final (a retry would be refused again): the wallet kept the bill for support
        # (BILLREFUSED# in the org's partition) and the alarm on PlatformBillsRefused tells someone.
        logger.error(
            "platform bill refused", extra={"code": refused.code, "bill_id": bill.bill_id, "org_id": bill.org_id}
        )
        metrics.add_metric(name="PlatformBillsRefused", unit=MetricUnit.Count, value=1)
        return {"refused": refused.code, "bill_id": bill.bill_id, "message": refused.message}
    metrics.add_metric(name="PlatformBillsRecorded", unit=MetricUnit.Count, value=0 if result.replayed else 1)
    return asdict(result)

"""The invoice run's Lambda task: one step for one (org, period), as the state machine orders it.
Every step is idempotent, so Step Functions may retry it freely."""

from __future__ import annotations

from functools import cache
from typing import Any, Literal

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from shared.deadline import within_lambda_time
from shared.observability import logger, metrics, tracer
from shared.settings import ApiSettings
from shared.wiring import Services, build_services


class StepInput(BaseModel):
    step: Literal["close", "collect", "finalize", "render", "issue", "record_failure"]
    org_id: str
    period_key: str
    error: dict[str, Any] | None = None


@cache
def services() -> Services:
    return build_services(ApiSettings.from_env())


@logger.inject_lambda_context(log_event=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
@within_lambda_time
@event_parser(model=StepInput)
def lambda_handler(event: StepInput, context: LambdaContext) -> dict[str, Any]:
    invoices = services().invoices
    if event.step == "record_failure":
        cause = str((event.error or {}).get("Cause") or (event.error or {}).get("Error") or "unknown")
        invoices.record_failure(event.org_id, event.period_key, cause)
        metrics.add_metric(name="InvoiceRunOrgFailed", unit=MetricUnit.Count, value=1)  # alarmed in template.yaml
        logger.error("invoice run failed for an org", extra={"org_id": event.org_id, "cause": cause[:300]})
        return {"org_id": event.org_id, "period_key": event.period_key, "status": "failed"}
    step = {
        "close": invoices.close,
        "collect": invoices.collect,
        "finalize": invoices.finalize,
        "render": invoices.render,
        "issue": invoices.issue,
    }[event.step]
    status = step(event.org_id, event.period_key)
    metrics.add_metric(name=f"InvoiceStep_{event.step}", unit=MetricUnit.Count, value=1)
    return {"org_id": event.org_id, "period_key": event.period_key, "status": status}

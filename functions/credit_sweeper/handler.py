"""Scheduled (EventBridge Scheduler, every 5 minutes): releases credit reservations whose generation
never settled or released before its hold expired."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.observability import logger, metrics, tracer
from shared.settings import ApiSettings
from shared.wiring import Services, build_services


@cache
def services() -> Services:
    return build_services(ApiSettings())


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    released = services().credits.expire_due()
    metrics.add_metric(name="CreditReservationsExpired", unit=MetricUnit.Count, value=released)
    logger.info("expired reservations released", extra={"released": released})
    return {"released": released}

"""Scheduled (EventBridge Scheduler, every 5 minutes): releases credit reservations and wallet holds
that were never settled or released before they expired, then resumes auto-top-ups whose charge was
interrupted (the one part that calls Stripe, so it goes last: a Stripe outage never delays the rest)."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.deadline import within_lambda_time
from shared.observability import logger, metrics, tracer
from shared.settings import ApiSettings
from shared.wiring import Services, build_services


@cache
def services() -> Services:
    return build_services(ApiSettings.from_env())


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
@within_lambda_time
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    released = services().credits.expire_due()
    holds = services().wallet.expire_holds()
    resumed = services().wallet.resume_stalled_auto_top_ups()
    metrics.add_metric(name="CreditReservationsExpired", unit=MetricUnit.Count, value=released)
    metrics.add_metric(name="WalletHoldsExpired", unit=MetricUnit.Count, value=holds)
    metrics.add_metric(name="AutoTopUpsResumed", unit=MetricUnit.Count, value=resumed)
    logger.info(
        "expired holds released", extra={"reservations": released, "wallet_holds": holds, "auto_top_ups": resumed}
    )
    return {"released": released, "wallet_holds_expired": holds, "auto_top_ups_resumed": resumed}

"""Scheduled (EventBridge Scheduler, every 5 minutes): releases credit reservations and wallet holds
that were never settled or released before they expired, then resumes auto-top-ups whose charge was
interrupted (the one part that calls Stripe), and sends outbox messages the stream never delivered
(20 h old: its records last 24 h)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.deadline import within_lambda_time
from shared.dynamo import PerThreadTable
from shared.observability import logger, metrics, tracer
from shared.outbox import RESEND_AFTER, OutboxPublisher
from shared.settings import ApiSettings
from shared.sweep import SweepReport
from shared.wiring import Services, build_services


@cache
def services() -> Services:
    settings = ApiSettings.from_env()  # expiries run on SWEEP_WORKERS threads: a table resource per thread
    return build_services(settings, table=PerThreadTable(settings.table_name))


def outbox_publisher() -> OutboxPublisher:
    from functions.outbox_publisher.handler import publisher  # the same sender, the same clients

    return publisher()


def _report(sweeps: list[SweepReport]) -> None:
    """Metrics and a log line for each sweep: what it did, what failed, whether it left work behind."""
    for report, metric in zip(sweeps, ("CreditReservationsExpired", "WalletHoldsExpired"), strict=True):
        metrics.add_metric(name=metric, unit=MetricUnit.Count, value=report.done)
        metrics.add_metric(name=f"{metric}Failed", unit=MetricUnit.Count, value=report.failed)
        metrics.add_metric(name=f"{metric}LeftBehind", unit=MetricUnit.Count, value=int(report.left_behind))
        if report.left_behind or report.failed:  # the next run (5 minutes) starts with what is left
            # (`name` would overwrite the log record's own: the sweep's fields go under their own keys)
            logger.warning(
                "sweep left entries for the next run", extra={f"sweep_{k}": v for k, v in asdict(report).items()}
            )


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
@within_lambda_time
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    reservations = services().credits.expire_due()
    holds = services().wallet.expire_holds()
    graces = services().dunning.sweep()  # grace periods that ended while Stripe still retries
    resumed = services().wallet.resume_stalled_auto_top_ups()
    resent = outbox_publisher().resend_unsent(datetime.now(UTC) - RESEND_AFTER)
    _report([reservations, holds])
    metrics.add_metric(name="AutoTopUpsResumed", unit=MetricUnit.Count, value=resumed)
    metrics.add_metric(name="GracePeriodsEnded", unit=MetricUnit.Count, value=graces)
    metrics.add_metric(name="OutboxMessagesResent", unit=MetricUnit.Count, value=resent)
    logger.info("expired holds released", extra={"reservations": reservations.done, "wallet_holds": holds.done})
    return {
        "released": reservations.done,
        "wallet_holds_expired": holds.done,
        "failed": reservations.failed + holds.failed,
        "left_behind": reservations.left_behind or holds.left_behind,
        "grace_periods_ended": graces,
        "auto_top_ups_resumed": resumed,
        "resent": resent,
    }

"""Daily (EventBridge Scheduler): finds the orgs whose billing period ended (an index by period end,
not a scan), writes them to S3 and starts the invoice run (a Distributed Map reading that list). The
execution's name is derived from the date, so a second start the same day is a no-op."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.invoice_run import DuePeriod, InvoiceRunStarter
from shared.observability import logger, metrics, tracer
from shared.settings import DispatcherSettings
from shared.wiring import Services, build_services

LOOKBACK_DAYS = 3  # periods that ended in the last days (a missed day is caught up)


@cache
def settings() -> DispatcherSettings:
    return DispatcherSettings.from_env()


@cache
def services() -> Services:
    return build_services(settings())


@cache
def starter() -> InvoiceRunStarter:
    s = settings()
    return InvoiceRunStarter(
        boto3.client("s3"),
        boto3.client("stepfunctions"),
        bucket=s.invoice_runs_bucket,
        state_machine_arn=s.invoice_run_state_machine_arn,
    )


def due_orgs(now: datetime) -> list[DuePeriod]:
    """(org, period) pairs whose period ended in the lookback window, at least the settle window ago, and
    is not invoiced yet (issued periods leave the index), each once."""
    found: dict[tuple[str, str], None] = {}
    for back in range(LOOKBACK_DAYS + 1):
        day = now.date() - timedelta(days=back)
        for org_id, period_key in services().orgs.periods_due(day, now):
            found[(org_id, period_key)] = None
    return [DuePeriod(o, p) for o, p in sorted(found)]


@logger.inject_lambda_context(log_event=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    run_on = datetime.fromisoformat(str(event.get("time") or datetime.now(UTC).isoformat()).replace("Z", "+00:00"))
    result = starter().start(run_on.date(), due_orgs(run_on))
    if not result.started:
        logger.info("invoice run already started today", extra={"execution": result.execution})
    return {k: v for k, v in asdict(result).items() if v is not None}

"""Daily (EventBridge Scheduler): finds the orgs whose billing period ended (an index by period end,
not a scan) and starts the invoice run. The execution's name is derived from the date, so a second
start the same day is a no-op."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

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


def due_orgs(run_on: date) -> list[dict[str, str]]:
    """(org, period) pairs whose period ended in the lookback window, without an issued invoice."""
    found: dict[tuple[str, str], None] = {}
    for back in range(LOOKBACK_DAYS + 1):
        day = run_on - timedelta(days=back)
        for org_id, period_key in services().orgs.periods_ending(day):
            found[(org_id, period_key)] = None
    return [{"org_id": o, "period_key": p} for o, p in sorted(found)]


@logger.inject_lambda_context(log_event=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    run_on = datetime.fromisoformat(str(event.get("time") or datetime.now(UTC).isoformat()).replace("Z", "+00:00"))
    orgs = due_orgs(run_on.date())
    name = f"invoice-run-{run_on.date().isoformat()}"
    sfn = boto3.client("stepfunctions")
    try:
        started = sfn.start_execution(
            stateMachineArn=settings().invoice_run_state_machine_arn, name=name, input=json.dumps({"orgs": orgs})
        )
    except sfn.exceptions.ExecutionAlreadyExists:
        logger.info("invoice run already started today", extra={"execution": name})
        return {"execution": name, "orgs": len(orgs), "started": False}
    return {"execution": name, "execution_arn": started["executionArn"], "orgs": len(orgs), "started": True}

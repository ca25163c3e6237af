"""Daily reconciliation (EventBridge Scheduler, after the invoice run): every org that moved yesterday
checked against Stripe, the ad platforms and its own books (shared/reconcile), then the runway of every
org that spent lately (shared/wallet/runway_watch.py). The schedule fires each
hour of the morning window: the first invocation does the day, a later one resumes a run that ran out of
time, or finds it done and returns at once. On demand, the same function takes {"from": "YYYY-MM-DD",
"to": "YYYY-MM-DD"} (to exclusive) and, with "org_id", reconciles that one org."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.invoice_run import due_list_key
from shared.observability import logger, metrics, tracer
from shared.reconcile.models import RunSummary
from shared.reconcile.wiring import Reconciliation, build_reconciliation
from shared.settings import ReconcilerSettings


@cache
def settings() -> ReconcilerSettings:
    return ReconcilerSettings.from_env()


@cache
def reconciliation() -> Reconciliation:
    s = settings()
    return build_reconciliation(s, due_orgs=_due_orgs, reads_per_s=s.reconcile_stripe_reads_per_s)


def _due_orgs(day: date) -> list[str]:
    """The orgs the invoice run took on `day` (its due list), none if it did not run."""
    s3 = boto3.client("s3")
    try:
        body = s3.get_object(Bucket=settings().invoice_runs_bucket, Key=due_list_key(day))["Body"].read()
    except s3.exceptions.NoSuchKey:
        return []
    return [str(row["org_id"]) for row in json.loads(body)]


def _range(event: dict[str, Any]) -> tuple[date, date]:
    if event.get("from") and event.get("to"):
        return date.fromisoformat(str(event["from"])), date.fromisoformat(str(event["to"]))
    today = datetime.fromisoformat(str(event.get("time") or datetime.now(UTC).isoformat()).replace("Z", "+00:00"))
    return today.date() - timedelta(days=1), today.date()


def _metrics(summary: RunSummary) -> None:
    metrics.add_metric(name="DiscrepanciesFound", unit=MetricUnit.Count, value=summary.opened)
    metrics.add_metric(name="DiscrepanciesResolved", unit=MetricUnit.Count, value=summary.resolved)
    metrics.add_metric(name="DiscrepanciesAutoCorrected", unit=MetricUnit.Count, value=summary.corrected)
    metrics.add_metric(name="DiscrepanciesOpen", unit=MetricUnit.Count, value=summary.open_total)
    metrics.add_metric(name="ReconciledOrgs", unit=MetricUnit.Count, value=summary.orgs)
    metrics.add_metric(name="ReconciliationFailedOrgs", unit=MetricUnit.Count, value=summary.failed)
    metrics.add_metric(name="ReconciliationStripeReads", unit=MetricUnit.Count, value=summary.stripe_reads)
    metrics.add_metric(name="ReconciliationLeftBehind", unit=MetricUnit.Count, value=int(not summary.done))


@logger.inject_lambda_context(log_event=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    day_from, day_to = _range(event)
    recon = reconciliation()
    if event.get("org_id"):
        report = recon.reconciler.reconcile_org(str(event["org_id"]), day_from, day_to)
        found = [{"kind": f.kind.value, "scope": f.scope} for f in report.findings]
        return {"org_id": report.org_id, "findings": found, "opened": report.opened, "resolved": report.resolved}
    summary = recon.run.run(day_from, day_to, lambda: context.get_remaining_time_in_millis() / 1000)
    # The runway's days slide at midnight with nothing written: each org that spent lately, once a day
    # (a later firing of the window evaluates again; an alert fires only on a stage change).
    evaluated = recon.services.wallet.runway.daily()
    metrics.add_metric(name="RunwaysEvaluated", unit=MetricUnit.Count, value=evaluated)
    _metrics(summary)
    logger.info("reconciliation", extra=asdict(summary))
    return asdict(summary)

"""Usage metering against the world (issue 22, review): allowance warnings per allowance level across
plan changes, a crash between the crossing write and its warning, events naming a project that is not
their org's, concurrent batches with overlapping event_ids, and the busy answer when retries run out.
DynamoDB Local; random times of day, periods ending on a 31st anchor."""

from __future__ import annotations

import json
import random
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.auth import Caller
from shared.credits.periods import period_containing
from shared.errors import ConcurrentUpdateError, UsageBusyError
from shared.orgs.models import ProjectStatus
from shared.usage.metering import UsageEvent
from shared.usage.repository import UsageRepository
from shared.usage.service import GB
from tests.helpers import capture_events, drain, new_user, org_items
from tests.integration.credit_kit import CreditKit, credit_kit
from tests.integration.test_usage_metering import ANCHOR, _Context, _random_time, handler_path
from tests.paid import mirror_subscription, stripe_subscription

pytestmark = pytest.mark.integration
rng = random.Random()
NOW = ANCHOR + timedelta(days=40, hours=rng.randrange(24), minutes=rng.randrange(60))


@pytest.fixture
def kit(stack: Any) -> CreditKit:
    return credit_kit(stack.env["TABLE_NAME"], stack.env["EVENT_BUS_NAME"], NOW)


def _org(kit: CreditKit, plan_id: str) -> tuple[str, str, Caller]:
    owner = Caller(new_user(), None, frozenset())
    at, kit.clock.at = kit.clock.at, ANCHOR
    view = kit.orgs.create_org(owner, name="World", billing_mode="byo", currency="USD", plan_id="free")  # type: ignore[arg-type]
    mirror_subscription(kit.mirror, view.org.org_id, plan_id, start=ANCHOR)
    project = kit.orgs.create_project(owner, view.org.org_id, name="Main")
    kit.clock.at = at
    return view.org.org_id, project.project_id, owner


def _change_plan(kit: CreditKit, org_id: str, plan_id: str) -> None:
    """Stripe's subscription of the org, mid-period, now on `plan_id` (same subscription, same period)."""
    org = kit.org_repo.require_org(org_id)
    assert org.subscription is not None
    sub = stripe_subscription(org_id, plan_id, start=ANCHOR, subscription_id=org.subscription.subscription_id)
    kit.clock.at += timedelta(seconds=rng.randint(1, 90))
    applied = kit.mirror.apply(org_id, sub, kit.mirror.now_ms())
    assert applied is not None and applied.plan_id == plan_id


def _runs(kit: CreditKit, org_id: str, period_start: Any, sizes: list[int], tag: str) -> None:
    """One batch per size at random times of this period, each sent twice (a retry)."""
    for n, size in enumerate(sizes):
        event = UsageEvent("workflow_runs", org_id, _random_time(period_start, kit.clock.at), size, f"{tag}-{n}")
        kit.usage.record_events([event])
        kit.usage.record_events([event])


def _warnings(stack: Any, queue: str, org_id: str) -> list[tuple[str, int, int, int]]:
    stack.flush_outbox()
    return sorted(
        (d["metric"], d["included"], d["threshold_pct"], d["used"])
        for d in (e["detail"] for e in drain(stack, queue))
        if d["org_id"] == org_id
    )


def test_an_upgrade_warns_again_at_80_percent_of_its_larger_allowance(kit: CreditKit, stack: Any) -> None:
    queue = capture_events(stack, {"detail-type": ["Usage.AllowanceWarning"]})
    org_id, _, _ = _org(kit, "starter")  # 500 runs
    period = period_containing(kit.org_repo.require_org(org_id), kit.clock.at)
    _runs(kit, org_id, period.start, [300, 120], "before")  # 420: 84 % of 500
    _change_plan(kit, org_id, "pro")  # 2000 runs: 420 is 21 %, nothing owed yet
    assert _warnings(stack, queue, org_id) == [("workflow_runs", 500, 80, 420)]
    _change_plan(kit, org_id, "pro")  # (the webhook again: nothing new)
    _runs(kit, org_id, period.start, [1000, 179], "after")  # 1599: still under 1600
    assert _warnings(stack, queue, org_id) == []
    _runs(kit, org_id, period.start, [1, 1, 398, 5], "crossing")  # 1600 (80 %), 1601, 1999, 2004 (100 %)
    assert _warnings(stack, queue, org_id) == [("workflow_runs", 2000, 80, 1600), ("workflow_runs", 2000, 100, 2004)]


def test_a_downgrade_below_what_was_used_warns_at_once_for_the_lower_allowance_once(kit: CreditKit, stack: Any) -> None:
    queue = capture_events(stack, {"detail-type": ["Usage.AllowanceWarning"]})
    org_id, _, _ = _org(kit, "pro")  # 2000 runs, 50 GB
    org = kit.org_repo.require_org(org_id)
    period = period_containing(org, kit.clock.at)
    _runs(kit, org_id, period.start, [700, 1000], "pro")  # 1700: 85 % of 2000
    kit.usage.record_storage(org_id, _random_time(period.start, kit.clock.at), 41 * GB)  # 82 % of 50 GB
    assert _warnings(stack, queue, org_id) == [("media_storage_gb", 50, 80, 41), ("workflow_runs", 2000, 80, 1700)]
    _change_plan(kit, org_id, "starter")  # 500 runs, 10 GB: over both at once
    assert _warnings(stack, queue, org_id) == [
        ("media_storage_gb", 10, 80, 41),
        ("media_storage_gb", 10, 100, 41),
        ("workflow_runs", 500, 80, 1700),
        ("workflow_runs", 500, 100, 1700),
    ]
    # Told again (a retried webhook's handling), more events, retries, another snapshot: nothing repeats
    kit.usage.plan_changed(kit.org_repo.require_org(org_id))
    _runs(kit, org_id, period.start, [3, 1], "starter")
    kit.usage.record_storage(org_id, _random_time(period.start, kit.clock.at), 45 * GB)
    assert _warnings(stack, queue, org_id) == []


def test_a_crash_right_after_the_crossing_write_still_publishes_its_warning_once(
    kit: CreditKit, stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = capture_events(stack, {"detail-type": ["Usage.AllowanceWarning"]})
    org_id, project, _ = _org(kit, "starter")
    period = period_containing(kit.org_repo.require_org(org_id), kit.clock.at)
    _runs(kit, org_id, period.start, [350], "start")
    repo: UsageRepository = kit.usage.meter._repo
    applied = repo.apply

    def apply_then_die(*args: Any, **kwargs: Any) -> None:
        applied(*args, **kwargs)
        raise TimeoutError("the Lambda ran out of time right after the transaction")

    monkeypatch.setattr(repo, "apply", apply_then_die)
    batch = [
        UsageEvent("workflow_runs", org_id, _random_time(period.start, kit.clock.at), 10, f"crash-{n}", project)
        for n in range(6)
    ]  # 350 + 60 = 410: crosses 80 % (400)
    with pytest.raises(TimeoutError):
        kit.usage.record_events(batch)
    monkeypatch.setattr(repo, "apply", applied)
    assert kit.usage.record_events(batch).applied == 0  # the caller's retry: every event seen
    assert _warnings(stack, queue, org_id) == [("workflow_runs", 500, 80, 410)]


def test_a_full_transaction_that_crosses_both_thresholds_carries_both_warnings(kit: CreditKit, stack: Any) -> None:
    queue = capture_events(stack, {"detail-type": ["Usage.AllowanceWarning"]})
    org_id, project, _ = _org(kit, "starter")  # 500 runs
    period = period_containing(kit.org_repo.require_org(org_id), kit.clock.at)
    events = [
        UsageEvent("workflow_runs", org_id, _random_time(period.start, kit.clock.at), 6, f"full-{n}", project)
        for n in range(250)
    ]  # the first transaction's 97 events: 582 runs, past 400 and 500 at once
    result = kit.usage.record_events(events)
    assert (result.applied, result.transactions) == (250, 3)
    assert _warnings(stack, queue, org_id) == [("workflow_runs", 500, 80, 582), ("workflow_runs", 500, 100, 582)]


def test_events_naming_a_project_that_is_not_the_orgs_are_refused_one_by_one(kit: CreditKit, table: Any) -> None:
    org_id, project, owner = _org(kit, "pro")
    other_org, other_project, _ = _org(kit, "pro")
    period = period_containing(kit.org_repo.require_org(org_id), kit.clock.at)
    kit.clock.at = NOW - timedelta(hours=10)
    archived = kit.orgs.create_project(owner, org_id, name="Old")
    kit.clock.at = NOW - timedelta(hours=6, minutes=rng.randrange(60), seconds=rng.randrange(60))
    kit.orgs.set_project_status(owner, org_id, archived.project_id, ProjectStatus.ARCHIVED)
    archived_at = kit.clock.at
    kit.clock.at = NOW
    before_archive = _random_time(period.start, archived_at - timedelta(seconds=1))
    after_archive = _random_time(archived_at + timedelta(seconds=1), kit.clock.at)

    def event(n: int, project_id: str | None, at: Any = None) -> UsageEvent:
        at = at or _random_time(period.start, kit.clock.at)
        return UsageEvent("sdk_events", org_id, at, n, f"p-{n}", project_id)

    batch = [
        event(1, project),
        event(2, other_project),  # another org's project
        event(4, "prj_nope"),  # no such project
        event(8, archived.project_id, before_archive),  # usage that happened before archiving counts
        event(16, archived.project_id, after_archive),
        event(32, None),
    ]
    other_before = org_items(table, other_org)
    result = kit.usage.record_events(batch + batch[1:2])  # (a refused one twice)
    assert {(r.event_id, r.code) for r in result.refused} == {
        ("p-2", "project_not_found"),
        ("p-4", "project_not_found"),
        ("p-16", "project_archived"),
    }
    assert (result.events, result.applied) == (7, 3)
    assert kit.usage._usage.usage(org_id, period.key)["sdk_events"].total == 1 + 8 + 32
    assert org_items(table, other_org) == other_before
    again = kit.usage.record_events(batch)  # a retry: the counted ones are duplicates, the rest refused again
    assert (again.applied, again.duplicates, len(again.refused)) == (0, 3, 3)


def test_the_eventbridge_path_logs_and_counts_refused_events(
    kit: CreditKit, stack: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from functions.usage_ingest import handler
    from shared.observability import metrics

    counted: list[tuple[str, float]] = []
    add_metric = metrics.add_metric
    monkeypatch.setattr(
        metrics, "add_metric", lambda name, unit, value: (counted.append((name, value)), add_metric(name, unit, value))
    )

    org_id, project, _ = _org(kit, "pro")
    _, other_project, _ = _org(kit, "pro")
    sample = json.loads(handler_path("UsageIngestFunction").read_text())
    at = datetime.now(UTC) - timedelta(minutes=rng.randrange(1, 600))
    base = {"metric": "sdk_events", "org_id": org_id, "occurred_at": at.isoformat(), "quantity": 5}
    detail = {
        "events": [
            {**base, "project_id": project, "event_id": "eb-ok"},
            {**base, "project_id": other_project, "event_id": "eb-theirs"},
        ]
    }
    result = handler.lambda_handler({**sample, "detail": detail}, _Context())
    assert result["applied"] == 1
    assert [(r["event_id"], r["code"]) for r in result["refused"]] == [("eb-theirs", "project_not_found")]
    assert counted == [("UsageEventsRefused", 1), ("UsageEventsMetered", 1)]
    refused = [r for r in caplog.records if r.levelname == "ERROR" and "refused" in r.getMessage()]
    assert refused and "eb-theirs" in json.dumps(refused[0].__dict__.get("refused"))


def test_concurrent_batches_with_overlapping_event_ids_all_succeed_and_count_each_event_once(
    kit: CreditKit, stack: Any
) -> None:
    queue = capture_events(stack, {"detail-type": ["Usage.AllowanceWarning"]})
    org_id, project, _ = _org(kit, "starter")  # 500 runs
    period = period_containing(kit.org_repo.require_org(org_id), kit.clock.at)
    pool = [
        UsageEvent(
            "workflow_runs",
            org_id,
            _random_time(period.start, kit.clock.at),
            rng.randint(1, 4),
            f"c-{n}",
            project if n % 2 else None,
        )
        for n in range(240)
    ]
    batches = [rng.sample(pool, 130) for _ in range(6)]  # each event in ~3 batches
    kits = [credit_kit(stack.env["TABLE_NAME"], stack.env["EVENT_BUS_NAME"], kit.clock.at) for _ in batches]
    start = threading.Barrier(len(batches))
    results: list[Any] = [None] * len(batches)

    def send(i: int) -> None:
        start.wait()
        try:
            results[i] = kits[i].usage.record_events(batches[i])
        except Exception as exc:  # (the assertion below names it)
            results[i] = exc

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(not isinstance(r, Exception) for r in results), results
    sent = {e.event_id: e for b in batches for e in b}
    assert sum(r.applied for r in results) == len(sent)
    stored = kit.usage._usage.usage(org_id, period.key)["workflow_runs"]
    assert stored.total == sum(e.quantity for e in sent.values())
    warned = _warnings(stack, queue, org_id)
    assert [(m, i, p) for m, i, p, _ in warned] == [("workflow_runs", 500, 80), ("workflow_runs", 500, 100)]
    assert all(used >= 500 * pct // 100 for _, _, pct, used in warned)


def test_a_batch_out_of_retries_answers_503_usage_busy_with_retry_after_and_a_resend_counts_once(
    kit: CreditKit, stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from functions.internal import handler

    org_id, project, _ = _org(kit, "pro")
    repo = handler.services().usage.meter._repo
    applied = repo.apply

    def always_conflicting(*args: Any, **kwargs: Any) -> None:
        raise ConcurrentUpdateError("another batch")

    monkeypatch.setattr(repo, "apply", always_conflicting)
    monkeypatch.setattr("shared.usage.metering.time.sleep", lambda _: None)
    sample = json.loads((Path(__file__).parents[2] / "events/InternalApiFunction/sdk_events_batch.json").read_text())
    at = datetime.now(UTC) - timedelta(minutes=rng.randrange(1, 300))
    body = {
        "events": [
            {"metric": "sdk_events", "org_id": org_id, "project_id": project, "occurred_at": at.isoformat(),
             "quantity": 2, "event_id": f"busy-{n}"}
            for n in range(5)
        ]
    }  # fmt: skip
    request = {**sample, "rawPath": "/v1/internal/usage/events", "body": json.dumps(body)}
    request["requestContext"] = {**sample["requestContext"], "http": {**sample["requestContext"]["http"]}}
    request["requestContext"]["http"]["path"] = "/v1/internal/usage/events"
    request["pathParameters"] = {"proxy": "usage/events"}
    reply = handler.lambda_handler(request, _Context())
    assert reply["statusCode"] == 503, reply
    assert json.loads(reply["body"])["error"]["code"] == "usage_busy"
    assert int(reply["headers"]["Retry-After"]) >= 1
    monkeypatch.setattr(kit.usage.meter._repo, "apply", always_conflicting)
    with pytest.raises(UsageBusyError):
        kit.usage.record_events([UsageEvent("sdk_events", org_id, kit.clock.at, 1, "busy-direct")])
    monkeypatch.setattr(repo, "apply", applied)
    again = handler.lambda_handler(request, _Context())  # the caller re-sends: safe
    assert json.loads(again["body"])["applied"] == 5
    twice = handler.lambda_handler(request, _Context())
    assert json.loads(twice["body"])["duplicates"] == 5

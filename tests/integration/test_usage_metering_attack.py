"""Usage metering attacked (issue 22, outside review): chunk sizes around a transaction's 100 items with
warnings crossed inside them, the same event_id with another quantity, metric or org, duplicates of a
refused event in one batch, events at the period's last second written with other offsets, and the
routes' hostile input. DynamoDB Local; periods end on a 31st anchor at a random time of day."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from shared.auth import Caller
from shared.credits.periods import period_containing
from shared.errors import InvalidRequestError
from shared.usage.metering import UsageEvent
from tests.helpers import ApiClient, capture_events, drain, new_user, org_items
from tests.integration.credit_kit import CreditKit, credit_kit
from tests.integration.test_usage_metering import ANCHOR, _random_time
from tests.local import devtokens
from tests.paid import mirror_subscription, paid_org_over_http

pytestmark = pytest.mark.integration
rng = random.Random()
NOW = ANCHOR + timedelta(days=40, hours=rng.randrange(24), minutes=rng.randrange(60))


@pytest.fixture
def kit(stack: Any) -> CreditKit:
    return credit_kit(stack.env["TABLE_NAME"], stack.env["EVENT_BUS_NAME"], NOW)


def _org(kit: CreditKit, plan_id: str = "starter") -> tuple[str, str]:
    owner = Caller(new_user(), None, frozenset())
    at, kit.clock.at = kit.clock.at, ANCHOR
    view = kit.orgs.create_org(owner, name="Attack", billing_mode="byo", currency="USD", plan_id="free")  # type: ignore[arg-type]
    mirror_subscription(kit.mirror, view.org.org_id, plan_id, start=ANCHOR)
    project = kit.orgs.create_project(owner, view.org.org_id, name="Main")
    kit.clock.at = at
    return view.org.org_id, project.project_id


def _total(kit: CreditKit, org_id: str, period_key: str, metric: str) -> int:
    found = kit.usage._usage.usage(org_id, period_key).get(metric)
    return found.total if found else 0


@pytest.mark.parametrize("size", [97, 98, 101, 1000])
def test_batches_around_a_transactions_size_count_every_event_and_warn_once(
    kit: CreditKit, stack: Any, size: int
) -> None:
    queue = capture_events(stack, {"detail-type": ["Usage.AllowanceWarning"]})
    org_id, project = _org(kit)  # Starter: 500 runs included
    org = kit.org_repo.require_org(org_id)
    current = period_containing(org, kit.clock.at)
    last = period_containing(org, current.start - timedelta(seconds=1))
    # Runs and SDK events in both periods: four counters; runs of this period cross 80 % and 100 %
    # somewhere inside the batch (each run 1..9, the batch's runs well past 500)
    events = []
    for n in range(size):
        metric = "workflow_runs" if n % 4 else "sdk_events"
        earliest = max(last.start, kit.clock.at - timedelta(days=34))  # (the 35-day dedupe window)
        at = _random_time(current.start, kit.clock.at) if n % 5 else _random_time(earliest, current.start)
        quantity = rng.randint(1, 9) if metric == "workflow_runs" else rng.randint(1, 1000)
        if size <= 101 and metric == "workflow_runs":
            quantity = rng.randint(8, 12)
        events.append(UsageEvent(metric, org_id, at, quantity, f"e-{n}", project if n % 2 else None))
    result = kit.usage.record_events(events + events[: size // 3])  # a third twice in the same batch
    assert (result.applied, result.duplicates) == (size, size // 3)
    assert result.marker_writes + result.counter_writes * 3 <= 100 * result.transactions
    for period in (last, current):
        for metric in ("workflow_runs", "sdk_events"):
            mine = [e.quantity for e in events if e.metric == metric and period.start <= e.occurred_at < period.end]
            assert _total(kit, org_id, period.key, metric) == sum(mine)
            stored = kit.usage._usage.usage(org_id, period.key).get(metric)
            days = stored.days if stored else {}
            assert sum(v for k, v in days.items() if "#" not in k) == sum(mine)
    used = {m: _total(kit, org_id, current.key, m) for m in ("workflow_runs", "sdk_events")}
    assert kit.usage.record_events(events).applied == 0
    stack.flush_outbox()
    seen = sorted(
        (d["metric"], d["threshold_pct"]) for d in (e["detail"] for e in drain(stack, queue)) if d["org_id"] == org_id
    )
    included = {"workflow_runs": 500, "sdk_events": 100_000}  # Starter's
    expected = sorted((m, pct) for m in used for pct in (80, 100) if used[m] * 100 >= included[m] * pct)
    assert seen == expected


def test_the_same_event_id_with_another_quantity_metric_or_org(kit: CreditKit) -> None:
    org_id, _ = _org(kit)
    other, _ = _org(kit)
    org = kit.org_repo.require_org(org_id)
    current = period_containing(org, kit.clock.at)
    at = _random_time(current.start, kit.clock.at)
    assert kit.usage.record_events([UsageEvent("workflow_runs", org_id, at, 5, "same")]).applied == 1
    # Re-sent with another quantity (and another time): the first one stands
    again = kit.usage.record_events([UsageEvent("workflow_runs", org_id, kit.clock.at, 50, "same")])
    assert (again.applied, again.duplicates) == (0, 1)
    # Another metric, another org: their own events
    assert kit.usage.record_events([UsageEvent("sdk_events", org_id, at, 7, "same")]).applied == 1
    assert kit.usage.record_events([UsageEvent("workflow_runs", other, at, 9, "same")]).applied == 1
    assert _total(kit, org_id, current.key, "workflow_runs") == 5
    assert _total(kit, org_id, current.key, "sdk_events") == 7
    assert _total(kit, other, current.key, "workflow_runs") == 9


def test_an_event_twice_in_a_batch_once_naming_a_foreign_project_is_its_first_copy(kit: CreditKit) -> None:
    org_id, project = _org(kit)
    _, foreign = _org(kit)
    org = kit.org_repo.require_org(org_id)
    at = kit.clock.at - timedelta(minutes=rng.randrange(1, 300))
    valid = UsageEvent("workflow_runs", org_id, at, 3, "valid-first", project)
    bad = UsageEvent("workflow_runs", org_id, at, 3, "bad-first", foreign)
    batch = [valid, replace(valid, project_id=foreign), bad, replace(bad, project_id=project)]
    result = kit.usage.record_events(batch)
    # The first copy stands, as for a copy with another quantity: the valid one counts (its copy naming a
    # foreign project is its duplicate), the refused one is refused (its later valid copy too, as its duplicate)
    assert (result.events, result.applied, result.duplicates) == (4, 1, 2)
    assert [r.event_id for r in result.refused] == ["bad-first"]
    assert _total(kit, org_id, period_containing(org, at).key, "workflow_runs") == 3
    # Refused events leave no marker: sent again with the org's project, it counts
    assert kit.usage.record_events([replace(bad, project_id=project)]).applied == 1


def test_the_periods_last_second_in_other_offsets_lands_in_its_period_and_utc_day(kit: CreditKit) -> None:
    org_id, _ = _org(kit)
    org = kit.org_repo.require_org(org_id)
    current = period_containing(org, kit.clock.at)
    last = period_containing(org, current.start - timedelta(seconds=1))
    edge = current.start - timedelta(seconds=1)
    offsets = [timezone(timedelta(hours=h, minutes=m)) for h, m in ((-12, 0), (5, 45), (14, 0), (-3, -30))]
    events = [
        UsageEvent("sdk_events", org_id, (edge if n % 2 else current.start).astimezone(tz), 1, f"tz-{n}")
        for n, tz in enumerate(offsets)
    ]
    assert kit.usage.record_events(events).applied == 4
    before = kit.usage._usage.usage(org_id, last.key)["sdk_events"]
    after = kit.usage._usage.usage(org_id, current.key)["sdk_events"]
    assert (before.total, after.total) == (2, 2)
    assert dict(before.days) == {edge.astimezone(UTC).date().isoformat(): 2}
    assert dict(after.days) == {current.start.astimezone(UTC).date().isoformat(): 2}


# ---------------------------------------------------------------------- over HTTP (real now)
ENGINE = devtokens.service_token("workflow-engine")


def _event(org_id: str, project: str, at: datetime, event_id: str, quantity: Any = 1) -> dict[str, Any]:
    return {
        "metric": "workflow_runs",
        "org_id": org_id,
        "project_id": project,
        "occurred_at": at.isoformat(),
        "quantity": quantity,
        "event_id": event_id,
    }


def test_the_events_route_refuses_hostile_input_with_a_code_and_changes_nothing(
    api: ApiClient, stack: Any, table: Any
) -> None:
    owner = new_user()
    org_id = paid_org_over_http(api, stack, table, owner, name="Hostile", plan_id="starter", billing_mode="byo")
    project = api.call("POST", f"/v1/orgs/{org_id}/projects", as_user=owner, json={"name": "A"}).body["project_id"]
    now = datetime.now(UTC)
    good = _event(org_id, project, now - timedelta(minutes=rng.randrange(1, 60)), "good")
    before = org_items(table, org_id)
    bodies: list[Any] = [{"events": [{**good, "quantity": q}]} for q in (-1, True, "5", 1.5, 1_000_001, None)]
    bodies += [
        {"events": [good] * 5_001},
        {"events": [{**good, "event_id": ""}]},
        {"events": [{**good, "event_id": "x" * 256}]},
        {"events": [{**good, "event_id": "with space"}]},
        {"events": [{**good, "org_id": "../org"}]},
        {"events": [{**good, "extra": 1}]},
        {"events": [{**good, "occurred_at": "2026-02-30T10:00:00Z"}]},
        {"events": [{**good, "occurred_at": (now + timedelta(days=1)).isoformat()}]},
        {"events": good},
        [good],
    ]
    for body in bodies:
        reply = api.call("POST", "/v1/internal/usage/events", token=ENGINE, json=body)
        assert (reply.status, reply.code) == (422, "validation_error"), (str(body)[:200], reply.body)
    for raw in ("{", "", "null", '{"events": [', "\xff"):
        resp = api._session.post(
            api.base_url + "/v1/internal/usage/events",
            data=raw.encode("latin-1"),
            headers={"Authorization": f"Bearer {ENGINE}", "Content-Type": "application/json"},
            timeout=30,
        )
        assert 400 <= resp.status_code < 500 and resp.json()["error"]["code"], (raw, resp.status_code, resp.text)
    assert org_items(table, org_id) == before
    # A user (not the workflow engine) cannot report usage, even the org's owner (refused at the gateway)
    mine = api.call("POST", "/v1/internal/usage/events", as_user=owner, json={"events": [good]})
    assert mine.status == 403
    assert org_items(table, org_id) == before
    # Offsets: the same instant written at +05:45 counts once, on its UTC day
    shifted = {
        **good,
        "occurred_at": datetime.fromisoformat(good["occurred_at"])
        .astimezone(timezone(timedelta(hours=5, minutes=45)))
        .isoformat(),
    }
    assert api.call("POST", "/v1/internal/usage/events", token=ENGINE, json={"events": [good]}).body["applied"] == 1
    assert api.call("POST", "/v1/internal/usage/events", token=ENGINE, json={"events": [shifted]}).body["applied"] == 0


def test_the_usage_route_is_404_for_an_unknown_org_and_a_caller_not_in_it(
    api: ApiClient, stack: Any, table: Any
) -> None:
    owner, stranger = new_user(), new_user()
    org_id = paid_org_over_http(api, stack, table, owner, name="Private", plan_id="starter", billing_mode="byo")
    assert api.call("GET", f"/v1/orgs/{org_id}/usage", as_user=owner).status == 200
    for path in (f"/v1/orgs/{org_id}/usage", "/v1/orgs/org_unknown/usage"):
        reply = api.call("GET", path, as_user=stranger)
        assert (reply.status, reply.code) == (404, "org_not_found"), reply.body


def test_leap_day_last_second_lands_in_its_period_and_a_resend_is_a_duplicate_until_refused(kit: CreditKit) -> None:
    # A subscription anchored on the 31st of a leap year at a random time of day: a period ends on 29 Feb
    anchor = datetime(2028, 1, 31, tzinfo=UTC) + timedelta(seconds=rng.randrange(1, 86_400))
    owner = Caller(new_user(), None, frozenset())
    kit.clock.at = anchor
    view = kit.orgs.create_org(owner, name="Leap", billing_mode="byo", currency="USD", plan_id="free")  # type: ignore[arg-type]
    org_id = view.org.org_id
    mirror_subscription(kit.mirror, org_id, "starter", start=anchor)
    org = kit.org_repo.require_org(org_id)
    leap = datetime(2028, 2, 29, 23, 59, 59, tzinfo=UTC)
    period = period_containing(org, leap)
    assert period.start == anchor.replace(day=29, month=2)
    edges = [period.start - timedelta(seconds=1), period.start, leap]
    kit.clock.at = leap + timedelta(seconds=rng.randrange(1, 300))
    events = [UsageEvent("workflow_runs", org_id, at, 1 + n, f"leap-{n}") for n, at in enumerate(edges)]
    assert kit.usage.record_events(events).applied == 3
    before = period_containing(org, period.start - timedelta(seconds=1))
    assert (_total(kit, org_id, before.key, "workflow_runs"), _total(kit, org_id, period.key, "workflow_runs")) == (
        1,
        5,
    )
    # (the period starts on 29 Feb at the anchor's time of day: both of its events are on the UTC day 29 Feb)
    assert dict(kit.usage._usage.usage(org_id, period.key)["workflow_runs"].days) == {"2028-02-29": 5}
    # Re-sent 34 days later: a duplicate; 36 days later: refused as too old, nothing counted
    kit.clock.at = leap + timedelta(days=34)
    assert kit.usage.record_events([events[2]]).duplicates == 1
    kit.clock.at = leap + timedelta(days=36)
    with pytest.raises(InvalidRequestError) as refused:
        kit.usage.record_events([events[2]])
    assert refused.value.code == "usage_event_too_old"
    assert _total(kit, org_id, period.key, "workflow_runs") == 5

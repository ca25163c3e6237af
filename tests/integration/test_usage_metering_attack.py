"""Usage metering attacked (issue 22, outside review): chunk sizes around a transaction's 100 items with
warnings crossed inside them, the same event_id with another quantity, metric or org, duplicates of a
refused event in one batch, events at the period's last second written with other offsets, and the
routes' hostile input. DynamoDB Local; periods end on a 31st anchor at a random time of day."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from shared import keys
from shared.auth import Caller
from shared.credits.periods import period_containing
from shared.errors import InvalidRequestError
from shared.usage.metering import UsageEvent, adapter_event_id, earliest_accepted
from shared.usage.service import GB, SdkEvent
from tests.helpers import ApiClient, capture_events, drain, new_user, org_items
from tests.integration.credit_kit import CreditKit, credit_kit
from tests.integration.test_usage_metering import ANCHOR, _random_time, created_at
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


def _event(org_id: str, project: str | None, at: datetime, event_id: str, quantity: Any = 1) -> dict[str, Any]:
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
    good = _event(org_id, project, _random_time(created_at(api, owner, org_id), now), "good")
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


# ---------------------------------------------------------------------- issue 22, second outside review
def test_an_eventbridge_event_refuses_only_its_items_too_old_or_reserved_and_counts_the_rest(
    kit: CreditKit, table: Any
) -> None:
    from functions.usage_ingest import handler
    from tests.integration.test_usage_metering import _Context, handler_path

    org_id, project = _org(kit)
    _, foreign = _org(kit)
    sample = json.loads(handler_path("UsageIngestFunction").read_text())
    now = datetime.now(UTC)  # (the Lambda's clock)
    org = kit.org_repo.require_org(org_id)
    earliest = earliest_accepted(org, now)
    # Past a transaction's 100 items: 250 valid runs of the window (one 3 minutes from its start), with one just
    # past the 35-day window, one with an SDK batch's id and one naming another org's project
    times = [earliest + timedelta(minutes=3)] + [_random_time(earliest + timedelta(minutes=5), now) for _ in range(249)]
    items = [_event(org_id, project, at, f"ok-{n}") for n, at in enumerate(times)]
    bad = {
        "old": _event(org_id, project, earliest - timedelta(seconds=rng.randrange(1, 3600)), "old"),
        "forged": _event(org_id, project, now, adapter_event_id("b-1", period_containing(org, now).key, "2026-12-01")),
        "theirs": _event(org_id, foreign, now, "theirs"),
    }
    batch = items[:120] + list(bad.values()) + items[120:]
    answer = handler.lambda_handler({**sample, "detail": {"events": batch}}, _Context())
    assert (answer["applied"], answer["duplicates"]) == (250, 0)
    assert sorted((r["event_id"], r["code"]) for r in answer["refused"]) == sorted(
        [
            ("old", "usage_event_too_old"),
            (bad["forged"]["event_id"], "usage_event_id_reserved"),
            ("theirs", "project_not_found"),
        ]
    )
    counted = {
        key: _total(kit, org_id, key, "workflow_runs") for key in {period_containing(org, at).key for at in times}
    }
    assert sum(counted.values()) == 250
    # Delivered again (EventBridge is at least once): the counted items are duplicates, the refused refused again
    again = handler.lambda_handler({**sample, "detail": {"events": batch}}, _Context())
    assert (again["applied"], again["duplicates"], len(again["refused"])) == (0, 250, 3)
    # The route keeps all or nothing: the same batch is 422 for its first bad item, and nothing changes
    kit.clock.at = now
    before = org_items(table, org_id)
    with pytest.raises(InvalidRequestError) as refused:
        kit.usage.record_events([replace(e, event_id=f"new-{n}") for n, e in enumerate(_usage_events(batch))])
    assert refused.value.code == "usage_event_too_old"
    assert org_items(table, org_id) == before


def _usage_events(batch: list[dict[str, Any]]) -> list[UsageEvent]:
    return [
        UsageEvent(e["metric"], e["org_id"], datetime.fromisoformat(e["occurred_at"]), e["quantity"], e["event_id"])
        for e in batch
    ]


def test_an_sdk_batch_id_sent_to_the_events_route_is_refused_and_the_batch_still_counts_once(
    kit: CreditKit, table: Any
) -> None:
    org_id, _ = _org(kit)
    org = kit.org_repo.require_org(org_id)
    current = period_containing(org, kit.clock.at)
    at = _random_time(current.start, kit.clock.at)
    day = at.astimezone(UTC).date().isoformat()
    forged = UsageEvent("sdk_events", org_id, at, 1, adapter_event_id("collector-7", current.key, day))
    before = org_items(table, org_id)
    # Given a caller of the events route sending the id the adapter would give batch collector-7
    with pytest.raises(InvalidRequestError) as refused:
        kit.usage.record_events([forged])
    assert refused.value.code == "usage_event_id_reserved"
    assert org_items(table, org_id) == before
    # Ids that only look a little like it are anyone's
    for near in (f"collector-7#{current.key}", f"collector-7#{day}#{current.key}", f"{forged.event_id}#x"):
        assert kit.usage.record_events([replace(forged, event_id=near)]).applied == 1
    # When the collector sends batch collector-7: it counts (its id was never marked), and once on a re-send
    entries = [SdkEvent(org_id, at, 40), SdkEvent(org_id, at + timedelta(seconds=1), 2)]
    first = kit.usage.ingest_sdk_events("collector-7", entries)
    again = kit.usage.ingest_sdk_events("collector-7", entries)
    assert (first.duplicate, again.duplicate) == (False, True)
    # Its marker is the adapter's id, as before this change: batches counted before it are still duplicates
    marker = keys.usage_event_key(org_id, "sdk_events", forged.event_id)
    assert table.get_item(Key=marker, ConsistentRead=True).get("Item") is not None
    assert _total(kit, org_id, current.key, "sdk_events") == 3 + 42


def test_a_storage_snapshot_before_the_window_is_refused_and_changes_nothing(kit: CreditKit, table: Any) -> None:
    org_id, _ = _org(kit)
    org = kit.org_repo.require_org(org_id)
    earliest = earliest_accepted(org, kit.clock.at)
    current = period_containing(org, kit.clock.at)
    before = org_items(table, org_id)
    # A snapshot a second (or days) before the window: a period already billed would never bill its peak
    for taken_at in (earliest - timedelta(seconds=1), earliest - timedelta(days=rng.randint(2, 300))):
        with pytest.raises(InvalidRequestError) as refused:
            kit.usage.record_storage(org_id, taken_at, 900 * GB)
        assert refused.value.code == "storage_snapshot_too_old"
    assert org_items(table, org_id) == before
    # At the window's first second and inside it: kept, in their periods
    assert kit.usage.record_storage(org_id, earliest, 3 * GB).key == period_containing(org, earliest).key
    assert kit.usage.record_storage(org_id, _random_time(current.start, kit.clock.at), 4 * GB).key == current.key


def test_the_snapshot_route_answers_422_for_an_old_snapshot_and_404_for_an_unknown_org(
    api: ApiClient, stack: Any, table: Any
) -> None:
    owner = new_user()
    org_id = paid_org_over_http(api, stack, table, owner, name="Old disk", plan_id="starter", billing_mode="byo")
    now = datetime.now(UTC)
    old = now - timedelta(days=36, seconds=rng.randrange(86_400))
    before = org_items(table, org_id)
    body = {"org_id": org_id, "taken_at": old.isoformat(), "total_bytes": 7 * GB}
    reply = api.call("POST", "/v1/internal/usage/storage-snapshots", token=ENGINE, json=body)
    assert (reply.status, reply.code) == (422, "storage_snapshot_too_old"), reply.body
    assert org_items(table, org_id) == before
    unknown = {**body, "org_id": "org_unknown", "taken_at": now.isoformat()}
    reply = api.call("POST", "/v1/internal/usage/storage-snapshots", token=ENGINE, json=unknown)
    assert (reply.status, reply.code) == (404, "org_not_found"), reply.body
    born = created_at(api, owner, org_id)
    unborn = {
        **body,
        "taken_at": (born.replace(microsecond=0) - timedelta(seconds=rng.randrange(1, 86_400))).isoformat(),
    }
    reply = api.call("POST", "/v1/internal/usage/storage-snapshots", token=ENGINE, json=unborn)
    assert (reply.status, reply.code) == (422, "usage_before_org"), reply.body
    assert org_items(table, org_id) == before
    fresh = {**body, "taken_at": _random_time(born, now).isoformat()}
    assert api.call("POST", "/v1/internal/usage/storage-snapshots", token=ENGINE, json=fresh).status == 200
    # The events route: an SDK batch's id is 422 there
    event = _event(org_id, None, now, f"b-1#2026-11-30T14:37:21Z#{now.date().isoformat()}")
    reply = api.call("POST", "/v1/internal/usage/events", token=ENGINE, json={"events": [event]})
    assert (reply.status, reply.code) == (422, "usage_event_id_reserved"), reply.body


def test_an_eventbridge_item_dated_in_the_future_is_refused_alone_and_the_rest_count(
    kit: CreditKit, api: ApiClient, table: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from functions import eventbridge_ingest
    from functions.usage_ingest import handler
    from tests.integration.test_usage_metering import _Context, handler_path

    metered: list[tuple[str, float]] = []
    add_metric = eventbridge_ingest.metrics.add_metric
    monkeypatch.setattr(
        eventbridge_ingest.metrics,
        "add_metric",
        lambda **kw: (metered.append((kw["name"], kw["value"])), add_metric(**kw))[1],
    )
    org_id, project = _org(kit)
    sample = json.loads(handler_path("UsageIngestFunction").read_text())
    now = datetime.now(UTC)  # (the Lambda's clock)
    org = kit.org_repo.require_org(org_id)
    earliest = earliest_accepted(org, now)
    # 40 runs of the window, one 4 minutes ahead (within the 5 minutes' clock skew allowed, as on the route),
    # one past the skew (written at +05:45) and one in the year 2999
    times = [_random_time(earliest + timedelta(minutes=1), now) for _ in range(40)] + [now + timedelta(minutes=4)]
    items = [_event(org_id, project, at, f"ok-{n}") for n, at in enumerate(times)]
    past_skew = (now + timedelta(minutes=5, seconds=rng.randrange(30, 3600))).astimezone(
        timezone(timedelta(hours=5, minutes=45))
    )
    ahead = [
        _event(org_id, project, past_skew, "ahead"),
        _event(org_id, None, datetime(2999, 12, 31, 23, 59, 59, tzinfo=UTC), "far"),
    ]
    batch = items[:17] + ahead[:1] + items[17:33] + ahead[1:] + items[33:]
    answer = handler.lambda_handler({**sample, "detail": {"events": batch}}, _Context())
    # The two ahead are refused alone, counted in UsageEventsRefused; the 41 others count
    assert (answer["applied"], answer["duplicates"]) == (41, 0)
    assert sorted((r["event_id"], r["code"]) for r in answer["refused"]) == [
        ("ahead", "usage_event_in_future"),
        ("far", "usage_event_in_future"),
    ]
    assert ("UsageEventsRefused", 2) in metered and ("UsageEventsMetered", 41) in metered
    keys = {period_containing(org, at).key for at in times}
    assert sum(_total(kit, org_id, key, "workflow_runs") for key in keys) == 41
    # Delivered again: the counted are duplicates, the ahead refused again
    again = handler.lambda_handler({**sample, "detail": {"events": batch}}, _Context())
    assert (again["applied"], again["duplicates"], len(again["refused"])) == (0, 41, 2)
    # The route, by the same rule: all or nothing, 422 for an item past the skew; one within it counts
    before = org_items(table, org_id)
    for late in ahead:
        reply = api.call("POST", "/v1/internal/usage/events", token=ENGINE, json={"events": [items[0], late]})
        assert (reply.status, reply.code) == (422, "validation_error"), reply.body
    assert org_items(table, org_id) == before
    skewed = {**items[-1], "event_id": "skewed-route"}
    assert api.call("POST", "/v1/internal/usage/events", token=ENGINE, json={"events": [skewed]}).body["applied"] == 1

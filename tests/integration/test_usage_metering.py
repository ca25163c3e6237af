"""Usage metering on its own path: `POST /v1/internal/usage/events`, `Usage.EventsReported` on EventBridge
and credit settlements all count through `UsageMeter`, each event once by its event_id, in the period of
its occurred_at; the usage route shows the daily series and the projection; allowance warnings go out
once per crossing. DynamoDB Local; times of day are random, periods end at their anchor's time of day."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from shared import keys
from shared.auth import Caller
from shared.credits.periods import period_containing
from shared.errors import InvalidRequestError, NotFoundError
from shared.money import unit_price_total
from shared.usage.metering import DEDUPE_WINDOW, UsageEvent
from shared.usage.service import GB
from tests.helpers import ApiClient, capture_events, drain, new_user, org_items
from tests.integration.credit_kit import CreditKit, credit_kit
from tests.local import devtokens
from tests.paid import mirror_subscription, paid_org_over_http

pytestmark = pytest.mark.integration
ENGINE = devtokens.service_token("workflow-engine")
rng = random.Random()
# A subscription anchored at 14:37:21 on the 31st: periods end on the last day of short months at that time
ANCHOR = datetime(2026, 1, 31, 14, 37, 21, tzinfo=UTC)


@pytest.fixture
def kit(stack: Any) -> CreditKit:
    return credit_kit(stack.env["TABLE_NAME"], stack.env["EVENT_BUS_NAME"], ANCHOR + timedelta(days=40))


def _org(kit: CreditKit, plan_id: str = "pro") -> tuple[str, str]:
    owner = Caller(new_user(), None, frozenset())
    at = kit.clock.at
    kit.clock.at = ANCHOR
    view = kit.orgs.create_org(owner, name="Meter", billing_mode="byo", currency="USD", plan_id="free")  # type: ignore[arg-type]
    mirror_subscription(kit.mirror, view.org.org_id, plan_id, start=ANCHOR)
    project = kit.orgs.create_project(owner, view.org.org_id, name="Main")
    kit.clock.at = at
    return view.org.org_id, project.project_id


def _runs(kit: CreditKit, org_id: str, period_key: str) -> int:
    found = kit.usage._usage.usage(org_id, period_key).get("workflow_runs")
    return found.total if found else 0


def _random_time(start: datetime, end: datetime) -> datetime:
    return start + timedelta(seconds=rng.randrange(max(1, int((end - start).total_seconds()))))


def test_a_run_without_credits_is_counted_and_a_settle_counts_its_run_once(kit: CreditKit) -> None:
    org_id, project = _org(kit)
    org = kit.org_repo.require_org(org_id)
    period = period_containing(org, kit.clock.at)  # 2026-02-28 14:37:21 to 2026-03-31 14:37:21
    assert period.key == "2026-02-28T14:37:21Z"
    # The engine reports a run that consumed no credits
    at = _random_time(period.start, kit.clock.at)
    kit.usage.record_events([UsageEvent("workflow_runs", org_id, at, 1, "run-nocredit", project)])
    # A run that consumes credits: its settle reports it (event_id = the run id), retried twice
    kit.credits.reserve(
        org_id=org_id,
        project_id=project,
        template_id="ad-copy",
        generation_type="caption_copy",
        quantity=1,
        workflow_run_id="run-credits",
        actor="t",
    )
    for _ in range(3):
        kit.credits.settle(org_id=org_id, workflow_run_id="run-credits", quantity=None, occurred_at=None, actor="t")
    # and the engine, reporting every run, reports it too: still once
    kit.usage.record_events([UsageEvent("workflow_runs", org_id, kit.clock.at, 1, "run-credits", project)])
    assert _runs(kit, org_id, period.key) == 2
    # The period item no longer carries a run counter of its own (one path counts runs)
    assert "workflow_runs" not in kit.repo.period(org_id, period.key)


def test_a_settle_that_stopped_before_metering_counts_its_run_on_the_retry(
    kit: CreditKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    org_id, project = _org(kit)
    kit.credits.reserve(
        org_id=org_id,
        project_id=project,
        template_id="ad-copy",
        generation_type="caption_copy",
        quantity=1,
        workflow_run_id="run-crash",
        actor="t",
    )
    meter = kit.credits._meter
    original = meter.record_checked
    monkeypatch.setattr(meter, "record_checked", lambda *a, **k: (_ for _ in ()).throw(TimeoutError("lambda died")))
    with pytest.raises(TimeoutError):
        kit.credits.settle(org_id=org_id, workflow_run_id="run-crash", quantity=None, occurred_at=None, actor="t")
    monkeypatch.setattr(meter, "record_checked", original)
    key = period_containing(kit.org_repo.require_org(org_id), kit.clock.at).key
    assert _runs(kit, org_id, key) == 0  # settled, not yet metered
    replay = kit.credits.settle(org_id=org_id, workflow_run_id="run-crash", quantity=None, occurred_at=None, actor="t")
    assert replay.replayed and _runs(kit, org_id, key) == 1
    kit.credits.settle(org_id=org_id, workflow_run_id="run-crash", quantity=None, occurred_at=None, actor="t")
    assert _runs(kit, org_id, key) == 1


def test_a_settle_replayed_after_its_marker_expired_does_not_count_its_run_again(kit: CreditKit, table: Any) -> None:
    org_id, project = _org(kit)
    kit.clock.at += timedelta(hours=rng.randrange(24), minutes=rng.randrange(60))
    kit.credits.reserve(
        org_id=org_id,
        project_id=project,
        template_id="ad-copy",
        generation_type="caption_copy",
        quantity=1,
        workflow_run_id="run-old",
        actor="t",
    )
    kit.credits.settle(org_id=org_id, workflow_run_id="run-old", quantity=None, occurred_at=None, actor="t")
    key = period_containing(kit.org_repo.require_org(org_id), kit.clock.at).key
    assert _runs(kit, org_id, key) == 1
    # 35 days and a second later (its period is the last one now, billed): DynamoDB's TTL removed the marker
    kit.clock.at += DEDUPE_WINDOW + timedelta(seconds=1)
    table.delete_item(Key=keys.usage_event_key(org_id, "workflow_runs", "run-old"))
    replay = kit.credits.settle(org_id=org_id, workflow_run_id="run-old", quantity=None, occurred_at=None, actor="t")
    assert replay.replayed and _runs(kit, org_id, key) == 1


def test_an_event_from_a_clock_ahead_outlives_its_marker_never(kit: CreditKit, table: Any) -> None:
    org_id, _ = _org(kit)
    ahead = UsageEvent("sdk_events", org_id, kit.clock.at + timedelta(minutes=4, seconds=rng.randrange(60)), 3, "ahead")
    assert kit.usage.record_events([ahead]).applied == 1
    # The last moment the same event is still accepted (occurred_at + 35 days): DynamoDB's TTL may have
    # removed every marker expired by then
    kit.clock.at = ahead.occurred_at + DEDUPE_WINDOW
    marker = table.get_item(Key=keys.usage_event_key(org_id, "sdk_events", "ahead"))["Item"]
    if int(marker["expires_at"]) <= kit.clock.at.timestamp():
        table.delete_item(Key=keys.usage_event_key(org_id, "sdk_events", "ahead"))
    assert kit.usage.record_events([ahead]).applied == 0


def test_the_same_event_id_in_two_batches_counts_once_and_events_land_in_their_period(kit: CreditKit) -> None:
    org_id, project = _org(kit)
    org = kit.org_repo.require_org(org_id)
    current = period_containing(org, kit.clock.at)
    last = period_containing(org, current.start - timedelta(seconds=1))
    # 250 events (past a transaction's 100 items) over both periods, at random times of day, the period
    # boundary itself among them (the last second of the last period, the first of this one)
    earliest = max(last.start, kit.clock.at - timedelta(days=34))  # (the 35-day dedupe window)
    times = [_random_time(earliest, kit.clock.at) for _ in range(248)]
    times += [current.start - timedelta(seconds=1), current.start]
    events = [
        UsageEvent("sdk_events", org_id, at, rng.randint(1, 50), f"sdk-{n}", project if n % 3 else None)
        for n, at in enumerate(times)
    ]
    first_batch, second_batch = events[:180], events[120:] + events[5:10]  # 60 + 5 re-sent in a new batch
    first = kit.usage.record_events(first_batch + first_batch[:3])  # (and 3 twice in one batch)
    second = kit.usage.record_events(second_batch)
    assert (first.applied, first.duplicates) == (180, 3)
    assert (second.applied, second.duplicates) == (70, 65)
    assert kit.usage.record_events(events).applied == 0  # the whole lot again: nothing
    stored = {key: kit.usage._usage.usage(org_id, key)["sdk_events"] for key in (last.key, current.key)}
    for period in (last, current):
        mine = [e for e in events if period.start <= e.occurred_at < period.end]
        assert stored[period.key].total == sum(e.quantity for e in mine)
        by_day: dict[str, int] = {}
        for e in mine:
            day = e.occurred_at.date().isoformat()
            by_day[day] = by_day.get(day, 0) + e.quantity
            if e.project_id:
                by_day[f"{day}#{project}"] = by_day.get(f"{day}#{project}", 0) + e.quantity
        assert dict(stored[period.key].days) == by_day


def test_writes_stay_one_counter_per_org_metric_and_chunk(kit: CreditKit) -> None:
    orgs = [_org(kit)[0] for _ in range(3)]
    at = kit.clock.at - timedelta(hours=1)
    events = [UsageEvent("sdk_events", orgs[n % 3], at, 1, f"w-{n}") for n in range(990)]
    result = kit.usage.record_events(events)
    # 990 markers; each transaction holds 100 items: markers and one ADD per org · metric it touches
    assert (result.applied, result.marker_writes) == (990, 990)
    assert result.counter_writes == result.transactions + 2  # sorted by group: 2 chunks straddle two orgs
    assert result.marker_writes + result.counter_writes <= 100 * result.transactions


def test_bad_events_are_refused_and_change_nothing(kit: CreditKit, table: Any) -> None:
    org_id, _ = _org(kit)
    org = kit.org_repo.require_org(org_id)
    before = org_items(table, org_id)
    previous = period_containing(org, period_containing(org, kit.clock.at).start - timedelta(seconds=1))
    good = UsageEvent("workflow_runs", org_id, kit.clock.at, 1, "good")
    cases = [
        (UsageEvent("workflow_runs", org_id, previous.start - timedelta(seconds=1), 1, "old"), "usage_event_too_old"),
        (UsageEvent("workflow_runs", org_id, kit.clock.at + timedelta(minutes=6), 1, "ahead"), "usage_event_in_future"),
        (UsageEvent("media_storage_gb", org_id, kit.clock.at, 1, "gb"), "unknown_metric"),
    ]
    for bad, code in cases:
        with pytest.raises(InvalidRequestError) as refused:
            kit.usage.record_events([good, bad])
        assert refused.value.code == code
    with pytest.raises(NotFoundError) as unknown:
        kit.usage.record_events([good, UsageEvent("workflow_runs", "org_nope", kit.clock.at, 1, "x")])
    assert unknown.value.code == "org_not_found"
    assert org_items(table, org_id) == before
    assert kit.usage.record_events([good]).applied == 1  # (not marked by the refused batches)


def test_allowance_warnings_go_out_once_per_crossing(kit: CreditKit, stack: Any) -> None:
    queue = capture_events(stack, {"detail-type": ["Usage.AllowanceWarning"]})
    org_id, _ = _org(kit, "starter")  # 500 runs included
    at = kit.clock.at - timedelta(hours=2)
    for sent, size in enumerate((399, 1, 1, 99, 1, 50)):  # 399 -> 400 (80 %) -> 401 -> 500 (100 %) -> ...
        kit.usage.record_events([UsageEvent("workflow_runs", org_id, at, size, f"batch-{sent}")])
        kit.usage.record_events([UsageEvent("workflow_runs", org_id, at, size, f"batch-{sent}")])  # re-sent
    stack.flush_outbox()
    seen = [
        (e["detail"]["threshold_pct"], e["detail"]["used"])
        for e in drain(stack, queue)
        if e["detail"]["org_id"] == org_id
    ]
    assert sorted(seen) == [(80, 400), (100, 500)]


def test_media_storage_warns_once_per_crossing_of_its_peak(kit: CreditKit, stack: Any) -> None:
    queue = capture_events(stack, {"detail-type": ["Usage.AllowanceWarning"]})
    org_id, _ = _org(kit, "starter")  # 10 GB included, billed in whole GB rounded up
    org = kit.org_repo.require_org(org_id)
    current = period_containing(org, kit.clock.at)
    # The last period's peak went over (billed, not announced now); this period: 7 GB, 7.2 GB (8 GB: 80 %),
    # a lower day, 8.9 GB, exactly 10 GB (100 %), then 12 GB
    kit.usage.record_storage(org_id, current.start - timedelta(seconds=1), 30 * GB)
    sizes = (7 * GB, 7_200_000_000, 3 * GB, 8_900_000_000, 10 * GB, 12 * GB)
    for size in sizes:
        kit.usage.record_storage(org_id, _random_time(current.start, kit.clock.at), size)
    stack.flush_outbox()
    seen = [
        (e["detail"]["metric"], e["detail"]["threshold_pct"], e["detail"]["used"])
        for e in drain(stack, queue)
        if e["detail"]["org_id"] == org_id
    ]
    assert sorted(seen) == [("media_storage_gb", 80, 8), ("media_storage_gb", 100, 10)]


def test_the_eventbridge_event_counts_like_the_route(kit: CreditKit, stack: Any, table: Any) -> None:
    from functions.usage_ingest import handler

    org_id, project = _org(kit)
    event = json.loads(handler_path("UsageIngestFunction").read_text())
    at = datetime.now(UTC) - timedelta(minutes=rng.randrange(1, 600))
    detail = {
        "events": [
            {
                "metric": "sdk_events",
                "org_id": org_id,
                "project_id": project,
                "occurred_at": at.isoformat(),
                "quantity": 7,
                "event_id": "eb-1",
            },
            {
                "metric": "workflow_runs",
                "org_id": org_id,
                "occurred_at": at.isoformat(),
                "quantity": 1,
                "event_id": "eb-run",
            },
        ]
    }
    first = handler.lambda_handler({**event, "detail": detail}, _Context())
    again = handler.lambda_handler({**event, "detail": detail}, _Context())  # EventBridge delivers twice
    assert (first["applied"], again["applied"], again["duplicates"]) == (2, 0, 2)
    before = org_items(table, org_id)
    unknown = {"events": [{**detail["events"][0], "org_id": "org_nope", "event_id": "eb-2"}]}
    assert handler.lambda_handler({**event, "detail": unknown}, _Context())["refused"] == "org_not_found"
    assert org_items(table, org_id) == before


def handler_path(function: str) -> Any:
    from pathlib import Path

    return Path(__file__).resolve().parents[2] / "events" / function / "usage_reported.json"


class _Context:
    function_name = "usage-ingest"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:usage-ingest"
    aws_request_id = "req"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 20_000


# ---------------------------------------------------------------------- over HTTP (real now)
def _events(org_id: str, project: str, times: list[datetime], metric: str = "sdk_events") -> dict[str, Any]:
    return {
        "events": [
            {
                "metric": metric,
                "org_id": org_id,
                "project_id": project,
                "occurred_at": at.isoformat(),
                "quantity": 3,
                "event_id": f"http-{at.timestamp()}-{n}",
            }
            for n, at in enumerate(times)
        ]
    }


def test_the_usage_route_shows_daily_series_and_the_projection(api: ApiClient, stack: Any, table: Any) -> None:
    owner = new_user()
    org_id = paid_org_over_http(api, stack, table, owner, name="Series", plan_id="starter", billing_mode="byo")
    project = api.call("POST", f"/v1/orgs/{org_id}/projects", as_user=owner, json={"name": "A"}).body["project_id"]
    usage = api.call("GET", f"/v1/orgs/{org_id}/usage", as_user=owner).body
    start = datetime.fromisoformat(usage["period_start"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(usage["period_end"].replace("Z", "+00:00"))
    now = datetime.now(UTC)
    times = [_random_time(start, now) for _ in range(40)] + [start]  # the period's first second too
    body = _events(org_id, project, times)
    reply = api.call("POST", "/v1/internal/usage/events", token=ENGINE, json=body)
    assert (reply.status, reply.body["applied"]) == (200, 41), reply.body
    again = api.call("POST", "/v1/internal/usage/events", token=ENGINE, json=body)
    assert (again.body["applied"], again.body["duplicates"]) == (0, 41)

    asked = datetime.now(UTC)
    usage = api.call("GET", f"/v1/orgs/{org_id}/usage", as_user=owner).body
    answered = datetime.now(UTC)
    series = {s["metric"]: s for s in usage["series"]}
    days: dict[str, int] = {}
    for at in times:
        days[at.date().isoformat()] = days.get(at.date().isoformat(), 0) + 3
    assert [(d["day"], d["quantity"]) for d in series["sdk_events"]["days"]] == sorted(days.items())
    assert {d["project_id"] for d in series["sdk_events"]["projects"]} == {project}
    assert sum(d["quantity"] for d in series["sdk_events"]["projects"]) == 123
    assert usage["last_period_key"] < usage["period_key"]
    # Projected: 123 x period length / elapsed, half-even; overage at Starter's 0.002 per event
    projection = {p["metric"]: p for p in usage["projections"]}["sdk_events"]
    length = Decimal((end - start).total_seconds())
    # (the route's now is between asked and answered: the projection is between the two rates)
    low, high = (Decimal(123) * length / Decimal((t - start).total_seconds()) for t in (answered, asked))
    assert low - 1 <= projection["projected"] <= high + 1
    assert projection["overage"] == max(0, projection["projected"] - 100_000)
    assert projection["overage_minor"] == unit_price_total(projection["overage"], Decimal("0.002"))


def created_at(api: ApiClient, owner: str, org_id: str) -> datetime:
    """When the org was made (usage dated before it is refused)."""
    return datetime.fromisoformat(api.call("GET", f"/v1/orgs/{org_id}", as_user=owner).body["created_at"])


def test_the_events_route_refuses_bad_input_and_unknown_orgs(api: ApiClient, stack: Any, table: Any) -> None:
    owner = new_user()
    org_id = paid_org_over_http(api, stack, table, owner, name="Bad", plan_id="starter", billing_mode="byo")
    project = api.call("POST", f"/v1/orgs/{org_id}/projects", as_user=owner, json={"name": "A"}).body["project_id"]
    now, born = datetime.now(UTC), created_at(api, owner, org_id)
    good = _events(org_id, project, [now])["events"][0]
    unborn = born.replace(microsecond=0) - timedelta(seconds=rng.randrange(1, 86_400 * 20))  # in the 35-day window
    before = org_items(table, org_id)
    cases = [
        ({"events": []}, 422, "validation_error"),
        ({"events": [{**good, "quantity": 0}]}, 422, "validation_error"),
        ({"events": [{**good, "metric": "credits"}]}, 422, "validation_error"),
        ({"events": [{**good, "occurred_at": "2026-12-01T10:00:00"}]}, 422, "validation_error"),
        (
            {"events": [good, {**good, "event_id": "old", "occurred_at": (now - timedelta(days=80)).isoformat()}]},
            422,
            "usage_event_too_old",
        ),
        (
            {"events": [good, {**good, "event_id": "unborn", "occurred_at": unborn.isoformat()}]},
            422,
            "usage_before_org",
        ),
        ({"events": [good, {**good, "org_id": "org_doesnotexist"}]}, 404, "org_not_found"),
    ]
    for body, status, code in cases:
        reply = api.call("POST", "/v1/internal/usage/events", token=ENGINE, json=body)
        assert (reply.status, reply.code) == (status, code), (body, reply.body)
    assert org_items(table, org_id) == before
    unknown = api.call("GET", "/v1/orgs/org_doesnotexist/usage", as_user=owner)
    assert (unknown.status, unknown.code) == (404, "org_not_found")

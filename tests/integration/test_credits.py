"""Generation credits end to end: the internal API as the workflow engine calls it, the credit
services in-process where a test needs to move the clock or run 200 callers at once, DynamoDB Local."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from shared.auth import Caller
from shared.credits.account import InsufficientCreditsError
from shared.usage.service import SdkEvent
from tests.helpers import ApiClient, capture_events, drain, dynamo_calls, new_user, org_items
from tests.integration.credit_kit import CreditKit, credit_kit
from tests.integration.wallet_kit import ledger_lines
from tests.local import devtokens
from tests.paid import mirror_subscription, paid_org_over_http

pytestmark = pytest.mark.integration
ENGINE = devtokens.service_token("workflow-engine")
MARCH_15 = datetime(2026, 3, 15, 10, 0, tzinfo=UTC)


@pytest.fixture
def kit(stack: Any) -> CreditKit:
    return credit_kit(stack.env["TABLE_NAME"], stack.env["EVENT_BUS_NAME"], MARCH_15)


def _org(kit: CreditKit, plan_id: str = "free") -> tuple[str, str, Caller]:
    owner = Caller(new_user(), None, frozenset())
    view = kit.orgs.create_org(owner, name="Credits Co", billing_mode="byo", currency="USD", plan_id="free")  # type: ignore[arg-type]
    if plan_id != "free":
        mirror_subscription(kit.mirror, view.org.org_id, plan_id, start=kit.clock.now())
    project = kit.orgs.create_project(owner, view.org.org_id, name="Main")
    return view.org.org_id, project.project_id, owner


def _reserve(
    org_id: str,
    project_id: str,
    run_id: str,
    template: str = "social-content",
    generation: str = "slideshow",
    quantity: int = 1,
) -> dict[str, Any]:
    return {
        "org_id": org_id,
        "project_id": project_id,
        "template_id": template,
        "generation_type": generation,
        "quantity": quantity,
        "workflow_run_id": run_id,
    }


def _api_org(api: ApiClient, plan_id: str = "free", stack: Any = None, table: Any = None) -> tuple[str, str, str]:
    owner = new_user()
    if plan_id == "free":
        org_id = api.call("POST", "/v1/orgs", as_user=owner, json={"name": "Gen"}).body["org_id"]
    else:
        org_id = paid_org_over_http(api, stack, table, owner, name="Gen", plan_id=plan_id, billing_mode="byo")
    projects = [api.call("POST", f"/v1/orgs/{org_id}/projects", as_user=owner, json={"name": "A"}).body["project_id"]]
    return owner, org_id, projects[0]


def test_the_workflow_engine_reserves_settles_and_releases(api: ApiClient) -> None:
    # Given a Free org (100 credits, no overage)
    owner, org_id, project = _api_org(api)
    # A slideshow costs 50 credits: the cost comes from the template, never from the caller
    first = api.call("POST", "/v1/internal/credits/reservations", token=ENGINE, json=_reserve(org_id, project, "r1"))
    assert (first.status, first.body["credits"], first.body["available_after"]) == (201, 50, 50)
    settled = api.call("POST", "/v1/internal/credits/reservations/r1/settle", token=ENGINE, json={"org_id": org_id})
    assert settled.body["split"] == {"included": 50, "packs": 0, "overage": 0}
    api.call("POST", "/v1/internal/credits/reservations", token=ENGINE, json=_reserve(org_id, project, "r2"))
    refused = api.call("POST", "/v1/internal/credits/reservations", token=ENGINE, json=_reserve(org_id, project, "r3"))
    assert (refused.status, refused.code) == (409, "insufficient_credits")
    assert refused.body["error"]["details"] == {"available": 0, "requested": 50}
    released = api.call("POST", "/v1/internal/credits/reservations/r2/release", token=ENGINE, json={"org_id": org_id})
    assert released.body["status"] == "released"

    credits = api.call("GET", f"/v1/orgs/{org_id}/credits", as_user=owner).body
    assert (credits["included"], credits["used"], credits["reserved"], credits["available"]) == (100, 50, 0, 50)
    assert [(p["project_id"], p["used"], p["reserved"], p["generations"]) for p in credits["projects"]] == [
        (project, 50, 0, 1)
    ]
    ledger = api.call("GET", f"/v1/orgs/{org_id}/credits/events", as_user=owner).body["items"]
    assert [(e["kind"], e["delta"], e["balance_after"]) for e in reversed(ledger)] == [
        ("grant", 100, 100),
        ("reservation", -50, 50),
        ("usage", 0, 50),
        ("reservation", -50, 0),
        ("release", 50, 50),
    ]
    assert sum(e["delta"] for e in ledger) == credits["available"]


def test_template_overrides_set_the_cost(api: ApiClient, stack: Any, table: Any) -> None:
    _, org_id, project = _api_org(api, "starter", stack, table)
    reply = api.call(
        "POST",
        "/v1/internal/credits/reservations",
        token=ENGINE,
        json=_reserve(org_id, project, "ugc", "ugc-video", "short_form_video", 2),
    )
    assert reply.body["credits"] == 300  # 150 (the template's override of 120) x 2
    unknown = api.call(
        "POST",
        "/v1/internal/credits/reservations",
        token=ENGINE,
        json=_reserve(org_id, project, "x", "ugc-video", "hologram"),
    )
    assert (unknown.status, unknown.code) == (422, "unknown_generation_type")


def test_replaying_any_consumption_call_ten_times_changes_nothing(api: ApiClient, table: Any, stack: Any) -> None:
    _, org_id, project = _api_org(api, "starter", stack, table)
    calls = [
        ("/v1/internal/credits/reservations", _reserve(org_id, project, "a")),
        ("/v1/internal/credits/reservations/a/settle", {"org_id": org_id, "quantity": 1}),
        ("/v1/internal/credits/reservations", _reserve(org_id, project, "b")),
        ("/v1/internal/credits/reservations/b/release", {"org_id": org_id}),
    ]
    for path, body in calls:
        first = api.call("POST", path, token=ENGINE, json=body)
        assert first.status in (200, 201) and first.body["replayed"] is False
        after_first = org_items(table, org_id)
        for _ in range(10):
            again = api.call("POST", path, token=ENGINE, json=body)
            assert {**again.body, "replayed": False, "available_after": None} == {**first.body, "available_after": None}
            assert again.body["replayed"] is True
        assert org_items(table, org_id) == after_first


def test_200_concurrent_reservations_with_room_for_100(kit: CreditKit, stack: Any) -> None:
    # Given a Free org with exactly 100 credits and a 1-credit generation (ad copy)
    org_id, project, _ = _org(kit, "free")

    local = threading.local()

    def reserve(i: int) -> str:
        if not hasattr(local, "kit"):  # one connection per caller thread, like one Lambda instance each
            local.kit = credit_kit(stack.env["TABLE_NAME"], stack.env["EVENT_BUS_NAME"], MARCH_15)
        mine = local.kit
        try:
            mine.credits.reserve(
                org_id=org_id,
                project_id=project,
                template_id="ad-copy",
                generation_type="caption_copy",
                quantity=1,
                workflow_run_id=f"run-{i}",
                actor="t",
            )
        except InsufficientCreditsError:
            return "refused"
        return "reserved"

    # When 200 callers reserve at once
    with ThreadPoolExecutor(max_workers=32) as pool:
        outcomes = list(pool.map(reserve, range(200)))
    # Then exactly 100 succeed and the totals are exact
    assert outcomes.count("reserved") == 100 and outcomes.count("refused") == 100
    account = kit.repo.account(org_id)
    assert account is not None
    assert (account.account.reserved, account.account.available) == (100, 0)
    entries = ledger_lines(kit.repo._table, org_id, "CLEDGER#")
    assert len(entries) == 101  # the period's grant + 100 reservations
    assert sum(int(e["amount"]) for e in entries) == account.account.available
    held = [i for i in org_items(kit.repo._table, org_id) if i["SK"].startswith("RESV#")]
    assert len(held) == 100


def test_usage_lands_in_the_period_of_its_timestamp(kit: CreditKit) -> None:
    # Free org created 15 March 10:00: periods run 15th 10:00 to 15th 10:00
    org_id, project, owner = _org(kit, "free")
    boundary = datetime(2026, 4, 15, 10, 0, tzinfo=UTC)
    kit.clock.at = boundary - timedelta(minutes=5)
    for run in ("before", "late"):
        kit.credits.reserve(
            org_id=org_id,
            project_id=project,
            template_id="ad-copy",
            generation_type="caption_copy",
            quantity=10,
            workflow_run_id=run,
            actor="t",
        )
    kit.credits.settle(
        org_id=org_id, workflow_run_id="before", quantity=None, occurred_at=boundary - timedelta(seconds=1), actor="t"
    )
    # The new period starts at 0 used, with no job
    kit.clock.at = boundary + timedelta(seconds=1)
    summary = kit.credits.summary(owner, org_id)
    assert (summary.period.key, summary.account.used, summary.account.included) == ("2026-04-15T10:00:00Z", 0, 100)
    kit.credits.reserve(
        org_id=org_id,
        project_id=project,
        template_id="ad-copy",
        generation_type="caption_copy",
        quantity=4,
        workflow_run_id="after",
        actor="t",
    )
    kit.credits.settle(org_id=org_id, workflow_run_id="after", quantity=None, occurred_at=None, actor="t")
    # A late report of a generation that finished before the boundary lands in the closed period
    kit.credits.settle(
        org_id=org_id, workflow_run_id="late", quantity=None, occurred_at=boundary - timedelta(seconds=2), actor="t"
    )
    march = kit.repo.period(org_id, "2026-03-15T10:00:00Z")
    april = kit.repo.period(org_id, "2026-04-15T10:00:00Z")
    assert (march["credits_used"], march["credits_included_used"], march["credits_late"]) == (20, 10, 10)
    assert (april["credits_used"], april.get("credits_late", 0)) == (4, 0)
    summary = kit.credits.summary(owner, org_id)
    assert (summary.account.used, summary.account.reserved, summary.account.available) == (4, 0, 96)


def test_the_sweeper_drains_every_shard_past_a_poisoned_entry_within_its_budget(kit: CreditKit, stack: Any) -> None:
    from shared import keys
    from shared.deadline import deadline_in
    from shared.sweep import SWEEP_RESERVE_S

    org_id, project, owner = _org(kit, "scale")
    runs = [f"sweep-{new_user()}" for _ in range(40)]
    for run in runs:
        kit.credits.reserve(
            org_id=org_id,
            project_id=project,
            template_id="social-content",
            generation_type="image",
            quantity=1,
            workflow_run_id=run,
            actor="t",
        )
    shards = {keys.listed_pk(keys.ACTIVE_RESERVATIONS, run) for run in runs}
    assert len(shards) > 8  # spread over the index's partitions, none of them a constant key
    # A stale index entry whose reservation is unreadable (no org, no fields), due before all of them
    table = boto3.resource("dynamodb", endpoint_url=stack.dynamodb_endpoint).Table(stack.env["TABLE_NAME"])
    poison = {"PK": f"ORG#gone-{new_user()}", "SK": "RESV#ghost", "GSI2PK": min(shards), "GSI2SK": "2000-01-01"}
    table.put_item(Item=poison)
    try:
        kit.clock.at = MARCH_15 + timedelta(hours=3)
        with deadline_in(SWEEP_RESERVE_S - 1):  # no time left: nothing is started, and it says so
            starved = kit.credits.expire_due()
        assert (starved.done, starved.left_behind) == (0, True)
        report = kit.credits.expire_due()
        assert report.failed >= 1 and not report.left_behind
        assert {kit.repo.reservation(org_id, run).status for run in runs} == {"expired"}  # type: ignore[union-attr]
        assert kit.credits.summary(owner, org_id).account.reserved == 0
    finally:
        table.delete_item(Key={"PK": poison["PK"], "SK": poison["SK"]})


def test_expired_reservations_are_released_by_the_sweeper(kit: CreditKit) -> None:
    org_id, project, owner = _org(kit, "free")
    kit.credits.reserve(
        org_id=org_id,
        project_id=project,
        template_id="social-content",
        generation_type="slideshow",
        quantity=1,
        workflow_run_id="stuck",
        actor="t",
    )
    kit.clock.at = MARCH_15 + timedelta(hours=1)
    kit.credits.expire_due()
    assert kit.repo.reservation(org_id, "stuck").status == "reserved"  # type: ignore[index]
    kit.clock.at = MARCH_15 + timedelta(hours=3)
    assert kit.credits.expire_due().done >= 1
    assert kit.repo.reservation(org_id, "stuck").status == "expired"  # type: ignore[index]
    assert kit.credits.summary(owner, org_id).account.available == 100


def test_an_sdk_batch_of_100k_events_is_one_write_per_org_and_metric(kit: CreditKit, stack: Any) -> None:
    orgs = [_org(kit, "pro")[0] for _ in range(10)]
    events = [SdkEvent(orgs[i % 10], MARCH_15 + timedelta(seconds=i % 3600)) for i in range(100_000)]
    kit.clock.at = MARCH_15 + timedelta(hours=2)
    client = kit.repo._client
    updates: list[int] = []
    original = client.transact_write_items

    def counting(**kwargs: Any) -> Any:
        updates.append(len([i for i in kwargs["TransactItems"] if "Update" in i]))
        return original(**kwargs)

    client.transact_write_items = counting
    try:
        first = kit.usage.ingest_sdk_events("batch-100k", events)
        replay = kit.usage.ingest_sdk_events("batch-100k", events)
    finally:
        client.transact_write_items = original
    assert (first.groups, first.writes, first.duplicate) == (10, 1, False)
    # one counter ADD per org x metric, in one transaction with the batch's markers (one per org and day)
    assert updates == [10]
    assert (replay.writes, replay.duplicate) == (0, True)
    totals = [kit.usage._usage.usage(o, "2026-03-15T10:00:00Z")["sdk_events"].total for o in orgs]
    assert totals == [10_000] * 10


def test_support_grants_and_claws_back_credits(api: ApiClient) -> None:
    owner, org_id, _ = _api_org(api)
    staff = new_user("staff")
    grant = {"credits": 250, "reason": "launch week goodwill"}
    for _ in range(3):  # the same Idempotency-Key grants once
        reply = api.call(
            "POST",
            f"/v1/orgs/{org_id}/credits/adjustments",
            as_user=staff,
            groups=("support",),
            json=grant,
            headers={"Idempotency-Key": "ticket-4711"},
        )
        assert reply.status == 201
    clawed = api.call(
        "POST",
        f"/v1/orgs/{org_id}/credits/adjustments",
        as_user=staff,
        groups=("support",),
        json={"credits": -50, "reason": "duplicate grant"},
        headers={"Idempotency-Key": "ticket-4712"},
    )
    assert clawed.body["available"] == 300
    owner_try = api.call(
        "POST",
        f"/v1/orgs/{org_id}/credits/adjustments",
        as_user=owner,
        json=grant,
        headers={"Idempotency-Key": "self-service"},
    )
    assert (owner_try.status, owner_try.code) == (403, "forbidden")
    ledger = api.call("GET", f"/v1/orgs/{org_id}/credits/events", as_user=owner).body["items"]
    assert [(e["kind"], e["credits"], e["actor"]) for e in ledger[:2]] == [
        ("adjustment", 50, staff),
        ("grant", 250, staff),
    ]


def test_usage_warnings_go_out_at_80_and_100_percent(kit: CreditKit, stack: Any) -> None:
    queue = capture_events(stack, {})
    org_id, project, _ = _org(kit, "starter")  # 1,000 included credits, overage allowed
    for i, quantity in enumerate((79, 2, 19, 5)):  # 79% -> 81% -> 100% -> overage
        kit.credits.reserve(
            org_id=org_id,
            project_id=project,
            template_id="social-content",
            generation_type="image",
            quantity=quantity,
            workflow_run_id=f"w{i}",
            actor="t",
        )
        kit.credits.settle(org_id=org_id, workflow_run_id=f"w{i}", quantity=None, occurred_at=None, actor="t")
    seen = [
        (e["detail-type"], e["detail"].get("threshold_pct"))
        for e in drain(stack, queue)
        if e["detail"].get("org_id") == org_id
    ]
    assert seen == [("Credits.UsageWarning", 80), ("Credits.UsageWarning", 100), ("Credits.OverageStarted", None)]


def test_a_replayed_adjustment_answers_what_the_first_did_and_a_reused_key_is_refused(kit: CreditKit) -> None:
    from shared.errors import ConflictError

    org_id, project, _ = _org(kit)
    support = Caller("agent", None, frozenset({"support"}))
    first = kit.credits.adjust(support, org_id, credits=500, reason="goodwill", idempotency_key="adj-1")
    # (credits move on after it)
    kit.credits.reserve(**{**_reserve(org_id, project, "after-adj"), "actor": "t"})  # type: ignore[arg-type]
    kit.credits.settle(org_id=org_id, workflow_run_id="after-adj", quantity=None, occurred_at=None, actor="t")
    assert kit.credits.adjust(support, org_id, credits=500, reason="goodwill", idempotency_key="adj-1") == first
    with pytest.raises(ConflictError) as reused:
        kit.credits.adjust(support, org_id, credits=-500, reason="oops", idempotency_key="adj-1")
    assert reused.value.code == "idempotency_key_reused"


def test_replayed_reservations_and_settlements_answer_what_the_first_did(kit: CreditKit) -> None:
    org_id, project, _ = _org(kit)
    body = {**_reserve(org_id, project, "first-answer"), "actor": "t"}
    reserved = kit.credits.reserve(**body)  # type: ignore[arg-type]
    kit.credits.reserve(**{**_reserve(org_id, project, "meanwhile"), "actor": "t"})  # type: ignore[arg-type]
    again = kit.credits.reserve(**body)  # type: ignore[arg-type]
    assert again.replayed and again.available_after == reserved.available_after is not None
    settled = kit.credits.settle(
        org_id=org_id, workflow_run_id="first-answer", quantity=None, occurred_at=None, actor="t"
    )
    kit.credits.release(org_id=org_id, workflow_run_id="meanwhile", actor="t")
    replay = kit.credits.settle(
        org_id=org_id, workflow_run_id="first-answer", quantity=None, occurred_at=None, actor="t"
    )
    assert replay.replayed and replay.available_after == settled.available_after is not None


def test_a_workflow_run_id_reused_for_another_reservation_is_409_and_changes_nothing(
    kit: CreditKit, table: Any
) -> None:
    from shared.errors import ConflictError

    # Given a reservation of one slideshow for a project (of an org on Pro: two projects)
    org_id, project, owner = _org(kit, "pro")
    other = kit.orgs.create_project(owner, org_id, name="Other client").project_id
    body = {**_reserve(org_id, project, "run-reused"), "actor": "t"}
    first = kit.credits.reserve(**body)  # type: ignore[arg-type]
    before = org_items(table, org_id)
    # When the same workflow run asks for another project, template, generation type or quantity
    asked = [
        {"project_id": other},
        {"template_id": "product-carousel"},
        {"generation_type": "image"},
        {"quantity": 3},
    ]
    for change in asked:
        with pytest.raises(ConflictError) as reused:
            kit.credits.reserve(**{**body, **change})  # type: ignore[arg-type]
        # Then it is refused as a reused key, and nothing changed
        assert reused.value.code == "idempotency_key_reused", change
    assert org_items(table, org_id) == before
    # And a true replay is answered as made
    again = kit.credits.reserve(**body)  # type: ignore[arg-type]
    assert again.replayed and (again.credits, again.project_id) == (first.credits, project)


def test_a_reservation_reads_the_org_project_and_run_in_one_round_trip(kit: CreditKit) -> None:
    org_id, project, _ = _org(kit)
    body = {**_reserve(org_id, project, "counted"), "actor": "t"}
    with dynamo_calls(kit.repo._table) as sent:
        first = kit.credits.reserve(**body)  # type: ignore[arg-type]
        made = [op for op, _ in sent]
        sent.clear()
        again = kit.credits.reserve(**body)  # type: ignore[arg-type]
    calls = [op for op, _ in sent]
    # The org, the project and a reservation made before with the run id: one round trip, then the budget's
    # limits and the credit account, and the write
    assert made[:1] == ["BatchGetItem"] and "TransactWriteItems" in made, made
    assert made.index("TransactWriteItems") == 3, made
    # A replay reads those only, and answers what the first did
    assert calls == ["BatchGetItem"] and again.replayed and again.available_after == first.available_after

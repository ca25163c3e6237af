"""The simulator catches what it must: each invariant shown able to fail (the store tampered with, or a
mutation the simulator must catch), reported by name with the seed that replays it and its shortest
reproduction; and the scenarios that found bugs (pinned by seed, or written out) keep every invariant."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from typing import Any

import boto3
import pytest

from tests.sim import invariants
from tests.sim.actions import ACTIONS, Life, period_key_at
from tests.sim.runner import Run, report, run_many
from tests.sim.scenario import START, Scenario, Step, generate
from tests.sim.world import SimCrash, SimWorld

pytestmark = pytest.mark.integration


# ---------------------------------------------------------------------------------------------- mutations
def _put(life: Life, sk: str, **fields: Any) -> None:
    life.kit.table.put_item(Item={"PK": f"ORG#{life.org_id}", "SK": sk, **fields})


def _entry(life: Life, sk: str, kind: str, amount: int, balance_after: int, key: str = "sim-tamper") -> None:
    line = {"kind": kind, "amount": amount, "balance_after": balance_after}
    _put(life, sk, lines=[line], idempotency_key=key, created_at=life.now.isoformat(), currency="USD", actor="tamper")


def _first_invoice(life: Life) -> dict[str, Any]:
    return next(i for i in invariants.org_items(life) if i["SK"].startswith("INVOICE#") and i.get("status") == "issued")


TAMPERS: dict[str, Callable[[Life], None]] = {
    # a line whose balance_after is not the running sum (and a balance the entries do not make)
    "wallet_ledger_sums": lambda life: _entry(life, "WLEDGER#999999999990", "adjustment", 5, 123_456_789),
    "credit_ledger_sums": lambda life: [
        _put(
            life,
            f"CLEDGER#99999999999{n}",
            lines=[{"kind": "usage", "amount": 5, "balance_after": after, "period_key": "p"}],
        )
        for n, after in ((1, 5), (2, 7))
    ],
    # the same cause applied twice
    "cause_applied_once": lambda life: [
        _entry(life, f"WLEDGER#99999999999{n}", "adjustment", 0, 0, key="twice") for n in (1, 2)
    ],
    # held that no pending hold accounts for (and an available that is not the rule)
    "holds_and_available": lambda life: life.kit.table.update_item(
        Key={"PK": f"ORG#{life.org_id}", "SK": "WALLET"},
        UpdateExpression="ADD held :a",
        ExpressionAttributeValues={":a": 7},
    ),
    # money in the wallet Stripe never took
    "wallet_money_matches_stripe": lambda life: (
        _entry(life, "WLEDGER#999999999990", "topup", 0, 0)
        or life.kit.table.update_item(
            Key={"PK": f"ORG#{life.org_id}", "SK": "WLEDGER#999999999990"},
            UpdateExpression="SET #l[0].amount = :a",
            ExpressionAttributeNames={"#l": "lines"},
            ExpressionAttributeValues={":a": 1},
        )
    ),
    # a bill's recorded fee a cent more than the wallet took for it
    "spend_is_what_was_billed": lambda life: life.kit.table.update_item(
        Key={
            "PK": f"ORG#{life.org_id}",
            "SK": next(i["SK"] for i in invariants.org_items(life) if i["SK"].startswith("IDEM#bill:")),
        },
        UpdateExpression="ADD fee_minor :a",
        ExpressionAttributeValues={":a": 1},
    ),
    "movements_in_one_statement": lambda life: life.kit.table.update_item(
        Key={"PK": f"ORG#{life.org_id}", "SK": "WSTMT#tampered"},
        UpdateExpression="ADD spend :a",
        ExpressionAttributeValues={":a": -1},
    ),
    # an issued invoice showing a cent of ad spend its period's statement does not have
    "invoice_shows_its_statement": lambda life: life.kit.table.update_item(
        Key={"PK": f"ORG#{life.org_id}", "SK": _first_invoice(life)["SK"]},
        UpdateExpression="ADD wallet_statement.spend_minor :a",
        ExpressionAttributeValues={":a": -1},
    ),
    # a period left on the invoice run's index inside an invoiced one (a re-anchoring that never happened)
    "one_period_per_stretch": lambda life: _put(
        life,
        "PERIODIDX#2027-01-04T00:00:00Z",
        period_key="2027-01-04T00:00:00Z",
        period_end="2027-02-04T00:00:00Z",
        GSI2PK="PERIODEND#2099-01-01",
        GSI2SK=f"{life.org_id}#2027-01-04T00:00:00Z",
    ),
    "no_invoice_before_period_end": lambda life: _put(
        life,
        "INVOICE#2027-12-01T00:00:00Z",
        period_key="2027-12-01T00:00:00Z",
        period_end="2027-12-31T00:00:00.000Z",
        created_at="2027-12-30T00:00:00.000Z",
        status="draft",
        invoice_id="inv_tampered",
    ),
    "outbox_once_per_id": lambda life: _put(
        life,
        "OUTBOX#tampered",
        kind="event",
        body=json.dumps({"detail_type": "Invoice.Issued", "detail": {"invoice_id": "inv_never_issued"}}),
    ),
    # the subscription ended in Stripe, and the webhook that would say so never came
    "entitlement_follows_subscription": lambda life: (
        life.client().v1.subscriptions.cancel(life.subscription_id) and life.kit.stripe.events_for(life.customer)
    ),
    # money that is nowhere in the books: the reconciliation's own wallet check opens a discrepancy
    "reconciliation_clean": lambda life: life.kit.table.update_item(
        Key={"PK": f"ORG#{life.org_id}", "SK": "WALLET"},
        UpdateExpression="ADD balance :a",
        ExpressionAttributeValues={":a": 1},
    ),
    # an issued invoice put back to rendered: the re-run issues (and announces) it again
    "rerun_changes_nothing": lambda life: life.kit.table.update_item(
        Key={"PK": f"ORG#{life.org_id}", "SK": _first_invoice(life)["SK"]},
        UpdateExpression="SET #s = :r",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":r": "rendered"},
    ),
    "no_server_error": lambda life: {}["a bug"],
    # an issued invoice that says Stripe charged a cent more than Stripe's invoices of its period did
    "stripe_total_matches": lambda life: life.kit.table.update_item(
        Key={"PK": f"ORG#{life.org_id}", "SK": _first_invoice(life)["SK"]},
        UpdateExpression="ADD totals.charged_through_stripe_minor :a",
        ExpressionAttributeValues={":a": 1},
    ),
    # credits consumed in an invoiced period that no invoice shows, and no late line bills
    "credits_on_one_invoice": lambda life: _put(
        life,
        "RESV#sim-tampered",
        status="settled",
        settled_credits=5,
        usage_period_key=_first_invoice(life)["period_key"],
        settled_at=life.now.isoformat(),
    ),
    # an event marked sent that never reached EventBridge (the mark before the send)
    "events_delivered_once": lambda life: _put(
        life,
        "OUTBOX#tamperedsent",
        message_id="tamperedsent",
        org_id=life.org_id,
        kind="event",
        body=json.dumps({"detail_type": "Wallet.LowBalance", "detail": {"org_id": life.org_id}}),
        created_at=life.now.isoformat(),
        sent_at=life.now.isoformat(),
    ),
    # a project's period counting as held what no pending hold holds (a hold freed twice the other way)
    "budget_never_exceeded": lambda life: life.kit.table.update_item(
        Key={"PK": f"ORG#{life.org_id}", "SK": "BUDGETP#2027-12-01T00:00:00Z#tampered"},
        UpdateExpression="SET period_key = :p, project_id = :x ADD held :a, #c :a",
        ExpressionAttributeNames={"#c": "committed"},
        ExpressionAttributeValues={":p": "2027-12-01T00:00:00Z", ":x": "tampered", ":a": 7},
    ),
    # a budget line this period's spend is past, never announced
    "budget_crossing_announced": lambda life: [
        _put(life, "BUDGET#tampered", project_id="tampered", ad_spend_minor=10, rev=1),
        _put(
            life,
            f"BUDGETP#{period_key_at(life, life.now)}#tampered",
            project_id="tampered",
            period_key=period_key_at(life, life.now),
            spent=9,
            committed=9,
        ),
    ],
    # a hold whose draws and remainder do not make its amount (a bill drawn twice)
    "hold_drawn_once": lambda life: _put(
        life,
        "HOLD#tampered",
        hold_id="tampered",
        project_id="p",
        platform="meta",
        amount_minor=100,
        remaining_minor=30,
        drawn_minor=140,
        status="voided",
    ),
    # an event counted that no batch carried (or one counted twice)
    "usage_counted_once": lambda life: life.kit.table.update_item(
        Key={"PK": f"ORG#{life.org_id}", "SK": "USAGE#2027-12-01T00:00:00Z#sdk_events"},
        UpdateExpression="ADD #t :a",
        ExpressionAttributeNames={"#t": "total"},
        ExpressionAttributeValues={":a": 1},
    ),
    # an allowance line marked warned whose Usage.AllowanceWarning was never written
    "allowance_warned_once": lambda life: life.kit.table.update_item(
        Key={"PK": f"ORG#{life.org_id}", "SK": "USAGE#2027-11-01T00:00:00Z#workflow_runs"},
        UpdateExpression="SET warned_1000_80 = :at",
        ExpressionAttributeValues={":at": life.now.isoformat()},
    ),
    # a runway alert no crossing raised (a second alert for one crossing)
    "runway_alert_once_per_crossing": lambda life: _put(
        life,
        "OUTBOX#tamperedrunway",
        kind="event",
        body=json.dumps({"detail_type": "Wallet.RunwayAlert", "detail": {"stage_days": 3}}),
        created_at=life.now.isoformat(),
        sent_at=life.now.isoformat(),
    ),
}


# The life each tamper is shown on: one of the shortest (11 steps) with what every tamper needs - a subscription, a bill
# on the wallet, a card top-up, and its first period invoiced (issued, with its wallet statement). Each tamper re-lives
# it (a tamper changes the store for good): a short life makes the 24 runs cheap (seed 19's 34 steps cost twice).
TAMPER_SEED = 17045


def _tampered(seed: int, name: str) -> Scenario:
    """The seed's scenario, fault free, with the tamper as its last step before the end; the rerun check
    needs an issued invoice before it, the others only the org's life."""
    scenario = generate(seed)
    end = scenario.steps[-1]
    tamper = Step(end.at - timedelta(seconds=1), "tamper")
    return replace(scenario, steps=(*scenario.steps[:-1], tamper, end), faults={})


def test_each_invariant_is_shown_able_to_fail(world: SimWorld) -> None:
    assert set(TAMPERS) == set(invariants.INVARIANTS) | {"rerun_changes_nothing", "no_server_error"}
    seed = TAMPER_SEED
    for name, tamper in TAMPERS.items():
        scenario = _tampered(seed, name)
        outcome = Run(world, scenario, each_step=False, extra={"tamper": tamper}).go()
        assert name in {f.invariant for f in outcome.failures}, (name, outcome.failures)
        assert outcome.numbers, name  # its issued invoice's, read at the end or where a failure stopped it
        said = report(
            world, replace(outcome, failures=[f for f in outcome.failures if f.invariant == name]), scenario, budget_s=0
        )
        assert (
            f"invariant {name} broken in scenario seed {seed}" in said
            and f"replay: make sim SEED={seed} SCENARIOS=1" in said
        )


def test_a_failure_is_shrunk_to_the_steps_that_break_it(world: SimWorld) -> None:
    whole = _tampered(19, "no_server_error")
    scenario = replace(whole, steps=(*whole.steps[:6], *whole.steps[-2:]))
    extra = {"tamper": TAMPERS["no_server_error"]}
    outcome = Run(world, scenario, extra=extra).go()
    said = report(world, outcome, scenario, budget_s=120, extra=extra)
    lines = said.splitlines()
    steps = lines[next(i for i, line in enumerate(lines) if line.startswith("shortest reproduction")) + 1 : -1]
    shown = [line.split()[2].split("(")[0] for line in steps]
    assert shown == ["create_org", "tamper", "end"], said
    assert "replay: make sim SEED=19 SCENARIOS=1" in said


def _table_numbers(world: SimWorld) -> list[str]:
    """Every issued invoice number in the world's table, whatever its partition (a scan: what the scenarios' ends
    reported must be it)."""
    table = boto3.resource("dynamodb").Table(world.table_name)
    numbers: list[str] = []
    kwargs: dict[str, Any] = {"ConsistentRead": True}
    while True:
        page = table.scan(**kwargs)
        numbers += invariants.issued_numbers(page["Items"])
        if "LastEvaluatedKey" not in page:
            return numbers
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def test_the_run_checks_every_invoice_number_its_scenarios_issued_against_the_counters(stack: Any) -> None:
    """The numbers come from each scenario's org at its end (no scan of the table): they are every number in the
    table. A run on a table with numbers of an earlier run checks those its counters gave out since it began; a
    counter moved ahead by the run's end (a number given out that no invoice took) is reported by name."""
    world = SimWorld()  # a table of its own: its counters are the whole table's
    try:
        first = run_many(world, 20261207, 4, workers=2, each_step=False)
        assert first.global_failures == [] and first.failed == []
        assert first.numbers and sorted(first.numbers) == sorted(_table_numbers(world))
        second = run_many(world, 20261307, 2, workers=2, each_step=False)
        assert second.global_failures == [] and second.failed == []
        assert second.numbers and sorted(first.numbers + second.numbers) == sorted(_table_numbers(world))

        counters, reads = world.invoice_counters, []

        def moved_at_the_end() -> dict[str, int]:  # the store tampered with after the scenarios, before the check
            reads.append(1)
            if len(reads) == 2:
                for prefix in counters():
                    _add_to(world, {"PK": "INVOICE_NUMBERS", "SK": f"YEAR#{prefix.split('-')[1]}"}, "last", 1)
            return counters()

        world.invoice_counters = moved_at_the_end  # type: ignore[method-assign]
        third = run_many(world, 20261407, 1, workers=1, each_step=False)
        assert third.failed == [] and len(reads) == 2
        assert sorted(f.detail for f in third.global_failures if f.invariant == "invoice_numbers_gapless") == [
            f"series {prefix!r}: missing [{last}], repeated [] (its counter at {last})"
            for prefix, last in sorted(counters().items())
        ]
    finally:
        world.stop()


def _add_to(world: SimWorld, key: dict[str, str], attribute: str, amount: int) -> None:
    boto3.resource("dynamodb").Table(world.table_name).update_item(
        Key=key,
        UpdateExpression="ADD #a :n",
        ExpressionAttributeNames={"#a": attribute},
        ExpressionAttributeValues={":n": amount},
    )


def test_invoice_numbers_are_checked_gapless_across_the_run() -> None:
    assert invariants.invoice_numbers_gapless(["LB-2027-000001", "LB-2027-000002", "LB-2026-000001"]) == []
    broken = invariants.invoice_numbers_gapless(["LB-2027-000001", "LB-2027-000003", "LB-2027-000003"])
    assert broken == ["series 'LB-2027-': missing [2], repeated [3] (its counter at 3)"]
    # a number the counter gave out that no invoice took (the last one), and a year's counter with none
    broken = invariants.invoice_numbers_gapless(["LB-2027-000001"], {"LB-2027-": 2, "LB-2028-": 1})
    assert broken == [
        "series 'LB-2027-': missing [2], repeated [] (its counter at 2)",
        "series 'LB-2028-': missing [1], repeated [] (its counter at 1)",
    ]
    # a run on a table an earlier run left numbers in: its own, from the counter's value before it; an earlier
    # number given out again is a repeat
    since = {"LB-2027-": 6}
    assert invariants.invoice_numbers_gapless(["LB-2027-000007"], {"LB-2027-": 7}, since) == []
    broken = invariants.invoice_numbers_gapless(["LB-2027-000003", "LB-2027-000007"], {"LB-2027-": 7}, since)
    assert broken == ["series 'LB-2027-': missing [], repeated [3] (its counter at 7)"]
    broken = invariants.invoice_numbers_gapless(["LB-2027-000007"], {"LB-2027-": 7}, None)
    assert broken == ["series 'LB-2027-': missing [1, 2, 3, 4, 5], repeated [] (its counter at 7)"]


# Bugs the simulator found in the product, each fixed and pinned by the seed whose scenario found it (a seed's
# scenario is what scenario.py draws from it: a change to the generators re-rolls it, so keep these passing
# and add the new seed when a generator change moves a bug's scenario).
FOUND = {
    # Re-running the close of a period already invoiced (a Step Functions retry, a re-run day) listed the next
    # period on the invoice run's index again after that one had been invoiced and taken off it: the index
    # grew a stale entry and the re-run changed the store (rerun_changes_nothing). Fixed in
    # OrgService.index_period_of (`relist=False`).
    2007: "rerun_changes_nothing",
    # The same re-run rewrote the next period's index entry the subscription's mirror had written: its end in
    # another format (milliseconds), and it would drop a `truncated` cut. Fixed: the close only indexes a
    # period not indexed yet (OrgRepository.index_period `relist=False`: attribute_not_exists).
    5020: "rerun_changes_nothing",
    # Credit overage billed on a renewal at the plan's unit price, then a plan change: the reconciliation's
    # "owed" priced the billed quantity at the new plan's unit price and opened an overage amount mismatch
    # (reconciliation_clean; found once Stripe renewed and billed the sim's subscription). Fixed: the renewal
    # records the unit price it billed (`billed_unit_<metric>`), and OverageBilling.owed uses it.
    522: "reconciliation_clean",
    # With usage past the allowances (OVER_ALLOWANCE): a subscription cancelled mid-period had its last period's
    # storage overage billed on its final invoice (OverageBilling.bill_final, at the ended subscription's plan),
    # but the reconciliation's "owed" priced that period at the org's plan now, Free: nothing owed, an overage
    # amount mismatch (reconciliation_clean). Fixed: one rule, OrgService.billed_plan, prices every period for
    # billing and reconciliation alike (a cancelled subscription's periods at its plan).
    62: "reconciliation_clean",
    # With usage past the allowances: a late event dated before Checkout landed in the period ending there, which
    # no subscription covers, and the reconciliation expected its overage billed at the subscription's plan
    # (overage_not_billed). The product's decision: a Free period's usage is counted and shown, never owed
    # (OrgService.billed_plan: Free for a period that began before the subscription), and usage dated before the
    # org was created is refused (usage_before_org). 9100: events dated before the org was made; 5415: on Free.
    9100: "reconciliation_clean",
    5415: "reconciliation_clean",
    # Credits over the allowance in a period, then the subscription canceled in it: `bill_final` billed the
    # period's overage at the ended subscription's plan, but the reconciliation's "owed" priced it at the Free
    # plan the org was on since (no overage price: nothing owed) and opened an overage amount mismatch
    # (reconciliation_clean). Fixed: OrgService.billed_plan, as seed 62.
    777183: "reconciliation_clean",
    # A simulator bug: Stripe's events were dealt to a scenario by their object's `customer`, and a dispute (or a
    # refund) names none, so no dispute webhook was ever delivered; only the reconciliation's 60-day look back
    # took a disputed top-up back, and a life ending more than 60 days after its dispute kept the money
    # (wallet_money_matches_stripe). Fixed: an event is dealt by its charge's or payment's customer too.
    4256: "wallet_money_matches_stripe",
}


def _crashing_budget_put(life: Life) -> None:
    """The budget lowered below the period's spend, each attempt but the simulator's last crashing after its
    write (a Lambda killed after DynamoDB answered; the client retries the same PUT)."""
    life.kit.faults.rates["crash_after_write"] = 1.0
    try:
        ACTIONS["set_budget"](life, {"ad_spend": 500})
    finally:
        life.kit.faults.rates.pop("crash_after_write")


def test_a_budget_put_that_crashed_after_its_write_still_announces_its_crossings(world: SimWorld) -> None:
    """Found by budget_crossing_announced: a budget put at or below what the period used wrote its limits, then
    (in another write) its Project.BudgetWarning / Reached; a crash between the two and the client's retry
    found the new limits stored, nothing crossed, and the crossings were never announced. Fixed: the limits
    and their announcements are one transaction (BudgetRepository.put_budget_announced)."""
    t = START + timedelta(days=3, hours=5, seconds=17)
    spent_on = (t + timedelta(hours=3)).date().isoformat()
    steps = (
        Step(t, "create_org", {"plan": "free"}),
        Step(t + timedelta(minutes=30), "checkout", {"plan": "pro"}),
        Step(t + timedelta(hours=1), "agency_mode"),
        Step(
            t + timedelta(hours=3),
            "bill",
            {"bill": "b1", "amount": 1_000, "platform": "meta", "hold": None, "on": spent_on},
        ),
        Step(t + timedelta(hours=4), "crashing_budget_put"),
        Step(t + timedelta(days=2), "end"),
    )
    outcome = Run(world, Scenario(1, steps, {}), extra={"crashing_budget_put": _crashing_budget_put}).go()
    assert outcome.failures == [], outcome.failures


@contextmanager
def _killed_once_after_the_write_of(table: Any, marker: bytes) -> Iterator[list[str]]:
    """A Lambda killed right after DynamoDB answered the first write whose request carries `marker`: a botocore
    hook on the table's client (this thread's), for what runs inside; yields the kills (one at most)."""
    events, carried, kills = table.meta.client.meta.events, [], []

    def note(params: dict[str, Any], **_: Any) -> None:
        carried.append(marker in params["body"])

    def kill(**_: Any) -> None:
        if carried.pop() and not kills:
            kills.append("killed")
            raise SimCrash(f"killed after the write of {marker.decode()}")

    hooks = [(f"before-call.dynamodb.{op}", note) for op in ("UpdateItem", "TransactWriteItems", "PutItem")]
    hooks += [(f"after-call.dynamodb.{op}", kill) for op in ("UpdateItem", "TransactWriteItems", "PutItem")]
    for name, hook in hooks:
        events.register(name, hook)
    try:
        yield kills
    finally:
        for name, hook in hooks:
            events.unregister(name, hook)


def test_a_checkout_killed_after_its_mirror_still_re_anchors_the_free_period(world: SimWorld) -> None:
    """Found by one_period_per_stretch (a fault too rare to pin by seed: a crash right after the first
    subscription's state was written): the re-anchoring of the org's other periods came after that write, and
    the redelivered webhook found the subscription mirrored already and never re-anchored - the Free period
    the org was created in stayed on the invoice run's index, overlapping the subscription's first period.
    Fixed: SubscriptionMirror re-anchors before it writes the state (idempotent). The checkout's first webhook
    is killed right after the subscription's state (and its period's listing) was written; Stripe redelivers
    (the simulator's retry)."""
    t = START + timedelta(days=5, hours=13, seconds=41)
    steps = (
        Step(t, "create_org", {"plan": "free"}),
        Step(t + timedelta(days=3, hours=2), "checkout", {"plan": "pro"}),
        Step(t + timedelta(days=5), "end"),
    )
    run = Run(world, Scenario(2, steps, {}))
    with _killed_once_after_the_write_of(run.life.kit.table, b"subscription_synced_ms") as kills:
        outcome = run.go()
    assert kills == ["killed"]
    assert outcome.failures == [], outcome.failures


@pytest.mark.parametrize("seed", sorted(FOUND))
def test_the_seeds_that_found_bugs_keep_every_invariant(world: SimWorld, seed: int) -> None:
    outcome = Run(world, generate(seed)).go()
    assert outcome.failures == [], report(world, outcome, generate(seed), budget_s=0)

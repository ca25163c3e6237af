"""Attacks from outside on the steps that read what they need in one round trip (the invoice run's
BatchGetItems, a bill's TransactGetItems snapshot, a hold's BatchGetItem): a December period numbered in
the next year while another org takes that year's first number between the read and the transaction, with
the read's keys left unprocessed; a close rerun after a finalize cut short after its transaction; a hold
voided between a bill's snapshot and its commit; a budget put between a bill's snapshot and its commit, and
between a credit settle's read of the limits and its commit."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from shared.auth import Caller
from shared.budgets.service import BudgetLimits
from shared.credits.periods import period_containing
from shared.orgs.service import SETTLE_WINDOW
from shared.wallet.service import Bill
from tests.helpers import capture_events, drain, new_user
from tests.integration.credit_kit import credit_kit
from tests.integration.test_invoice_step_reads import STEPS, _calls, _crash_after, _listed, _step
from tests.integration.test_unprocessed_keys import first_answer_unprocessed
from tests.integration.wallet_kit import WalletKit, agency_org, fund, wallet_kit
from tests.paid import mirror_subscription

pytestmark = pytest.mark.integration


@contextmanager
def _after_first(kit: WalletKit, operation: str, then: Any, when: str = "after-call") -> Iterator[None]:
    """Runs `then()` once, right after the first `operation` answered (or, `when` "before-call", right
    before it is sent): another request interleaves."""
    events, done = kit.repo._table.meta.client.meta.events, []

    def interleave(**_: Any) -> None:
        if not done:
            done.append(1)
            then()

    events.register(f"{when}.dynamodb.{operation}", interleave)
    try:
        yield
    finally:
        events.unregister(f"{when}.dynamodb.{operation}", interleave)


def _december_org(kit: WalletKit, n: int) -> tuple[str, str]:
    """An agency org created on 10 Dec with spend: its first period ends in January (numbered in that year)."""
    org_id, project, _ = agency_org(kit)
    fund(kit, org_id, 100_000, f"dec-{org_id}")
    kit.wallet.record_bill(Bill(org_id, "meta", f"b{n}", project, 1_000 + n, "USD", date(2035, 12, 11), None, "feed"))
    period = period_containing(kit.org_repo.require_org(org_id), kit.clock.now())
    assert period.key.startswith("2035-12") and period.end.year == 2036
    return org_id, period.key


def _counter(kit: WalletKit, year: int) -> int | None:
    got = kit.repo._table.get_item(Key={"PK": "INVOICE_NUMBERS", "SK": f"YEAR#{year}"}, ConsistentRead=True)
    return int(got["Item"]["last"]) if "Item" in got else None


def test_a_december_period_takes_the_next_years_number_after_another_org_took_its_first(stack: Any) -> None:
    """Both orgs' December periods are numbered in 2036, a year no number was taken in yet: org A's read finds
    no counter (its keys left unprocessed once), org B then takes 2036's first number, and A's transaction
    (made on 'no counter yet') is refused and retried on the counter as it is: 000001 and 000002, no twin and
    no gap; the December year's counter is not touched. (Years 2035/2036: no other test numbers in them.)"""
    kit = wallet_kit(stack, datetime(2035, 12, 10, 23, 59, 59, tzinfo=UTC))
    first, second = _december_org(kit, 1), _december_org(kit, 2)
    kit.clock.at = datetime(2036, 1, 10, 23, 59, 59, tzinfo=UTC) + SETTLE_WINDOW + timedelta(minutes=1)
    for org_id, key in (first, second):
        for name in STEPS[:2]:
            _step(kit, name)(org_id, key)
    assert _counter(kit, 2036) is None and _counter(kit, 2035) is None

    def other_org_finalizes() -> None:
        assert _step(kit, "finalize")(*second) == "finalized"

    with (
        first_answer_unprocessed(kit.repo._table) as left,
        _after_first(kit, "TransactWriteItems", other_org_finalizes, "before-call"),
        _calls(kit) as calls,
    ):
        assert _step(kit, "finalize")(*first) == "finalized"
    assert left, "the read's keys were left unprocessed once"
    ops = [op for op, _ in calls]
    assert ops.count("TransactWriteItems") == 3, ops  # B's, A's refused one, A's on the counter read again
    a, b = kit.services.invoices.stored(*first), kit.services.invoices.stored(*second)
    assert a is not None and b is not None
    assert (b.number, a.number) == ("LB-2036-000001", "LB-2036-000002")
    assert _counter(kit, 2036) == 2 and _counter(kit, 2035) is None
    for org_id, key in (first, second):
        assert [_step(kit, name)(org_id, key) for name in STEPS[3:]] == ["rendered", "issued"]
    assert [kit.services.invoices.stored(*x).number for x in (second, first)] == [b.number, a.number]  # type: ignore[union-attr]


def test_a_close_rerun_after_a_finalize_cut_short_writes_nothing_and_the_run_ends_numbered_once(
    stack: Any,
) -> None:
    """The finalize's transaction is written, then its Lambda dies; the run is started again from the close:
    the close finds the invoice finalized (no draft, no write), the next period stays listed, and the rest of
    the run renders and issues it with the number it took (the counter moved once)."""
    kit = wallet_kit(stack, datetime(2037, 2, 28, 23, 30, tzinfo=UTC))
    org_id, project, _ = agency_org(kit)
    fund(kit, org_id, 50_000, f"r-{org_id}")
    kit.wallet.record_bill(Bill(org_id, "google_ads", "feb", project, 4_321, "USD", date(2037, 2, 28), None, "feed"))
    org = kit.org_repo.require_org(org_id)
    period = period_containing(org, kit.clock.now())
    following = period_containing(org, period.end)
    kit.clock.at = period.end + SETTLE_WINDOW + timedelta(minutes=1)
    for name in STEPS[:2]:
        _step(kit, name)(org_id, period.key)
    year = period.end.year
    before = _counter(kit, year) or 0
    with _crash_after(kit, "TransactWriteItems"), pytest.raises(RuntimeError):
        _step(kit, "finalize")(org_id, period.key)
    with _calls(kit) as calls:
        assert _step(kit, "close")(org_id, period.key) == "finalized"
    assert [op for op, _ in calls] == ["BatchGetItem"]
    assert _listed(kit, org_id, following.key) and _listed(kit, org_id, period.key)
    assert [_step(kit, name)(org_id, period.key) for name in STEPS[1:]] == [
        "finalized",
        "finalized",
        "rendered",
        "issued",
    ]
    issued = kit.services.invoices.stored(org_id, period.key)
    assert issued is not None and issued.number == f"LB-{year}-{before + 1:06d}"
    assert _counter(kit, year) == before + 1
    assert not _listed(kit, org_id, period.key) and _listed(kit, org_id, following.key)


def test_a_hold_voided_between_a_bills_snapshot_and_its_commit_leaves_no_money_held_or_lost(stack: Any) -> None:
    """The bill's one read sees the hold pending; the hold is voided before the bill commits: the bill's draw is
    refused (the hold is no longer as read), and it is posted without a draw. Balance: top-up - bill - fee,
    once; nothing held; the hold's remainder freed once; a redelivery of the bill changes nothing."""
    kit = wallet_kit(stack, datetime(2036, 2, 29, 23, 59, tzinfo=UTC))  # leap day, a minute to midnight
    org_id, project, _ = agency_org(kit)
    fund(kit, org_id, 30_000, f"r-{org_id}")
    kit.wallet.hold(org_id=org_id, hold_id="h1", project_id=project, platform="meta", amount_minor=10_000)
    bill = Bill(org_id, "meta", "leap", project, 7_000, "USD", date(2036, 2, 29), "h1", "feed")

    def void() -> None:
        kit.wallet.release_hold(org_id=org_id, hold_id="h1")

    with _after_first(kit, "TransactGetItems", void):
        first = kit.wallet.record_bill(bill)
    stored = kit.repo.get(org_id)
    assert stored is not None
    assert not first.replayed and stored.account.balance == 30_000 - 7_000 - first.fee_minor
    assert stored.account.held == 0
    hold = kit.repo.hold(org_id, "h1")
    assert hold is not None and hold.status == "voided" and (hold.remaining_minor, hold.drawn_minor) == (10_000, 0)
    again = kit.wallet.record_bill(bill)
    assert again.replayed and again.fee_minor == first.fee_minor
    after = kit.repo.get(org_id)
    assert after is not None and after.account == stored.account


def test_a_budget_set_between_a_bills_snapshot_and_its_commit_is_announced_as_crossed(stack: Any) -> None:
    """The bill's one read finds no budget; the owner sets 5,000 before the bill commits (nothing used yet:
    the put crosses nothing); the bill then spends 7,000: both lines of the new limit are crossed by this
    bill and must be announced once (the optimizer pauses the project on them), not lost to the race."""
    kit = wallet_kit(stack, datetime(2036, 1, 31, 23, 59, tzinfo=UTC))
    queue = capture_events(stack, {"detail-type": [{"prefix": "Project."}]})
    org_id, project, owner = agency_org(kit)
    fund(kit, org_id, 30_000, f"r-{org_id}")

    def owner_sets_a_budget() -> None:
        limits = BudgetLimits(ad_spend_minor=5_000)
        kit.services.budgets.put(owner, org_id, project, limits)

    with _after_first(kit, "TransactGetItems", owner_sets_a_budget):
        kit.wallet.record_bill(Bill(org_id, "meta", "late", project, 7_000, "USD", date(2036, 1, 31), None, "feed"))
    seen = sorted(
        (e["detail-type"], e["detail"]["threshold_pct"], e["detail"]["limit"], e["detail"]["used"])
        for e in drain(stack, queue)
        if e["detail"]["org_id"] == org_id
    )
    assert seen == [("Project.BudgetReached", 100, 5_000, 7_000), ("Project.BudgetWarning", 80, 5_000, 7_000)]


def test_a_credit_budget_set_between_a_settles_read_and_its_commit_is_announced_as_crossed(stack: Any) -> None:
    """The same race on credits: a settle reads the project's limits (none yet), the owner sets a credit
    limit of 100 before the settle commits (nothing used yet: the put crosses nothing), the settle then uses
    150 (the template's video): both lines of the new limit are crossed by this settle and announced once,
    not lost to the race."""
    at = datetime(2028, 2, 29, 23, 58, 41, tzinfo=UTC)  # a leap day, a minute before midnight
    kit = credit_kit(stack.env["TABLE_NAME"], stack.env["EVENT_BUS_NAME"], at)
    queue = capture_events(stack, {"detail-type": [{"prefix": "Project."}]})
    owner = Caller(new_user(), None, frozenset())
    org_id = kit.orgs.create_org(owner, name="Studio", billing_mode="byo", currency="USD", plan_id="free").org.org_id  # type: ignore[arg-type]
    mirror_subscription(kit.mirror, org_id, "pro", start=at - timedelta(days=3, hours=7))
    project = kit.orgs.create_project(owner, org_id, name="Client A").project_id
    kit.credits.reserve(
        org_id=org_id,
        project_id=project,
        template_id="ugc-video",
        generation_type="short_form_video",
        quantity=1,
        workflow_run_id="run-1",
        actor="t",
    )

    def owner_sets_a_budget() -> None:
        kit.budgets.put(owner, org_id, project, BudgetLimits(credits=100))

    events, done = kit.repo._table.meta.client.meta.events, []

    def interleave(**_: Any) -> None:
        if not done:
            done.append(1)
            owner_sets_a_budget()

    events.register("before-call.dynamodb.TransactWriteItems", interleave)
    try:
        kit.credits.settle(org_id=org_id, workflow_run_id="run-1", quantity=None, occurred_at=None, actor="t")
    finally:
        events.unregister("before-call.dynamodb.TransactWriteItems", interleave)
    assert done
    seen = sorted(
        (e["detail-type"], e["detail"]["threshold_pct"], e["detail"]["limit"], e["detail"]["used"])
        for e in drain(stack, queue)
        if e["detail"]["org_id"] == org_id
    )
    assert seen == [("Project.BudgetReached", 100, 100, 150), ("Project.BudgetWarning", 80, 100, 150)]  # ugc-video: 150
    # and a replay of the settle announces nothing again
    kit.credits.settle(org_id=org_id, workflow_run_id="run-1", quantity=None, occurred_at=None, actor="t")
    assert [e for e in drain(stack, queue) if e["detail"]["org_id"] == org_id] == []

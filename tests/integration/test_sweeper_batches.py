"""The sweeper ends the expired entries of one account together (shared/sweep.py `sweep_batched`): one
transaction per org for its holds, one ledger change per org for its reservations (a release line each,
with balance_after), from what the index projects. A hold or reservation ended by someone else while the
sweeper ends it is ended exactly once: by whoever committed first."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared import keys
from shared.budgets.service import BudgetLimits
from shared.wallet.service import Bill
from tests.helpers import new_user
from tests.integration.wallet_kit import WalletKit, agency_org, fund, ledger_lines, raw_item, wallet_kit

pytestmark = pytest.mark.integration

START = datetime(2027, 1, 31, 21, 47, 13, tzinfo=UTC)  # a month's last day, late in the evening
SWEPT = START + timedelta(hours=25)  # holds last 24 h, reservations 2 h


@pytest.fixture
def kit(stack: Any) -> WalletKit:
    return wallet_kit(stack, START)


def _reserve(kit: WalletKit, org_id: str, project: str, run: str, quantity: int) -> int:
    made = kit.services.credits.reserve(
        org_id=org_id,
        project_id=project,
        template_id="social-content",
        generation_type="image",
        quantity=quantity,
        workflow_run_id=run,
        actor="engine",
    )
    return made.credits


def _hold(kit: WalletKit, org_id: str, project: str, hold_id: str, amount: int) -> None:
    kit.wallet.hold(org_id=org_id, hold_id=hold_id, project_id=project, platform="meta", amount_minor=amount)


def _bill(kit: WalletKit, org_id: str, project: str, hold_id: str, amount: int) -> Any:
    bill = Bill(org_id, "meta", f"b-{hold_id}", project, amount, "USD", SWEPT.date(), hold_id, "ad-optimizer")
    return kit.wallet.record_bill(bill)


def _transactions_of(kit: WalletKit, org_id: str, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the transactions that touch the org's items, from now on."""
    client = kit.repo._client
    original = client.transact_write_items
    seen: list[int] = []

    def counting(**kwargs: Any) -> Any:
        items = kwargs["TransactItems"]
        pks = {next(iter(i.values())).get("Key", next(iter(i.values())).get("Item", {})).get("PK") for i in items}
        if keys.org_pk(org_id) in pks:
            seen.append(len(items))
        return original(**kwargs)

    monkeypatch.setattr(client, "transact_write_items", counting)
    return seen


def _status(kit: WalletKit, org_id: str, sk: str) -> str:
    item = raw_item(kit, org_id, sk)
    assert item is not None
    return str(item["status"])


def test_the_expired_holds_and_reservations_of_one_org_end_in_one_transaction_each(
    kit: WalletKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    org_id, project, owner = agency_org(kit, "scale")
    other = kit.orgs.create_project(owner, org_id, name="Second").project_id
    fund(kit, org_id, 100_000, new_user())
    amounts = {"h-a": 100, "h-b": 2_550, "h-c": 7}
    for hold_id, amount in amounts.items():
        _hold(kit, org_id, project if hold_id != "h-c" else other, hold_id, amount)
    runs = {f"run-{n}-{new_user()}": (project if n % 2 else other, n) for n in (1, 2, 3)}
    credits = {run: _reserve(kit, org_id, where, run, n) for run, (where, n) in runs.items()}
    before = kit.services.credits.summary(owner, org_id).account
    assert raw_item(kit, org_id, "WALLET")["held"] == sum(amounts.values())  # type: ignore[index]
    transactions = _transactions_of(kit, org_id, monkeypatch)

    kit.clock.at = SWEPT
    reservations, holds = kit.services.credits.expire_due(), kit.wallet.expire_holds()

    assert reservations.failed == holds.failed == 0 and reservations.done >= 3 and holds.done >= 3
    # One ledger change for the three reservations (account, entry, 3 ends, 2 project counters, 2 project
    # budgets), one transaction for the three holds (the wallet once, 3 holds, 2 project budgets)
    assert sorted(transactions) == [6, 9]
    assert {_status(kit, org_id, keys.hold_sk(h)) for h in amounts} == {"expired"}
    wallet = raw_item(kit, org_id, "WALLET")
    assert wallet is not None and (wallet["held"], wallet["available"]) == (0, 100_000)
    assert {_status(kit, org_id, keys.reservation_sk(run)) for run in runs} == {"expired"}
    after = kit.services.credits.summary(owner, org_id).account
    assert (after.reserved, after.available) == (0, before.available + sum(credits.values()))
    released = [line for line in ledger_lines(kit.repo._table, org_id, "CLEDGER#") if line["kind"] == "release"]
    assert sorted(line["ref"] for line in released) == sorted(f"run:{run}" for run in runs)
    available = before.available
    for line in released:  # in order, each with its own run's key, project and the balance it left
        run = line["ref"].removeprefix("run:")
        available += credits[run]
        assert (line["balance_after"], line["amount"], line["credits"]) == (available, credits[run], credits[run])
        assert (line["idempotency_key"], line["project_id"], line["actor"]) == (
            f"expired:{run}",
            runs[run][0],
            "system:sweeper",
        )
    counters = [raw_item(kit, org_id, keys.project_period_sk(before.period_key, p)) for p in (project, other)]
    assert [c["reserved"] for c in counters if c] == [0, 0]
    # A second run finds nothing of the org's left
    assert kit.services.credits.expire_due().failed == 0 and kit.wallet.expire_holds().failed == 0
    assert len(transactions) == 2


def _before_first_call(target: Any, name: str, first: Callable[[], None], monkeypatch: pytest.MonkeyPatch) -> None:
    """`target.name` runs `first` once, just before its first call (the interleaved change)."""
    original = getattr(target, name)
    pending = [first]

    def interleaved(*args: Any, **kwargs: Any) -> Any:
        if pending:
            pending.pop()()
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, interleaved)


def test_a_hold_billed_while_the_sweeper_expires_it_is_billed_and_expires_with_what_it_still_holds(
    kit: WalletKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    org_id, project, _ = agency_org(kit, "scale")
    fund(kit, org_id, 50_000, new_user())
    for hold_id in ("h-1", "h-2", "h-3"):
        _hold(kit, org_id, project, hold_id, 1_000)
    kit.clock.at = SWEPT
    billed: list[Any] = []
    # The sweeper has read the listed holds; the platform's bill for h-2 draws 900 on it before the
    # transaction: h-2 falls out of it (its remainder is not the one read) and expires alone, read again
    _before_first_call(
        kit.repo, "end_holds", lambda: billed.append(_bill(kit, org_id, project, "h-2", 900)), monkeypatch
    )

    report = kit.wallet.expire_holds()

    assert (report.done, report.failed, len(billed)) == (3, 0, 1)
    statuses = [_status(kit, org_id, keys.hold_sk(h)) for h in ("h-1", "h-2", "h-3")]
    assert statuses == ["expired", "expired", "expired"]
    assert raw_item(kit, org_id, keys.hold_sk("h-2"))["drawn_minor"] == 900  # type: ignore[index]
    wallet = raw_item(kit, org_id, "WALLET")
    spent = 900 + billed[0].fee_minor
    assert wallet is not None and (wallet["held"], wallet["balance"], wallet["available"]) == (
        0,
        50_000 - spent,
        50_000 - spent,
    )


def test_a_bill_for_a_hold_the_sweeper_expired_first_still_counts_and_frees_nothing_twice(kit: WalletKit) -> None:
    org_id, project, _ = agency_org(kit, "scale")
    fund(kit, org_id, 20_000, new_user())
    _hold(kit, org_id, project, "h-late", 5_000)
    _hold(kit, org_id, project, "h-other", 3_000)
    kit.clock.at = SWEPT
    assert kit.wallet.expire_holds().failed == 0
    result = _bill(kit, org_id, project, "h-late", 4_000)  # the platform bills after the hold expired
    assert _status(kit, org_id, keys.hold_sk("h-late")) == "expired"
    wallet = raw_item(kit, org_id, "WALLET")
    spent = 4_000 + result.fee_minor
    assert wallet is not None and (wallet["held"], wallet["available"]) == (0, 20_000 - spent)


def test_a_reservation_settled_while_the_sweeper_expires_it_is_settled_once_and_the_others_expire(
    kit: WalletKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    org_id, project, owner = agency_org(kit, "scale")
    runs = [f"run-{n}-{new_user()}" for n in range(3)]
    credits = [_reserve(kit, org_id, project, run, 2) for run in runs]
    before = kit.services.credits.summary(owner, org_id).account
    kit.clock.at = SWEPT
    credit_repo = kit.services.credits._repo

    def settle_the_second() -> None:  # the engine's late settle, after the sweeper listed it
        kit.services.credits.settle(org_id=org_id, workflow_run_id=runs[1], quantity=1, occurred_at=None, actor="e")

    _before_first_call(credit_repo, "commit", settle_the_second, monkeypatch)

    report = kit.services.credits.expire_due()

    assert report.failed == 0
    statuses = [credit_repo.reservation(org_id, run).status for run in runs]  # type: ignore[union-attr]
    assert statuses == ["expired", "settled", "expired"]
    lines = ledger_lines(kit.repo._table, org_id, "CLEDGER#")
    assert sorted(line["ref"] for line in lines if line["kind"] == "release") == sorted(
        f"run:{runs[i]}" for i in (0, 2)
    )
    assert [line["ref"] for line in lines if line["kind"] == "usage"] == [f"run:{runs[1]}"]
    after = kit.services.credits.summary(owner, org_id).account
    used = credits[1] // 2  # settled for 1 of the 2 reserved
    assert (after.reserved, after.available) == (0, before.available + sum(credits) - used)


def test_an_orgs_drawn_down_and_whole_holds_and_budgeted_reservations_expire_in_one_run_with_what_they_hold(
    kit: WalletKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a budgeted project with a campaign hold the platform billed part of, a hold nothing drew on
    # and one on another platform (its budget item is the project's too: a second transaction), a
    # reservation that settled and one the engine forgot
    org_id, project, owner = agency_org(kit, "scale")
    budgets = kit.services.budgets
    budgets.put(owner, org_id, project, BudgetLimits(ad_spend_minor=40_000, credits=500))
    fund(kit, org_id, 60_000, new_user())
    _hold(kit, org_id, project, "h-drawn", 8_000)
    _hold(kit, org_id, project, "h-whole", 1_500)
    kit.wallet.hold(org_id=org_id, hold_id="h-tt", project_id=project, platform="tiktok", amount_minor=700)
    kit.clock.at = START + timedelta(hours=3, minutes=11)
    bill = Bill(org_id, "meta", "b-part", project, 2_600, "USD", START.date(), "h-drawn", "ad-optimizer")
    fee = kit.wallet.record_bill(bill).fee_minor
    settled, forgotten = (f"run-{n}-{new_user()}" for n in ("s", "f"))
    _reserve(kit, org_id, project, settled, 3)
    reserved = _reserve(kit, org_id, project, forgotten, 2)
    used = kit.services.credits.settle(
        org_id=org_id, workflow_run_id=settled, quantity=1, occurred_at=None, actor="engine"
    ).settled_credits
    org = kit.org_repo.require_org(org_id)
    before = budgets.state(org, project).usage
    assert (before.spent, before.held, before.credits_used, before.credits_reserved) == (2_600, 7_600, used, reserved)
    account_before = kit.services.credits.summary(owner, org_id).account
    wallet_lines = len(ledger_lines(kit.repo._table, org_id))
    checks: list[tuple[str, bool]] = []
    check = kit.wallet.runway.check
    monkeypatch.setattr(
        kit.wallet.runway, "check", lambda o, **kw: checks.append((o, kw.get("rising"))) or check(o, **kw)
    )
    transactions = _transactions_of(kit, org_id, monkeypatch)

    # When they are all past their expiry and the sweeper runs once
    kit.clock.at = SWEPT
    reservations, holds = kit.services.credits.expire_due(), kit.wallet.expire_holds()

    # Then the wallet frees exactly what each hold still held (5,400 + 1,500 + 700), nothing twice
    assert reservations.failed == holds.failed == 0
    wallet = raw_item(kit, org_id, "WALLET")
    assert wallet is not None and (wallet["held"], wallet["balance"], wallet["available"]) == (
        0,
        60_000 - 2_600 - fee,
        60_000 - 2_600 - fee,
    )
    drawn = raw_item(kit, org_id, keys.hold_sk("h-drawn"))
    assert drawn is not None and (drawn["status"], drawn["remaining_minor"], drawn["drawn_minor"]) == (
        "expired",
        5_400,
        2_600,
    )
    assert {_status(kit, org_id, keys.hold_sk(h)) for h in ("h-whole", "h-tt")} == {"expired"}
    # the budget holds and reserves nothing any more: what is left is what the bill spent and the settle used
    after = budgets.state(org, project).usage
    assert (after.spent, after.held, after.credits_used, after.credits_reserved) == (2_600, 0, used, 0)
    assert (dict(after.platform_held), dict(after.platform_spent)) == ({"meta": 0, "tiktok": 0}, {"meta": 2_600})
    # the credit ledger has the one release line, with its run's key; the wallet's has no new line
    released = [line for line in ledger_lines(kit.repo._table, org_id, "CLEDGER#") if line["kind"] == "release"]
    assert [(line["ref"], line["idempotency_key"], line["project_id"]) for line in released] == [
        (f"run:{forgotten}", f"expired:{forgotten}", project)
    ]
    assert (released[0]["credits"], released[0]["balance_after"]) == (reserved, account_before.available + reserved)
    assert len(ledger_lines(kit.repo._table, org_id)) == wallet_lines
    # in three transactions: the reservation's change (account, entry, end, counters, budget), the meta
    # holds' (wallet, 2 holds, budget), the tiktok hold's (wallet, hold, budget); then the runway, checked
    # once, has no stage to leave (the held money is in its funds once, and the holds spend less than them:
    # no alert was ever due), so it writes nothing
    assert sorted(transactions) == [3, 4, 5]
    assert checks == [(org_id, True)]

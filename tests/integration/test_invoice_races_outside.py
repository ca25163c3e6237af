"""Attack probes for issue 15 on the real services with a manual clock: concurrent credit notes on one
invoice (no over-credit, unique gapless numbers), and the wallet statement's chain across periods with
corrections (closing of one invoice == opening of the next; opening + movements == closing)."""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.auth import SUPPORT_GROUP, Caller
from shared.credits.periods import Period, period_containing
from shared.errors import ConflictError
from shared.invoices.credit_notes import CreditNoteRequest, LineCredit
from shared.orgs.service import SETTLE_WINDOW
from shared.wallet.service import Bill
from tests.helpers import new_user
from tests.integration.wallet_kit import WalletKit, agency_org, fund, wallet_kit

pytestmark = pytest.mark.integration

START = datetime(2027, 3, 10, 2, 59, 0, tzinfo=UTC)
SUPPORT = Caller(new_user("staff"), "staff@example.com", frozenset({SUPPORT_GROUP}))


@pytest.fixture
def kit(stack: Any) -> WalletKit:
    return wallet_kit(stack, START)


def _bill(kit: WalletKit, org_id: str, project: str, bill_id: str, amount: int) -> None:
    kit.wallet.record_bill(
        Bill(org_id, "meta", bill_id, project, amount, "USD", kit.clock.now().date(), None, "spend-feed")
    )


def test_concurrent_credit_notes_never_over_credit(kit: WalletKit) -> None:
    org_id, project, _ = agency_org(kit)
    fund(kit, org_id, 100_000, f"r-{org_id}")
    _bill(kit, org_id, project, "b-1", 10_000)  # + 500 fee
    org = kit.org_repo.require_org(org_id)
    period = period_containing(org, kit.clock.now())
    kit.clock.at = period.end + SETTLE_WINDOW + timedelta(minutes=1)
    inv = kit.services.invoices
    assert [s(org_id, period.key) for s in (inv.close, inv.collect, inv.finalize, inv.render, inv.issue)][
        -1
    ] == "issued"
    invoice = inv._repo.get(org_id, period.key)
    assert invoice is not None
    wallet_total = sum(line.amount_minor for line in invoice.lines if line.paid_via == "wallet")
    before = kit.repo.get(org_id).account.balance
    results: list[Any] = []

    def one(i: int) -> None:
        try:
            note, _ = kit.services.credit_notes.issue(
                SUPPORT, org_id, invoice.invoice_id, CreditNoteRequest(reason="race", amount_minor=4_000), f"k{i}"
            )
            results.append(note)
        except Exception as exc:
            results.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    notes = [r for r in results if not isinstance(r, Exception)]
    errors = [type(r).__name__ + ":" + getattr(r, "code", "") for r in results if isinstance(r, Exception)]
    credited = sum(n.amount_minor for n in notes)
    print("notes", [(n.number, n.amount_minor, n.to_wallet_minor, n.to_stripe_minor) for n in notes], errors)
    creditable = sum(
        line.amount_minor for line in invoice.lines if line.paid_via in ("wallet", "stripe") and line.amount_minor > 0
    )
    assert credited <= creditable
    numbers = sorted(int(n.number.rsplit("-", 1)[1]) for n in notes)
    assert len(set(numbers)) == len(numbers)
    after = kit.repo.get(org_id).account.balance
    assert after - before == sum(n.to_wallet_minor for n in notes) <= wallet_total


def test_statement_chain_across_corrections_and_an_empty_period(kit: WalletKit) -> None:
    """P1: top-up 50,000, bill 10,000 (+500). P2: credit note of the fee (500) on P1, reversal of b-1
    (+10,500), new bill 2,000 (+100). P3: nothing. P4: bill 1,000. Each issued invoice: opening +
    movements == closing, and the closing of one == the opening of the next issued one."""
    org_id, project, _ = agency_org(kit)
    org = kit.org_repo.require_org(org_id)
    p1 = period_containing(org, kit.clock.now())
    p2 = period_containing(org, p1.end)
    p3 = period_containing(org, p2.end)
    p4 = period_containing(org, p3.end)
    inv = kit.services.invoices

    def run(period: Period) -> str:
        kit.clock.at = period.end + SETTLE_WINDOW + timedelta(minutes=1)
        return [s(org_id, period.key) for s in (inv.close, inv.collect, inv.finalize, inv.render, inv.issue)][-1]

    fund(kit, org_id, 50_000, f"r-{org_id}")
    _bill(kit, org_id, project, "b-1", 10_000)
    assert run(p1) == "issued"
    first = inv._repo.get(org_id, p1.key)
    fee_line = next(i for i, line in enumerate(first.lines) if line.description.startswith("Platform fee:"))

    kit.services.credit_notes.issue(
        SUPPORT, org_id, first.invoice_id, CreditNoteRequest(reason="fee", lines=[LineCredit(fee_line)]), "cn-a"
    )
    # The fee was credited: the bill can no longer be reversed whole (its money would come back twice);
    # the rest is credited by a credit note
    with pytest.raises(ConflictError) as refused:
        kit.services.credit_notes.reverse_bill(org_id, "meta", "b-1", "dup", "support:x")
    assert refused.value.code == "exceeds_creditable"
    spend_line = next(i for i, line in enumerate(first.lines) if line.description.startswith("Ad spend:"))
    kit.services.credit_notes.issue(
        SUPPORT, org_id, first.invoice_id, CreditNoteRequest(reason="dup", lines=[LineCredit(spend_line)]), "cn-b"
    )
    _bill(kit, org_id, project, "b-2", 2_000)
    statuses = [run(p2), run(p3)]
    kit.clock.at += timedelta(days=1)
    _bill(kit, org_id, project, "b-3", 1_000)
    statuses.append(run(p4))
    print("statuses", statuses)
    issued = [inv._repo.get(org_id, p.key) for p in (p1, p2, p3, p4)]
    issued = [i for i in issued if i is not None and i.status == "issued"]
    chain = []
    for i in issued:
        s = i.wallet_statement
        moved = (
            s.topups_minor + s.spend_minor + s.fees_minor + s.refunds_minor + s.reversals_minor + s.adjustments_minor
        )
        chain.append((i.period_key, s.opening_minor, moved, s.closing_minor))
        assert s.opening_minor + moved == s.closing_minor
    print("chain", chain)
    for a, b in itertools.pairwise(chain):
        assert a[3] == b[1], chain
    assert chain[-1][3] == kit.repo.get(org_id).account.balance
    # b-1's money came back once
    assert kit.repo.get(org_id).account.balance == 50_000 - 2_100 - 1_050, chain


def test_a_carried_deficit_is_not_due_again_on_every_invoice(kit: WalletKit) -> None:
    """P1: top-up 1,000, bill 5,000 (+250 fee): the wallet closes at -4,250, due on P1's invoice. P2:
    nothing moves. P2's invoice (if any) must not ask for the same 4,250 again - summing the invoices'
    amounts due would count the debt twice."""
    org_id, project, _ = agency_org(kit)
    org = kit.org_repo.require_org(org_id)
    p1 = period_containing(org, kit.clock.now())
    p2 = period_containing(org, p1.end)
    inv = kit.services.invoices
    fund(kit, org_id, 1_000, f"r-{org_id}")
    _bill(kit, org_id, project, "b-1", 5_000)

    def run(period: Period) -> str:
        kit.clock.at = period.end + SETTLE_WINDOW + timedelta(minutes=1)
        return [s(org_id, period.key) for s in (inv.close, inv.collect, inv.finalize, inv.render, inv.issue)][-1]

    assert run(p1) == "issued"
    assert inv._repo.get(org_id, p1.key).totals.amount_due_minor == 4_250
    status = run(p2)
    two = inv._repo.get(org_id, p2.key)
    print("p2", status, two.totals, two.wallet_statement, [(ln.description, ln.amount_minor) for ln in two.lines])
    due = [
        inv._repo.get(org_id, p.key).totals.amount_due_minor
        for p in (p1, p2)
        if inv._repo.get(org_id, p.key).status == "issued"
    ]
    assert sum(due) == 4_250, due


def test_the_same_key_concurrently_makes_one_note_and_moves_money_once(kit: WalletKit) -> None:
    org_id, project, _ = agency_org(kit)
    fund(kit, org_id, 100_000, f"r-{org_id}")
    _bill(kit, org_id, project, "b-1", 10_000)
    org = kit.org_repo.require_org(org_id)
    period = period_containing(org, kit.clock.now())
    kit.clock.at = period.end + SETTLE_WINDOW + timedelta(minutes=1)
    inv = kit.services.invoices
    assert [s(org_id, period.key) for s in (inv.close, inv.collect, inv.finalize, inv.render, inv.issue)][
        -1
    ] == "issued"
    invoice = inv._repo.get(org_id, period.key)
    before = kit.repo.get(org_id).account.balance
    results: list[Any] = []

    def one() -> None:
        try:
            results.append(
                kit.services.credit_notes.issue(
                    SUPPORT, org_id, invoice.invoice_id, CreditNoteRequest(reason="same", amount_minor=3_000), "same"
                )
            )
        except Exception as exc:
            results.append(exc)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    numbers = {r[0].number for r in results if isinstance(r, tuple)}
    assert len(numbers) == 1
    made = [r[1] for r in results if isinstance(r, tuple)]
    assert sorted(made) == [False] + [True] * (len(made) - 1)  # one made it; the others are told they replayed
    assert kit.repo.get(org_id).account.balance == before + 3_000

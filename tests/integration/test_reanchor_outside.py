"""Attack probe for issue 15: a re-anchored subscription (cancel, then subscribe again days later: Stripe
gives the new subscription a new billing anchor). Every wallet movement must still be on exactly one
issued invoice, and the run (driven like the dispatcher: the index of periods ending each day) must not
fail. Periods are computed from the org's *current* anchor only, so the spend recorded under the old
anchor's period keys is read by no invoice."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.orgs.models import BillingMode
from shared.orgs.service import SETTLE_WINDOW
from shared.wallet.service import Bill
from tests.integration.wallet_kit import WalletKit, agency_org, fund, wallet_kit
from tests.paid import mirror_subscription, set_status

pytestmark = pytest.mark.integration

START = datetime(2027, 2, 3, 9, 15, 0, tzinfo=UTC)


@pytest.fixture
def kit(stack: Any) -> WalletKit:
    return wallet_kit(stack, START)


def _bill(kit: WalletKit, org_id: str, project: str, bill_id: str, amount: int) -> None:
    kit.wallet.record_bill(
        Bill(org_id, "meta", bill_id, project, amount, "USD", kit.clock.now().date(), None, "spend-feed")
    )


def test_cancel_and_resubscribe_every_bill_on_exactly_one_issued_invoice(kit: WalletKit) -> None:
    org_id, project, owner = agency_org(kit)
    fund(kit, org_id, 50_000, f"r-{org_id}")
    kit.clock.at = START + timedelta(days=1)
    _bill(kit, org_id, project, "b-1", 10_000)
    kit.clock.at = START + timedelta(days=10)
    org = kit.org_repo.require_org(org_id)
    set_status(kit.mirror, org, "canceled")
    kit.clock.at = START + timedelta(days=10, hours=5)
    mirror_subscription(kit.mirror, org_id, "pro", start=kit.clock.now())  # a new anchor
    kit.orgs.update_org(owner, org_id, name=None, billing_mode=BillingMode.AGENCY, currency=None)
    _bill(kit, org_id, project, "b-2", 3_000)
    # The dispatcher: each day, the periods ending that day (indexed), run once settled.
    inv = kit.services.invoices
    outcomes: list[tuple[str, str]] = []
    day = START
    while day < START + timedelta(days=75):
        for oid, key, end in kit.org_repo.periods_ending(day.date().isoformat()):
            if oid != org_id:
                continue
            end_at = datetime.fromisoformat(end.replace("Z", "+00:00"))
            kit.clock.at = max(kit.clock.at, end_at + SETTLE_WINDOW + timedelta(minutes=1))
            try:
                status = [s(org_id, key) for s in (inv.close, inv.collect, inv.finalize, inv.render, inv.issue)][-1]
            except Exception as exc:
                status = f"{type(exc).__name__}:{getattr(exc, 'code', '')}"
            outcomes.append((key, status))
        day += timedelta(days=1)
    issued = [i for i in inv._repo.list(org_id, None, 50).items if i.status == "issued"]
    spend = [
        (i.period_key, line.description, line.amount_minor)
        for i in issued
        for line in i.lines
        if line.description.startswith("Ad spend")
    ]
    print("outcomes", outcomes)
    print(
        "all invoices", [(i.period_key, i.status, i.wallet_statement) for i in inv._repo.list(org_id, None, 50).items]
    )
    print("spend lines", spend)
    assert all(status in ("issued", "empty") for _, status in outcomes), outcomes
    # SHOULD: b-1 (10,000) and b-2 (3,000), each on exactly one issued invoice.
    assert sorted(a for _, _, a in spend) == [3_000, 10_000], (outcomes, spend)
    # ...and the wallet's statements chain from the first invoice to the balance, the old subscription's
    # period (cut short where the new one began) included
    chain = sorted((i for i in issued if i.wallet_statement), key=lambda i: i.period_key)
    assert chain[0].wallet_statement is not None and chain[0].wallet_statement.opening_minor == 0
    for before, after in itertools.pairwise(chain):
        assert after.wallet_statement.opening_minor == before.wallet_statement.closing_minor  # type: ignore[union-attr]
    wallet = kit.repo.get(org_id)
    assert wallet is not None and chain[-1].wallet_statement.closing_minor == wallet.account.balance  # type: ignore[union-attr]

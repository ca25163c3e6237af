"""Attack probe for issue 15: bills of period P1 committed concurrently with P1's close (threads). Each
must be on exactly one issued invoice (P1's own, or P2's late section), and the statements must chain."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.credits.periods import period_containing
from shared.orgs.service import SETTLE_WINDOW
from shared.wallet.service import Bill
from tests.integration.wallet_kit import WalletKit, agency_org, fund, wallet_kit

pytestmark = pytest.mark.integration

START = datetime(2027, 5, 31, 23, 59, 0, tzinfo=UTC)


@pytest.fixture
def kit(stack: Any) -> WalletKit:
    return wallet_kit(stack, START)


def test_bills_racing_the_close_land_once(kit: WalletKit) -> None:
    org_id, project, _ = agency_org(kit)
    fund(kit, org_id, 500_000, f"r-{org_id}")
    org = kit.org_repo.require_org(org_id)
    p1 = period_containing(org, kit.clock.now())
    p2 = period_containing(org, p1.end)
    last_day = (p1.end - timedelta(hours=12)).date()
    kit.clock.at = p1.end + SETTLE_WINDOW + timedelta(minutes=1)
    inv = kit.services.invoices
    amounts = [1_001, 2_002, 3_003, 4_004, 5_005, 6_006]
    errors: list[str] = []

    def bill(i: int, amount: int) -> None:
        try:
            kit.wallet.record_bill(
                Bill(org_id, "meta", f"race-{i}", project, amount, "USD", last_day, None, "spend-feed")
            )
        except Exception as exc:
            errors.append(repr(exc))

    def close() -> None:
        try:
            inv.close(org_id, p1.key)
        except Exception as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=bill, args=(i, a)) for i, a in enumerate(amounts[:3])]
    threads.append(threading.Thread(target=close))
    threads += [threading.Thread(target=bill, args=(i + 3, a)) for i, a in enumerate(amounts[3:])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    statuses = [s(org_id, p1.key) for s in (inv.close, inv.collect, inv.finalize, inv.render, inv.issue)]
    kit.clock.at = p2.end + SETTLE_WINDOW + timedelta(minutes=1)
    statuses += [s(org_id, p2.key) for s in (inv.close, inv.collect, inv.finalize, inv.render, inv.issue)]
    one, two = inv._repo.get(org_id, p1.key), inv._repo.get(org_id, p2.key)
    spend = sorted(line.amount_minor for i in (one, two) for line in i.lines if line.description.startswith("Ad spend"))
    print("statuses", statuses, "spend", spend, [(ln.description, ln.amount_minor) for ln in two.lines])
    assert sum(spend) == sum(amounts)
    s1, s2 = one.wallet_statement, two.wallet_statement
    assert s1.closing_minor == s2.opening_minor
    assert s2.closing_minor == kit.repo.get(org_id).account.balance
    # The accountant's view of the late invoice: CSV sums to the total; late lines say so; totals agree.
    import csv
    import io

    from shared.invoices.render import render_csv

    rows = list(csv.DictReader(io.StringIO(render_csv(two).decode("utf-8-sig"))))
    assert sum(int(r["amount_minor"]) for r in rows) == two.totals.total_minor
    assert all("late" in r["description"] for r in rows if r["section"] == "ad_spend")
    assert two.totals.paid_from_wallet_minor == -(s2.spend_minor + s2.fees_minor)

"""Probes of issue 21 (outside review): holds, bills and budgets in orders and inputs the first tests did not use."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from functions.api.schemas import BudgetOut
from shared.budgets.service import BudgetLimits, ProjectBudgetExceededError
from shared.errors import ConflictError
from shared.wallet.service import Bill
from tests.helpers import capture_events, drain, new_user
from tests.integration.wallet_kit import WalletKit, agency_org, fund, wallet_kit

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 20, 9, 41, 17, tzinfo=UTC)


@pytest.fixture
def kit(stack: Any) -> WalletKit:
    return wallet_kit(stack, NOW)


def _usage(kit: WalletKit, org_id: str, project: str) -> Any:
    return kit.services.budgets.state(kit.org_repo.require_org(org_id), project).usage


def _bill(
    kit: WalletKit, org_id: str, project: str, amount: int, bill_id: str, day: date, hold_id: str | None = None
) -> Any:
    return kit.wallet.record_bill(
        Bill(org_id, "meta", bill_id, project, amount, "USD", day, hold_id, "test:spend-feed")
    )


def test_a_hold_id_reused_for_another_hold_is_409_and_changes_nothing(kit: WalletKit) -> None:
    # Given a hold of 1,000 for a project, and a budget that fits a larger one
    org_id, project, owner = agency_org(kit)
    other = kit.orgs.create_project(owner, org_id, name="Other client").project_id
    fund(kit, org_id, 100_000, new_user())
    kit.services.budgets.put(owner, org_id, project, BudgetLimits(ad_spend_minor=3_000))
    kit.wallet.hold(org_id=org_id, hold_id="h", project_id=project, platform="meta", amount_minor=1_000)
    # When the same hold_id asks for another amount, project or platform (or one the budget refuses)
    asked = [(project, "meta", 1_500), (other, "meta", 1_000), (project, "tiktok", 1_000), (project, "meta", 5_000)]
    for target, platform, amount in asked:
        with pytest.raises(ConflictError) as reused:
            kit.wallet.hold(org_id=org_id, hold_id="h", project_id=target, platform=platform, amount_minor=amount)
        # Then it is refused as a reused key, not answered as if the asked hold were placed
        assert reused.value.code == "idempotency_key_reused"
    # and a true replay is answered as made; nothing more is held
    again = kit.wallet.hold(org_id=org_id, hold_id="h", project_id=project, platform="meta", amount_minor=1_000)
    assert (again.project_id, again.amount_minor, again.status) == (project, 1_000, "pending")
    stored = kit.repo.get(org_id)
    assert stored is not None and stored.account.held == 1_000 == _usage(kit, org_id, project).held
    assert _usage(kit, org_id, other).held == 0


def test_holds_released_while_their_bills_arrive_twice_free_each_remainder_once(kit: WalletKit, stack: Any) -> None:
    org_id, project, owner = agency_org(kit)
    fund(kit, org_id, 1_000_000, new_user())
    kit.services.budgets.put(owner, org_id, project, BudgetLimits(ad_spend_minor=10**12))
    local = threading.local()

    def k() -> WalletKit:
        if not hasattr(local, "kit"):
            local.kit = wallet_kit(stack, NOW)
        return local.kit

    # Given six open holds of 5,000 on a budget of 10^12 minor units
    for n in range(6):
        kit.wallet.hold(org_id=org_id, hold_id=f"h{n}", project_id=project, platform="meta", amount_minor=5_000)

    # When each is released while its bill of 2,000 is delivered twice, all at once
    def act(i: int) -> None:
        n = i // 3
        if i % 3 == 0:
            k().wallet.release_hold(org_id=org_id, hold_id=f"h{n}")
        else:
            _bill(k(), org_id, project, 2_000, f"b{n}", NOW.date(), hold_id=f"h{n}")

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(act, range(18)))
    usage = _usage(kit, org_id, project)
    stored = kit.repo.get(org_id)
    assert stored is not None
    # Then every bill counts once, whatever it found, and nothing stays held in the wallet or the budget
    assert usage.held == 0 == stored.account.held and usage.platform_held["meta"] == 0
    assert usage.spent == 12_000 and stored.account.balance == 1_000_000 - 12_000 - 600


def test_concurrent_budget_puts_below_the_spend_announce_each_line_once(kit: WalletKit, stack: Any) -> None:
    queue = capture_events(stack, {"detail-type": [{"prefix": "Project."}]})
    org_id, project, owner = agency_org(kit)
    fund(kit, org_id, 100_000, new_user())
    kit.services.budgets.put(owner, org_id, project, BudgetLimits(ad_spend_minor=20_000))
    _bill(kit, org_id, project, 8_000, "b1", date(2026, 11, 28))  # 40 %: nothing crossed
    # When billing and an admin (and retries) lower the budget below the 8,000 spent, all at once
    lowered = [7_500, 7_000, 6_000, 5_000, 7_900, 7_200, 6_500, 7_999]
    start = threading.Barrier(len(lowered))
    local = threading.local()

    def put(limit: int) -> None:
        if not hasattr(local, "kit"):
            local.kit = wallet_kit(stack, NOW)
        start.wait()
        local.kit.services.budgets.put(owner, org_id, project, BudgetLimits(ad_spend_minor=limit))

    with ThreadPoolExecutor(max_workers=len(lowered)) as pool:
        list(pool.map(put, lowered))
    # Then each line is announced once, by whichever change crossed it first; the others crossed nothing new
    seen = [(e["detail-type"], e["detail"]["used"]) for e in drain(stack, queue) if e["detail"]["org_id"] == org_id]
    assert sorted(seen) == [("Project.BudgetReached", 8_000), ("Project.BudgetWarning", 8_000)]
    assert kit.services.budgets.budget(org_id, project).rev == 1 + len(lowered)


def test_a_platform_credit_beyond_the_periods_bills_makes_no_room_beyond_the_budget(kit: WalletKit) -> None:
    # Given a budget of 10,000 and, this period, a platform credit of 3,000 (invalid traffic of last month's
    # spend, dated now) and no bill yet
    org_id, project, owner = agency_org(kit)
    fund(kit, org_id, 100_000, new_user())
    kit.services.budgets.put(
        owner, org_id, project, BudgetLimits(ad_spend_minor=10_000, platforms_minor={"meta": 8_000})
    )
    kit.clock.at = NOW + timedelta(days=1, hours=13, minutes=2, seconds=59)
    credit = Bill(org_id, "meta", "ivt-1", project, -3_000, "USD", kit.clock.at.date(), None, "test:spend-feed")
    kit.wallet.record_bill(credit)
    assert _usage(kit, org_id, project).spent == -3_000  # the money came back: net spend below 0
    # When the optimizer holds more than the budget, Then it is refused: the budget has 10,000 left, not 13,000
    with pytest.raises(ProjectBudgetExceededError) as refused:
        kit.wallet.hold(org_id=org_id, hold_id="big", project_id=project, platform="tiktok", amount_minor=10_001)
    assert (refused.value.details["budget"], refused.value.details["left"]) == ("ad_spend", 10_000)
    with pytest.raises(ProjectBudgetExceededError) as meta:
        kit.wallet.hold(org_id=org_id, hold_id="meta", project_id=project, platform="meta", amount_minor=8_001)
    assert (meta.value.details["budget"], meta.value.details["left"]) == ("ad_spend:meta", 8_000)
    kit.wallet.hold(org_id=org_id, hold_id="fits", project_id=project, platform="meta", amount_minor=8_000)
    kit.wallet.hold(org_id=org_id, hold_id="rest", project_id=project, platform="tiktok", amount_minor=2_000)
    usage = _usage(kit, org_id, project)
    assert (usage.held, usage.committed("ad_spend"), usage.committed("ad_spend:meta")) == (10_000, 10_000, 8_000)
    shown = BudgetOut.of(kit.services.budgets.state(kit.org_repo.require_org(org_id), project)).lines[0]
    assert (shown.used, shown.held, shown.committed, shown.left) == (-3_000, 10_000, 10_000, 0)
    # and bills this period use up the credit before they count: 3,000 billed is still 0 committed spend
    _bill(kit, org_id, project, 3_000, "b1", kit.clock.at.date(), hold_id="fits")
    assert _usage(kit, org_id, project).committed("ad_spend") == 7_000
    kit.wallet.hold(org_id=org_id, hold_id="after", project_id=project, platform="tiktok", amount_minor=3_000)

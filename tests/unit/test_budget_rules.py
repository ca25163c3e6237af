"""The rules of project budgets and of holds that last a campaign, pure."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.budgets.models import BudgetGuard, BudgetTouch, merged
from shared.budgets.rules import BudgetUsage, ProjectBudget, caps, crossings, left, limits_crossed, spend_budgets
from shared.errors import InvalidRequestError
from shared.wallet.account import HOLD_MAX_LIFETIME, hold_draw, hold_expiry

NOW = datetime(2028, 2, 29, 23, 59, 59, tzinfo=UTC)  # a leap day, a second before midnight


def test_caps_are_the_limit_less_the_amount_for_limited_budgets_only() -> None:
    budget = ProjectBudget("p", ad_spend_minor=10_000, platforms_minor={"meta": 3_000}, credits=50)
    assert caps(budget, spend_budgets("meta"), 1_000) == {"ad_spend": 9_000, "ad_spend:meta": 2_000}
    assert caps(budget, spend_budgets("tiktok"), 1_000) == {"ad_spend": 9_000}
    assert caps(budget, ("credits",), 60) == {"credits": -10}  # cannot fit whatever is committed
    assert caps(ProjectBudget("p"), spend_budgets("meta"), 1) == {}


def test_committed_and_left() -> None:
    usage = BudgetUsage("k", spent=700, held=200, platform_spent={"meta": 500}, credits_used=3, credits_reserved=4)
    assert (usage.committed("ad_spend"), usage.committed("ad_spend:meta"), usage.committed("credits")) == (900, 500, 7)
    assert (left(1_000, 900), left(800, 900)) == (100, 0)  # a lowered budget has nothing left, never less


@given(
    limit=st.integers(0, 10_000),
    spends=st.lists(st.integers(1, 3_000), min_size=1, max_size=30),
)
def test_each_line_is_crossed_exactly_once_by_any_sequence_of_bills(limit: int, spends: list[int]) -> None:
    budget = ProjectBudget("p", ad_spend_minor=limit)
    used, seen = 0, []
    for amount in spends:
        found = crossings(budget, spend_budgets("meta"), BudgetUsage("k", spent=used), amount)
        seen += [c.threshold_pct for c in found]
        used += amount
    expected = [pct for pct in (80, 100) if used >= max(-(-limit * pct // 100), 1)]
    assert seen == expected


def test_the_80_percent_line_is_rounded_up() -> None:
    budget = ProjectBudget("p", credits=5)  # 80 % of 5 = 4
    assert crossings(budget, ("credits",), BudgetUsage("k", credits_used=3), 0) == []
    found = crossings(budget, ("credits",), BudgetUsage("k", credits_used=3), 1)
    assert [(c.threshold_pct, c.used) for c in found] == [(80, 4)]


def test_limits_set_or_lowered_below_what_was_used_cross_their_lines_once() -> None:
    used = BudgetUsage("k", spent=9_000, held=5_000, platform_spent={"meta": 9_000}, credits_used=4)
    before = ProjectBudget("p", ad_spend_minor=20_000, rev=1)
    # lowered to 10,000: 9,000 spent is past 80 % (holds are not use); the new meta budget past both lines
    after = ProjectBudget("p", ad_spend_minor=10_000, platforms_minor={"meta": 9_000}, rev=2)
    found = [(c.budget, c.threshold_pct, c.limit, c.used) for c in limits_crossed(before, after, used)]
    assert found == [
        ("ad_spend", 80, 10_000, 9_000),
        ("ad_spend:meta", 80, 9_000, 9_000),
        ("ad_spend:meta", 100, 9_000, 9_000),
    ]
    # lines already behind the use under the old limits were announced then; raising one crosses nothing
    assert [c.threshold_pct for c in limits_crossed(after, replace(after, ad_spend_minor=9_000), used)] == [100]
    assert limits_crossed(after, replace(after, ad_spend_minor=50_000), used) == []
    # a limit of 0 with nothing used yet is crossed by the first use, not by being set
    assert limits_crossed(ProjectBudget("p"), ProjectBudget("p", credits=0), BudgetUsage("k")) == []
    assert [c.threshold_pct for c in limits_crossed(ProjectBudget("p"), ProjectBudget("p", credits=5), used)] == [80]


def test_touches_of_one_project_and_period_merge_into_one_update() -> None:
    guard = BudgetGuard(3, {"ad_spend": 10})
    got = merged(
        [
            BudgetTouch("p", "k1", "meta", spent=500),
            BudgetTouch("p", "k1", "meta", held=-300, guard=guard),
            BudgetTouch("p", "k0", "meta", held=-200),
        ]
    )
    assert got == [BudgetTouch("p", "k1", "meta", 500, -300, 0, 0, guard), BudgetTouch("p", "k0", "meta", held=-200)]
    with pytest.raises(ValueError):
        merged([BudgetTouch("p", "k", "meta", spent=1), BudgetTouch("p", "k", "tiktok", spent=1)])


def test_a_hold_expires_when_the_caller_says_within_31_days() -> None:
    assert hold_expiry(NOW, None) == NOW + timedelta(hours=24)
    assert hold_expiry(NOW, NOW + timedelta(days=3)) == NOW + timedelta(days=3)
    assert hold_expiry(NOW, NOW + timedelta(days=400)) == NOW + HOLD_MAX_LIFETIME
    for wanted in (NOW, NOW - timedelta(seconds=1)):
        with pytest.raises(InvalidRequestError) as refused:
            hold_expiry(NOW, wanted)
        assert refused.value.code == "hold_expiry_past"


@given(bill=st.integers(-1_000, 10_000), held=st.integers(0, 10_000))
def test_a_bill_draws_at_most_what_its_hold_still_holds(bill: int, held: int) -> None:
    taken = hold_draw(bill, held)
    assert 0 <= taken <= held and taken <= max(bill, 0)
    assert taken == min(max(bill, 0), held)

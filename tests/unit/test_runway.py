"""The runway's rules (shared/wallet/runway.py), by hand computation: the rate of the complete days and
of the open holds, the tenths, the stages and their crossings, the suggestion."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.wallet.account import WalletAccount
from shared.wallet.runway import (
    DEFAULT_STAGES,
    OpenHold,
    assess,
    crossed,
    holds_rate,
    next_stage,
    restore_top_up,
    runway_tenths,
    spend_rate,
    stage_of,
    valid_stages,
)

TODAY = date(2028, 3, 1)  # a leap year: 29 February is one of the complete days
NOW = datetime(2028, 3, 1, 17, 43, 11, tzinfo=UTC)


def test_the_rate_averages_the_seven_complete_days_before_today() -> None:
    days = {(TODAY - timedelta(days=back)).isoformat(): 700 for back in range(10)}
    # today (still running) and the 8th day back do not count: 7 x 700 / 7
    assert spend_rate(days, TODAY) == 700
    assert spend_rate({TODAY.isoformat(): 10_000, "2028-02-29": 7}, TODAY) == Fraction(1)
    assert spend_rate({"2028-02-23": 70, "2028-02-22": 7_000}, TODAY) == 10  # 22 Feb is the 8th day back


def test_a_hold_spreads_what_it_holds_over_the_time_it_has_left_at_least_a_day() -> None:
    three_days = OpenHold(9_000, NOW + timedelta(days=3))
    two_hours = OpenHold(500, NOW + timedelta(hours=2))
    expired = OpenHold(40, NOW - timedelta(minutes=1))  # not swept yet: still held, a day's spend
    assert holds_rate([three_days], NOW) == 3_000
    assert holds_rate([three_days, two_hours, expired], NOW) == 3_540
    assert holds_rate([], NOW) == 0


def test_runway_by_hand() -> None:
    # balance 100,000 - held 3,000 - unbilled 1,550 + pending 5,000 = 100,450; 7 days of 7,350 and a
    # 24-hour hold of 3,000: 10,350 a day -> 9.705... days -> 97 tenths; 7 days need 72,450: nothing to add
    account = WalletAccount("USD", balance=100_000, held=3_000, pending=5_000)
    days = {(TODAY - timedelta(days=back)).isoformat(): 7_350 for back in range(1, 8)}
    hold = OpenHold(3_000, NOW + timedelta(hours=24))
    got = assess(account, spend_days=days, holds=[hold], unbilled=1_550, now=NOW, stages=DEFAULT_STAGES)
    assert (got.funds_minor, got.rate, got.tenths, got.stage, got.next_stage) == (100_450, 10_350, 97, 14, 7)
    assert (got.restore_minor, got.daily_rate_minor) == (0, 10_350)
    # the same wallet after 55,000 more is posted: 45,450 / 10,350 = 4.39 -> 43 tenths, stage 7, next 3;
    # restoring 7 days takes 72,450 - 45,450 = 27,000
    poorer = WalletAccount("USD", balance=45_000, held=3_000, pending=5_000)
    got = assess(poorer, spend_days=days, holds=[hold], unbilled=1_550, now=NOW, stages=DEFAULT_STAGES)
    assert (got.funds_minor, got.tenths, got.stage, got.next_stage, got.restore_minor) == (45_450, 43, 7, 3, 27_000)


def test_no_spend_no_runway_and_an_overdrawn_wallet_has_none_left() -> None:
    assert runway_tenths(1_000, Fraction(0)) is None
    assert runway_tenths(-5, Fraction(700)) == 0
    assert runway_tenths(699, Fraction(7_000)) == 0  # 0.0998 days: rounded down
    assert restore_top_up(-5, Fraction(10, 3)) == 29  # ceil(23.33 + 5)


def test_stages_cross_down_once_and_rising_re_arms_them() -> None:
    stages = DEFAULT_STAGES
    assert [stage_of(t, stages) for t in (None, 141, 140, 71, 70, 31, 11, 10, 0)] == [None, None, 14, 14, 7, 7, 3, 1, 1]
    assert crossed(None, 14) and crossed(14, 3) and not crossed(3, 3) and not crossed(3, 7) and not crossed(7, None)
    assert crossed(7, 3) and crossed(None, 1)
    assert (next_stage(None, stages), next_stage(7, stages), next_stage(1, stages)) == (14, 3, None)


@settings(max_examples=300, deadline=None)  # no timing in unit tests: a loaded machine is slow
@given(st.lists(st.integers(min_value=0, max_value=400), min_size=1, max_size=60))
def test_a_crossing_alerts_once_until_the_runway_rises_above_it(path: list[int]) -> None:
    """Along any path of runways (tenths), the alerts for a stage alternate with rises above it."""
    stage: int | None = None
    alerted_since_rise = set()
    for tenths in path:
        now = stage_of(tenths, DEFAULT_STAGES)
        if crossed(stage, now):
            assert now not in alerted_since_rise
            alerted_since_rise |= {s for s in DEFAULT_STAGES if s >= now}  # the skipped stages count as alerted
        alerted_since_rise = {s for s in alerted_since_rise if tenths <= s * 10}
        stage = now


def test_alert_stages_are_validated() -> None:
    assert valid_stages([3, 30, 10]) == (30, 10, 3)
    for bad in ([], [7, 7], [0], [91], [1, 2, 3, 4, 5, 6, 7]):
        with pytest.raises(ValueError):
            valid_stages(bad)

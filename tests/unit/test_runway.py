"""The runway's rules (shared/wallet/runway.py), by hand computation: the rate of the complete days and
of the open holds, the tenths, the stages and their crossings, the suggestion."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from types import SimpleNamespace
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.ledger import Head
from shared.wallet.account import WalletAccount
from shared.wallet.models import StoredWallet
from shared.wallet.repository import WalletRepository
from shared.wallet.runway import (
    DEFAULT_STAGES,
    OpenHold,
    Spending,
    assess,
    background_rate,
    crossed,
    holds_rate,
    next_stage,
    restore_top_up,
    runway_days,
    runway_tenths,
    spend_rate,
    spent_by,
    stage_of,
    unbilled_may_move,
    valid_stages,
)
from shared.wallet.runway_repository import RunwayRepository, RunwayState
from shared.wallet.runway_watch import RunwayWatch

TODAY = date(2028, 3, 1)  # a leap year: 29 February is one of the complete days
NOW = datetime(2028, 3, 1, 17, 43, 11, tzinfo=UTC)


def _days(amount: int) -> dict[str, int]:
    """`amount` on each of the 7 complete days before TODAY."""
    return {(TODAY - timedelta(days=back)).isoformat(): amount for back in range(1, 8)}


def test_the_rate_averages_the_seven_complete_days_before_today() -> None:
    days = {(TODAY - timedelta(days=back)).isoformat(): 700 for back in range(10)}
    # today (still running) and the 8th day back do not count: 7 x 700 / 7
    assert spend_rate(days, TODAY) == 700
    assert spend_rate({TODAY.isoformat(): 10_000, "2028-02-29": 7}, TODAY) == Fraction(1)
    assert spend_rate({"2028-02-23": 70, "2028-02-22": 7_000}, TODAY) == 10  # 22 Feb is the 8th day back


def test_the_background_rate_leaves_out_what_bills_took_from_holds() -> None:
    # 7 days of 10,500 (bills + fees), of which 7,000 a day was drawn from holds: 3,500 a day is background
    assert background_rate(_days(10_500), _days(7_000), TODAY) == 3_500
    assert background_rate(_days(10_500), {TODAY.isoformat(): 9_999}, TODAY) == 10_500  # today: not complete


def test_a_hold_spreads_what_it_holds_over_the_time_it_has_left_at_least_a_day() -> None:
    three_days = OpenHold(9_000, NOW + timedelta(days=3))
    two_hours = OpenHold(500, NOW + timedelta(hours=2))
    expired = OpenHold(40, NOW - timedelta(minutes=1))  # not swept yet: still held, a day's spend
    assert holds_rate([three_days], NOW) == 3_000
    assert holds_rate([three_days, two_hours, expired], NOW) == 3_540
    assert holds_rate([], NOW) == 0


def test_held_money_is_counted_once_and_each_hold_spends_only_its_remainder() -> None:
    # F = 10,000 - unbilled 1,000 + pending 1,000 = 10,000 (the 9,000 held stays in it); R = 500 a day.
    # Hold a: 3,000 with 2 days left (1,500 a day); b: 6,000 with 10 days 7 hours left (6,000 / 10.2917 =
    # 582.996 a day). Until day 2: 2,582.996 a day -> 5,165.99 spent; then 1,082.996 a day: the rest,
    # 4,834.01, lasts 4.4635 days -> T = 6.4635 (before b ends at 10.29) -> 64 tenths.
    account = WalletAccount("USD", balance=10_000, held=9_000, pending=1_000)
    a = OpenHold(3_000, NOW + timedelta(days=2))
    b = OpenHold(6_000, NOW + timedelta(days=10, hours=7))
    spending = Spending(_days(3_500), _days(3_000))  # R = 500
    got = assess(account, spending=spending, holds=[a, b], unbilled=1_000, now=NOW, stages=DEFAULT_STAGES)
    b_rate = Fraction(6_000 * 24, 247)
    assert (got.funds_minor, got.spend_rate, got.holds_rate) == (10_000, 500, 1_500 + b_rate)
    expected = 2 + (10_000 - 2 * (500 + 1_500 + b_rate)) / (500 + b_rate)
    assert runway_days(10_000, Fraction(500), [a, b], NOW) == expected
    assert (got.tenths, got.stage, got.next_stage) == (64, 7, 3)
    # 7 days spend 3,500 + 3,000 (a, all of it) + 7 x 582.996 = 10,580.97: 581 restores them
    assert spent_by(Fraction(7), Fraction(500), [a, b], NOW) == 3_500 + 3_000 + 7 * b_rate
    assert got.restore_minor == 581
    # The old formula counted the 9,000 twice: (10,000 - 9,000) / (500 + 2,083) = 0.39 days


def test_a_hold_that_ends_before_the_money_does_and_no_background_spend_leaves_no_runway() -> None:
    hold = OpenHold(4_000, NOW + timedelta(days=4))  # 1,000 a day for 4 days, then nothing
    assert runway_days(5_000, Fraction(0), [hold], NOW) is None
    assert runway_days(3_000, Fraction(0), [hold], NOW) == 3  # F below what it holds (unbilled spend took some)
    assert runway_days(5_000, Fraction(250), [hold], NOW) == 4  # 4 x 1,250: the money ends as the hold does
    assert runway_days(6_000, Fraction(250), [hold], NOW) == 8  # 5,000 by day 4, then 250 a day: 4 more
    assert runway_tenths(runway_days(1_000, Fraction(0), [], NOW)) is None  # nothing is spent
    assert runway_days(-5, Fraction(0), [], NOW) is None  # nor with nothing left
    assert restore_top_up(5_000, Fraction(0), [hold], NOW) == 0


def test_the_suggestion_restores_seven_days_when_the_money_ends_exactly_as_the_holds_do() -> None:
    # No background spend; a hold of 4,000 spends 1,000 a day for 4 days. F = 3,000 (unbilled spend took
    # 1,000): the money ends on day 3. 4,000 would end exactly as the hold does, on day 4 (< 7); 4,001 is
    # never used up. The top-up that restores 7 days is 1,001, not 1,000.
    hold = OpenHold(4_000, NOW + timedelta(days=4))
    assert runway_days(3_000 + 1_000, Fraction(0), [hold], NOW) == 4
    assert runway_days(3_000 + 1_001, Fraction(0), [hold], NOW) is None
    assert restore_top_up(3_000, Fraction(0), [hold], NOW) == 1_001
    # All the money held by a campaign of 3 days: the runway is 3 days (the wallet is empty as it ends), and
    # 1 minor unit restores it; a hold beyond 7 days keeps the plain sum
    campaign = OpenHold(9_000, NOW + timedelta(days=3))
    assert (
        runway_days(9_000, Fraction(0), [campaign], NOW) == 3
        and restore_top_up(9_000, Fraction(0), [campaign], NOW) == 1
    )
    long = OpenHold(10_000, NOW + timedelta(days=10))
    assert runway_days(7_000, Fraction(0), [long], NOW) == 7 and restore_top_up(6_999, Fraction(0), [long], NOW) == 1


def test_an_overdrawn_wallet_has_none_left_and_rounding_goes_down_for_days_up_for_money() -> None:
    assert runway_tenths(runway_days(-5, Fraction(700), [], NOW)) == 0
    assert runway_tenths(runway_days(699, Fraction(7_000), [], NOW)) == 0  # 0.0998 days: rounded down
    assert restore_top_up(-5, Fraction(10, 3), [], NOW) == 29  # ceil(23.33 + 5)


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


@settings(max_examples=300, deadline=None)
@given(
    balance=st.integers(min_value=-50_000, max_value=500_000),
    daily=st.integers(min_value=0, max_value=20_000),
    drawn=st.integers(min_value=0, max_value=20_000),
    holds=st.lists(
        st.tuples(st.integers(min_value=0, max_value=100_000), st.integers(min_value=1, max_value=30 * 24)),
        max_size=3,
    ),
    unbilled=st.integers(min_value=0, max_value=300_000),
    stages=st.sampled_from([DEFAULT_STAGES, (30, 10, 3), (5,)]),
)
def test_unbilled_spend_moves_no_stage_unbilled_may_move_rules_out(
    balance: int,
    daily: int,
    drawn: int,
    holds: list[tuple[int, int]],
    unbilled: int,
    stages: tuple[int, ...],
) -> None:
    """The watch skips reading the unbilled spend when `unbilled_may_move` says it cannot move the stage:
    whatever it is, the stage with it is the stage without it."""
    open_holds = [OpenHold(left, NOW + timedelta(hours=hours)) for left, hours in holds]
    spending = Spending(_days(daily), _days(min(drawn, daily)))
    account = WalletAccount(currency="usd", balance=balance)
    without = assess(account, spending=spending, holds=open_holds, unbilled=0, now=NOW, stages=stages)
    with_it = assess(account, spending=spending, holds=open_holds, unbilled=unbilled, now=NOW, stages=stages)
    if not unbilled_may_move(without, stages):
        assert with_it.stage == without.stage
    if unbilled == 0:
        assert with_it == without


def test_unbilled_spend_may_move_a_runway_that_is_spent_and_above_the_deepest_stage() -> None:
    account = WalletAccount(currency="usd", balance=100_000)
    spent = Spending(_days(1_000), {})
    runway = assess(account, spending=spent, holds=[], unbilled=0, now=NOW, stages=DEFAULT_STAGES)
    assert runway.stage is None and unbilled_may_move(runway, DEFAULT_STAGES)  # 100 days: 99,000 unbilled makes 1
    nothing = assess(account, spending=Spending({}, {}), holds=[], unbilled=0, now=NOW, stages=DEFAULT_STAGES)
    assert not unbilled_may_move(nothing, DEFAULT_STAGES)  # nothing is spent: no runway to shorten
    broke = assess(replace(account, balance=-5), spending=spent, holds=[], unbilled=0, now=NOW, stages=DEFAULT_STAGES)
    assert broke.stage == 1 and not unbilled_may_move(broke, DEFAULT_STAGES)  # the deepest stage already


class _Clock:
    def now(self) -> datetime:
        return NOW


class _Stages:
    """The runway's state on record (RunwayRepository's reads and its conditional move)."""

    def __init__(self, stage: int | None):
        self.read = RunwayState(None, stage, 3)

    def state(self, org_id: str) -> RunwayState:
        return self.read

    def move_stage(self, org_id: str, read: RunwayState, stage: int | None, *_: object) -> bool:
        self.read = RunwayState(None, stage, read.revision + 1)
        return True


def _watched(stage: int | None, unbilled: int) -> tuple[RunwayWatch, _Stages, list[str]]:
    asked: list[str] = []

    def unbilled_spend(org_id: str, today: date) -> int:
        asked.append(org_id)
        return unbilled

    stages = _Stages(stage)
    no_reads = cast(WalletRepository, SimpleNamespace(topups=lambda org_id: []))
    return RunwayWatch(no_reads, cast(RunwayRepository, stages), _Clock(), unbilled_spend), stages, asked


def _wallet(balance: int, daily: int) -> StoredWallet:
    return StoredWallet(WalletAccount(currency="usd", balance=balance), Head(4, 9), spend_days=_days(daily))


def test_an_evaluation_reads_the_unbilled_spend_only_when_it_could_move_the_stage() -> None:
    # Nothing spent: no runway, whatever is unbilled; the deepest stage, recorded: nothing deeper to reach
    for stage, wallet in ((None, _wallet(100_000, 0)), (1, _wallet(-5, 1_000))):
        watch, states, asked = _watched(stage, 999_999)
        runway = watch.after_post("o1", wallet)
        assert asked == [] and runway is not None and runway.stage == stage == states.read.stage
    # 100 days of runway: 99,000 unbilled brings it to 1 (read, counted, and the alert's stage recorded)
    watch, states, asked = _watched(None, 99_000)
    runway = watch.after_post("o1", _wallet(100_000, 1_000))
    assert asked == ["o1"] and runway is not None and (runway.funds_minor, runway.stage) == (1_000, 1)
    assert states.read.stage == 1
    # A stage that moves without it is recorded as the unbilled spend leaves it (read)
    watch, states, asked = _watched(None, 0)
    runway = watch.after_post("o1", _wallet(5_000, 1_000))
    assert asked == ["o1"] and runway is not None and runway.stage == 7 == states.read.stage

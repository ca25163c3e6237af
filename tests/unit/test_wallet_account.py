"""The wallet's rules of money, each in one pure function (shared/wallet/account.py), and the period key
(shared/credits/periods.py): what the ledger, the API and the invoice all use."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal

from hypothesis import given
from hypothesis import strategies as st

from shared.credits.periods import period_key
from shared.wallet.account import (
    EntryKind,
    Signal,
    WalletAccount,
    WalletStatus,
    add_spend,
    available,
    bill_fee_bps,
    deficit,
    kept_fee_bps,
    platform_fee,
)

MONEY = st.integers(min_value=-(10**12), max_value=10**12)
AMOUNT = st.integers(min_value=0, max_value=10**12)
BPS = st.integers(min_value=0, max_value=10_000)


@given(MONEY, AMOUNT, AMOUNT)
def test_available_is_balance_less_holds_less_floor(balance: int, held: int, floor: int) -> None:
    assert available(balance, held, floor) == balance - held - floor
    account = WalletAccount("USD", balance=balance, held=held, floor=floor)
    assert account.available == available(balance, held, floor)


@given(MONEY)
def test_deficit_is_what_the_balance_is_below_zero(balance: int) -> None:
    assert deficit(balance) == (-balance if balance < 0 else 0)
    assert deficit(balance) >= 0 and balance + deficit(balance) >= 0


@given(AMOUNT, BPS)
def test_the_platform_fee_is_half_even_of_the_bill(amount: int, bps: int) -> None:
    exact = Decimal(amount) * bps / 10_000
    assert platform_fee(amount, bps) == int(exact.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def test_fee_ties_round_to_even_per_bill() -> None:
    assert platform_fee(10, 500) == 0  # 0.5 -> 0
    assert platform_fee(30, 500) == 2  # 1.5 -> 2
    assert platform_fee(50, 500) == 2  # 2.5 -> 2
    # two bills of 10 at 5 % pay no fee; one bill of 20 pays 1: the fee is per bill, not per total
    assert platform_fee(10, 500) * 2 == 0 and platform_fee(20, 500) == 1


def test_a_bill_posts_the_spend_then_its_fee() -> None:
    after, movements, _ = WalletAccount("USD", balance=10_000).bill(5_000, 500)
    assert [(m.kind, m.amount, m.balance_after) for m in movements] == [
        (EntryKind.AD_SPEND, -5_000, 5_000),
        (EntryKind.PLATFORM_FEE, -250, 4_750),
    ]
    assert after.balance == 4_750
    _, byo, _ = WalletAccount("USD", balance=10_000).bill(5_000, 0)
    assert [m.kind for m in byo] == [EntryKind.AD_SPEND]  # no fee line of 0


@given(st.booleans(), st.one_of(st.none(), BPS), st.one_of(st.none(), BPS))
def test_the_fee_rate_of_a_bill(agency: bool, plan: int | None, kept: int | None) -> None:
    rate = bill_fee_bps(agency=agency, plan_bps=plan, kept_bps=kept)
    if agency:
        assert rate == (plan or 0)  # in agency mode, the live plan's rate
    elif kept is not None:
        assert rate == kept  # after leaving: the rate kept when it left
    else:
        assert rate == (plan or 0)


def test_the_kept_rate_is_the_plan_rate_when_leaving() -> None:
    assert kept_fee_bps(500) == 500
    assert kept_fee_bps(None) == 0


def test_low_balance_states_warn_then_pause_and_resume_only_at_the_threshold() -> None:
    wallet = WalletAccount("USD", balance=10_000, floor=0, low_threshold=5_000)
    low, _, signals = wallet.move((EntryKind.AD_SPEND, -6_000))
    assert (low.status, signals) == (WalletStatus.LOW, [Signal.LOW_BALANCE])
    paused, _, signals = low.move((EntryKind.AD_SPEND, -5_000))
    assert (paused.status, signals, paused.deficit) == (WalletStatus.PAUSED, [Signal.PAUSED], 1_000)
    still, _, signals = paused.move((EntryKind.TOPUP, 4_000))  # 3,000: above the floor, below the threshold
    assert (still.status, signals) == (WalletStatus.PAUSED, [])
    resumed, _, signals = still.move((EntryKind.TOPUP, 2_000))
    assert (resumed.status, signals) == (WalletStatus.ACTIVE, [Signal.RESUMED])
    assert not paused.can_hold(1) and resumed.can_hold(resumed.available) and not resumed.can_hold(5_001)


def test_the_account_keeps_the_spend_of_the_complete_days_the_runway_counts_and_today() -> None:
    today = date(2028, 3, 1)  # leap year: 29 February counts
    days: dict[str, int] = {}
    for back in range(10):
        days = add_spend(days, today - timedelta(days=back), 700, today)
    assert sorted(days) == [(today - timedelta(days=b)).isoformat() for b in range(7, -1, -1)]


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)))
def test_the_period_key_is_the_utc_start_to_the_second(start: datetime) -> None:
    key = period_key(start)
    assert key == start.strftime("%Y-%m-%dT%H:%M:%SZ")
    # the same instant written in another zone has the same key
    assert period_key(start.astimezone(timezone(timedelta(hours=-5)))) == key
    # keys sort as their periods do
    assert period_key(start) < period_key(start + timedelta(seconds=1))


def test_the_period_of_an_instant_written_with_an_offset_is_its_utc_period() -> None:
    from shared.credits.periods import period_containing
    from tests.unit.test_seat_sync import _org

    org = _org(0)
    assert org.subscription is not None
    anchor = datetime(2026, 1, 31, 23, 0, tzinfo=UTC)
    org = org.model_copy(update={"subscription": org.subscription.model_copy(update={"billing_anchor": anchor})})
    # 2026-05-01 00:30 at +02:00 is 30 April 22:30 UTC; the period anchored on the 31st at 23:00 UTC
    # that follows March's starts 30 April 23:00 (clamped): 22:30 UTC is still in the one before it
    at = datetime(2026, 5, 1, 0, 30, tzinfo=timezone(timedelta(hours=2)))
    period = period_containing(org, at)
    assert period.start <= at < period.end
    assert (period.start, period.end) == (
        datetime(2026, 3, 31, 23, 0, tzinfo=UTC),
        datetime(2026, 4, 30, 23, 0, tzinfo=UTC),
    )
    assert period_containing(org, at.astimezone(UTC)) == period


@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    st.integers(min_value=-14 * 60, max_value=14 * 60),
)
def test_an_instant_is_in_the_same_period_whatever_its_offset(at: datetime, minutes: int) -> None:
    from shared.credits.periods import period_containing
    from tests.unit.test_seat_sync import _org

    org = _org(0)
    shown = at.astimezone(timezone(timedelta(minutes=minutes)))
    period = period_containing(org, shown)
    assert period.start <= at < period.end and period == period_containing(org, at)


def test_a_naive_instant_has_no_period() -> None:
    import pytest

    from shared.credits.periods import period_containing
    from tests.unit.test_seat_sync import _org

    with pytest.raises(ValueError, match="aware"):
        period_containing(_org(0), datetime(2026, 5, 1, 0, 30))

"""The runway, pure: how many days the wallet's money lasts at the rate it is being spent, the staged
alerts it raises, and the top-up that restores it. No I/O; shared/wallet/runway_watch.py feeds it.

    funds  = balance - still held (open holds) - unbilled spend (reported, not billed yet) + pending top-ups
    rate   = (spend, bills + fees, of the last 7 complete UTC days) / 7
             + for each open hold: its remaining amount / max(1 day, the time it has left)
    runway = funds / rate, in whole tenths of a day, rounded down (0 when funds <= 0; None when rate = 0)

The rate is exact (`Fraction`): no float and no rounding until the runway's tenths (down: a runway is
never shown longer than it is) and the suggestion (up, to the minor unit: it always restores the days).
A hold with a day or less left counts its whole remaining amount as one day's spend (it ends within the
day, spent or freed); one with 3 days left, a third of it per day. Runway is not money: tenths of a day
are an `int`, shown as such."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from fractions import Fraction

from shared.wallet.account import WalletAccount

RATE_DAYS = 7  # complete UTC days of spend the rate averages (today, still running, is not one)
RESTORE_DAYS = 7  # the suggested top-up brings the runway back to this many days
DEFAULT_STAGES: tuple[int, ...] = (14, 7, 3, 1)  # days of runway an alert fires at
MAX_STAGES = 6
MAX_STAGE_DAYS = 90
DAY = timedelta(days=1)


def still_held(account: WalletAccount) -> int:
    """What open holds still hold of the wallet (the one place the runway reads it)."""
    return account.held


@dataclass(frozen=True)
class OpenHold:
    remaining_minor: int
    expires_at: datetime


def funds_minor(*, balance: int, held: int, unbilled: int, pending: int) -> int:
    """The money the runway lasts on: posted, less what holds and unbilled spend will take, plus what
    bank top-ups in flight will bring."""
    return balance - held - unbilled + pending


def spend_rate(days: Mapping[str, int], today: date) -> Fraction:
    """Average daily spend (bills + fees, by bill date) over the RATE_DAYS complete days before today."""
    first, last = (today - timedelta(days=RATE_DAYS)).isoformat(), (today - DAY).isoformat()
    return Fraction(sum(v for d, v in days.items() if first <= d <= last), RATE_DAYS)


def holds_rate(holds: Iterable[OpenHold], now: datetime) -> Fraction:
    """Daily spend the open holds imply: each one's remaining amount over the time it has left, at
    least a day."""
    total = Fraction(0)
    for hold in holds:
        left = max(hold.expires_at - now, DAY)
        total += Fraction(hold.remaining_minor) * Fraction(DAY.total_seconds()) / Fraction(left.total_seconds())
    return total


def runway_tenths(funds: int, rate: Fraction) -> int | None:
    """Tenths of a day the funds last at `rate`, rounded down; None when nothing is being spent."""
    if rate <= 0:
        return None
    return math.floor(Fraction(max(funds, 0) * 10) / rate)


def stage_of(tenths: int | None, stages: Sequence[int]) -> int | None:
    """The deepest alert stage the runway is at or below (None: above them all, or no spend)."""
    if tenths is None:
        return None
    return min((s for s in stages if tenths <= s * 10), default=None)


def crossed(previous: int | None, now: int | None) -> bool:
    """Whether moving from stage `previous` to `now` crosses a stage not alerted yet (deeper). Rising
    (now shallower, or None) re-arms the stages below it, and alerts nothing."""
    return now is not None and (previous is None or now < previous)


def next_stage(stage: int | None, stages: Sequence[int]) -> int | None:
    """The stage that alerts next: the highest one not alerted since the runway last rose above it."""
    armed = [s for s in stages if stage is None or s < stage]
    return max(armed, default=None)


def restore_top_up(funds: int, rate: Fraction) -> int:
    """The top-up that brings the runway to RESTORE_DAYS: ceil(RESTORE_DAYS x rate - funds), never < 0."""
    return max(0, math.ceil(RESTORE_DAYS * rate - funds))


def valid_stages(stages: Sequence[int]) -> tuple[int, ...]:
    """Alert stages as stored: distinct days in 1..MAX_STAGE_DAYS, at most MAX_STAGES, highest first.
    ValueError otherwise (the HTTP layer answers 422)."""
    if not 1 <= len(stages) <= MAX_STAGES:
        raise ValueError(f"runway alerts: 1 to {MAX_STAGES} stages")
    if len(set(stages)) != len(stages) or any(not 1 <= s <= MAX_STAGE_DAYS for s in stages):
        raise ValueError(f"runway alerts: distinct whole days from 1 to {MAX_STAGE_DAYS}")
    return tuple(sorted(stages, reverse=True))


@dataclass(frozen=True)
class Runway:
    funds_minor: int
    spend_rate: Fraction  # per day, from the last complete days' bills and fees
    holds_rate: Fraction  # per day, from the open holds
    tenths: int | None  # None: nothing is being spent
    stage: int | None
    next_stage: int | None
    restore_minor: int  # the top-up that brings it back to RESTORE_DAYS (0: it is there)

    @property
    def rate(self) -> Fraction:
        return self.spend_rate + self.holds_rate

    @property
    def daily_rate_minor(self) -> int:
        """The rate shown, rounded up to the minor unit."""
        return math.ceil(self.rate)


def assess(
    account: WalletAccount,
    *,
    spend_days: Mapping[str, int],
    holds: Iterable[OpenHold],
    unbilled: int,
    now: datetime,
    stages: Sequence[int],
) -> Runway:
    """The runway of the wallet now (see the module docstring)."""
    funds = funds_minor(balance=account.balance, held=still_held(account), unbilled=unbilled, pending=account.pending)
    spent, holding = spend_rate(spend_days, now.date()), holds_rate(holds, now)
    tenths = runway_tenths(funds, spent + holding)
    stage = stage_of(tenths, stages)
    return Runway(
        funds, spent, holding, tenths, stage, next_stage(stage, stages), restore_top_up(funds, spent + holding)
    )

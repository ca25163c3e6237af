"""The runway, pure: how many days the wallet's money lasts at the rate it is being spent, the staged
alerts it raises, and the top-up that restores it. No I/O; shared/wallet/runway_watch.py feeds it.

Held money is counted once: it stays in the funds and is spent by its holds.

    F     = balance - unbilled spend (reported, not billed yet) + pending top-ups
    R     = the background rate: spend (bills + fees) of the last 7 complete UTC days that did not draw on a
            hold, / 7 (what bills took from holds is the optimizer's campaign spend: its open holds stand
            for it)
    hold i spends its remainder h_i at r_i = h_i / max(1 day, the time it has left), until it is spent
    T     = the runway: the time at which R*T + sum(min(h_i, r_i*T)) = F (piecewise linear in T, a bend
            where each hold is spent), in whole tenths of a day rounded down; 0 when F <= 0; None when
            the money is never used up (nothing is spent, or only holds that end before the money does)
    top-up that restores RESTORE_DAYS (7) = ceil(R*7 + sum(min(h_i, r_i*7)) - F), at least 0 (+1 when R = 0
            and the holds end sooner: that sum is used up as they end, a unit more never is)

Everything is exact (`Fraction`): no float and no rounding until the runway's tenths (down: a runway is
never shown longer than it is) and the suggestion (up, to the minor unit: it always restores the days).
Runway is not money: tenths of a day are an `int`, shown as such."""

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
    """What open holds still hold of the wallet (the watch reads the holds only while it is not 0)."""
    return account.held


@dataclass(frozen=True)
class OpenHold:
    remaining_minor: int
    expires_at: datetime

    def rate(self, now: datetime) -> Fraction:
        """What it spends a day: its remainder over the time it has left, at least a day."""
        left = max(self.expires_at - now, DAY)
        return Fraction(self.remaining_minor) * Fraction(DAY.total_seconds()) / Fraction(left.total_seconds())


def funds_minor(*, balance: int, unbilled: int, pending: int) -> int:
    """The money the runway lasts on: posted (held money included: its holds spend it), less the spend
    bills will still take, plus what bank top-ups in flight will bring."""
    return balance - unbilled + pending


def spend_rate(days: Mapping[str, int], today: date) -> Fraction:
    """Average daily spend (by bill date) over the RATE_DAYS complete days before today."""
    first, last = (today - timedelta(days=RATE_DAYS)).isoformat(), (today - DAY).isoformat()
    return Fraction(sum(v for d, v in days.items() if first <= d <= last), RATE_DAYS)


def background_rate(spend_days: Mapping[str, int], drawn_days: Mapping[str, int], today: date) -> Fraction:
    """R: the complete days' spend (bills + fees) less what bills took from holds, a day."""
    return spend_rate(spend_days, today) - spend_rate(drawn_days, today)


def holds_rate(holds: Iterable[OpenHold], now: datetime) -> Fraction:
    """What the open holds spend a day now (each until its remainder is spent)."""
    return sum((hold.rate(now) for hold in holds), Fraction(0))


def spent_by(days: Fraction, rate: Fraction, holds: Sequence[OpenHold], now: datetime) -> Fraction:
    """What is spent in `days` days: R*T + sum(min(h_i, r_i*T))."""
    return rate * days + sum((min(Fraction(h.remaining_minor), h.rate(now) * days) for h in holds), Fraction(0))


def runway_days(funds: int, rate: Fraction, holds: Sequence[OpenHold], now: datetime) -> Fraction | None:
    """T with spent_by(T) = funds, walking the bends (where each hold is spent) in order; None when nothing
    is spent or the funds are never used up; else 0 when there are none."""
    spending = [h for h in holds if h.remaining_minor > 0]
    if rate <= 0 and not spending:
        return None  # nothing is spent: an empty wallet is not running out
    if funds <= 0:
        return Fraction(0)
    bends = sorted({Fraction(h.remaining_minor) / h.rate(now) for h in spending})
    at, spent = Fraction(0), Fraction(0)
    for bend in [*bends, None]:
        slope = rate + sum(
            (h.rate(now) for h in spending if Fraction(h.remaining_minor) / h.rate(now) > at), Fraction(0)
        )
        reach = at + (funds - spent) / slope if slope > 0 else None
        if reach is not None and (bend is None or reach <= bend):
            return reach
        if bend is None:
            return None
        at, spent = bend, spent_by(bend, rate, spending, now)
    return None  # unreachable: the last bend is None


def runway_tenths(days: Fraction | None) -> int | None:
    """Tenths of a day, rounded down (None stays None)."""
    return None if days is None else math.floor(days * 10)


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


def restore_top_up(funds: int, rate: Fraction, holds: Sequence[OpenHold], now: datetime) -> int:
    """The top-up that brings the runway to RESTORE_DAYS: ceil(spent_by(RESTORE_DAYS) - funds), never < 0;
    one minor unit more when nothing is spent after the holds end (no background rate) and that sum would
    be used up exactly as the last hold ends, before RESTORE_DAYS: a unit left over is never used up."""
    top_up = max(0, math.ceil(spent_by(Fraction(RESTORE_DAYS), rate, holds, now) - funds))
    days = runway_days(funds + top_up, rate, holds, now)
    return top_up + 1 if days is not None and days < RESTORE_DAYS else top_up


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
    spend_rate: Fraction  # R, per day: the last complete days' bills and fees that drew on no hold
    holds_rate: Fraction  # per day, what the open holds spend now (each until its remainder is spent)
    tenths: int | None  # None: the money is never used up
    stage: int | None
    next_stage: int | None
    restore_minor: int  # the top-up that brings it back to RESTORE_DAYS (0: it is there)

    @property
    def rate(self) -> Fraction:
        return self.spend_rate + self.holds_rate

    @property
    def daily_rate_minor(self) -> int:
        """The rate now, rounded up to the minor unit."""
        return math.ceil(self.rate)


@dataclass(frozen=True)
class Spending:
    """What the runway reads of the wallet's spend: per day, every bill's spend and fee (`spend_days`)
    and what of it bills took from holds (`drawn_days`)."""

    spend_days: Mapping[str, int]
    drawn_days: Mapping[str, int]


def assess(
    account: WalletAccount,
    *,
    spending: Spending,
    holds: Sequence[OpenHold],
    unbilled: int,
    now: datetime,
    stages: Sequence[int],
) -> Runway:
    """The runway of the wallet now (see the module docstring)."""
    funds = funds_minor(balance=account.balance, unbilled=unbilled, pending=account.pending)
    rate = background_rate(spending.spend_days, spending.drawn_days, now.date())
    tenths = runway_tenths(runway_days(funds, rate, holds, now))
    stage = stage_of(tenths, stages)
    restore = restore_top_up(funds, rate, holds, now)
    return Runway(funds, rate, holds_rate(holds, now), tenths, stage, next_stage(stage, stages), restore)


def unbilled_may_move(runway: Runway, stages: Sequence[int]) -> bool:
    """Whether spend not billed yet could move the stage of `runway` (assessed without it): it only lowers
    the funds, which never lengthens a runway, so not when nothing is spent (no background rate, no hold
    spending: there is no runway to shorten) nor when the runway is at the deepest stage already."""
    nothing_spent = runway.spend_rate <= 0 and runway.holds_rate == 0
    return not nothing_spent and runway.stage != min(stages)

"""Wallet math, pure. Amounts are integer minor units of the wallet's currency.

`balance` is posted money (it may go below zero: a platform bill is always recorded, the money is
already spent). `held` is what active holds reserve, `pending` what ACH / wire top-ups will bring.
`available = balance - held - floor` is what a new hold may take.

Low-balance states follow the balance: below `low_threshold` the wallet is `low` (warn); below the
`floor` it is `paused` (agency ads are paused, no new holds). A top-up that brings the balance back to
`low_threshold` or more resumes it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from enum import StrEnum

from shared.errors import InvalidRequestError
from shared.money import bps_of


class WalletStatus(StrEnum):
    ACTIVE = "active"
    LOW = "low"
    PAUSED = "paused"


class EntryKind(StrEnum):
    TOPUP = "topup"
    AD_SPEND = "ad_spend"
    PLATFORM_FEE = "platform_fee"
    REFUND = "refund"  # back to the card (support)
    REVERSAL = "reversal"  # a top-up taken back (dispute, late payment failure)
    ADJUSTMENT = "adjustment"  # support's corrections, credit notes re-credited to the wallet
    SPEND_CORRECTION = "spend_correction"  # a bill reversed, a platform credit (money back to the wallet)
    FEE_CORRECTION = "fee_correction"  # the platform fee of a reversed or credited spend, given back


# The wallet statement's figure each kind of entry counts in (shared/invoices/models.py WalletStatement).
STATEMENT_FIELD = {
    EntryKind.TOPUP: "topups",
    EntryKind.AD_SPEND: "spend",
    EntryKind.SPEND_CORRECTION: "spend",
    EntryKind.PLATFORM_FEE: "fees",
    EntryKind.FEE_CORRECTION: "fees",
    EntryKind.REFUND: "refunds",
    EntryKind.REVERSAL: "reversals",
    EntryKind.ADJUSTMENT: "adjustments",
}


class Signal(StrEnum):
    """What a change means for people and the optimizer (published after the commit)."""

    LOW_BALANCE = "Wallet.LowBalance"
    PAUSED = "Wallet.AgencySpendPaused"
    RESUMED = "Wallet.AgencySpendResumed"


@dataclass(frozen=True)
class Movement:
    kind: EntryKind
    amount: int  # signed change to the balance
    balance_after: int


@dataclass(frozen=True)
class WalletAccount:
    currency: str
    balance: int = 0
    held: int = 0
    pending: int = 0
    floor: int = 0
    low_threshold: int = 0
    status: WalletStatus = WalletStatus.ACTIVE

    @property
    def available(self) -> int:
        return available(self.balance, self.held, self.floor)

    @property
    def deficit(self) -> int:
        return deficit(self.balance)

    def _status_for(self, balance: int) -> WalletStatus:
        if balance < self.floor:
            return WalletStatus.PAUSED
        if self.status is WalletStatus.PAUSED and balance < self.low_threshold:
            return WalletStatus.PAUSED  # stays paused until the balance is restored
        return WalletStatus.LOW if balance < self.low_threshold else WalletStatus.ACTIVE

    def move(self, *changes: tuple[EntryKind, int]) -> tuple[WalletAccount, list[Movement], list[Signal]]:
        """Posts balance changes in order; returns the entries and the state signals they cause."""
        balance = self.balance
        movements = []
        for kind, amount in changes:
            balance += amount
            movements.append(Movement(kind, amount, balance))
        after = replace(self, balance=balance, status=self._status_for(balance))
        return after, movements, after.status_signals(self)

    def status_signals(self, before: WalletAccount) -> list[Signal]:
        """What moving from `before` to this state means for people and the optimizer."""
        if self.status is before.status:
            return []
        if self.status is WalletStatus.PAUSED:
            return [Signal.PAUSED]
        if before.status is WalletStatus.PAUSED:
            return [Signal.RESUMED]
        return [Signal.LOW_BALANCE] if self.status is WalletStatus.LOW else []

    def bill(self, amount: int, fee_bps: int) -> tuple[WalletAccount, list[Movement], list[Signal]]:
        """A platform bill: the exact spend, then the platform fee (half-even, per entry)."""
        changes = [(EntryKind.AD_SPEND, -amount)]
        fee = platform_fee(amount, fee_bps)
        if fee:
            changes.append((EntryKind.PLATFORM_FEE, -fee))
        return self.move(*changes)

    def correct(self, spend: int, fee: int) -> tuple[WalletAccount, list[Movement], list[Signal]]:
        """A bill reversed or a platform credit: the spend and its fee come back (positive amounts)."""
        changes = [(EntryKind.SPEND_CORRECTION, spend)]
        if fee:
            changes.append((EntryKind.FEE_CORRECTION, fee))
        return self.move(*changes)

    def can_hold(self, amount: int) -> bool:
        return self.status is not WalletStatus.PAUSED and self.available >= amount


# ---------------------------------------------------------------------- the rules of wallet money
def available(balance: int, held: int, floor: int) -> int:
    """What a new hold may take: posted money less what holds reserve and the floor."""
    return balance - held - floor


def deficit(balance: int) -> int:
    """What the wallet owes: late bills may take the balance below zero; a top-up settles it."""
    return max(0, -balance)


def platform_fee(amount: int, fee_bps: int) -> int:
    """The platform fee of one bill: its basis points of the spend, half-even, per bill."""
    return bps_of(amount, fee_bps)


def bill_fee_bps(*, agency: bool, plan_bps: int | None, kept_bps: int | None) -> int:
    """The fee rate a bill is charged: the plan's in agency mode; after leaving it, the rate the wallet
    kept when it left (late bills of spend made in agency mode), else the plan's."""
    live = plan_bps or 0
    return live if agency or kept_bps is None else kept_bps


def kept_fee_bps(plan_bps: int | None) -> int:
    """The rate a wallet keeps when its org leaves agency mode: its plan's rate at that moment."""
    return plan_bps or 0


HOLD_DEFAULT_LIFETIME = timedelta(hours=24)
HOLD_MAX_LIFETIME = timedelta(days=31)  # a month-long campaign; longer ones hold again


def hold_expiry(now: datetime, wanted: datetime | None) -> datetime:
    """When a hold made `now` expires: the caller's choice (e.g. the campaign's end), at most
    HOLD_MAX_LIFETIME away (a later one is brought in to it); HOLD_DEFAULT_LIFETIME without one.
    InvalidRequestError (`hold_expiry_past`) for an instant not after now."""
    if wanted is None:
        return now + HOLD_DEFAULT_LIFETIME
    if wanted <= now:
        raise InvalidRequestError(
            f"A hold's expires_at ({wanted.isoformat()}) must be after now ({now.isoformat()}).",
            code="hold_expiry_past",
        )
    return min(wanted, now + HOLD_MAX_LIFETIME)


def hold_draw(bill_amount: int, hold_open: int) -> int:
    """What a bill takes from the hold it names: its amount, at most what the hold still holds (the rest
    of the bill is spend all the same); a platform credit takes nothing."""
    return max(0, min(bill_amount, hold_open))


RUNWAY_DAYS = 7  # the runway's rate averages the 7 complete days before today (shared/wallet/runway.py)


def add_spend(days: Mapping[str, int], day: date, amount: int, today: date) -> dict[str, int]:
    """The spend per day the runway needs, with `amount` added on `day`; days that no longer count are
    dropped (so the map on the account never grows past RUNWAY_DAYS + 1 entries and a little: the
    complete days and today, which becomes one tomorrow)."""
    first = (today - timedelta(days=RUNWAY_DAYS)).isoformat()
    kept = {d: v for d, v in days.items() if d >= first}
    if day.isoformat() >= first and amount:
        kept[day.isoformat()] = kept.get(day.isoformat(), 0) + amount
    return kept

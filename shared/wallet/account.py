"""Wallet math, pure. Amounts are integer minor units of the wallet's currency.

`balance` is posted money (it may go below zero: a platform bill is always recorded, the money is
already spent). `held` is what active holds reserve, `pending` what ACH / wire top-ups will bring.
`available = balance - held - floor` is what a new hold may take.

Low-balance states follow the balance: below `low_threshold` the wallet is `low` (warn); below the
`floor` it is `paused` (agency ads are paused, no new holds). A top-up that brings the balance back to
`low_threshold` or more resumes it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

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
    ADJUSTMENT = "adjustment"


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
        return self.balance - self.held - self.floor

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
        status = self._status_for(balance)
        after = replace(self, balance=balance, status=status)
        signals: list[Signal] = []
        if status is not self.status:
            if status is WalletStatus.PAUSED:
                signals.append(Signal.PAUSED)
            elif self.status is WalletStatus.PAUSED:
                signals.append(Signal.RESUMED)
            elif status is WalletStatus.LOW:
                signals.append(Signal.LOW_BALANCE)
        return after, movements, signals

    def bill(self, amount: int, fee_bps: int) -> tuple[WalletAccount, list[Movement], list[Signal]]:
        """A platform bill: the exact spend, then the platform fee (half-even, per entry)."""
        changes = [(EntryKind.AD_SPEND, -amount)]
        fee = bps_of(amount, fee_bps)
        if fee:
            changes.append((EntryKind.PLATFORM_FEE, -fee))
        return self.move(*changes)

    def can_hold(self, amount: int) -> bool:
        return self.status is not WalletStatus.PAUSED and self.available >= amount


def platform_fee(amount: int, fee_bps: int) -> int:
    return bps_of(amount, fee_bps)

"""Credit math, pure: the org's credit account and every operation on it.

`available = included remaining + purchased (packs) - reserved`. Included credits are used first,
then packs, then overage where the plan allows it. Every operation returns the new account and the
ledger entries it makes; each entry's `delta` is its change to `available` and `balance_after` is
`available` after it, so `sum(delta) == available` over a period (the period's grant opens it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum

from shared.errors import ConflictError


class InsufficientCreditsError(ConflictError):
    code = "insufficient_credits"


class CreditCapReachedError(ConflictError):
    code = "credit_cap_reached"


class EntryKind(StrEnum):
    GRANT = "grant"  # included credits of a period; support grants
    RESERVATION = "reservation"
    RELEASE = "release"  # failed or expired generation
    USAGE = "usage"  # settled: actual credits used (its reservation released in the same entry)
    ADJUSTMENT = "adjustment"  # support claw-back or correction
    PURCHASE = "purchase"  # a credit pack
    REFUND = "refund"  # a refunded credit pack


@dataclass(frozen=True)
class Entry:
    kind: EntryKind
    delta: int
    balance_after: int
    credits: int  # the quantity the entry is about (reserved, used, granted ...), always >= 0
    fields: Mapping[str, object] = field(default_factory=dict, compare=False, hash=False)  # on its line (ref ...)


@dataclass(frozen=True)
class Split:
    """Where settled credits came from."""

    included: int
    packs: int
    overage: int


@dataclass(frozen=True)
class CreditAccount:
    period_key: str
    included: int  # the period's included credits plus support grants
    included_used: int
    packs: int  # purchased credits left; they never expire
    reserved: int
    overage: int  # credits used this period beyond included and packs
    overage_allowed: bool
    cap: int | None  # monthly hard stop on credits used + reserved, or None
    packs_used: int = 0  # pack credits used this period (the pack balance itself carries over)
    # While paid features are paused (an unpaid subscription): the included credits usable this period,
    # the Free plan's; None while the subscription pays. Packs stay usable: they were paid for.
    included_ceiling: int | None = None
    plan_included: int = 0  # the plan's part of `included` (the rest: support grants, never capped)

    @property
    def included_remaining(self) -> int:
        return max(0, self._included_usable - self.included_used)

    @property
    def _included_usable(self) -> int:
        """The period's included credits that may be used: the plan's part capped while paused."""
        if self.included_ceiling is None:
            return self.included
        return self.included - self.plan_included + min(self.plan_included, self.included_ceiling)

    @property
    def available(self) -> int:
        return self.included_remaining + self.packs - self.reserved

    @property
    def used(self) -> int:
        """Credits settled this period, from every source."""
        return self.included_used + self.packs_used + self.overage

    def open_period(self, period_key: str, included: int) -> tuple[CreditAccount, list[Entry]]:
        """A new Stripe period: included credits reset (unused ones do not carry over); reservations
        and packs carry on. Returns the grant entry (delta = change of available)."""
        before = self.available
        opened = replace(
            self,
            period_key=period_key,
            included=included,
            plan_included=included,
            included_used=0,
            overage=0,
            packs_used=0,
        )
        return opened, [Entry(EntryKind.GRANT, opened.available - before, opened.available, included)]

    def limit_included(self, ceiling: int | None) -> tuple[CreditAccount, list[Entry]]:
        """Paid features paused (`ceiling`: the included credits the Free limits allow) or restored (None).
        What this changes of `available` is an entry, like any other change."""
        after = replace(self, included_ceiling=ceiling)
        delta = after.available - self.available
        if ceiling == self.included_ceiling or delta == 0:
            return after, []
        return after, [Entry(EntryKind.ADJUSTMENT, delta, after.available, abs(delta))]

    def reserve(self, credits: int) -> tuple[CreditAccount, list[Entry]]:
        """Holds credits for a generation. InsufficientCreditsError past what is available and the
        plan allows no overage; CreditCapReachedError past the org's monthly cap."""
        if credits <= 0:
            raise ValueError("credits must be positive")
        if self.cap is not None and self.used + self.reserved + credits > self.cap:
            raise CreditCapReachedError(
                f"This would pass the org's monthly cap of {self.cap} credits "
                f"({self.used} used, {self.reserved} reserved).",
                details={"cap": self.cap, "used": self.used, "reserved": self.reserved, "requested": credits},
            )
        if not self.overage_allowed and credits > self.available:
            raise InsufficientCreditsError(
                f"{credits} credits are needed and {max(self.available, 0)} are available; the plan has no "
                "overage. Buy a credit pack or upgrade.",
                details={"available": max(self.available, 0), "requested": credits},
            )
        after = replace(self, reserved=self.reserved + credits)
        return after, [Entry(EntryKind.RESERVATION, -credits, after.available, credits)]

    def release(self, reserved: int, kind: EntryKind = EntryKind.RELEASE) -> tuple[CreditAccount, list[Entry]]:
        after = replace(self, reserved=self.reserved - reserved)
        return after, [Entry(kind, reserved, after.available, reserved)]

    def settle(self, reserved: int, actual: int) -> tuple[CreditAccount, list[Entry], Split]:
        """Ends a reservation with the credits actually used: included first, then packs, then overage.
        Settling more than reserved is allowed (the work is done; the engine's quantity wins)."""
        if actual < 0:
            raise ValueError("actual must be >= 0")
        freed = replace(self, reserved=self.reserved - reserved)
        # What was reserved was within the limits then: it may use the period's included credits even if
        # paid features were paused since (included_ceiling); only more than reserved meets the ceiling.
        uncapped = max(0, freed.included - freed.included_used)
        from_included = min(actual, max(freed.included_remaining, min(reserved, uncapped)))
        from_packs = min(actual - from_included, freed.packs)
        overage = actual - from_included - from_packs
        after = replace(
            freed,
            included_used=freed.included_used + from_included,
            packs=freed.packs - from_packs,
            overage=freed.overage + overage,
            packs_used=freed.packs_used + from_packs,
        )
        entry = Entry(EntryKind.USAGE, after.available - self.available, after.available, actual)
        return after, [entry], Split(from_included, from_packs, overage)

    def grant(self, credits: int) -> tuple[CreditAccount, list[Entry]]:
        """Support grant: adds to this period's included credits."""
        after = replace(self, included=self.included + credits)
        return after, [Entry(EntryKind.GRANT, after.available - self.available, after.available, credits)]

    def claw_back(self, credits: int) -> tuple[CreditAccount, list[Entry]]:
        """Support claw-back: removes up to `credits` of this period's remaining included credits, never
        the part that backs open reservations."""
        taken = max(0, min(credits, self.included_remaining, self.available))
        after = replace(self, included=self.included - taken)
        return after, [Entry(EntryKind.ADJUSTMENT, after.available - self.available, after.available, taken)]

    def add_packs(self, credits: int, kind: EntryKind = EntryKind.PURCHASE) -> tuple[CreditAccount, list[Entry]]:
        after = replace(self, packs=self.packs + credits)
        return after, [Entry(kind, credits, after.available, credits)]

"""The wallet's domain values: what the service and the repository exchange (never raw items)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from shared.budgets.models import BudgetTouch
from shared.ledger import Cause, Head
from shared.orgs.models import BillingMode
from shared.outbox import Message
from shared.wallet.account import Movement, WalletAccount


@dataclass(frozen=True)
class AutoTopUp:
    """Auto-top-up settings and the state of the org's one in-flight auto-top-up (on the account)."""

    enabled: bool = False
    threshold_minor: int = 0
    amount_minor: int = 0
    daily_cap_minor: int = 0
    failures: int = 0
    in_flight: str = ""  # the claimed top-up's id while one is being charged
    day: str = ""  # the day `day_total` counts (the daily cap)
    day_total: int = 0


@dataclass(frozen=True)
class StoredWallet:
    account: WalletAccount
    head: Head
    auto: AutoTopUp = field(default_factory=AutoTopUp)
    mode: BillingMode | None = None  # the wallet's copy of the org's mode (None: not written yet)
    kept_fee_bps: int | None = None  # the fee rate kept when the org left agency mode
    spend_days: Mapping[str, int] = field(default_factory=dict)  # spend per day (the runway)
    drawn_days: Mapping[str, int] = field(default_factory=dict)  # of it, what bills took from holds
    stored_available: int | None = None  # the copy holds update arithmetically (= the rule, always)

    @property
    def version(self) -> int:
        return self.head.version

    def changed_by(self, change: WalletChange, mode: BillingMode) -> StoredWallet:
        """The wallet as `change`, committed on this read, left it (`mode`: the org's, which the wallet's
        first write copies). `held` is as this read saw it plus the change's own draws: holds placed or
        ended meanwhile move it without a version, so only a read sees them."""
        delta = change.after.available - self.account.available
        return replace(
            self,
            account=change.after,
            head=Head(self.head.version + 1, self.head.seq + len(change.movements)),
            auto=change.auto or self.auto,
            mode=self.mode or mode,
            spend_days=self.spend_days if change.spend_days is None else change.spend_days,
            drawn_days=self.drawn_days if change.drawn_days is None else change.drawn_days,
            stored_available=None if self.stored_available is None else self.stored_available + delta,
        )


@dataclass(frozen=True)
class Hold:
    """Spend the optimizer authorized for a campaign: drawn down by each bill that names it, open
    (`pending`) until released (`voided`), drawn to 0 (`exhausted`) or past `expires_at` (`expired`).
    Holds made before draw-downs were `posted` by their one bill."""

    hold_id: str
    project_id: str
    platform: str
    amount_minor: int  # authorized when made
    status: str  # pending -> exhausted | voided | expired (legacy: posted)
    created_at: str
    expires_at: str
    remaining_minor: int | None = None  # still held (None: a hold made before draw-downs, nothing drawn)
    drawn_minor: int = 0  # taken by bills so far
    # where its project's budget counts what it holds: "open" (shared/budgets/models.OPEN: held now, whatever
    # the period); a period key for a hold made before that (counted in the period it was made in); None:
    # made before budgets
    budget_period: str | None = None

    @property
    def open_minor(self) -> int:
        """What the hold still reserves: its remainder while pending, else nothing."""
        if self.status != "pending":
            return 0
        return self.amount_minor if self.remaining_minor is None else self.remaining_minor


@dataclass(frozen=True)
class TopUp:
    topup_id: str
    method: str  # card | ach | wire | auto_card
    amount_minor: int
    currency: str = ""
    status: str = "creating"  # creating | awaiting_checkout | processing | pending | succeeded | failed | canceled
    created_at: str = ""
    actor: str = ""
    idempotency_key: str = ""
    payment_intent_id: str | None = None
    checkout_url: str | None = None
    checkout_session_id: str | None = None
    instructions: Mapping[str, Any] | None = None
    charge_id: str | None = None
    refunded_minor: int = 0
    credited_at: str | None = None
    payment_method: str | None = None  # the card an auto-top-up claim charges
    attempts: int | None = None
    disputed_minor: int = 0  # taken back by a dispute: never refunded as well

    @property
    def refundable_minor(self) -> int:
        """What may still go back to this payment's card: neither refunded nor disputed."""
        return max(0, self.amount_minor - self.refunded_minor - self.disputed_minor)


@dataclass(frozen=True)
class Allocation:
    """The part of a refund that goes back to one card payment."""

    topup_id: str
    charge_id: str
    amount_minor: int


@dataclass(frozen=True)
class RefundResult:
    amount_minor: int
    allocations: Sequence[Allocation]


@dataclass(frozen=True)
class BillResult:
    bill_id: str
    platform: str
    amount_minor: int
    fee_minor: int
    replayed: bool


# ---------------------------------------------------------------------- records a change writes
@dataclass(frozen=True)
class HoldDrawn:
    """A bill's draw on the pending hold it names: `taken` leaves the hold (and `held`); the hold must
    still hold `before` (a draw or release since is a conflict); at 0 it is exhausted."""

    hold_id: str
    bill: str
    taken: int
    before: int


@dataclass(frozen=True)
class TopUpPut:
    """A new top-up record (an auto-top-up claim is listed on GSI2 until it has a payment intent)."""

    topup: TopUp
    listed: bool = False


@dataclass(frozen=True)
class TopUpSet:
    topup_id: str
    values: Mapping[str, object]


@dataclass(frozen=True)
class ChargeLink:
    charge_id: str
    topup_id: str


@dataclass(frozen=True)
class PeriodSpend:
    """Adds a bill (or, `correction`, a reversal or platform credit: negative amounts) to the aggregate
    per platform and project of the period its change is attributed to (what the invoice reads)."""

    platform: str
    project_id: str
    spend: int
    fee: int
    correction: bool = False


@dataclass(frozen=True)
class PeriodMovements:
    """A period's wallet movements by statement figure (signed) and the balance at its close."""

    moved: Mapping[str, int]
    closing: int


@dataclass(frozen=True)
class Attribution:
    """The period whose invoice covers a change: the period of its date, or - when that period's invoice
    was made already - the current one, the change carried there as late for its own (`late_for`)."""

    period_key: str
    late_for: str | None = None


Record = HoldDrawn | TopUpPut | TopUpSet | ChargeLink | PeriodSpend


@dataclass(frozen=True)
class WalletChange:
    """What one versioned change does: the account after it, the ledger lines, the cause that makes it
    happen once, the records written with it and the messages it sends."""

    after: WalletAccount
    movements: Sequence[Movement] = ()
    entry: Mapping[str, object] = field(default_factory=dict)  # ref, actor, idempotency_key, project ...
    line_refs: Sequence[str] = ()  # a ref per line (refunds: the charge each goes back to)
    auto: AutoTopUp | None = None  # the new auto-top-up state, when it changes
    spend_days: Mapping[str, int] | None = None
    drawn_days: Mapping[str, int] | None = None  # what bills took from holds, per day (the runway)
    cause: Cause | None = None
    records: Sequence[Record] = ()
    messages: Sequence[Message] = ()
    dated: datetime | None = None  # when it happened, for the invoice (a bill's date); None: now
    budgets: Sequence[BudgetTouch] = ()  # what it does to project budgets (shared/budgets), in its transaction

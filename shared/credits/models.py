"""The credit side's domain values: what the service and the repository exchange (never raw items)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from shared.budgets.models import BudgetTouch
from shared.credits.account import CreditAccount, Entry
from shared.ledger import Cause, Head
from shared.outbox import Message


@dataclass(frozen=True)
class StoredAccount:
    account: CreditAccount
    head: Head = field(default_factory=Head)

    @property
    def version(self) -> int:
        return self.head.version


@dataclass(frozen=True)
class Reservation:
    workflow_run_id: str
    status: str  # reserved -> settled | released | expired
    project_id: str
    template_id: str
    generation_type: str
    quantity: int
    credits: int  # reserved
    created_at: str
    hold_expires_at: str
    period_key: str  # the period it was made in (its hold is counted there)
    settled_credits: int | None = None
    split: Mapping[str, int] | None = None  # included / packs / overage of the settled credits
    settled_at: str | None = None
    usage_period_key: str | None = None
    usage_at: str | None = None  # when the run finished (its workflow_runs event's occurred_at)
    ended_at: str | None = None
    available_after: int | None = None  # what its last change left available (a replay answers it)
    budgeted: bool = False  # counted in its project's budget (reservations made before budgets are not)
    reserved_open: bool = False  # what it reserves is in its project's open counter (before: its period's)


# ---------------------------------------------------------------------- records a change writes
@dataclass(frozen=True)
class ReservationPut:
    reservation: Reservation


@dataclass(frozen=True)
class ReservationEnd:
    """Ends a reservation still `reserved` (the condition that makes a settle or release happen once)."""

    run_id: str
    status: str
    values: Mapping[str, object]


@dataclass(frozen=True)
class Counters:
    """ADD to the counters of a period (or project-period) item, creating it if needed."""

    sk: str
    adds: Mapping[str, int]
    sets: Mapping[str, object] = field(default_factory=dict)


Record = ReservationPut | ReservationEnd | Counters


@dataclass(frozen=True)
class CreditChange:
    after: CreditAccount
    entries: Sequence[Entry] = ()
    entry: Mapping[str, object] = field(default_factory=dict)  # ref, actor, idempotency_key, project_id
    cause: Cause | None = None
    records: Sequence[Record] = ()
    messages: Sequence[Message] = ()
    budgets: Sequence[BudgetTouch] = ()  # what it does to project budgets (shared/budgets), in its transaction

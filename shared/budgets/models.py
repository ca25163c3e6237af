"""What a wallet or credit change does to a project's budget: the typed value their repositories turn into
items of the change's own transaction (shared/budgets/repository.py)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

OPEN = "open"  # the `period_key` of a touch of what open holds and reservations hold (one counter per project)


@dataclass(frozen=True)
class BudgetGuard:
    """A new hold or reservation: the budget it was checked against must still be the stored one (`rev`,
    0: none), and every limited budget must have room (`caps`: budget name -> the most it may have
    committed, i.e. limit - amount). What the current period (`period_key`) had committed when read
    (`committed`, by budget name) must be unchanged, and the open holds' or reservations' counter at most
    cap - committed: together, committed this period + held now + amount <= limit."""

    rev: int
    caps: Mapping[str, int] = field(default_factory=dict)
    period_key: str = ""
    committed: Mapping[str, int] = field(default_factory=dict)

    def held_caps(self) -> dict[str, int]:
        """The most the open counter may hold, per budget (a period whose platform credits exceed its bills
        counts as 0 committed: credits give back room down to nothing spent, never beyond the limit)."""
        return {name: cap - max(0, self.committed.get(name, 0)) for name, cap in self.caps.items()}


@dataclass(frozen=True)
class BudgetTouch:
    """Signed additions to a project's counters of one period (`platform` for ad spend); `period_key` OPEN:
    to what its open holds (`held`) and reservations (`credits_reserved`) hold, whatever their period."""

    project_id: str
    period_key: str
    platform: str = ""
    spent: int = 0
    held: int = 0
    credits_used: int = 0
    credits_reserved: int = 0
    guard: BudgetGuard | None = None

    @property
    def place(self) -> tuple[str, str]:
        return self.project_id, self.period_key


def merged(touches: Iterable[BudgetTouch]) -> list[BudgetTouch]:
    """One touch per project and period (a transaction may write an item once): a bill that draws on a
    hold of its own period adds its spend and takes the hold's part in one update."""
    out: dict[tuple[str, str], BudgetTouch] = {}
    for touch in touches:
        was = out.get(touch.place)
        if was is None:
            out[touch.place] = touch
            continue
        if was.platform and touch.platform and was.platform != touch.platform:
            raise ValueError("one budget touch per project, period and platform")
        out[touch.place] = BudgetTouch(
            touch.project_id,
            touch.period_key,
            was.platform or touch.platform,
            was.spent + touch.spent,
            was.held + touch.held,
            was.credits_used + touch.credits_used,
            was.credits_reserved + touch.credits_reserved,
            was.guard or touch.guard,
        )
    return list(out.values())

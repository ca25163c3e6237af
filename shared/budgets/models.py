"""What a wallet or credit change does to a project's budget: the typed value their repositories turn into
items of the change's own transaction (shared/budgets/repository.py)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class BudgetGuard:
    """A new hold or reservation: the budget it was checked against must still be the stored one (`rev`,
    0: none), and every limited budget must have room (`caps`: budget name -> the most it may have
    committed, i.e. limit - amount)."""

    rev: int
    caps: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class BudgetTouch:
    """Signed additions to a project's counters of one period (`platform` for ad spend)."""

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

"""Project budgets, pure: what a project may still commit in a period, and when it crosses a line.

A project has up to three kinds of monthly budget (`ProjectBudget`): ad spend in minor units of the
wallet's currency (the platforms' amounts, without the platform fee), ad spend on one platform, and
generation credits. Each counts, per billing period (shared/credits/periods.py: a new period starts at 0
with no job), what is committed against it (`BudgetUsage`): ad spend = spent (bills) + held (what open
wallet holds still reserve); credits = used (settled) + reserved (open reservations).

A new hold or reservation must fit: `committed + amount <= limit` (checked in the write that makes it,
as `committed <= limit - amount`: DynamoDB conditions do no arithmetic). Bills and settles are always
recorded (the money and the credits are spent) and count against the budget; crossing 80 % and 100 % of
a budget's limit with spend (bills) or use (settles), or by limits set at or below what was already used,
is announced once per crossing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

AD_SPEND = "ad_spend"
CREDITS = "credits"
WARN_AT_PCT = (80, 100)
BUDGET_WARNING = "Project.BudgetWarning"
BUDGET_REACHED = "Project.BudgetReached"


def platform_budget(platform: str) -> str:
    """The name of a project's budget for one platform (`ad_spend:meta`)."""
    return f"{AD_SPEND}:{platform}"


@dataclass(frozen=True)
class ProjectBudget:
    """A project's monthly limits (None: no limit). `rev` 0: never set."""

    project_id: str
    ad_spend_minor: int | None = None
    platforms_minor: Mapping[str, int] = field(default_factory=dict)
    credits: int | None = None
    rev: int = 0
    updated_at: str = ""
    updated_by: str = ""

    def limits(self) -> dict[str, int]:
        """Every limited budget by name."""
        found = {platform_budget(p): v for p, v in sorted(self.platforms_minor.items())}
        if self.ad_spend_minor is not None:
            found = {AD_SPEND: self.ad_spend_minor, **found}
        if self.credits is not None:
            found[CREDITS] = self.credits
        return found


@dataclass(frozen=True)
class BudgetUsage:
    """What a project committed in one period (all zeros: nothing yet)."""

    period_key: str
    spent: int = 0
    held: int = 0
    platform_spent: Mapping[str, int] = field(default_factory=dict)
    platform_held: Mapping[str, int] = field(default_factory=dict)
    credits_used: int = 0
    credits_reserved: int = 0

    def committed(self, budget: str) -> int:
        """What counts against the named budget: spent + held, or credits used + reserved (spent: at least
        0, a period's platform credits beyond its bills make no room beyond the limit)."""
        if budget == CREDITS:
            return self.credits_used + self.credits_reserved
        if budget == AD_SPEND:
            return max(0, self.spent) + self.held
        platform = budget.removeprefix(f"{AD_SPEND}:")
        return max(0, self.platform_spent.get(platform, 0)) + self.platform_held.get(platform, 0)

    def used(self, budget: str) -> int:
        """What was spent (bills) or used (settles) of the named budget: what its lines are crossed by."""
        if budget == CREDITS:
            return self.credits_used
        if budget == AD_SPEND:
            return self.spent
        return self.platform_spent.get(budget.removeprefix(f"{AD_SPEND}:"), 0)


def left(limit: int, committed: int) -> int:
    """What a budget still lets new holds or reservations take (never below 0)."""
    return max(0, limit - committed)


def caps(budget: ProjectBudget, names: tuple[str, ...], amount: int) -> dict[str, int]:
    """For each limited budget among `names`: the most it may have committed for `amount` to fit
    (`limit - amount`; below 0: it cannot fit whatever is committed)."""
    limits = budget.limits()
    return {name: limits[name] - amount for name in names if name in limits}


def spend_budgets(platform: str) -> tuple[str, ...]:
    """The budgets a wallet hold or bill on `platform` counts against."""
    return AD_SPEND, platform_budget(platform)


@dataclass(frozen=True)
class Crossing:
    budget: str
    threshold_pct: int
    limit: int
    used: int  # after the change that crossed


def crossings(budget: ProjectBudget, names: tuple[str, ...], before: BudgetUsage, added: int) -> list[Crossing]:
    """The lines (80 %, 100 % of each limited budget among `names`) that adding `added` to what was used
    crosses: `used before < line <= used after`. A limit of 0 is reached by any use."""
    found: list[Crossing] = []
    if added <= 0:
        return found
    for name, limit in budget.limits().items():
        if name not in names:
            continue
        was = before.used(name)
        for pct in WARN_AT_PCT:
            if was < line_of(limit, pct) <= was + added:
                found.append(Crossing(name, pct, limit, was + added))
    return found


def line_of(limit: int, pct: int) -> int:
    """The use that crosses `pct` % of a limit: rounded up (80 % of 5 is crossed at 4, not at 3), at least 1
    (a limit of 0 is crossed by the first use, not by nothing)."""
    return max(-(-limit * pct // 100), 1)


def limits_crossed(before: ProjectBudget, after: ProjectBudget, usage: BudgetUsage) -> list[Crossing]:
    """The lines that new limits put at or below what was already used in the period (a budget set or
    lowered mid-period below its use): crossed by the change itself, as a bill would cross them. Lines the
    use was already past under the old limits were announced then."""
    found: list[Crossing] = []
    old = before.limits()
    for name, limit in after.limits().items():
        used = usage.used(name)
        for pct in WARN_AT_PCT:
            if line_of(limit, pct) <= used and not (name in old and line_of(old[name], pct) <= used):
                found.append(Crossing(name, pct, limit, used))
    return found


def event_of(crossing: Crossing) -> str:
    return BUDGET_REACHED if crossing.threshold_pct >= 100 else BUDGET_WARNING

"""Project budgets: set and read by people; checked by wallet holds and credit reservations in their own
transactions, counted by bills and settles (shared/wallet/service.py, shared/credits/service.py).

Owner, admin and billing members (and Layers support) set a project's budget; every member reads it.
The limits apply to the current billing period and every later one until changed: a new period counts
from 0 (its counters have another key). A budget lowered below what is already committed refuses new
holds and reservations; bills and settles are still recorded."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from shared.auth import Caller
from shared.budgets.models import BudgetGuard, BudgetTouch
from shared.budgets.repository import BudgetChanged, BudgetRepository
from shared.budgets.rules import (
    BudgetUsage,
    Crossing,
    ProjectBudget,
    caps,
    crossings,
    event_of,
    left,
    limits_crossed,
)
from shared.clock import Clock
from shared.credits.periods import Period, period_containing
from shared.errors import ConcurrentUpdateError, ConflictError, NotFoundError
from shared.orgs.models import MANAGE_BILLING, READ, Org
from shared.orgs.repository import OrgRepository
from shared.orgs.service import OrgService
from shared.outbox import Event, Message
from shared.wallet.platforms import platform_name

MAX_PUT_ATTEMPTS = 10  # a put whose limits changed concurrently reads them again


class ProjectBudgetExceededError(ConflictError):
    code = "project_budget_exceeded"


@dataclass(frozen=True)
class BudgetLimits:
    """What a person sets: None removes that limit."""

    ad_spend_minor: int | None = None
    platforms_minor: Mapping[str, int] = field(default_factory=dict)
    credits: int | None = None


@dataclass(frozen=True)
class BudgetState:
    """A project's budget as of a period: its limits and what is committed against them."""

    project_id: str
    period: Period
    budget: ProjectBudget
    usage: BudgetUsage


@dataclass(frozen=True)
class Checked:
    """A budget read for a new hold or reservation: the guard its write carries."""

    budget: ProjectBudget
    guard: BudgetGuard


class BudgetService:
    def __init__(self, orgs: OrgService, org_repo: OrgRepository, repo: BudgetRepository, clock: Clock):
        self._orgs = orgs
        self._org_repo = org_repo
        self._repo = repo
        self._clock = clock

    # ------------------------------------------------------------------ people
    def get(self, caller: Caller, org_id: str, project_id: str) -> BudgetState:
        """The project's budget this period. 404 for an org the caller is not in, or an unknown project."""
        org = self._orgs.access(caller, org_id, READ, support=True).org
        self._require_project(org_id, project_id)
        return self.state(org, project_id)

    def views(self, caller: Caller, org_id: str, project_ids: list[str]) -> list[BudgetState]:
        """The budgets of these projects this period (a page of projects), in their order."""
        org = self._orgs.access(caller, org_id, READ, support=True).org
        return self.states(org, project_ids)

    def put(self, caller: Caller, org_id: str, project_id: str, limits: BudgetLimits) -> BudgetState:
        """Replaces the project's limits (owner, admin, billing; support). Applies at once: holds and
        reservations made from now on are checked against it. Limits put at or below what the period already
        used cross their lines now: Project.BudgetWarning / Reached, once per stored revision."""
        org = self._orgs.access(caller, org_id, MANAGE_BILLING, support=True).org
        self._require_project(org_id, project_id)
        for platform in limits.platforms_minor:
            platform_name(platform)
        budget = ProjectBudget(project_id, limits.ad_spend_minor, dict(limits.platforms_minor), limits.credits)
        for _ in range(MAX_PUT_ATTEMPTS):
            before, period = self._repo.budget(org_id, project_id), period_containing(org, self._clock.now())
            usage = self._repo.usage(org_id, project_id, period.key)
            found = limits_crossed(before, budget, usage)
            if not found:
                stored = self._repo.put_budget(org_id, budget, self._clock.now(), caller.user_id)
                return BudgetState(project_id, period, stored, usage)  # the put changes no usage: as read
            messages: list[Message] = [_event(org_id, project_id, period.key, c) for c in found]
            try:  # the limits and their announcements in one transaction: a crash between them loses none
                stored = self._repo.put_budget_announced(
                    org_id, budget, self._clock.now(), caller.user_id, before, messages
                )
            except BudgetChanged:
                continue  # put concurrently: read again
            return BudgetState(project_id, period, stored, usage)
        raise ConcurrentUpdateError("The project's budget is changing; retry.")

    def state(self, org: Org, project_id: str) -> BudgetState:
        period = period_containing(org, self._clock.now())
        usage = self._repo.usage(org.org_id, project_id, period.key)
        return BudgetState(project_id, period, self._repo.budget(org.org_id, project_id), usage)

    def states(self, org: Org, project_ids: Iterable[str] | None = None) -> list[BudgetState]:
        """The budgets of the org's projects this period (`project_ids`: those, with a budget or not;
        None: every project that has one), two queries whatever their number."""
        period = period_containing(org, self._clock.now())
        budgets = {b.project_id: b for b in self._repo.budgets(org.org_id)}
        usages = self._repo.usages(org.org_id, period.key)
        wanted = sorted(budgets) if project_ids is None else list(project_ids)
        return [
            BudgetState(p, period, budgets.get(p, ProjectBudget(p)), usages.get(p, BudgetUsage(period.key)))
            for p in wanted
        ]

    def _require_project(self, org_id: str, project_id: str) -> None:
        if self._org_repo.get_project(org_id, project_id) is None:
            raise NotFoundError(f"Project {project_id} was not found.", code="project_not_found")

    # ------------------------------------------------------------------ the wallet's and the credits' checks
    def check(self, org_id: str, project_id: str, period_key: str, names: tuple[str, ...], amount: int) -> Checked:
        """The guard a new hold or reservation of `amount` against the budgets `names` carries: committed this
        period (as read, checked unchanged) + held now + amount <= limit. ProjectBudgetExceededError at once
        if what this period committed leaves no room for the amount itself."""
        budget = self._repo.budget(org_id, project_id)
        room = caps(budget, names, amount)
        committed = self._repo.period_committed(org_id, project_id, period_key) if room else {}
        guard = BudgetGuard(budget.rev, room, period_key, {n: committed.get(n, 0) for n in room})
        if any(cap < 0 for cap in guard.held_caps().values()):
            raise self.refusal(org_id, project_id, period_key, names, amount)
        return Checked(budget, guard)

    def refusal(
        self, org_id: str, project_id: str, period_key: str, names: tuple[str, ...], amount: int
    ) -> ProjectBudgetExceededError:
        """The error for a hold or reservation a budget refused, naming the tightest budget and what it
        has left (read now: the refusal itself read nothing)."""
        budget = self._repo.budget(org_id, project_id)
        usage = self._repo.usage(org_id, project_id, period_key)
        limits = {n: v for n, v in budget.limits().items() if n in names}
        if not limits:  # the limit was removed meanwhile: the caller may simply retry
            limits = {names[0]: 0}
        name = min(limits, key=lambda n: left(limits[n], usage.committed(n)))
        free = left(limits[name], usage.committed(name))
        return ProjectBudgetExceededError(
            f"Project {project_id}'s {name} budget has {free} left of {limits[name]} this period: "
            f"{amount} does not fit.",
            details={
                "project_id": project_id,
                "budget": name,
                "limit": limits[name],
                "committed": usage.committed(name),
                "left": free,
                "requested": amount,
                "period_key": period_key,
            },
        )

    def usage(self, org_id: str, project_id: str, period_key: str) -> BudgetUsage:
        return self._repo.usage(org_id, project_id, period_key)

    def budget(self, org_id: str, project_id: str) -> ProjectBudget:
        return self._repo.budget(org_id, project_id)


def crossing_messages(
    org_id: str, touch: BudgetTouch, budget: ProjectBudget, before: BudgetUsage, names: tuple[str, ...]
) -> list[Message]:
    """Project.BudgetWarning (80 %) and Project.BudgetReached (100 %) for each line a bill's spend or a
    settle's use crosses: sent with the change that crossed it (the outbox), so once per crossing."""
    added = touch.spent if touch.credits_used == 0 else touch.credits_used
    found = crossings(budget, names, before, added)
    return [_event(org_id, touch.project_id, touch.period_key, c) for c in found]


def _event(org_id: str, project_id: str, period_key: str, crossing: Crossing) -> Event:
    detail = {
        "org_id": org_id,
        "project_id": project_id,
        "period_key": period_key,
        "budget": crossing.budget,
        "threshold_pct": crossing.threshold_pct,
        "limit": crossing.limit,
        "used": crossing.used,
    }
    return Event(event_of(crossing), detail)

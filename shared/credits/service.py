"""Credit consumption for the workflow engine, reads for people, adjustments for support.

Each call is one versioned change of the org's credit account through the ledger engine (retried on a
conflict, shared/retry.py) and is idempotent by its cause: reserve / settle / release by
`workflow_run_id` (a replay returns the first result), grants by the support request's
Idempotency-Key, packs by the Stripe session."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial

from shared import keys
from shared.auth import Caller
from shared.budgets.models import OPEN, BudgetGuard, BudgetTouch
from shared.budgets.repository import BudgetChanged, BudgetRefused
from shared.budgets.rules import CREDITS
from shared.budgets.service import BudgetService, BudgetState, crossing_messages
from shared.catalog import PlanCatalog, TemplateCatalog
from shared.clock import Clock, iso
from shared.credits.account import CreditAccount, Entry, EntryKind, Split
from shared.credits.models import Counters, CreditChange, Reservation, ReservationEnd, ReservationPut, StoredAccount
from shared.credits.periods import Period, period_containing
from shared.credits.repository import CreditRepository, reservation_key, reservation_of
from shared.dynamo import Item
from shared.errors import ConcurrentUpdateError, ConflictError, ForbiddenError, InvalidRequestError, NotFoundError
from shared.ledger import AlreadyApplied, Cause, ConditionFailed, EntryLine, LedgerConflict
from shared.orgs.models import MANAGE_BILLING, READ, Org, Project
from shared.orgs.repository import OrgRepository, active_project
from shared.orgs.service import OrgService
from shared.outbox import Event, Message
from shared.pagination import Page
from shared.retry import until_done
from shared.sweep import SweepReport, sweep_batched
from shared.usage.metering import UsageEvent, UsageMeter, earliest_accepted

RESERVATION_TTL = timedelta(hours=2)
MAX_BUDGET_READS = 20  # a reservation reads its project's limits again when they changed meanwhile
MAX_ATTEMPTS = 200
MAX_EXPIRED_TOGETHER = 32  # reservations in one change: 3 items each at most (its end, its project's counters
# and budget), with the account and the entry: 98 of a transaction's 100
SWEEPER = "system:sweeper"
WARN_AT_PCT = (80, 100)


@dataclass(frozen=True)
class ReservationResult:
    workflow_run_id: str
    status: str
    project_id: str
    credits: int  # reserved credits
    settled_credits: int | None
    split: Split | None
    available_after: int | None
    replayed: bool


@dataclass(frozen=True)
class CreditSummary:
    period: Period
    account: CreditAccount
    projects: list[Item]
    budgets: list[BudgetState] = field(default_factory=list)  # the projects' budgets this period


@dataclass(frozen=True)
class Committed:
    before: CreditAccount
    after: CreditAccount


@dataclass(frozen=True)
class Request:
    """A generation's reservation request from the workflow engine."""

    org_id: str
    project_id: str
    template_id: str
    generation_type: str
    quantity: int
    workflow_run_id: str
    actor: str


Build = Callable[[StoredAccount], CreditChange]
Records = list[ReservationPut | ReservationEnd | Counters]  # a change's records (shared/credits/models.py)


def _result(record: Reservation, *, replayed: bool, available: int | None = None) -> ReservationResult:
    split = Split(**record.split) if record.split else None
    return ReservationResult(
        record.workflow_run_id,
        record.status,
        record.project_id,
        record.credits,
        record.settled_credits,
        split,
        record.available_after if available is None else available,
        replayed,
    )


def _same_reservation(made: Reservation, asked: Request) -> Reservation:
    """The reservation made before for this workflow run, if a replay asks for the same one (project,
    template, generation type, quantity; its credits are what they cost then); 409 idempotency_key_reused
    if it asks for another."""
    if (made.project_id, made.template_id, made.generation_type, made.quantity) != (
        asked.project_id,
        asked.template_id,
        asked.generation_type,
        asked.quantity,
    ):
        raise ConflictError(
            f"Workflow run {asked.workflow_run_id} reserved credits for another project, template, generation "
            "type or quantity; use a new workflow_run_id.",
            code="idempotency_key_reused",
        )
    return made


def _meta(project_id: str | None, ref: str, actor: str, key: str) -> dict[str, object]:
    fields: dict[str, object] = {"ref": ref, "actor": actor, "idempotency_key": key}
    return {**fields, "project_id": project_id} if project_id else fields


def _release_of(account: CreditAccount, record: Reservation, status: str, now: str) -> CreditChange:
    """One reservation given back (released or expired) from `account`: its release entry, the reservation
    ended on its condition, its project-period counter and its project budget's reserved credits back."""
    after, entries = account.release(record.credits)
    run = record.workflow_run_id
    project = keys.project_period_sk(record.period_key, record.project_id)
    end = ReservationEnd(run, status, {"ended_at": now, "available_after": after.available})
    records: Records = [end, Counters(project, {"reserved": -record.credits})]
    return CreditChange(after, entries, records=records, budgets=_budget_end(record, used=0))


def _expiries(reservations: list[Reservation], now: str, stored: StoredAccount) -> CreditChange:
    """Expired reservations of one account released in one change, each as `release` does it: a release
    line each (with its run's ref and idempotency key), each reservation ended on its condition, one
    counter update per project-period (and one budget update: the repository merges the touches)."""
    account = stored.account
    entries: list[Entry] = []
    records: Records = []
    budgets: list[BudgetTouch] = []
    for record in reservations:
        run = record.workflow_run_id
        one = _release_of(account, record, "expired", now)
        meta = _meta(record.project_id, f"run:{run}", SWEEPER, f"expired:{run}")
        account, entries = one.after, [*entries, *(replace(line, fields=meta) for line in one.entries)]
        records += one.records
        budgets += one.budgets
    entry = {"ref": "sweeper:expired", "actor": SWEEPER}
    return CreditChange(account, entries, entry=entry, records=_one_per_item(records), budgets=budgets)


def _one_per_item(records: Records) -> Records:
    """The records with one Counters per item (a transaction writes an item once): their adds summed."""
    others: Records = []
    counters: dict[str, Counters] = {}
    for record in records:
        if not isinstance(record, Counters):
            others.append(record)
            continue
        was = counters.get(record.sk)
        if was is not None:
            adds = {k: was.adds.get(k, 0) + record.adds.get(k, 0) for k in {**was.adds, **record.adds}}
            record = replace(was, adds=adds)
        counters[record.sk] = record
    return [*others, *counters.values()]


class CreditService:
    def __init__(
        self,
        orgs: OrgService,
        org_repo: OrgRepository,
        repo: CreditRepository,
        plans: PlanCatalog,
        templates: TemplateCatalog,
        clock: Clock,
        budgets: BudgetService,
        meter: UsageMeter,
    ):
        """Events leave through the outbox, in the transaction of the settle that causes them. A settled
        run is metered (`workflow_runs`) through `meter`, the one metering path."""
        self._budgets = budgets
        self._meter = meter
        self._orgs = orgs
        self._org_repo = org_repo
        self._repo = repo
        self._plans = plans
        self._templates = templates
        self._clock = clock

    # ------------------------------------------------------------------ plumbing
    def _current(self, org: Org, stored: StoredAccount | None, period: Period) -> tuple[StoredAccount, list[Entry]]:
        """The account as of `period`: created or rolled over (included credits reset) if needed, with the
        limits of the org's standing now (an unpaid subscription: the Free plan's included credits, no
        overage; paying restores the plan's)."""
        granted = self._orgs.entitlement_of(org)
        overage = granted.plan.price_book(org.currency).credit_overage_unit_minor is not None
        ceiling = None if granted.paid_features else granted.plan.included_credits
        entries: list[Entry] = []
        if stored is None:
            fresh = CreditAccount("", 0, 0, 0, 0, 0, overage_allowed=overage, cap=None)
            account, entries = fresh.open_period(period.key, granted.subscribed.included_credits)
            stored = StoredAccount(account)
        account = replace(stored.account, overage_allowed=overage)
        if account.period_key < period.key:
            account, opened = account.open_period(period.key, granted.subscribed.included_credits)
            entries += opened
        account, limited = account.limit_included(ceiling)
        return replace(stored, account=account), entries + limited

    def _commit(self, org: Org, period: Period, build: Build) -> Committed | None:
        """Commits what `build` makes of the account as of `period` (opened if need be), retrying on
        conflicts. None when a condition of the change failed: a replay (the cause, the reservation)."""
        now = self._clock.now()

        def attempt() -> Committed | None:
            stored, opening = self._current(org, self._repo.account(org.org_id), period)
            change = build(stored)
            change = replace(change, entries=[*opening, *change.entries])
            try:
                self._repo.commit(org.org_id, stored, change, now)
            except (AlreadyApplied, ConditionFailed):
                return None
            return Committed(stored.account, change.after)

        retry_on = (LedgerConflict, ConcurrentUpdateError)
        return until_done(attempt, retry_on=retry_on, attempts=MAX_ATTEMPTS, busy="The credit account is busy; retry.")

    def _reservation(self, org_id: str, run_id: str) -> Reservation:
        record = self._repo.reservation(org_id, run_id)
        if record is None:
            raise NotFoundError(f"No reservation for workflow run {run_id}.", code="reservation_not_found")
        return record

    @staticmethod
    def _terminal(record: Reservation, wanted: str) -> ReservationResult:
        if record.status == wanted:
            return _result(record, replayed=True)
        raise ConflictError(f"The reservation is already {record.status}.", code=f"already_{record.status}")

    # ------------------------------------------------------------------ consumption (workflow engine)
    def reserve(
        self,
        *,
        org_id: str,
        project_id: str,
        template_id: str,
        generation_type: str,
        quantity: int,
        workflow_run_id: str,
        actor: str,
    ) -> ReservationResult:
        """Holds the template's cost x quantity. Idempotent by workflow_run_id (a replay returns the first
        result). InsufficientCreditsError / CreditCapReachedError (409) when it does not fit."""
        request = Request(org_id, project_id, template_id, generation_type, quantity, workflow_run_id, actor)
        # One round trip (one snapshot): the org, the project and a reservation made before with this run id.
        read = self._org_repo.org_and_project(org_id, project_id, [reservation_key(org_id, workflow_run_id)])
        org, existing = read.org, reservation_of(read.items[0])
        if existing:
            return _result(_same_reservation(existing, request), replayed=True)
        record = replace(self._new_reservation(org, request, read.project), budgeted=True, reserved_open=True)
        committed = self._reserve_within_budget(org, record, request)
        if committed is None:  # a concurrent call with the same run id won
            found = self._repo.reservation(request.org_id, request.workflow_run_id) or record
            return _result(_same_reservation(found, request), replayed=True)
        return _result(record, replayed=False, available=committed.after.available)

    def _new_reservation(self, org: Org, request: Request, project: Project | None) -> Reservation:
        """`project`: the request's, as read with the org (None: none)."""
        template = self._templates.get(request.template_id)
        costs = self._templates.credit_costs(template)
        if request.generation_type not in costs:
            raise InvalidRequestError(
                f"Template {request.template_id} has no generation type '{request.generation_type}' "
                f"(it has: {', '.join(sorted(costs))}).",
                code="unknown_generation_type",
            )
        active_project(request.project_id, project)
        now = self._clock.now()
        return Reservation(
            workflow_run_id=request.workflow_run_id,
            status="reserved",
            project_id=request.project_id,
            template_id=request.template_id,
            generation_type=request.generation_type,
            quantity=request.quantity,
            credits=costs[request.generation_type] * request.quantity,
            created_at=iso(now),
            hold_expires_at=iso(now + RESERVATION_TTL),
            period_key=period_containing(org, now).key,
        )

    def _reserve_within_budget(self, org: Org, record: Reservation, request: Request) -> Committed | None:
        """Commits the reservation with its project's credit budget checked in the same transaction (the
        limits read again if they changed meanwhile). ProjectBudgetExceededError (409) if it does not fit."""
        period, credits = record.period_key, record.credits
        for _ in range(MAX_BUDGET_READS):
            checked = self._budgets.check(org.org_id, record.project_id, period, (CREDITS,), credits)
            touch = BudgetTouch(record.project_id, OPEN, credits_reserved=credits, guard=checked.guard)
            build = self._reserve_change(record, request, touch)
            try:
                return self._commit(org, period_containing(org, self._clock.now()), build)
            except BudgetChanged:
                continue
            except BudgetRefused:
                raise self._budgets.refusal(org.org_id, record.project_id, period, (CREDITS,), credits) from None
        raise ConcurrentUpdateError("The project's budget is changing; retry.")

    @staticmethod
    def _reserve_change(record: Reservation, request: Request, touch: BudgetTouch) -> Build:
        def build(stored: StoredAccount) -> CreditChange:
            after, entries = stored.account.reserve(record.credits)
            project = keys.project_period_sk(record.period_key, record.project_id)
            run = request.workflow_run_id
            return CreditChange(
                after,
                entries,
                entry=_meta(record.project_id, f"run:{run}", request.actor, run),
                records=[
                    ReservationPut(replace(record, available_after=after.available)),
                    Counters(project, {"reserved": record.credits}, {"project_id": record.project_id}),
                ],
                budgets=[touch],
            )

        return build

    def settle(
        self, *, org_id: str, workflow_run_id: str, quantity: int | None, occurred_at: datetime | None, actor: str
    ) -> ReservationResult:
        """Ends the reservation with what the generation actually used (quantity x the reserved unit
        cost; None = as reserved). Counted in the period of `occurred_at` (default now). Idempotent."""
        org = self._org_repo.require_org(org_id)
        record = self._reservation(org_id, workflow_run_id)
        if record.status != "reserved":
            return self._settled_again(org, record)
        unit = record.credits // max(record.quantity, 1)
        actual = record.credits if quantity is None else unit * quantity
        now = self._clock.now()
        usage_period = period_containing(org, occurred_at or now)
        done: dict[str, object] = {"at": occurred_at or now}
        build = self._settle_change(org, record, actual, usage_period, actor, done)
        committed = self._commit_use(org, period_containing(org, now), build)
        if committed is None:
            return self._settled_again(org, self._reservation(org_id, workflow_run_id))
        settled = replace(record, status="settled", **done)  # type: ignore[arg-type]
        self._meter_run(org, settled)
        return _result(settled, replayed=False, available=committed.after.available)

    def _commit_use(self, org: Org, period: Period, build: Build) -> Committed | None:
        """A settle's commit: built again (its budget read again) while the project's limits change under it."""
        for _ in range(MAX_BUDGET_READS):
            try:
                return self._commit(org, period, build)
            except BudgetChanged:
                continue
        raise ConcurrentUpdateError("The project's budget is changing; retry.")

    def _settled_again(self, org: Org, record: Reservation) -> ReservationResult:
        """A replayed settle: the first result, and its run metered (a no-op unless the first call
        stopped between its settle and its metering)."""
        result = self._terminal(record, "settled")
        self._meter_run(org, record)
        return result

    def _meter_run(self, org: Org, record: Reservation) -> None:
        """The settled run, counted once through the metering path (event_id = the workflow run id: an
        engine that also reports the run itself counts it once). Settles from before runs were metered
        by event carry no `usage_at`: their run was counted on the period item then. A run older than
        the metering path accepts is not metered: its marker may be gone (TTL), so a replay would count
        it again, into a period already billed."""
        if record.usage_at is None:
            return
        at = datetime.fromisoformat(record.usage_at.replace("Z", "+00:00"))
        if at < earliest_accepted(org, self._clock.now()):
            return
        event = UsageEvent("workflow_runs", org.org_id, at, 1, record.workflow_run_id, record.project_id)
        self._meter.record_checked([event], {org.org_id: org})

    def _settle_change(
        self, org: Org, record: Reservation, actual: int, usage: Period, actor: str, done: dict[str, object]
    ) -> Build:
        now = self._clock.now()
        usage_at = iso(done.pop("at", now))  # type: ignore[arg-type]

        def build(stored: StoredAccount) -> CreditChange:
            late = usage.key < stored.account.period_key
            if late:
                # A late event for a closed period: release the hold now; the usage lands in that period
                # as late overage (its included credits are gone), billed with the next overage run.
                after, entries = stored.account.release(record.credits, EntryKind.USAGE)
                split, entries = Split(0, 0, actual), [replace(entries[0], credits=actual)]
            else:
                after, entries, split = stored.account.settle(record.credits, actual)
            done.clear()
            done.update(
                settled_credits=actual,
                split={"included": split.included, "packs": split.packs, "overage": split.overage},
                settled_at=iso(now),
                usage_period_key=usage.key,
                usage_at=usage_at,
                available_after=after.available,
            )
            run = record.workflow_run_id
            touches, crossed = self._crossed(org.org_id, _budget_end(record, used=actual))
            return CreditChange(
                after,
                entries,
                entry=_meta(record.project_id, f"run:{run}", actor, f"settle:{run}"),
                records=[
                    ReservationEnd(run, "settled", dict(done)),
                    *_settle_counters(record, actual, split, usage, late=late),
                ],
                messages=[*_warnings(org, stored.account, after), *crossed],
                budgets=touches,
            )

        return build

    def _crossed(self, org_id: str, touches: list[BudgetTouch]) -> tuple[list[BudgetTouch], list[Message]]:
        """The settle's touches, its use on the project's limits as read (a budget put before the commit fails
        it: BudgetChanged, read again - the lines it crosses are those of the limits it is counted under), and
        the credit budget lines that use crosses (settles, the only writers of credits used, are serialized by
        the credit account's version: what is read is what the settle adds to)."""
        touch = next((t for t in touches if t.credits_used > 0), None)
        if touch is None:
            return touches, []
        budget = self._budgets.budget(org_id, touch.project_id)
        guarded = [replace(t, guard=BudgetGuard(rev=budget.rev)) if t is touch else t for t in touches]
        if budget.credits is None:
            return guarded, []
        before = self._budgets.usage(org_id, touch.project_id, touch.period_key)
        return guarded, crossing_messages(org_id, touch, budget, before, (CREDITS,))

    def release(self, *, org_id: str, workflow_run_id: str, actor: str, expired: bool = False) -> ReservationResult:
        """Gives the held credits back (failed generation, or expiry). Idempotent."""
        org = self._org_repo.require_org(org_id)
        record = self._reservation(org_id, workflow_run_id)
        status = "expired" if expired else "released"
        if record.status != "reserved":
            return self._terminal(record, status)
        now = self._clock.now()

        def build(stored: StoredAccount) -> CreditChange:
            released = _release_of(stored.account, record, status, iso(now))
            meta = _meta(record.project_id, f"run:{workflow_run_id}", actor, f"{status}:{workflow_run_id}")
            return replace(released, entry=meta)

        committed = self._commit(org, period_containing(org, now), build)
        if committed is None:
            return self._terminal(self._reservation(org_id, workflow_run_id), status)
        return _result(replace(record, status=status), replayed=False, available=committed.after.available)

    def expire_due(self) -> SweepReport:
        """Releases reservations past their expiry (the scheduled sweeper), every shard, within the Lambda's
        time budget; one that fails never stops the others (shared/sweep.py)."""

        def expire(item: Item) -> bool:
            org_id, record = self._repo.listed_reservation(item)
            try:
                result = self.release(
                    org_id=org_id, workflow_run_id=record.workflow_run_id, actor=SWEEPER, expired=True
                )
            except ConflictError as ended:  # settled or released since it was listed: nothing left to expire
                if not ended.code.startswith("already_"):
                    raise
                return False
            return not result.replayed

        entries = self._repo.expired_reservations(iso(self._clock.now()))
        return sweep_batched("reservations", entries, self._expire_together, expire, most=MAX_EXPIRED_TOGETHER)

    def _expire_together(self, items: list[Item]) -> int | None:
        """The listed reservations of one org, as the index projects them (no read of each): released in one
        change of its account, a line each. None if one of them had ended meanwhile (nothing was written)."""
        listed = [self._repo.listed_reservation(item) for item in items]
        records = [record for _, record in listed if record.status == "reserved"]
        if not records:
            return 0
        org = self._org_repo.require_org(listed[0][0])
        now = self._clock.now()
        committed = self._commit(org, period_containing(org, now), partial(_expiries, records, iso(now)))
        return None if committed is None else len(records)

    # ------------------------------------------------------------------ support and packs
    def adjust(self, caller: Caller, org_id: str, *, credits: int, reason: str, idempotency_key: str) -> int:
        """Support grants (credits > 0) or claws back (< 0) this period's credits; in the ledger."""
        if not caller.is_support:
            self._orgs.access(caller, org_id, READ)  # members get 403, strangers 404
            raise ForbiddenError("Only Layers support can grant or claw back credits.")
        org = self._orgs.access(caller, org_id, frozenset(), support=True).org

        cause = f"adjust#{idempotency_key}"

        def build(stored: StoredAccount) -> CreditChange:
            op = stored.account.grant if credits > 0 else stored.account.claw_back
            after, entries = op(abs(credits))
            meta = _meta(None, f"support:{reason}", caller.user_id, f"adjust:{idempotency_key}")
            recorded = {"credits": credits, "available_after": after.available}
            return CreditChange(after, entries, entry=meta, cause=Cause(cause, recorded))

        committed = self._commit(org, period_containing(org, self._clock.now()), build)
        return committed.after.available if committed else self._replayed_adjustment(org_id, cause, credits)

    def _replayed_adjustment(self, org_id: str, cause: str, credits: int) -> int:
        """A retry gets the first answer; the same key with other credits is refused (409)."""
        first = self._repo.cause(org_id, cause) or {}
        if int(first.get("credits", credits)) != credits:
            raise ConflictError("This Idempotency-Key was used for another adjustment.", code="idempotency_key_reused")
        return int(first["available_after"]) if "available_after" in first else self._available_now(org_id)

    def add_pack(self, org_id: str, *, credits: int, ref: str) -> None:
        """Purchased credits (a paid Stripe Checkout); once per `ref` (the session id)."""
        org = self._org_repo.require_org(org_id)

        def build(stored: StoredAccount) -> CreditChange:
            after, entries = stored.account.add_packs(credits)
            meta = _meta(None, ref, "stripe", f"pack:{ref}")
            return CreditChange(after, entries, entry=meta, cause=Cause(f"pack#{ref}", {"credits": credits}))

        self._commit(org, period_containing(org, self._clock.now()), build)

    # ------------------------------------------------------------------ reads and settings
    def _available_now(self, org_id: str) -> int:
        """What is available now (the answer to a replay of an adjustment made before results were kept)."""
        return self.summary_account(self._org_repo.require_org(org_id)).available

    def summary_account(self, org: Org) -> CreditAccount:
        stored, _ = self._current(org, self._repo.account(org.org_id), period_containing(org, self._clock.now()))
        return stored.account

    def summary(self, caller: Caller, org_id: str) -> CreditSummary:
        org = self._orgs.access(caller, org_id, READ, support=True).org
        period = period_containing(org, self._clock.now())
        account = self.summary_account(org)
        budgets = self._budgets.states(org)
        return CreditSummary(period, account, self._repo.project_periods(org_id, period.key), budgets)

    def entries(self, caller: Caller, org_id: str, cursor: str | None, limit: int) -> Page[EntryLine]:
        self._orgs.access(caller, org_id, READ, support=True)
        return self._repo.lines(org_id, cursor, limit)

    def set_cap(self, caller: Caller, org_id: str, cap: int | None) -> CreditAccount:
        """The org's monthly hard stop on credits (None removes it). Owner/admin/billing."""
        org = self._orgs.access(caller, org_id, MANAGE_BILLING).org
        committed = self._commit(
            org,
            period_containing(org, self._clock.now()),
            lambda stored: CreditChange(replace(stored.account, cap=cap)),
        )
        assert committed is not None  # nothing it writes has a condition but the version
        return committed.after


def _settle_counters(record: Reservation, actual: int, split: Split, usage: Period, *, late: bool) -> list[Counters]:
    """The period's usage counters, the project's in the usage period, and its hold freed in the
    period the reservation was made in (the same item when both periods are one). Late usage (for a
    period already closed) is counted apart: its included credits are gone, it is billed as late overage."""
    counters = {"credits_used": actual}  # (the run itself is metered: CreditService._meter_run)
    if late:
        counters["credits_late"] = actual
    else:
        counters |= {
            "credits_included_used": split.included,
            "credits_packs_used": split.packs,
            "credits_overage": split.overage,
        }
    project_counters = {
        "used": actual,
        "included_used": split.included,
        "packs_used": split.packs,
        "overage": split.overage,
        "generations": 1,
    }
    hold = {"reserved": -record.credits}
    named = {"project_id": record.project_id}
    found = [Counters(keys.period_sk(usage.key), counters, {"period_end": iso(usage.end)})]
    if record.period_key == usage.key:
        return [*found, Counters(keys.project_period_sk(usage.key, record.project_id), project_counters | hold, named)]
    return [
        *found,
        Counters(keys.project_period_sk(usage.key, record.project_id), project_counters, named),
        Counters(keys.project_period_sk(record.period_key, record.project_id), hold),
    ]


def _budget_end(record: Reservation, *, used: int) -> list[BudgetTouch]:
    """A reservation's end in its project's budget: what it reserved is no longer reserved (in the open
    counter; a reservation made before it: in its period's), what was used counts as used in the period it
    was made in. None for a reservation made before budgets."""
    if not record.budgeted:
        return []
    if not record.reserved_open:
        return [BudgetTouch(record.project_id, record.period_key, credits_used=used, credits_reserved=-record.credits)]
    freed = BudgetTouch(record.project_id, OPEN, credits_reserved=-record.credits)
    return [BudgetTouch(record.project_id, record.period_key, credits_used=used), freed] if used else [freed]


def _warnings(org: Org, before: CreditAccount, after: CreditAccount) -> list[Message]:
    """Credits.UsageWarning at 80% and 100% of included credits, Credits.OverageStarted: each sent
    (through the outbox) with the one settle whose transaction crossed it."""
    if after.included <= 0 or before.period_key != after.period_key:
        return []
    messages: list[Message] = []
    for pct in WARN_AT_PCT:
        line = after.included * pct // 100
        if before.included_used < line <= after.included_used:
            detail = {
                "org_id": org.org_id,
                "period_key": after.period_key,
                "threshold_pct": pct,
                "included": after.included,
                "used": after.included_used,
            }
            messages.append(Event("Credits.UsageWarning", detail))
    if before.overage == 0 < after.overage:
        detail = {"org_id": org.org_id, "period_key": after.period_key, "overage": after.overage}
        messages.append(Event("Credits.OverageStarted", detail))
    return messages

"""Credit consumption for the workflow engine, reads for people, adjustments for support.

Each call is one optimistic transaction on the org's credit account (retried on a version conflict)
and is idempotent by its cause: reserve/settle/release by `workflow_run_id` (a replay returns the
first result), grants by the support request's Idempotency-Key, packs by the Stripe session."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from shared.auth import Caller
from shared.catalog import PlanCatalog, TemplateCatalog
from shared.clock import Clock, iso
from shared.credits.account import CreditAccount, Entry, EntryKind, Split
from shared.credits.periods import Period, period_containing
from shared.credits.repository import CreditRepository, RecordConflict, StoredAccount, VersionConflict
from shared.errors import ConcurrentUpdateError, ConflictError, ForbiddenError, InvalidRequestError, NotFoundError
from shared.orgs.models import MANAGE_BILLING, READ, Org, ProjectStatus
from shared.orgs.repository import OrgRepository
from shared.orgs.service import OrgService
from shared.outbox import Event, Message
from shared.pagination import Page

RESERVATION_TTL = timedelta(hours=2)
MAX_ATTEMPTS = 200
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
    projects: list[dict[str, Any]]


def _result(record: dict[str, Any], *, replayed: bool, available: int | None = None) -> ReservationResult:
    split = record.get("split")
    return ReservationResult(
        workflow_run_id=record["workflow_run_id"],
        status=record["status"],
        project_id=record["project_id"],
        credits=int(record["credits"]),
        settled_credits=record.get("settled_credits"),
        split=Split(**{k: int(v) for k, v in split.items()}) if split else None,
        available_after=available,
        replayed=replayed,
    )


class CreditService:
    def __init__(
        self,
        orgs: OrgService,
        org_repo: OrgRepository,
        repo: CreditRepository,
        plans: PlanCatalog,
        templates: TemplateCatalog,
        clock: Clock,
    ):
        """Events leave through the outbox, in the transaction of the settle that causes them."""
        self._orgs = orgs
        self._org_repo = org_repo
        self._repo = repo
        self._plans = plans
        self._templates = templates
        self._clock = clock

    # ------------------------------------------------------------------ plumbing
    def _org(self, org_id: str) -> Org:
        return self._org_repo.require_org(org_id)

    def _current(self, org: Org, stored: StoredAccount | None, period: Period) -> tuple[StoredAccount, list[Entry]]:
        """The account as of `period`: created or rolled over (included credits reset) if needed."""
        plan = self._orgs.plan_of(org)
        overage = plan.price_book(org.currency).credit_overage_unit_minor is not None
        if stored is None:
            fresh = CreditAccount(
                period_key="",
                included=0,
                included_used=0,
                packs=0,
                reserved=0,
                overage=0,
                overage_allowed=overage,
                cap=None,
            )
            opened, entries = fresh.open_period(period.key, plan.included_credits)
            return StoredAccount(opened, 0, 0), entries
        account = replace(stored.account, overage_allowed=overage)
        if account.period_key < period.key:
            account, entries = account.open_period(period.key, plan.included_credits)
            return replace(stored, account=account), entries
        return replace(stored, account=account), []

    def _transact(self, org_id: str, attempt: Callable[[], bool]) -> None:
        """Runs `attempt` until it commits (True) or decides nothing is to be written (False)."""
        for n in range(MAX_ATTEMPTS):
            try:
                attempt()
                return
            except VersionConflict:
                time.sleep(random.uniform(0, min(0.05, 0.002 * 2 ** min(n, 5))))  # noqa: S311 - jitter
        raise ConcurrentUpdateError("The credit account is busy; retry.")

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
        org = self._org(org_id)
        existing = self._repo.reservation(org_id, workflow_run_id)
        if existing:
            return _result(existing, replayed=True)
        template = self._templates.get(template_id)
        costs = self._templates.credit_costs(template)
        if generation_type not in costs:
            raise InvalidRequestError(
                f"Template {template_id} has no generation type '{generation_type}' "
                f"(it has: {', '.join(sorted(costs))}).",
                code="unknown_generation_type",
            )
        project = self._org_repo.get_project(org_id, project_id)
        if project is None:
            raise NotFoundError(f"Project {project_id} was not found.", code="project_not_found")
        if project.status is not ProjectStatus.ACTIVE:
            raise ConflictError(f"Project {project_id} is archived.", code="project_archived")
        credits = costs[generation_type] * quantity
        now = self._clock.now()
        period = period_containing(org, now)
        record = {
            "workflow_run_id": workflow_run_id,
            "status": "reserved",
            "project_id": project_id,
            "template_id": template_id,
            "generation_type": generation_type,
            "quantity": quantity,
            "credits": credits,
            "created_at": iso(now),
            "hold_expires_at": iso(now + RESERVATION_TTL),
            "period_key": period.key,
        }
        outcome: dict[str, Any] = {}

        def attempt() -> bool:
            stored, opening = self._current(org, self._repo.account(org_id), period)
            after, entries = stored.account.reserve(credits)
            try:
                self._repo.commit(
                    org_id,
                    stored,
                    after,
                    opening + entries,
                    now_iso=iso(now),
                    entry_fields=self._entry_fields(project_id, f"run:{workflow_run_id}", actor, workflow_run_id),
                    extra=[
                        self._repo.put_reservation(org_id, workflow_run_id, record),
                        self._repo.add_counters(
                            org_id,
                            f"PERIOD#{period.key}#PRJ#{project_id}",
                            {"reserved": credits},
                            {"project_id": project_id},
                        ),
                    ],
                )
            except RecordConflict:
                outcome["replay"] = True  # a concurrent call with the same run id won
                return False
            outcome["available"] = after.available
            return True

        self._transact(org_id, attempt)
        if outcome.get("replay"):
            return _result(self._repo.reservation(org_id, workflow_run_id) or record, replayed=True)
        return _result(record, replayed=False, available=outcome["available"])

    def settle(
        self, *, org_id: str, workflow_run_id: str, quantity: int | None, occurred_at: datetime | None, actor: str
    ) -> ReservationResult:
        """Ends the reservation with what the generation actually used (quantity x the reserved unit
        cost; None = as reserved). Counted in the period of `occurred_at` (default now). Idempotent."""
        org = self._org(org_id)
        record = self._reservation(org_id, workflow_run_id)
        if record["status"] != "reserved":
            return self._terminal(record, "settled")
        unit = int(record["credits"]) // max(int(record["quantity"]), 1)
        actual = int(record["credits"]) if quantity is None else unit * quantity
        now = self._clock.now()
        at = occurred_at or now
        usage_period = period_containing(org, at)
        current = period_containing(org, now)
        outcome: dict[str, Any] = {}

        def attempt() -> bool:
            stored, opening = self._current(org, self._repo.account(org_id), current)
            if usage_period.key < stored.account.period_key:
                # A late event for a closed period: release the hold now; the usage lands in that period
                # as late overage (its included credits are gone), billed with the next overage run.
                after, entries = stored.account.release(int(record["credits"]), EntryKind.USAGE)
                split = Split(0, 0, actual)
                entries = [replace(entries[0], credits=actual)]
                counters = {"credits_used": actual, "credits_late": actual, "workflow_runs": 1}
            else:
                after, entries, split = stored.account.settle(int(record["credits"]), actual)
                counters = {
                    "credits_used": actual,
                    "credits_included_used": split.included,
                    "credits_packs_used": split.packs,
                    "credits_overage": split.overage,
                    "workflow_runs": 1,
                }
            done = {
                "settled_credits": actual,
                "split": {"included": split.included, "packs": split.packs, "overage": split.overage},
                "settled_at": iso(now),
                "usage_period_key": usage_period.key,
            }
            project = record["project_id"]
            project_counters = {
                "used": actual,
                "included_used": split.included,
                "packs_used": split.packs,
                "overage": split.overage,
                "generations": 1,
            }
            hold = {"reserved": -int(record["credits"])}  # the hold sits in the period it was made in
            extra = [
                self._repo.end_reservation(org_id, workflow_run_id, "settled", done),
                self._repo.add_counters(
                    org_id, f"PERIOD#{usage_period.key}", counters, {"period_end": iso(usage_period.end)}
                ),
            ]
            if record["period_key"] == usage_period.key:
                extra.append(
                    self._repo.add_counters(
                        org_id,
                        f"PERIOD#{usage_period.key}#PRJ#{project}",
                        project_counters | hold,
                        {"project_id": project},
                    )
                )
            else:
                extra += [
                    self._repo.add_counters(
                        org_id, f"PERIOD#{usage_period.key}#PRJ#{project}", project_counters, {"project_id": project}
                    ),
                    self._repo.add_counters(org_id, f"PERIOD#{record['period_key']}#PRJ#{project}", hold),
                ]
            warnings = self._warnings(org, stored.account, after)
            extra += self._repo.outbox(org_id, f"credits:{org_id}:v{stored.version + 1}", warnings, now)
            try:
                self._repo.commit(
                    org_id,
                    stored,
                    after,
                    opening + entries,
                    now_iso=iso(now),
                    extra=extra,
                    entry_fields=self._entry_fields(
                        record["project_id"], f"run:{workflow_run_id}", actor, f"settle:{workflow_run_id}"
                    ),
                )
            except RecordConflict:
                outcome["raced"] = True
                return False
            outcome.update(before=stored.account, after=after, split=split, done=done)
            return True

        self._transact(org_id, attempt)
        if outcome.get("raced"):
            return self._terminal(self._reservation(org_id, workflow_run_id), "settled")
        return _result(
            {**record, **outcome["done"], "status": "settled"}, replayed=False, available=outcome["after"].available
        )

    def release(self, *, org_id: str, workflow_run_id: str, actor: str, expired: bool = False) -> ReservationResult:
        """Gives the held credits back (failed generation, or expiry). Idempotent."""
        org = self._org(org_id)
        record = self._reservation(org_id, workflow_run_id)
        status = "expired" if expired else "released"
        if record["status"] != "reserved":
            return self._terminal(record, status)
        now = self._clock.now()
        outcome: dict[str, Any] = {}

        def attempt() -> bool:
            stored, opening = self._current(org, self._repo.account(org_id), period_containing(org, now))
            after, entries = stored.account.release(int(record["credits"]))
            extra = [
                self._repo.end_reservation(org_id, workflow_run_id, status, {"ended_at": iso(now)}),
                self._repo.add_counters(
                    org_id,
                    f"PERIOD#{record['period_key']}#PRJ#{record['project_id']}",
                    {"reserved": -int(record["credits"])},
                ),
            ]
            try:
                self._repo.commit(
                    org_id,
                    stored,
                    after,
                    opening + entries,
                    now_iso=iso(now),
                    extra=extra,
                    entry_fields=self._entry_fields(
                        record["project_id"], f"run:{workflow_run_id}", actor, f"{status}:{workflow_run_id}"
                    ),
                )
            except RecordConflict:
                outcome["raced"] = True
                return False
            outcome["available"] = after.available
            return True

        self._transact(org_id, attempt)
        if outcome.get("raced"):
            return self._terminal(self._reservation(org_id, workflow_run_id), status)
        return _result({**record, "status": status}, replayed=False, available=outcome["available"])

    def expire_due(self) -> int:
        """Releases reservations past their expiry (the scheduled sweeper). Returns how many."""
        released = 0
        for record in self._repo.expired_reservations(iso(self._clock.now())):
            org_id = record["PK"].removeprefix("ORG#")
            result = self.release(
                org_id=org_id, workflow_run_id=record["workflow_run_id"], actor="system:sweeper", expired=True
            )
            released += not result.replayed
        return released

    def _reservation(self, org_id: str, run_id: str) -> dict[str, Any]:
        record = self._repo.reservation(org_id, run_id)
        if record is None:
            raise NotFoundError(f"No reservation for workflow run {run_id}.", code="reservation_not_found")
        return record

    @staticmethod
    def _terminal(record: dict[str, Any], wanted: str) -> ReservationResult:
        if record["status"] == wanted:
            return _result(record, replayed=True)
        raise ConflictError(f"The reservation is already {record['status']}.", code=f"already_{record['status']}")

    @staticmethod
    def _entry_fields(project_id: str | None, ref: str, actor: str, key: str) -> dict[str, Any]:
        fields = {"ref": ref, "actor": actor, "idempotency_key": key}
        return {**fields, "project_id": project_id} if project_id else fields

    @staticmethod
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

    # ------------------------------------------------------------------ support and packs
    def adjust(self, caller: Caller, org_id: str, *, credits: int, reason: str, idempotency_key: str) -> int:
        """Support grants (credits > 0) or claws back (< 0) this period's credits; in the ledger."""
        if not caller.is_support:
            self._orgs.access(caller, org_id, READ)  # members get 403, strangers 404
            raise ForbiddenError("Only Layers support can grant or claw back credits.")
        org = self._orgs.access(caller, org_id, frozenset(), support=True).org
        now = self._clock.now()
        outcome: dict[str, int] = {}

        def attempt() -> bool:
            stored, opening = self._current(org, self._repo.account(org_id), period_containing(org, now))
            op = stored.account.grant if credits > 0 else stored.account.claw_back
            after, entries = op(abs(credits))
            try:
                self._repo.commit(
                    org_id,
                    stored,
                    after,
                    opening + entries,
                    now_iso=iso(now),
                    extra=[
                        self._repo.marker(f"ORG#{org_id}", f"IDEM#adjust#{idempotency_key}", 0, {"credits": credits})
                    ],
                    entry_fields={
                        **self._entry_fields(None, f"support:{reason}", caller.user_id, f"adjust:{idempotency_key}")
                    },
                )
            except RecordConflict:
                return False  # replay: this key already adjusted
            outcome["available"] = after.available
            return True

        self._transact(org_id, attempt)
        return outcome.get("available", self.summary_account(org).available)

    def add_pack(self, org_id: str, *, credits: int, ref: str) -> None:
        """Purchased credits (a paid Stripe Checkout); once per `ref` (the session id)."""
        org = self._org(org_id)
        now = self._clock.now()

        def attempt() -> bool:
            stored, opening = self._current(org, self._repo.account(org_id), period_containing(org, now))
            after, entries = stored.account.add_packs(credits)
            try:
                self._repo.commit(
                    org_id,
                    stored,
                    after,
                    opening + entries,
                    now_iso=iso(now),
                    extra=[self._repo.marker(f"ORG#{org_id}", f"IDEM#pack#{ref}", 0, {"credits": credits})],
                    entry_fields=self._entry_fields(None, ref, "stripe", f"pack:{ref}"),
                )
            except RecordConflict:
                return False
            return True

        self._transact(org_id, attempt)

    # ------------------------------------------------------------------ reads and settings
    def summary_account(self, org: Org) -> CreditAccount:
        stored, _ = self._current(org, self._repo.account(org.org_id), period_containing(org, self._clock.now()))
        return stored.account

    def summary(self, caller: Caller, org_id: str) -> CreditSummary:
        org = self._orgs.access(caller, org_id, READ, support=True).org
        period = period_containing(org, self._clock.now())
        account = self.summary_account(org)
        return CreditSummary(period, account, self._repo.project_periods(org_id, period.key))

    def entries(self, caller: Caller, org_id: str, cursor: str | None, limit: int) -> Page[dict[str, Any]]:
        self._orgs.access(caller, org_id, READ, support=True)
        return self._repo.entries(org_id, cursor, limit)

    def set_cap(self, caller: Caller, org_id: str, cap: int | None) -> CreditAccount:
        """The org's monthly hard stop on credits (None removes it). Owner/admin/billing."""
        org = self._orgs.access(caller, org_id, MANAGE_BILLING).org
        now = self._clock.now()
        outcome: dict[str, CreditAccount] = {}

        def attempt() -> bool:
            stored, opening = self._current(org, self._repo.account(org_id), period_containing(org, now))
            after = replace(stored.account, cap=cap)
            self._repo.commit(
                org_id,
                stored,
                after,
                opening,
                now_iso=iso(now),
                extra=[],
                entry_fields=self._entry_fields(None, "settings", caller.user_id, f"cap:{now}"),
            )
            outcome["account"] = after
            return True

        self._transact(org_id, attempt)
        return outcome["account"]

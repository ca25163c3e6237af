"""Usage allowances: workflow runs and SDK events are metered by event (shared/usage/metering.py: once
per event_id, pre-aggregated per org · metric · period, in the period of occurred_at, with a daily series);
the SDK-event batch route is a thin adapter onto that path.

Media storage is measured as the period's peak: daily snapshots keep the highest size seen (the period's
and the day's), billed in whole GB (rounded up) above the plan's allowance.

Usage of the periods before metering by event was counted on the period item (`workflow_runs`,
`sdk_events`): it is still read and added, so no migration is needed."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from shared.auth import Caller
from shared.catalog import Plan, PlanCatalog
from shared.clock import Clock, iso
from shared.credits.periods import Period, org_began, period_containing
from shared.credits.repository import CreditRepository
from shared.errors import InvalidRequestError
from shared.money import unit_price_total
from shared.orgs.models import READ, Org
from shared.orgs.repository import OrgRepository
from shared.orgs.service import OrgService
from shared.usage.metering import (
    DEDUPE_WINDOW,
    Metered,
    UsageEvent,
    UsageMeter,
    adapter_event_id,
    earliest_accepted,
)
from shared.usage.repository import MeteredUsage, PeriodBilled, PeriodUsage, UsageRepository

GB = 1_000_000_000
STORAGE = "media_storage_gb"


@dataclass(frozen=True)
class SdkEvent:
    org_id: str
    occurred_at: datetime
    count: int = 1


@dataclass(frozen=True)
class IngestResult:
    batch_id: str
    events: int
    groups: int
    writes: int  # DynamoDB transactions this call made (0 on a replay)
    duplicate: bool
    unknown_orgs: list[str]


@dataclass(frozen=True)
class Allowance:
    metric: str
    used: int
    included: int
    overage: int
    unit_price_minor: str | None  # Stripe-style decimal, minor units; None = no overage sold


@dataclass(frozen=True)
class DayUsage:
    day: str  # YYYY-MM-DD (UTC)
    quantity: int
    project_id: str | None = None


@dataclass(frozen=True)
class MetricSeries:
    metric: str
    days: list[DayUsage]  # the org's, by day
    projects: list[DayUsage]  # per project and day, where the events named one


@dataclass(frozen=True)
class Projection:
    metric: str
    projected: int  # at the period's end, at the rate so far (storage: its peak so far)
    overage: int
    overage_minor: int | None  # at the plan's unit price (None: no overage sold)


@dataclass(frozen=True)
class UsageReport:
    period: Period
    allowances: list[Allowance]
    current: list[MetricSeries]
    last_period: Period
    last: list[MetricSeries]
    projections: list[Projection]


def storage_gb(peak_bytes: int) -> int:
    return math.ceil(peak_bytes / GB)


def projected_usage(used: int, period: Period, now: datetime) -> int:
    """Usage at the period's end at the rate so far: used x length / elapsed, half-even to a whole unit."""
    elapsed = (min(now, period.end) - period.start).total_seconds()
    if elapsed <= 0:
        return used
    length = (period.end - period.start).total_seconds()
    return int((Decimal(used) * Decimal(length) / Decimal(elapsed)).quantize(Decimal(1), ROUND_HALF_EVEN))


def _series(metric: str, stored: MeteredUsage | None, *, peak: bool = False) -> MetricSeries:
    days: list[DayUsage] = []
    projects: list[DayUsage] = []
    for key, value in sorted((stored.days if stored else {}).items()):
        day, _, project = key.partition("#")
        quantity = storage_gb(value) if peak else value
        (projects if project else days).append(DayUsage(day, quantity, project or None))
    return MetricSeries(metric, days, projects)


class UsageService:
    def __init__(
        self,
        orgs: OrgService,
        org_repo: OrgRepository,
        repo: CreditRepository,
        plans: PlanCatalog,
        clock: Clock,
        meter: UsageMeter,
        usage_repo: UsageRepository,
    ):
        self._orgs = orgs
        self._org_repo = org_repo
        self._repo = repo
        self._plans = plans
        self._clock = clock
        self.meter = meter
        self._usage = usage_repo

    def record_events(self, events: list[UsageEvent], *, each: bool = False) -> Metered:
        """The metering path (shared/usage/metering.py): once per event_id; all or nothing for bad input,
        except an event's unknown (or archived) project: that event alone is refused. With `each` (the
        EventBridge path) an event too old or with a reserved id is refused alone too."""
        return self.meter.record(events, each=each)

    def ingest_sdk_events(self, batch_id: str, events: list[SdkEvent]) -> IngestResult:
        """The SDK collector's batch route, a thin adapter onto the metering path: the batch's entries are
        summed per org · period · UTC day into one event `<batch_id>#<period>#<day>` each (ids of that shape
        are reserved for it: `reserved_id`) (a re-sent
        batch counts once, at a marker per org and day, not per entry). Events of unknown orgs are
        reported, not counted."""
        known = self._org_repo.get_orgs(e.org_id for e in events)
        orgs = {org_id: org for org_id, org in known.items() if org is not None}
        summed: dict[tuple[str, str, str], list[SdkEvent]] = defaultdict(list)
        for e in events:
            if e.org_id in orgs:
                period = period_containing(orgs[e.org_id], e.occurred_at)
                summed[(e.org_id, period.key, e.occurred_at.astimezone(UTC).date().isoformat())].append(e)
        metered = [
            UsageEvent(
                "sdk_events",
                org_id,
                min(e.occurred_at for e in group),
                sum(e.count for e in group),
                adapter_event_id(batch_id, key, day),
            )
            for (org_id, key, day), group in sorted(summed.items())
        ]
        self.meter.check(metered, orgs)
        result = self.meter.record_checked(metered, orgs)
        groups = {(org_id, key) for org_id, key, _ in summed}
        unknown = sorted(o for o, org in known.items() if org is None)
        duplicate = bool(metered) and result.applied < len(metered)
        return IngestResult(
            batch_id, sum(e.count for e in events), len(groups), result.transactions, duplicate, unknown
        )

    def record_storage(self, org_id: str, taken_at: datetime, total_bytes: int) -> Period:
        """A storage snapshot; the period and the day keep their peak. Idempotent by nature (a max).
        InvalidRequestError (`storage_snapshot_too_old`, nothing written) for a snapshot taken before the
        window events are metered in (`earliest_accepted`): its period is billed and would never be again;
        (`usage_before_org`) for one taken, within it, before the org was created."""
        org = self._org_repo.require_org(org_id)
        earliest = earliest_accepted(org, self._clock.now())
        if taken_at < earliest:
            raise InvalidRequestError(
                f"The snapshot was taken at {iso(taken_at)}, before {iso(earliest)} (the previous period or the "
                f"{DEDUPE_WINDOW.days}-day window): its period is no longer billed.",
                code="storage_snapshot_too_old",
            )
        if taken_at < org_began(org):
            raise InvalidRequestError(
                f"The snapshot was taken at {iso(taken_at)}, before org {org_id} was created.", code="usage_before_org"
            )
        period = period_containing(org, taken_at)
        self._repo.raise_peak(org_id, period.key, "storage_peak_bytes", total_bytes)
        day = taken_at.astimezone(UTC).date().isoformat()
        self._usage.raise_day_peak(org_id, period.key, STORAGE, day, total_bytes)
        if period.key == period_containing(org, self._clock.now()).key:
            self._warn_storage(org, period)
        return period

    def _warn_storage(self, org: Org, period: Period) -> None:
        """Usage.AllowanceWarning for media storage at 80 % / 100 %: its peak so far in whole GB, as billed."""
        [counters] = self._usage.periods(org.org_id, [period.key])
        self.meter.warn(org, period, STORAGE, storage_gb(counters.storage_peak_bytes), counters.metered.get(STORAGE))

    def plan_changed(self, org: Org) -> None:
        """After a subscription change: the warnings the allowances now in force are owed for this period's
        usage so far (an upgrade's 80 % of its larger allowance later; a downgrade's at once), once each."""
        self.meter.plan_changed(org)
        self._warn_storage(org, period_containing(org, self._clock.now()))

    def allowances(self, caller: Caller, org_id: str) -> tuple[Period, list[Allowance]]:
        org = self._orgs.access(caller, org_id, READ, support=True).org
        period = period_containing(org, self._clock.now())
        return period, self.allowances_of(org, period)

    def report(self, caller: Caller, org_id: str) -> UsageReport:
        """This period's allowances, the daily series of this period and the last, and the projection of
        each allowance at the period's end at the rate so far."""
        org = self._orgs.access(caller, org_id, READ, support=True).org
        now = self._clock.now()
        period = period_containing(org, now)
        last = period_containing(org, period.start - timedelta(seconds=1))
        counters, before = self._usage.periods(org_id, [period.key, last.key])
        allowances = self._allowances(org, self._orgs.billed_plan(org, period), counters)
        return UsageReport(
            period,
            allowances,
            self._all_series(counters.metered),
            last,
            self._all_series(before.metered),
            [self._projection(org, a, period, now) for a in allowances],
        )

    @staticmethod
    def _all_series(stored: Mapping[str, MeteredUsage]) -> list[MetricSeries]:
        return [
            _series("workflow_runs", stored.get("workflow_runs")),
            _series("sdk_events", stored.get("sdk_events")),
            _series(STORAGE, stored.get(STORAGE), peak=True),
        ]

    @staticmethod
    def _projection(org: Org, allowance: Allowance, period: Period, now: datetime) -> Projection:
        projected = allowance.used if allowance.metric == STORAGE else projected_usage(allowance.used, period, now)
        overage = max(0, projected - allowance.included)
        unit = allowance.unit_price_minor
        amount = None if unit is None else unit_price_total(overage, Decimal(unit))
        return Projection(allowance.metric, projected, overage, amount)

    def periods(self, org: Org, *periods: Period) -> list[PeriodUsage]:
        """The periods' counters (period item and metered usage), all in one read."""
        return self._usage.periods(org.org_id, [p.key for p in periods])

    def record_billed(self, org: Org, period: Period, billed: PeriodBilled) -> None:
        """What a billing call billed of the period, in one write (`OverageBilling`)."""
        self._usage.record_billed(org.org_id, period.key, billed)

    def allowances_of(self, org: Org, period: Period, counters: PeriodUsage | None = None) -> list[Allowance]:
        """The period's allowances, from its counters as read (`periods`; read here if not given)."""
        plan = self._orgs.billed_plan(org, period)  # Free's for the Free time before the subscription
        return self._allowances(org, plan, self.periods(org, period)[0] if counters is None else counters)

    @staticmethod
    def _allowances(org: Org, plan: Plan, counters: PeriodUsage) -> list[Allowance]:
        book = plan.price_book(org.currency)

        def metered(metric: str) -> int:  # + what was counted on the period item before metering by event
            found = counters.metered.get(metric)
            return counters.legacy.get(metric, 0) + (found.total if found else 0)

        measured = {
            "workflow_runs": (
                metered("workflow_runs"),
                plan.allowances.workflow_runs,
                book.workflow_run_overage_unit_minor,
            ),
            "sdk_events": (metered("sdk_events"), plan.allowances.sdk_events, book.sdk_event_overage_unit_minor),
            STORAGE: (
                storage_gb(counters.storage_peak_bytes),
                plan.allowances.media_storage_gb,
                book.media_storage_gb_overage_unit_minor,
            ),
        }
        return [
            Allowance(metric, used, included, max(0, used - included), None if price is None else str(price))
            for metric, (used, included, price) in measured.items()
        ]

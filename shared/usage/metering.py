"""The one metering path for counted usage (workflow runs, SDK events): the internal route
`POST /v1/internal/usage/events`, the EventBridge event `Usage.EventsReported` and credit settlements all
call `UsageMeter.record`.

- **Once per event_id.** Each event leaves a marker (its own partition, shared/usage/repository.py) kept
  35 days and 6 minutes from receipt (the table's TTL: MARKER_LIFE). The route accepts only events that
  happened within the 35-day window (and since the start of the previous period), so an event accepted twice
  is always found by its marker: it counts once, whichever batch carries it, however late the retry.
- **Pre-aggregated.** Events are summed per org · metric · period (with their days and projects) before
  DynamoDB sees them: one transaction per chunk of up to 100 items holds the chunk's markers and one ADD
  per org · metric · period it touches. Per 100k events of one org: 100k markers (the dedupe's price,
  one per event) and ~1,010 counter writes (one per 99 markers), where a write per event would be 100k.
- **In the period of occurred_at.** A late event lands in its own period's counters; once that period's
  overage was billed, the renewal after carries the difference as a late line (shared/usage/billing.py).
- **Usage.AllowanceWarning** at 80 % and 100 % of an allowance in the current period, once per crossing:
  the usage item records the warning in the transaction that puts its outbox item (media storage's
  snapshots announce theirs through `warn` too: shared/usage/service.py)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.clock import Clock, iso
from shared.credits.periods import Period, period_containing
from shared.errors import InvalidRequestError, NotFoundError
from shared.ledger import AlreadyApplied
from shared.orgs.models import Org
from shared.orgs.repository import OrgRepository
from shared.orgs.service import OrgService
from shared.outbox import Event
from shared.usage.repository import EventMarker, UsageGroup, UsageRepository

METERED = ("workflow_runs", "sdk_events")
DEDUPE_WINDOW = timedelta(days=35)  # markers live this long; older events are refused
FUTURE_SKEW = timedelta(minutes=5)
# A marker outlives the last instant its event is accepted (occurred_at + the window; occurred_at may be
# up to FUTURE_SKEW after receipt), with a minute to spare
MARKER_LIFE = DEDUPE_WINDOW + FUTURE_SKEW + timedelta(minutes=1)
MAX_TRANSACTION_ITEMS = 100
WARN_AT_PCT = (80, 100)
MAX_CHUNK_RETRIES = 5


@dataclass(frozen=True)
class UsageEvent:
    metric: str
    org_id: str
    occurred_at: datetime
    quantity: int
    event_id: str
    project_id: str | None = None

    @property
    def identity(self) -> tuple[str, str, str]:
        return (self.org_id, self.metric, self.event_id)


@dataclass(frozen=True)
class Metered:
    events: int
    applied: int  # events counted by this call
    duplicates: int  # seen before (in an earlier batch, or twice in this one)
    counter_writes: int
    marker_writes: int
    transactions: int


@dataclass(frozen=True)
class _Chunk:
    events: list[UsageEvent]
    groups: list[UsageGroup]


def earliest_accepted(org: Org, now: datetime) -> datetime:
    """The oldest `occurred_at` metered: within the dedupe window and not before the previous period."""
    previous = period_containing(org, period_containing(org, now).start - timedelta(seconds=1))
    return max(now - DEDUPE_WINDOW, previous.start)


def aggregate(events: Iterable[UsageEvent], orgs: dict[str, Org]) -> list[UsageGroup]:
    """Events summed per org · metric · period, with their UTC days (and days per project)."""
    totals: dict[tuple[str, str, str], int] = defaultdict(int)
    days: dict[tuple[str, str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    ends: dict[str, str] = {}
    for event in events:
        period = period_containing(orgs[event.org_id], event.occurred_at)
        group = (event.org_id, event.metric, period.key)
        ends[period.key] = iso(period.end)
        totals[group] += event.quantity
        day = event.occurred_at.astimezone(UTC).date().isoformat()
        days[group][day] += event.quantity
        if event.project_id:
            days[group][f"{day}#{event.project_id}"] += event.quantity
    return [UsageGroup(o, m, p, ends[p], totals[o, m, p], dict(days[o, m, p])) for o, m, p in sorted(totals)]


def _group_of(event: UsageEvent, orgs: dict[str, Org]) -> tuple[str, str, str]:
    return (event.org_id, event.metric, period_containing(orgs[event.org_id], event.occurred_at).key)


class UsageMeter:
    def __init__(self, orgs: OrgService, org_repo: OrgRepository, repo: UsageRepository, clock: Clock):
        self._orgs = orgs
        self._org_repo = org_repo
        self._repo = repo
        self._clock = clock

    def orgs_of(self, events: Sequence[UsageEvent]) -> dict[str, Org]:
        """The events' orgs; NotFoundError (404 `org_not_found`) naming the first that does not exist."""
        found = self._org_repo.get_orgs(e.org_id for e in events)
        missing = sorted(org_id for org_id, org in found.items() if org is None)
        if missing:
            raise NotFoundError(f"Org {missing[0]} was not found.", code="org_not_found")
        return {org_id: org for org_id, org in found.items() if org is not None}

    def check(self, events: Sequence[UsageEvent], orgs: dict[str, Org]) -> None:
        """InvalidRequestError (422) for an event outside what is metered; nothing is written then."""
        now = self._clock.now()
        for event in events:
            if event.metric not in METERED:
                raise InvalidRequestError(f"'{event.metric}' is not a metered usage.", code="unknown_metric")
            if event.occurred_at > now + FUTURE_SKEW:
                raise InvalidRequestError(
                    f"Event {event.event_id} happened in the future ({iso(event.occurred_at)}).",
                    code="usage_event_in_future",
                )
            if event.occurred_at < earliest_accepted(orgs[event.org_id], now):
                raise InvalidRequestError(
                    f"Event {event.event_id} ({iso(event.occurred_at)}) is older than the previous period "
                    f"or the {DEDUPE_WINDOW.days}-day dedupe window: it is no longer metered.",
                    code="usage_event_too_old",
                )

    def record(self, events: Sequence[UsageEvent]) -> Metered:
        """Counts each event once by (org, metric, event_id), in the period of its occurred_at. All or
        nothing for bad input: NotFoundError for an unknown org, InvalidRequestError (see `check`)."""
        orgs = self.orgs_of(events)
        self.check(events, orgs)
        return self.record_checked(events, orgs)

    def record_checked(self, events: Sequence[UsageEvent], orgs: dict[str, Org]) -> Metered:
        """As `record`, for events already checked (a settlement's own run: its credits are settled)."""
        unique = list({e.identity: e for e in reversed(events)}.values())[::-1]
        seen = self._repo.seen([_marker(e, orgs) for e in unique])
        fresh = [e for e in unique if e.identity not in seen]
        expires = int((self._clock.now() + MARKER_LIFE).timestamp())
        applied, counters, transactions, touched = [], 0, 0, set()
        for chunk in _chunks(fresh, orgs):
            written = self._apply(chunk, orgs, expires)
            applied += written.events
            counters += len(written.groups)
            transactions += 1 if written.events else 0
            touched |= {(g.org_id, g.metric, g.period_key) for g in written.groups}
        self._warn(touched, orgs)
        return Metered(len(events), len(applied), len(events) - len(applied), counters, len(applied), transactions)

    def _apply(self, chunk: _Chunk, orgs: dict[str, Org], expires: int) -> _Chunk:
        """Applies the chunk; if a marker appeared meanwhile (a concurrent batch with the same event), the
        chunk is applied again without the events seen."""
        for _ in range(MAX_CHUNK_RETRIES):
            if not chunk.events:
                return chunk
            try:
                self._repo.apply([_marker(e, orgs) for e in chunk.events], chunk.groups, expires)
                return chunk
            except AlreadyApplied:
                seen = self._repo.seen([_marker(e, orgs) for e in chunk.events])
                rest = [e for e in chunk.events if e.identity not in seen]
                chunk = _Chunk(rest, aggregate(rest, orgs))
        raise AlreadyApplied  # (markers kept appearing: a retry of the whole batch sorts it out)

    def _warn(self, touched: set[tuple[str, str, str]], orgs: dict[str, Org]) -> None:
        """Usage.AllowanceWarning for each allowance of the current period at 80 % / 100 %, once each."""
        now = self._clock.now()
        for org_id, metric, period_key in sorted(touched):
            org = orgs[org_id]
            period = period_containing(org, now)
            if period.key != period_key:
                continue  # a past period's crossing is billed, not announced
            stored = self._repo.usage(org.org_id, period.key).get(metric)
            if stored is not None:
                self.warn(org, period, metric, stored.total, stored.warned)

    def warn(self, org: Org, period: Period, metric: str, used: int, warned: frozenset[int]) -> None:
        """Usage.AllowanceWarning for each threshold of the allowance `used` reached in the period and not
        announced yet (`warned`); the usage item records each, so a crossing is announced once."""
        included = int(getattr(self._orgs.subscribed_plan(org).allowances, metric))
        now = self._clock.now()
        for pct in WARN_AT_PCT:
            if included <= 0 or pct in warned or used * 100 < included * pct:
                continue
            detail = {
                "org_id": org.org_id,
                "period_key": period.key,
                "metric": metric,
                "threshold_pct": pct,
                "included": included,
                "used": used,
            }
            self._repo.warn_once(org.org_id, period.key, metric, pct, Event("Usage.AllowanceWarning", detail), now)


def _marker(event: UsageEvent, orgs: dict[str, Org]) -> EventMarker:
    period = period_containing(orgs[event.org_id], event.occurred_at)
    return EventMarker(event.org_id, event.metric, event.event_id, period.key)


def _chunks(events: list[UsageEvent], orgs: dict[str, Org]) -> list[_Chunk]:
    """Events in group order, packed so each transaction holds at most 100 items (markers + counters)."""
    ordered = sorted(events, key=lambda e: _group_of(e, orgs))
    chunks: list[_Chunk] = []
    current: list[UsageEvent] = []
    groups: set[tuple[str, str, str]] = set()
    for event in ordered:
        group = _group_of(event, orgs)
        if len(current) + 1 + len(groups | {group}) > MAX_TRANSACTION_ITEMS:
            chunks.append(_Chunk(current, aggregate(current, orgs)))
            current, groups = [], set()
        current.append(event)
        groups.add(group)
    if current:
        chunks.append(_Chunk(current, aggregate(current, orgs)))
    return chunks

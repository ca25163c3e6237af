"""The one metering path for counted usage (workflow runs, SDK events): the internal route
`POST /v1/internal/usage/events`, the EventBridge event `Usage.EventsReported` and credit settlements all
call `UsageMeter.record`.

- **Once per event_id.** Each event leaves a marker (its own partition, shared/usage/repository.py) kept
  35 days and 6 minutes from receipt (the table's TTL: MARKER_LIFE). The route accepts only events that
  happened within the 35-day window (and since the start of the previous period), so an event accepted twice
  is always found by its marker: it counts once, whichever batch carries it, however late the retry.
- **Pre-aggregated.** Events are summed per org · metric · period (with their days and projects) before
  DynamoDB sees them: one transaction per chunk of up to 100 items holds the chunk's markers and one ADD
  per org · metric · period it touches (and room for the two warnings each may cross). Per 100k events of
  one org: 100k markers (the dedupe's price, one per event) and ~1,031 counter writes (one per 97
  markers), where a write per event would be 100k.
- **In the period of occurred_at.** A late event lands in its own period's counters; once that period's
  overage was billed, the renewal after carries the difference as a late line (shared/usage/billing.py).
- **Usage.AllowanceWarning** at 80 % and 100 % of an allowance in the current period, once per crossing
  and allowance level (an upgrade's larger allowance warns again for itself; a downgrade's smaller one at
  once, for what was used). The counter write that crosses marks the warning on the usage item and puts
  its outbox item in its own transaction, so no crash loses it (`guard_for`); a plan change evaluates the
  new level at once (`plan_changed`), as do media storage's snapshots (shared/usage/service.py).
- **Refused per event**: an event naming a project its org does not have (or archived before the event)
  is counted nowhere and listed in `Metered.refused`; the rest of the batch counts. On the EventBridge path
  (`record(..., each=True)`: nobody sees its answer, a refusal is only logged) so is an event too old, dated
  before its org was created (`usage_before_org`) or with a reserved id; the route refuses the whole request
  for those (422: its caller sees it).
- **Reserved ids**: the SDK batch adapter's events are `<batch_id>#<period key>#<UTC day>` (`adapter_event_id`);
  an event of any other caller with an id ending that way is refused (`usage_event_id_reserved`), so nobody
  can mark an SDK batch as counted. The adapter's ids are as they were: its markers still dedupe re-sends.
- **Concurrent batches** retry their transaction conflicts inside (jittered, bounded), then answer
  503 `usage_busy`: re-sending a batch is always safe."""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from shared.clock import FUTURE_SKEW, Clock, in_future, iso
from shared.credits.periods import Period, org_began, period_containing
from shared.errors import ConcurrentUpdateError, InvalidRequestError, NotFoundError, UsageBusyError
from shared.ledger import AlreadyApplied
from shared.orgs.models import Org, ProjectStatus
from shared.orgs.repository import OrgRepository
from shared.orgs.service import OrgService
from shared.outbox import Event
from shared.retry import backoff
from shared.usage.repository import AllowanceWarning, EventMarker, Guard, MeteredUsage, UsageGroup, UsageRepository

METERED = ("workflow_runs", "sdk_events")
DEDUPE_WINDOW = timedelta(days=35)  # markers live this long; older events are refused
# A marker outlives the last instant its event is accepted (occurred_at + the window; occurred_at may be
# up to FUTURE_SKEW after receipt), with a minute to spare
MARKER_LIFE = DEDUPE_WINDOW + FUTURE_SKEW + timedelta(minutes=1)
MAX_TRANSACTION_ITEMS = 100
WARN_AT_PCT = (80, 100)
ITEMS_PER_GROUP = 1 + len(WARN_AT_PCT)  # its counter, and room for the outbox puts of the warnings it crosses
MAX_CHUNK_ATTEMPTS = 12  # a chunk's tries against concurrent batches of the same org before 503 usage_busy
RETRY_CAP_S = 0.2
# The SDK batch adapter's event ids end `#<period key>#<UTC day>`; no other caller may send such an id
ADAPTER_ID = re.compile(r"#\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z#\d{4}-\d{2}-\d{2}$")


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
    refused: tuple[Refused, ...] = ()  # events refused on their own (their project), counted nowhere


@dataclass(frozen=True)
class Refused:
    event_id: str
    code: str  # project_not_found | project_archived; on the EventBridge path also usage_event_too_old,
    # usage_before_org, ...
    message: str


@dataclass(frozen=True)
class _Chunk:
    events: list[UsageEvent]
    groups: list[UsageGroup]


def earliest_accepted(org: Org, now: datetime) -> datetime:
    """The oldest `occurred_at` metered: within the dedupe window and not before the previous period."""
    previous = period_containing(org, period_containing(org, now).start - timedelta(seconds=1))
    return max(now - DEDUPE_WINDOW, previous.start)


def refusal(event: UsageEvent, org: Org, now: datetime) -> Refused | None:
    """Why an event is not metered at all, if it is not: an unknown metric, dated ahead of `now` (past the
    clock skew allowed), older than `earliest_accepted`, or (within it) before the org was created
    (`usage_before_org`: no period of the org holds it)."""
    if event.metric not in METERED:
        return Refused(event.event_id, "unknown_metric", f"'{event.metric}' is not a metered usage.")
    if in_future(event.occurred_at, now):
        message = f"Event {event.event_id} happened in the future ({iso(event.occurred_at)})."
        return Refused(event.event_id, "usage_event_in_future", message)
    if event.occurred_at < earliest_accepted(org, now):
        message = (
            f"Event {event.event_id} ({iso(event.occurred_at)}) is older than the previous period or the "
            f"{DEDUPE_WINDOW.days}-day dedupe window: it is no longer metered."
        )
        return Refused(event.event_id, "usage_event_too_old", message)
    if event.occurred_at < org_began(org):
        message = f"Event {event.event_id} ({iso(event.occurred_at)}) happened before org {org.org_id} was created."
        return Refused(event.event_id, "usage_before_org", message)
    return None


def _invalid(refused: Refused) -> InvalidRequestError:
    """The route's 422 for an event refused for itself (codes of `refusal` and `reserved_id`)."""
    code = refused.code
    return InvalidRequestError(refused.message, code=code)


def adapter_event_id(batch_id: str, period_key: str, day: str) -> str:
    """The id of the event the SDK batch adapter makes of a batch's entries of one org, period and UTC day
    (unchanged since the adapter began: markers of batches counted before still find their re-sends)."""
    return f"{batch_id}#{period_key}#{day}"


def reserved_id(event: UsageEvent) -> Refused | None:
    """An event id of the SDK batch adapter's shape (`<batch_id>#<period>#<day>`) sent by anyone else would
    mark that batch as counted: refused (`usage_event_id_reserved`)."""
    if ADAPTER_ID.search(event.event_id) is None:
        return None
    message = f"Event id {event.event_id} ends like the SDK batch adapter's ids ('#<period>#<day>'): reserved."
    return Refused(event.event_id, "usage_event_id_reserved", message)


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
        """InvalidRequestError (422) for an event outside what is metered (`refusal`); nothing is written then."""
        now = self._clock.now()
        for event in events:
            refused = refusal(event, orgs[event.org_id], now)
            if refused is not None:
                raise _invalid(refused)

    def record(self, events: Sequence[UsageEvent], *, each: bool = False) -> Metered:
        """Counts each event once by (org, metric, event_id), in the period of its occurred_at. NotFoundError
        for an unknown org. An event outside what is metered (`refusal`) or with an id of the SDK batch
        adapter's (`reserved_id`): InvalidRequestError and nothing written; with `each` (the EventBridge
        path, whose refusals no caller sees) that event alone is refused (`Metered.refused`) and the rest
        counted. An event naming a project the org does not have (or archived before the event) is refused
        on its own either way."""
        orgs = self.orgs_of(events)
        first = _first_copies(events)  # (a later copy of an event is its duplicate)
        own = self._own_refusals(first if each else events, orgs)
        if own and not each:
            raise _invalid(next(iter(own.values())))
        refused = own | self.refusals([e for e in first if e.identity not in own])
        counted = self.record_checked([e for e in events if e.identity not in refused], orgs)
        duplicates = len(events) - counted.applied - len(refused)
        return replace(counted, events=len(events), duplicates=duplicates, refused=tuple(refused.values()))

    def _own_refusals(self, events: Sequence[UsageEvent], orgs: dict[str, Org]) -> dict[tuple[str, str, str], Refused]:
        """The events refused for themselves (not for their project), each by its first reason."""
        now = self._clock.now()
        found: dict[tuple[str, str, str], Refused] = {}
        for event in events:
            refused = reserved_id(event) or refusal(event, orgs[event.org_id], now)
            if refused is not None and event.identity not in found:
                found[event.identity] = refused
        return found

    def refusals(self, events: Sequence[UsageEvent]) -> dict[tuple[str, str, str], Refused]:
        """The events whose project is not one of their org's (`project_not_found`), or was archived
        before the event happened (`project_archived`): usage that happened in a live project counts."""
        projects = self._org_repo.get_projects({(e.org_id, e.project_id) for e in events if e.project_id})
        refused: dict[tuple[str, str, str], Refused] = {}
        for event in events:
            if not event.project_id:
                continue
            project = projects.get((event.org_id, event.project_id))
            if project is None:
                message = f"Org {event.org_id} has no project {event.project_id}."
                refused[event.identity] = Refused(event.event_id, "project_not_found", message)
            elif project.status is ProjectStatus.ARCHIVED and event.occurred_at > project.updated_at:
                message = f"Project {event.project_id} was archived at {iso(project.updated_at)}, before the event."
                refused[event.identity] = Refused(event.event_id, "project_archived", message)
        return refused

    def record_checked(self, events: Sequence[UsageEvent], orgs: dict[str, Org]) -> Metered:
        """As `record`, for events already checked (a settlement's own run: its credits are settled)."""
        unique = _first_copies(events)
        seen = self._repo.seen([_marker(e, orgs) for e in unique])
        fresh = [e for e in unique if e.identity not in seen]
        expires = int((self._clock.now() + MARKER_LIFE).timestamp())
        standing = _Standing(self._repo, self._orgs, orgs, self._clock.now())
        applied, counters, transactions = 0, 0, 0
        for chunk in _chunks(fresh, orgs):
            written = self._apply(chunk, orgs, expires, standing)
            applied += len(written.events)
            counters += len(written.groups)
            transactions += 1 if written.events else 0
        return Metered(len(events), applied, len(events) - applied, counters, applied, transactions)

    def _apply(self, chunk: _Chunk, orgs: dict[str, Org], expires: int, standing: _Standing) -> _Chunk:
        """Applies the chunk with the warnings it crosses. A marker that appeared meanwhile (a concurrent
        batch with the same event) or a counter that moved from what was read: the chunk is planned again
        without the events seen; a conflicting transaction: tried again. Jittered backoff between tries;
        UsageBusyError (503) when they run out (re-sending the batch is safe: each event counts once)."""
        for attempt in range(MAX_CHUNK_ATTEMPTS):
            if not chunk.events:
                return chunk
            guards = {g.key: standing.guard(g) for g in chunk.groups}
            try:
                self._repo.apply([_marker(e, orgs) for e in chunk.events], chunk.groups, expires, guards, standing.now)
                standing.applied(chunk.groups, guards)
                return chunk
            except AlreadyApplied:
                seen = self._repo.seen([_marker(e, orgs) for e in chunk.events])
                rest = [e for e in chunk.events if e.identity not in seen]
                standing.forget(chunk.groups)
                chunk = _Chunk(rest, aggregate(rest, orgs))
            except ConcurrentUpdateError:
                pass
            time.sleep(backoff(attempt, cap=RETRY_CAP_S))
        raise UsageBusyError(
            "Usage of this org is being counted by other requests; retry shortly (re-sending the batch is safe).",
            retry_after_s=1,
        )

    def plan_changed(self, org: Org) -> None:
        """After a plan change: the warnings the new allowance is owed for this period's usage so far."""
        period = period_containing(org, self._clock.now())
        stored = self._repo.usage(org.org_id, period.key)
        for metric in METERED:
            found = stored.get(metric)
            if found is not None:
                self.warn(org, period, metric, found.total, found)

    def warn(self, org: Org, period: Period, metric: str, used: int, stored: MeteredUsage | None) -> None:
        """Usage.AllowanceWarning for each threshold of the current allowance `used` reached in the period
        and not announced for that allowance yet; the usage item records each, so a crossing is announced
        once per allowance level (a plan change owes the new level its own)."""
        included = allowance_of(self._orgs, org, metric)
        now = self._clock.now()
        for pct in WARN_AT_PCT:
            if included <= 0 or (stored and stored.was_warned(included, pct)) or used * 100 < included * pct:
                continue
            event = warning_event(org.org_id, period.key, metric, included, pct, used)
            self._repo.warn_once(org.org_id, period.key, metric, AllowanceWarning(included, pct, event), now)


def allowance_of(orgs: OrgService, org: Org, metric: str) -> int:
    return int(getattr(orgs.subscribed_plan(org).allowances, metric))


def warning_event(org_id: str, period_key: str, metric: str, included: int, pct: int, used: int) -> Event:
    detail = {
        "org_id": org_id,
        "period_key": period_key,
        "metric": metric,
        "threshold_pct": pct,
        "included": included,
        "used": used,
    }
    return Event("Usage.AllowanceWarning", detail)


def guard_for(org_id: str, group: UsageGroup, stored: MeteredUsage | None, included: int) -> Guard:
    """What a counter write of the current period holds to: when it crosses a threshold not announced for
    this allowance, the total it was planned on and the warnings (in its transaction); otherwise that the
    total stays below the next threshold (so no write crosses one unannounced)."""
    total = stored.total if stored else 0
    if included <= 0:
        return Guard()
    open_pcts = [pct for pct in WARN_AT_PCT if not (stored and stored.was_warned(included, pct))]
    after = total + group.quantity
    due = [pct for pct in open_pcts if after * 100 >= included * pct]
    if due:
        warnings = (
            AllowanceWarning(included, pct, warning_event(org_id, group.period_key, group.metric, included, pct, after))
            for pct in due
        )
        return Guard(total=total, warnings=tuple(warnings))
    if not open_pcts:
        return Guard()
    threshold = -(-included * min(open_pcts) // 100)  # the least whole usage at pct %
    return Guard(below=threshold - group.quantity)


class _Standing:
    """The current period's usage and allowances of a batch's orgs, read once and kept up to date with what
    the batch writes (read again after a write refused on its condition)."""

    def __init__(self, repo: UsageRepository, orgs: OrgService, batch_orgs: dict[str, Org], now: datetime):
        self._repo = repo
        self._orgs = orgs
        self._batch_orgs = batch_orgs
        self.now = now
        self._stored: dict[tuple[str, str], dict[str, MeteredUsage]] = {}

    def guard(self, group: UsageGroup) -> Guard:
        org = self._batch_orgs[group.org_id]
        if period_containing(org, self.now).key != group.period_key:
            return Guard()  # a past period's usage is billed, not announced
        stored = self._usage(group.org_id, group.period_key).get(group.metric)
        return guard_for(group.org_id, group, stored, allowance_of(self._orgs, org, group.metric))

    def _usage(self, org_id: str, period_key: str) -> dict[str, MeteredUsage]:
        if (org_id, period_key) not in self._stored:
            self._stored[org_id, period_key] = self._repo.usage(org_id, period_key)
        return self._stored[org_id, period_key]

    def applied(self, groups: Sequence[UsageGroup], guards: dict[tuple[str, str, str], Guard]) -> None:
        for group in groups:
            if (group.org_id, group.period_key) not in self._stored:
                continue
            usage = self._stored[group.org_id, group.period_key]
            found = usage.get(group.metric) or MeteredUsage(0, {}, frozenset())
            marked = {(w.included, w.pct) for w in guards[group.key].warnings}
            usage[group.metric] = MeteredUsage(found.total + group.quantity, found.days, found.warned | marked)

    def forget(self, groups: Sequence[UsageGroup]) -> None:
        for group in groups:
            self._stored.pop((group.org_id, group.period_key), None)


def _first_copies(events: Sequence[UsageEvent]) -> list[UsageEvent]:
    """Each (org, metric, event_id) once, as its first copy in the batch, in the batch's order."""
    return list({e.identity: e for e in reversed(events)}.values())[::-1]


def _marker(event: UsageEvent, orgs: dict[str, Org]) -> EventMarker:
    period = period_containing(orgs[event.org_id], event.occurred_at)
    return EventMarker(event.org_id, event.metric, event.event_id, period.key)


def _chunks(events: list[UsageEvent], orgs: dict[str, Org]) -> list[_Chunk]:
    """Events in group order, packed so each transaction holds at most 100 items (markers, counters and
    the outbox items of the warnings each counter may cross)."""
    ordered = sorted(events, key=lambda e: _group_of(e, orgs))
    chunks: list[_Chunk] = []
    current: list[UsageEvent] = []
    groups: set[tuple[str, str, str]] = set()
    for event in ordered:
        group = _group_of(event, orgs)
        if len(current) + 1 + len(groups | {group}) * ITEMS_PER_GROUP > MAX_TRANSACTION_ITEMS:
            chunks.append(_Chunk(current, aggregate(current, orgs)))
            current, groups = [], set()
        current.append(event)
        groups.add(group)
    if current:
        chunks.append(_Chunk(current, aggregate(current, orgs)))
    return chunks

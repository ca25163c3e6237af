"""Usage allowances. SDK events arrive in batches and are pre-aggregated per org · metric · period
before they touch DynamoDB: one ADD per group, never one write per event, and each batch (or chunk of
it) is applied once - its marker is written in the same transaction as its counters.

Media storage is measured as the period's peak: daily snapshots keep the highest size seen, billed
in whole GB (rounded up) above the plan's allowance."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.auth import Caller
from shared.catalog import PlanCatalog
from shared.clock import Clock
from shared.credits.periods import Period, period_containing
from shared.credits.repository import CreditRepository
from shared.ledger import AlreadyApplied
from shared.orgs.models import READ, Org
from shared.orgs.repository import OrgRepository
from shared.orgs.service import OrgService

BATCH_MARKER_TTL = timedelta(days=30)
MAX_GROUPS_PER_TRANSACTION = 99  # DynamoDB allows 100 items; one is the batch marker
GB = 1_000_000_000


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


def storage_gb(peak_bytes: int) -> int:
    return math.ceil(peak_bytes / GB)


class UsageService:
    def __init__(
        self, orgs: OrgService, org_repo: OrgRepository, repo: CreditRepository, plans: PlanCatalog, clock: Clock
    ):
        self._orgs = orgs
        self._org_repo = org_repo
        self._repo = repo
        self._plans = plans
        self._clock = clock

    def ingest_sdk_events(self, batch_id: str, events: list[SdkEvent]) -> IngestResult:
        """Counts a batch once per batch_id; events of unknown orgs are reported, not counted."""
        orgs = self._org_repo.get_orgs(e.org_id for e in events)  # batched: a batch may name thousands
        groups: dict[tuple[str, str], int] = defaultdict(int)  # (org, period) -> events
        for event in events:
            org = orgs[event.org_id]
            if org is None:
                continue
            groups[(org.org_id, period_containing(org, event.occurred_at).key)] += event.count
        expires = int((self._clock.now() + BATCH_MARKER_TTL).timestamp())
        keys = sorted(groups)
        writes, duplicate = 0, False
        for chunk_no, start in enumerate(range(0, len(keys), MAX_GROUPS_PER_TRANSACTION)):
            chunk = keys[start : start + MAX_GROUPS_PER_TRANSACTION]
            items = [self._repo.marker(f"SDKBATCH#{batch_id}", f"CHUNK#{chunk_no}", expires, {"groups": len(chunk)})]
            items += [
                self._repo.add_counters(org_id, f"PERIOD#{period_key}", {"sdk_events": groups[org_id, period_key]})
                for org_id, period_key in chunk
            ]
            try:
                self._repo.write(items)
                writes += 1
            except AlreadyApplied:
                duplicate = True  # this chunk was applied by an earlier delivery of the batch
        unknown = sorted(o for o, org in orgs.items() if org is None)
        return IngestResult(batch_id, sum(e.count for e in events), len(keys), writes, duplicate, unknown)

    def record_storage(self, org_id: str, taken_at: datetime, total_bytes: int) -> Period:
        """A storage snapshot; the period keeps its peak. Idempotent by nature (a max)."""
        org = self._org_repo.require_org(org_id)
        period = period_containing(org, taken_at)
        self._repo.raise_peak(org_id, period.key, "storage_peak_bytes", total_bytes)
        return period

    def allowances(self, caller: Caller, org_id: str) -> tuple[Period, list[Allowance]]:
        org = self._orgs.access(caller, org_id, READ, support=True).org
        period = period_containing(org, self._clock.now())
        return period, self.allowances_of(org, period)

    def allowances_of(self, org: Org, period: Period) -> list[Allowance]:
        plan = self._orgs.subscribed_plan(org)  # billed with the subscription, for the period it paid
        book = plan.price_book(org.currency)
        counters: dict[str, Any] = self._repo.period(org.org_id, period.key)
        measured = {
            "workflow_runs": (
                int(counters.get("workflow_runs", 0)),
                plan.allowances.workflow_runs,
                book.workflow_run_overage_unit_minor,
            ),
            "sdk_events": (
                int(counters.get("sdk_events", 0)),
                plan.allowances.sdk_events,
                book.sdk_event_overage_unit_minor,
            ),
            "media_storage_gb": (
                storage_gb(int(counters.get("storage_peak_bytes", 0))),
                plan.allowances.media_storage_gb,
                book.media_storage_gb_overage_unit_minor,
            ),
        }
        return [
            Allowance(metric, used, included, max(0, used - included), None if price is None else str(price))
            for metric, (used, included, price) in measured.items()
        ]

"""DynamoDB layout of metered usage (BillingTable; every key built in shared/keys.py):

  PK=ORG#<org>  SK=USAGE#<period_key>#<metric>      total (ADD) and the daily series: `day#<YYYY-MM-DD>` and
                                                     `day#<YYYY-MM-DD>#<project_id>` (ADD; media storage: the
                                                     day's peak bytes, raised only), `warned_<included>_<pct>`
                                                     (the warning at pct % of an allowance of `included` was
                                                     sent; `warned_<pct>` before levels were kept), period_end
  PK=USAGEEVT#<org>#<metric>#<event_id>  SK=EVENT    a metered event's dedupe marker: `expires_at` (the table's
                                                     TTL, deleted by DynamoDB's own service principal - the
                                                     functions' policies allow no DeleteItem), period_key

One transaction applies a chunk of events: every event's marker (a put that fails if the marker exists)
and the ADD of each org · metric · period it touches, so a chunk counts all of its events or none. An ADD
carries its `Guard`: the warnings it crosses are marked on the counter and put in the outbox in the same
transaction (never a counter crossed without its warning), on condition that the total is still the one
read; an ADD that crosses nothing holds on condition that the total stays below the next threshold."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from boto3.dynamodb.conditions import Attr, Key

from shared import keys
from shared.dynamo import Item, TransactionConditionFailed, TxItem, batch_get, dynamo_errors, plain, set_fields
from shared.ledger import AlreadyApplied
from shared.outbox import Message, outbox_puts

BATCH_GET_MAX = 100
DAY_PREFIX = "day#"
USAGE_METRICS = ("workflow_runs", "sdk_events", "media_storage_gb")  # one usage item each per period
LATE_METRICS = ("credits", *USAGE_METRICS)  # `billed_<metric>_late`: late usage billed after the period's line


@dataclass(frozen=True)
class UsageGroup:
    """What one counter write adds to an org · metric · period: its total and its days (and projects)."""

    org_id: str
    metric: str
    period_key: str
    period_end: str
    quantity: int
    days: Mapping[str, int]  # "YYYY-MM-DD" or "YYYY-MM-DD#<project_id>" -> quantity

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.org_id, self.metric, self.period_key)


@dataclass(frozen=True)
class AllowanceWarning:
    """An allowance warning due: `pct` % of an allowance of `included`, announced by `message`."""

    included: int
    pct: int
    message: Message


@dataclass(frozen=True)
class Guard:
    """What a counter write of the current period holds to: the total it was planned on (`total`, when it
    crosses a threshold: its `warnings` go in the same transaction) or the bound it must stay under."""

    total: int | None = None  # the total read, when the write crosses
    below: int | None = None  # the total must be under this (so the write crosses nothing unannounced)
    warnings: tuple[AllowanceWarning, ...] = ()


def warned_field(included: int, pct: int) -> str:
    return f"warned_{included}_{pct}"


@dataclass(frozen=True)
class EventMarker:
    org_id: str
    metric: str
    event_id: str
    period_key: str


@dataclass(frozen=True)
class MeteredUsage:
    """A metric's usage in a period as stored: its total, its daily series, the warnings sent."""

    total: int
    days: Mapping[str, int]
    warned: frozenset[tuple[int, int]]  # (included, pct); included 0: marked before levels (any level)

    def was_warned(self, included: int, pct: int) -> bool:
        return (included, pct) in self.warned or (0, pct) in self.warned


@dataclass(frozen=True)
class BilledMetric:
    """A period's overage line of one metric as recorded once billed (a repeat never overwrites it)."""

    quantity: int
    key: str  # the line's billing key
    unit: str | None = None  # the unit price it was billed at (Stripe-style decimal); None: recorded before units
    included: int | None = None  # usage metrics: the allowance it was billed over


@dataclass(frozen=True)
class PeriodUsage:
    """A period's counters as stored, read once: its period item's (credits, usage counted there before
    metering by event, the storage peak, what was billed) and its metered usage (by metric)."""

    period_key: str
    credits_overage: int = 0
    credits_late: int = 0
    legacy: Mapping[str, int] = field(default_factory=dict)  # workflow_runs / sdk_events on the period item
    storage_peak_bytes: int = 0
    billed: Mapping[str, BilledMetric] = field(default_factory=dict)  # by metric (credits, credits_late, usage)
    billed_late: Mapping[str, int] = field(default_factory=dict)  # `billed_<metric>_late` (credits: catch-up)
    billed_invoice_id: str | None = None
    metered: Mapping[str, MeteredUsage] = field(default_factory=dict)


@dataclass(frozen=True)
class PeriodBilled:
    """What one billing call records on a period item, in one write: the lines it billed (by metric), the late
    totals billed (`billed_<metric>_late`), the renewal invoice that billed the period."""

    lines: Mapping[str, BilledMetric] = field(default_factory=dict)
    late: Mapping[str, int] = field(default_factory=dict)
    invoice_id: str | None = None

    def fields(self) -> dict[str, object]:
        found: dict[str, object] = {f"billed_{metric}_late": n for metric, n in self.late.items()}
        for metric, line in self.lines.items():
            found |= {f"billed_{metric}": line.quantity, f"billed_key_{metric}": line.key}
            found |= {f"billed_unit_{metric}": line.unit} if line.unit is not None else {}
            found |= {f"billed_included_{metric}": line.included} if line.included is not None else {}
        return found | ({"billed_invoice_id": self.invoice_id} if self.invoice_id else {})


class UsageRepository:
    def __init__(self, table: Any):
        self._table = table
        self._client = table.meta.client
        self._name: str = table.name

    # ------------------------------------------------------------------ writes
    def apply(
        self,
        markers: Sequence[EventMarker],
        groups: Sequence[UsageGroup],
        expires_at: int,
        guards: Mapping[tuple[str, str, str], Guard],
        now: datetime,
    ) -> None:
        """The chunk's markers, counters and the warnings they cross in one transaction; AlreadyApplied if
        any marker exists or a counter moved from what its guard was planned on (re-read and re-plan)."""
        items = [self._marker(m, expires_at) for m in markers]
        for group in groups:
            guard = guards.get(group.key, Guard())
            items.append(self._add(group, guard, now))
            messages = [w.message for w in guard.warnings]
            items += outbox_puts(self._name, group.org_id, _warning_cause(group, guard), messages, now)
        try:
            with dynamo_errors():
                self._client.transact_write_items(TransactItems=items)
        except TransactionConditionFailed as exc:
            raise AlreadyApplied from exc

    def _marker(self, marker: EventMarker, expires_at: int) -> TxItem:
        item = keys.usage_event_key(marker.org_id, marker.metric, marker.event_id)
        item |= {"expires_at": expires_at, "period_key": marker.period_key}  # type: ignore[dict-item]
        return {"Put": {"TableName": self._name, "ConditionExpression": "attribute_not_exists(PK)", "Item": item}}

    def _add(self, group: UsageGroup, guard: Guard, now: datetime) -> TxItem:
        adds = {"total": group.quantity} | {f"{DAY_PREFIX}{day}": n for day, n in group.days.items()}
        names = {f"#a{i}": k for i, k in enumerate(adds)} | {"#e": "period_end", "#m": "metric"}
        values: dict[str, object] = {f":a{i}": v for i, v in enumerate(adds.values())}
        values |= {":e": group.period_end, ":m": group.metric}
        sets = ["#e = :e", "#m = :m"]
        conditions = []
        for i, warning in enumerate(guard.warnings):
            names[f"#w{i}"] = warned_field(warning.included, warning.pct)
            sets.append(f"#w{i} = :now")
            conditions.append(f"attribute_not_exists(#w{i})")
        if guard.warnings:
            values[":now"] = now.isoformat()
        if guard.total is not None:  # (#a0 is the total)
            values[":t"] = guard.total
            conditions.append("(attribute_not_exists(#a0) OR #a0 = :t)" if guard.total == 0 else "#a0 = :t")
        if guard.below is not None:
            values[":b"] = guard.below
            conditions.append("(attribute_not_exists(#a0) OR #a0 < :b)")
        update = {
            "Key": keys.key(group.org_id, keys.usage_sk(group.period_key, group.metric)),
            "UpdateExpression": f"SET {', '.join(sets)} ADD " + ", ".join(f"#a{i} :a{i}" for i in range(len(adds))),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        if conditions:
            update["ConditionExpression"] = " AND ".join(conditions)
        return {"Update": {"TableName": self._name, **update}}

    def raise_day_peak(self, org_id: str, period_key: str, metric: str, day: str, value: int) -> None:
        """Keeps the day's highest value (storage snapshots); a lower or equal one changes nothing."""
        field = f"{DAY_PREFIX}{day}"
        try:
            with dynamo_errors():
                self._table.update_item(
                    Key=keys.key(org_id, keys.usage_sk(period_key, metric)),
                    UpdateExpression="SET #f = :v, #m = :m",
                    ConditionExpression=Attr(field).not_exists() | Attr(field).lt(value),
                    ExpressionAttributeNames={"#f": field, "#m": "metric"},
                    ExpressionAttributeValues={":v": value, ":m": metric},
                )
        except TransactionConditionFailed:
            return

    def warn_once(self, org_id: str, period_key: str, metric: str, warning: AllowanceWarning, now: datetime) -> bool:
        """Marks the warning sent on the metric's usage item and puts its outbox item, in one transaction;
        False (nothing written) if it was sent before."""
        pct = warning.pct
        mark = {
            "Update": {
                "TableName": self._name,
                "Key": keys.key(org_id, keys.usage_sk(period_key, metric)),
                "UpdateExpression": "SET #w = :now",
                "ConditionExpression": "attribute_not_exists(#w)",
                "ExpressionAttributeNames": {"#w": warned_field(warning.included, pct)},
                "ExpressionAttributeValues": {":now": now.isoformat()},
            }
        }
        cause = f"usage-warning:{period_key}:{metric}:{warning.included}:{pct}"
        try:
            with dynamo_errors():
                self._client.transact_write_items(
                    TransactItems=[mark, *outbox_puts(self._name, org_id, cause, [warning.message], now)]
                )
        except TransactionConditionFailed:
            return False
        return True

    def record_billed(self, org_id: str, period_key: str, billed: PeriodBilled) -> None:
        """What a billing call billed of a period, on its period item in one write (none if nothing)."""
        fields = billed.fields()
        if not fields:
            return
        with dynamo_errors():
            self._table.update_item(Key=keys.key(org_id, keys.period_sk(period_key)), **set_fields(fields))

    # ------------------------------------------------------------------ reads
    def periods(self, org_id: str, period_keys: Sequence[str]) -> list[PeriodUsage]:
        """Each period's counters (its period item and metered usage items), all in one consistent read."""
        sks = {sk: key for key in period_keys for sk in (keys.period_sk(key), *_usage_sks(key))}
        items = self._batch_get([keys.key(org_id, sk) for sk in sks], projection=None)
        by_period: dict[str, list[Item]] = {key: [] for key in period_keys}
        for item in map(plain, items):
            by_period[sks[str(item["SK"])]].append(item)
        return [_period_usage(key, by_period[key]) for key in period_keys]

    def seen(self, markers: Sequence[EventMarker]) -> set[tuple[str, str, str]]:
        """(org, metric, event_id) of the markers that exist (consistent reads, 100 per round trip)."""
        found: set[tuple[str, str, str]] = set()
        by_pk = {keys.usage_event_key(m.org_id, m.metric, m.event_id)["PK"]: m for m in markers}
        pks = sorted(by_pk)
        for start in range(0, len(pks), BATCH_GET_MAX):
            request_keys = [{"PK": pk, "SK": "EVENT"} for pk in pks[start : start + BATCH_GET_MAX]]
            for item in self._batch_get(request_keys, projection="PK"):
                m = by_pk[str(item["PK"])]
                found.add((m.org_id, m.metric, m.event_id))
        return found

    def _batch_get(self, request_keys: Sequence[Mapping[str, str]], projection: str | None) -> list[Item]:
        asked: dict[str, Any] = {"ProjectionExpression": projection} if projection else {}
        return batch_get(self._client, self._name, request_keys, **asked)

    def usage(self, org_id: str, period_key: str) -> dict[str, MeteredUsage]:
        """Every metered metric of the period (one query)."""
        query: dict[str, Any] = {
            "KeyConditionExpression": Key("PK").eq(keys.org_pk(org_id))
            & Key("SK").begins_with(keys.usage_prefix(period_key)),
            "ConsistentRead": True,
        }
        found: dict[str, MeteredUsage] = {}
        with dynamo_errors():
            while True:
                resp = self._table.query(**query)
                for item in map(plain, resp["Items"]):
                    found[str(item["metric"])] = _metered(item)
                if "LastEvaluatedKey" not in resp:
                    return found
                query["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


def _warning_cause(group: UsageGroup, guard: Guard) -> str:
    levels = ",".join(f"{w.included}:{w.pct}" for w in guard.warnings)
    return f"usage-warning:{group.period_key}:{group.metric}:{levels}"


def _warned(field: str) -> tuple[int, int]:
    """(included, pct) of a `warned_` field; a field from before levels (`warned_<pct>`) is (0, pct)."""
    parts = field.removeprefix("warned_").split("_")
    return (int(parts[0]), int(parts[1])) if len(parts) == 2 else (0, int(parts[0]))


def _usage_sks(period_key: str) -> list[str]:
    return [keys.usage_sk(period_key, metric) for metric in USAGE_METRICS]


def _period_usage(period_key: str, items: list[Item]) -> PeriodUsage:
    period_sk = keys.period_sk(period_key)
    item = next((i for i in items if i["SK"] == period_sk), {})
    metered = {str(i["metric"]): _metered(i) for i in items if i["SK"] != period_sk}
    legacy = {metric: int(item[metric]) for metric in USAGE_METRICS if metric in item}
    billed = [k.removeprefix("billed_key_") for k in item if k.startswith("billed_key_")]
    return PeriodUsage(
        period_key,
        credits_overage=int(item.get("credits_overage", 0)),
        credits_late=int(item.get("credits_late", 0)),
        legacy=legacy,
        storage_peak_bytes=int(item.get("storage_peak_bytes", 0)),
        billed={metric: _billed(item, metric) for metric in billed},
        billed_late={m: int(item[f"billed_{m}_late"]) for m in LATE_METRICS if f"billed_{m}_late" in item},
        billed_invoice_id=str(item["billed_invoice_id"]) if "billed_invoice_id" in item else None,
        metered=metered,
    )


def _billed(item: Item, metric: str) -> BilledMetric:
    unit, included = item.get(f"billed_unit_{metric}"), item.get(f"billed_included_{metric}")
    return BilledMetric(
        int(item[f"billed_{metric}"]),
        str(item[f"billed_key_{metric}"]),
        None if unit is None else str(unit),
        None if included is None else int(included),
    )


def _metered(item: Item) -> MeteredUsage:
    days = {k[len(DAY_PREFIX) :]: int(v) for k, v in item.items() if k.startswith(DAY_PREFIX)}
    warned = frozenset(_warned(k) for k in item if k.startswith("warned_"))
    return MeteredUsage(int(item.get("total", 0)), days, warned)

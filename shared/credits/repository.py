"""DynamoDB layout of credits (the org's partition of BillingTable; keys in shared/keys.py):

  SK=CREDITS                      the account (the ledger engine's): CreditAccount fields + version + seq
  SK=CLEDGER#<seq:012d>           entries, append-only: the lines of one change (kind, amount = change of
                                  available, balance_after = available after it, credits)
  SK=IDEM#<cause>                 the cause of a support adjustment or a credit pack (once each)
  SK=RESV#<workflow_run_id>       a reservation (status reserved|settled|released|expired); while
                                  reserved it carries GSI2 (RESV#ACTIVE#<shard>, expires_at) for the sweeper
  SK=PERIOD#<period_key>          period counters: credits_*, workflow_runs, sdk_events, storage
  SK=PERIOD#<period_key>#PRJ#<id> per-project credit counters of the period

Every change is one transaction through the ledger engine (shared/ledger): the account with
`version = :read`, its entry, the reservation (conditional on its status) and the counters (ADD)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, replace
from datetime import datetime
from typing import Any

from boto3.dynamodb.conditions import Attr

from shared import keys
from shared.budgets.models import merged
from shared.budgets.repository import BudgetRepository, budget_failure
from shared.credits.account import CreditAccount
from shared.credits.models import (
    CreditChange,
    Record,
    Reservation,
    ReservationEnd,
    ReservationPut,
    StoredAccount,
)
from shared.dynamo import (
    Item,
    TransactionConditionFailed,
    TxItem,
    close_indexed,
    dynamo_errors,
    from_item,
    org_items,
    plain,
    set_fields,
)
from shared.ledger import CREDITS, AlreadyApplied, Change, ConditionFailed, EntryLine, Ledger, Line, Named
from shared.pagination import Page
from shared.sweep import due_entries

_ACCOUNT = tuple(CreditAccount.__dataclass_fields__)


class CreditRepository:
    def __init__(self, table: Any):
        self._table = table
        self._client = table.meta.client
        self._name: str = table.name
        self._ledger = Ledger(table, CREDITS)
        self._budgets = BudgetRepository(table)

    # ------------------------------------------------------------------ reads
    def account(self, org_id: str) -> StoredAccount | None:
        read = self._ledger.read(org_id)
        if read is None:
            return None
        head, item = read
        return StoredAccount(CreditAccount(**{k: item[k] for k in _ACCOUNT if k in item}), head)

    def cause(self, org_id: str, cause: str) -> Item | None:
        """What the change with this cause recorded (an adjustment's credits and result), None if none."""
        return self._ledger.cause(org_id, cause)

    def reservation(self, org_id: str, run_id: str) -> Reservation | None:
        with dynamo_errors():
            got = self._table.get_item(Key=reservation_key(org_id, run_id), ConsistentRead=True)
        return reservation_of(got.get("Item"))

    def period(self, org_id: str, period_key: str) -> Item:
        with dynamo_errors():
            got = self._table.get_item(Key=keys.key(org_id, keys.period_sk(period_key)), ConsistentRead=True)
        return plain(got.get("Item") or {})

    def project_periods(self, org_id: str, period_key: str) -> list[Item]:
        return org_items(self._table, org_id, keys.project_period_prefix(period_key))

    def lines(self, org_id: str, cursor: str | None, limit: int) -> Page[EntryLine]:
        """The credit ledger, newest first."""
        return self._ledger.lines(org_id, cursor, limit)

    def expired_reservations(self, now_iso: str) -> Iterator[Item]:
        """Listed reservations past their expiry, every shard, paginated (read them with `listed_reservation`)."""
        return due_entries(self._table, keys.ACTIVE_RESERVATIONS, now_iso)

    @staticmethod
    def listed_reservation(item: Item) -> tuple[str, Reservation]:
        return keys.org_id_of(item["PK"]), _reservation(item)

    # ------------------------------------------------------------------ the one write
    def commit(self, org_id: str, stored: StoredAccount, change: CreditChange, now: datetime) -> None:
        """Commits the change through the ledger engine: LedgerConflict if the account moved on,
        AlreadyApplied if its cause was applied before, ConditionFailed({"reservation"}) if the
        reservation was not in the state the change expects, BudgetRefused / BudgetChanged if the project's
        budget has no room or changed since read (shared/budgets)."""
        after = change.after
        lines = [
            Line(e.kind.value, e.delta, e.balance_after, {"credits": e.credits, **e.fields}) for e in change.entries
        ]
        budgets = [item for touch in merged(change.budgets) for item in self._budgets.touch_items(org_id, touch)]
        try:
            self._ledger.commit(
                Change(
                    org_id,
                    stored.head,
                    sets=asdict(after),
                    lines=lines,
                    entry={"period_key": after.period_key, **change.entry},
                    cause=change.cause,
                    items=[Named(_name(r), self._record_item(org_id, r)) for r in change.records] + budgets,
                    messages=change.messages,
                ),
                now,
            )
        except ConditionFailed as exc:
            failure = budget_failure(exc.names)
            if failure is None:
                raise
            raise failure from exc

    def _record_item(self, org_id: str, record: Record) -> TxItem:
        if isinstance(record, ReservationPut):
            r = record.reservation
            item: Item = {k: v for k, v in asdict(r).items() if v is not None}
            item |= {**keys.key(org_id, keys.reservation_sk(r.workflow_run_id)), "type": "credit_reservation"}
            item |= {"GSI2PK": keys.listed_pk(keys.ACTIVE_RESERVATIONS, r.workflow_run_id), "GSI2SK": r.hold_expires_at}
            return {"Put": {"TableName": self._name, "ConditionExpression": "attribute_not_exists(PK)", "Item": item}}
        if isinstance(record, ReservationEnd):
            key = keys.key(org_id, keys.reservation_sk(record.run_id))
            return close_indexed(self._name, key, expected="reserved", status=record.status, fields=dict(record.values))
        return self.add_counters(org_id, record.sk, record.adds, record.sets)

    # ------------------------------------------------------------------ counters (usage)
    def add_counters(self, org_id: str, sk: str, counters: Any, sets: Any = None) -> TxItem:
        """The transaction item that ADDs to counters of a period (or project-period) item."""
        sets = sets or {}
        names = {f"#a{i}": k for i, k in enumerate(counters)} | {f"#s{i}": k for i, k in enumerate(sets)}
        values = {f":a{i}": v for i, v in enumerate(counters.values())}
        values |= {f":s{i}": v for i, v in enumerate(sets.values())}
        expression = "ADD " + ", ".join(f"#a{i} :a{i}" for i in range(len(counters)))
        if sets:
            expression = "SET " + ", ".join(f"#s{i} = :s{i}" for i in range(len(sets))) + " " + expression
        update = {"Key": keys.key(org_id, sk), "UpdateExpression": expression}
        update |= {"ExpressionAttributeNames": names, "ExpressionAttributeValues": values}
        return {"Update": {"TableName": self._name, **update}}

    def write(self, items: list[TxItem]) -> None:
        """A transaction of counter updates guarded by a marker put (an ingestion batch id):
        AlreadyApplied if the marker exists."""
        try:
            with dynamo_errors():
                self._client.transact_write_items(TransactItems=items)
        except TransactionConditionFailed as exc:
            raise AlreadyApplied from exc

    def marker(self, pk: str, sk: str, expires_at: int, fields: dict[str, object]) -> TxItem:
        item = {"PK": pk, "SK": sk, "expires_at": expires_at, **fields}
        return {"Put": {"TableName": self._name, "ConditionExpression": "attribute_not_exists(PK)", "Item": item}}

    def raise_peak(self, org_id: str, period_key: str, field: str, value: int) -> None:
        """Keeps the highest value seen (storage snapshots); a lower or equal one changes nothing."""
        try:
            with dynamo_errors():
                self._table.update_item(
                    Key=keys.key(org_id, keys.period_sk(period_key)),
                    UpdateExpression="SET #f = :v",
                    ConditionExpression=Attr(field).not_exists() | Attr(field).lt(value),
                    ExpressionAttributeNames={"#f": field},
                    ExpressionAttributeValues={":v": value},
                )
        except TransactionConditionFailed:
            return

    def set_period_fields(self, org_id: str, period_key: str, fields: dict[str, object]) -> None:
        with dynamo_errors():
            self._table.update_item(Key=keys.key(org_id, keys.period_sk(period_key)), **set_fields(fields))


def reservation_key(org_id: str, run_id: str) -> keys.Key:
    return keys.key(org_id, keys.reservation_sk(run_id))


def reservation_of(item: Item | None) -> Reservation | None:
    """The reservation of its item as read (None: none)."""
    return _reservation(plain(item)) if item else None


def _reservation(item: Item) -> Reservation:
    found: Reservation = from_item(Reservation, item)
    split = item.get("split")
    return replace(found, split={k: int(v) for k, v in split.items()}) if split else found


def _name(record: Record) -> str:
    return "reservation" if isinstance(record, ReservationPut | ReservationEnd) else "counters"

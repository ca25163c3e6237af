"""One engine for every account with entries (the wallet, credits; anything later).

An account is one item (SK = the book's account key) with a `version` and a `seq`. A change is one
TransactWriteItems of:
  - the account, conditional on the version read (`version = :read`, or absent for the first write):
    a lost or double update is impossible, and `balance_after` is exact;
  - one entry item holding the change's lines (`WLEDGER#<seq of its first line>`): immutable, each line
    with `kind`, `amount` (its signed change), `balance_after`; the change's `ref`, `actor`,
    `idempotency_key` on the item; the account's `seq` counts lines;
  - the cause marker (`IDEM#<cause>`), when the change has a cause: it makes the movement happen once,
    whatever retries and redeliveries; it keeps what the first one recorded (e.g. the fee charged);
  - the change's other items (a hold closed, a reservation ended, counters), each with a name;
  - the change's messages (the outbox, shared/outbox.py).
A failed condition comes back as a named error, never a position: LedgerConflict (the account moved on:
read again and retry), AlreadyApplied (the cause was applied before: a replay), ConditionFailed(names)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from boto3.dynamodb.conditions import Attr, Key

from shared import keys
from shared.dynamo import Item, TransactionConditionFailed, TxItem, dynamo_errors, plain
from shared.errors import InvalidRequestError
from shared.outbox import Message, outbox_puts
from shared.pagination import Page, decode_cursor, encode_cursor


@dataclass(frozen=True)
class Book:
    """Which ledger: its account item, its entries and the name its outbox messages are caused by."""

    name: str
    account_sk: str
    entry_prefix: str
    entry_type: str


WALLET = Book("wallet", keys.WALLET_SK, keys.WALLET_ENTRY_PREFIX, "wallet_entry")
CREDITS = Book("credits", keys.CREDITS_SK, keys.CREDIT_ENTRY_PREFIX, "credit_entry")


@dataclass(frozen=True)
class Head:
    """The version and line count an account was read at (0, 0: not stored yet)."""

    version: int = 0
    seq: int = 0

    @property
    def new(self) -> bool:
        return self.version == 0


@dataclass(frozen=True)
class Line:
    kind: str
    amount: int  # signed change to the account's balance (wallet: money; credits: available)
    balance_after: int
    fields: Mapping[str, object] = field(default_factory=dict)  # line-specific (a credit quantity, a charge)


@dataclass(frozen=True)
class Cause:
    """What makes a movement happen once; `record` is kept with it (what the first one did)."""

    key: str
    record: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Named:
    """Another item of the change's transaction; its name is what a failed condition reports."""

    name: str
    item: TxItem


@dataclass(frozen=True)
class Change:
    org_id: str
    head: Head
    sets: Mapping[str, object] = field(default_factory=dict)  # account attributes set to these values
    adds: Mapping[str, int] = field(default_factory=dict)  # account attributes incremented (missing = 0)
    lines: Sequence[Line] = ()
    entry: Mapping[str, object] = field(default_factory=dict)  # on the entry item: ref, actor, project ...
    cause: Cause | None = None
    items: Sequence[Named] = ()
    messages: Sequence[Message] = ()


@dataclass(frozen=True)
class EntryLine:
    """One line of the ledger as read back, with its entry's fields."""

    seq: int
    kind: str
    amount: int
    balance_after: int
    created_at: str
    fields: Mapping[str, Any]
    entry_sk: str  # where it is stored, and its place among the entry's lines (newest first)
    position: int


FILTERED_PAGE = 200  # entries read per query when a filter is applied (a 1 MB page is the other bound)
MAX_TRANSACTION_ITEMS = 100  # DynamoDB's TransactWriteItems limit (the local stack's engine enforces it too)


class ChangeTooLarge(InvalidRequestError):
    """A change with more items than one transaction takes: nothing was written (split it)."""

    code = "change_too_large"


class LedgerConflict(Exception):
    """Another change committed first: read the account again and retry."""


class AlreadyApplied(Exception):
    """The change's cause was applied before (a retry or a redelivery): nothing was written."""


class ConditionFailed(Exception):
    """The named items' conditions failed: nothing was written."""

    def __init__(self, names: frozenset[str]):
        super().__init__(", ".join(sorted(names)))
        self.names = names


class Ledger:
    def __init__(self, table: Any, book: Book):
        self._table = table
        self._client = table.meta.client
        self._name: str = table.name
        self.book = book

    @property
    def table_name(self) -> str:
        return self._name

    # ------------------------------------------------------------------ reads
    def read(self, org_id: str) -> tuple[Head, Item] | None:
        """The account item (plain numbers) and the head to change it from; None if not stored yet."""
        with dynamo_errors():
            got = self._table.get_item(Key=keys.key(org_id, self.book.account_sk), ConsistentRead=True).get("Item")
        if not got:
            return None
        item = plain(got)
        return Head(int(item["version"]), int(item["seq"])), item

    def cause(self, org_id: str, cause: str) -> Item | None:
        """What the change with this cause recorded, or None if it never committed."""
        with dynamo_errors():
            got = self._table.get_item(Key=keys.key(org_id, keys.cause_sk(cause)), ConsistentRead=True).get("Item")
        return _plain(got) if got else None

    def lines(
        self, org_id: str, cursor: str | None, limit: int, *, where: Any = None, kind: str | None = None
    ) -> Page[EntryLine]:
        """Ledger lines newest first, `limit` at most: of entries matching `where` (a boto3 condition on
        the entry's fields), lines of `kind` if given. The cursor resumes inside an entry if need be."""
        start_sk, seen = self._start(org_id, cursor)
        span = (
            Key("SK").between(self.book.entry_prefix, start_sk)
            if start_sk
            else Key("SK").begins_with(self.book.entry_prefix)
        )
        if kind:
            where = Attr("kinds").contains(kind) if where is None else where & Attr("kinds").contains(kind)
        query: dict[str, Any] = {"KeyConditionExpression": Key("PK").eq(keys.org_pk(org_id)) & span}
        query |= {"ScanIndexForward": False, "Limit": limit + 1, "ConsistentRead": True}
        if where is not None:  # a filter may match few entries: read pages of FILTERED_PAGE, not of limit + 1
            query |= {"FilterExpression": where, "Limit": max(limit + 1, FILTERED_PAGE)}
        out: list[EntryLine] = []
        while True:
            with dynamo_errors():
                resp = self._table.query(**query)
            for item in resp["Items"]:
                found = _lines_of(item)
                for line in found[seen if item["SK"] == start_sk else 0 :]:
                    if kind and line.kind != kind:
                        continue
                    if len(out) == limit:
                        return Page(out, _cursor(out[-1]))
                    out.append(line)
            if "LastEvaluatedKey" not in resp:
                return Page(out, None)
            query["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def _start(self, org_id: str, cursor: str | None) -> tuple[str | None, int]:
        start = decode_cursor(cursor, "PK", keys.org_pk(org_id), fields=frozenset({"SK", "seen"}))
        if start is None:
            return None, 0
        sk, seen = start["SK"], start["seen"]
        if not sk.startswith(self.book.entry_prefix) or not (seen.isascii() and seen.isdigit() and len(seen) < 7):
            raise InvalidRequestError("The cursor is not one this API returned.", code="invalid_cursor")
        return sk, int(seen)

    # ------------------------------------------------------------------ the one write
    def commit(self, change: Change, now: datetime) -> None:
        """Writes the change in one transaction. LedgerConflict, AlreadyApplied or ConditionFailed."""
        named = [("account", self._account_item(change))]
        if change.lines:
            named.append(("entry", self._entry_item(change, now)))
        if change.cause is not None:
            named.append(("cause", self._cause_item(change.org_id, change.cause, now)))
        named += [(n.name, n.item) for n in change.items]
        cause = f"{self.book.name}:{change.org_id}:v{change.head.version + 1}"
        named += [("outbox", i) for i in outbox_puts(self._name, change.org_id, cause, change.messages, now)]
        if len(named) > MAX_TRANSACTION_ITEMS:
            raise ChangeTooLarge(f"A change of {len(named)} items is more than one transaction takes.")
        try:
            with dynamo_errors():
                self._client.transact_write_items(TransactItems=[item for _, item in named])
        except TransactionConditionFailed as exc:
            failed = frozenset(named[i][0] for i in exc.indexes)
            if failed & {"account", "entry"}:
                raise LedgerConflict from exc
            if "cause" in failed:
                raise AlreadyApplied from exc
            raise ConditionFailed(failed) from exc

    def _account_item(self, change: Change) -> TxItem:
        head = change.head
        names = {f"#s{i}": k for i, k in enumerate(change.sets)} | {f"#a{i}": k for i, k in enumerate(change.adds)}
        values: dict[str, object] = {f":s{i}": v for i, v in enumerate(change.sets.values())}
        values |= {f":a{i}": v for i, v in enumerate(change.adds.values())}
        values |= {":v": head.version + 1, ":seq": head.seq + len(change.lines)} | ({":zero": 0} if change.adds else {})
        parts = [f"#s{i} = :s{i}" for i in range(len(change.sets))]
        parts += [f"#a{i} = if_not_exists(#a{i}, :zero) + :a{i}" for i in range(len(change.adds))]
        parts += ["version = :v", "seq = :seq"]
        if head.new:
            condition = "attribute_not_exists(PK)"
        else:
            condition, values[":read"] = "version = :read", head.version
        update: TxItem = {
            "TableName": self._name,
            "Key": keys.key(change.org_id, self.book.account_sk),
            "UpdateExpression": "SET " + ", ".join(parts),
            "ConditionExpression": condition,
            "ExpressionAttributeValues": values,
        }
        if names:
            update["ExpressionAttributeNames"] = names
        return {"Update": update}

    def _entry_item(self, change: Change, now: datetime) -> TxItem:
        first = change.head.seq + 1
        item: Item = {
            **change.entry,
            **keys.key(change.org_id, keys.entry_sk(self.book.entry_prefix, first)),
            "type": self.book.entry_type,
            "kinds": sorted({line.kind for line in change.lines}),
            "lines": [
                {**line.fields, "kind": line.kind, "amount": line.amount, "balance_after": line.balance_after}
                for line in change.lines
            ],
            "created_at": now.isoformat(),
        }
        return {"Put": {"TableName": self._name, "Item": item, "ConditionExpression": "attribute_not_exists(PK)"}}

    def _cause_item(self, org_id: str, cause: Cause, now: datetime) -> TxItem:
        item = {**cause.record, **keys.key(org_id, keys.cause_sk(cause.key)), "created_at": now.isoformat()}
        return {"Put": {"TableName": self._name, "Item": item, "ConditionExpression": "attribute_not_exists(PK)"}}


def _lines_of(stored: Item) -> list[EntryLine]:
    """An entry's lines, newest first. Entries written before lines were grouped hold one line each."""
    entry = _plain(stored)
    seq = int(entry["SK"].rsplit("#", 1)[1])
    common = {k: v for k, v in entry.items() if k not in ("lines", "kinds", "PK", "SK")}
    raw = entry.get("lines") or [{"kind": entry["kind"], "amount": entry.get("amount", entry.get("delta"))}]
    lines = [
        EntryLine(
            seq=seq + i,
            kind=str(line["kind"]),
            amount=int(line["amount"]),
            balance_after=int(line.get("balance_after", entry.get("balance_after", 0))),
            created_at=str(entry["created_at"]),
            fields={**common, **line},
            entry_sk=str(entry["SK"]),
            position=len(raw) - 1 - i,
        )
        for i, line in enumerate(raw)
    ]
    return lines[::-1]


def _plain(value: Any) -> Any:
    """DynamoDB's Decimals as ints, all the way down (entry lines are a list of maps)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return plain({"v": value})["v"]


def _cursor(last: EntryLine) -> str | None:
    """Resumes after `last`: the entry it is in, and how many of that entry's lines were seen."""
    return encode_cursor({"PK": "", "SK": last.entry_sk, "seen": str(last.position + 1)}, "PK")

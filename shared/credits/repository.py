"""DynamoDB layout of credits (all in the org's partition of BillingTable):

  SK=CREDITS                      the account: CreditAccount fields + version + seq (one writer at a time)
  SK=CLEDGER#<seq:012d>           ledger entries, append-only, balance_after = available after it
  SK=RESV#<workflow_run_id>       a reservation (status reserved|settled|released|expired); while
                                  reserved it carries GSI2 (RESV#ACTIVE, expires_at) for the sweeper
  SK=PERIOD#<period_key>          period counters: credits_*, workflow_runs, sdk_events, storage
  SK=PERIOD#<period_key>#PRJ#<id> per-project credit counters of the period

Every change is one TransactWriteItems: the account with `version = :read` (a lost or double update
is impossible), its entries, the reservation (conditional on its status) and the counters (ADD)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from boto3.dynamodb.conditions import Attr, Key

from shared.credits.account import CreditAccount, Entry
from shared.dynamo import TransactionConditionFailed, close_indexed, dynamo_errors, plain
from shared.outbox import Message, outbox_puts
from shared.pagination import Page, decode_cursor, encode_cursor


def _pk(org_id: str) -> str:
    return f"ORG#{org_id}"


ACCOUNT_SK = "CREDITS"
ACTIVE_RESERVATIONS = "RESV#ACTIVE"


@dataclass(frozen=True)
class StoredAccount:
    account: CreditAccount
    version: int  # 0 = not stored yet
    seq: int


class VersionConflict(Exception):
    """Another writer changed the account first: read again and retry."""


class RecordConflict(Exception):
    """A conditional record (reservation, batch marker) was not in the expected state."""


class CreditRepository:
    def __init__(self, table: Any):
        self._table = table
        self._client = table.meta.client
        self._name = table.name

    # ------------------------------------------------------------------ reads
    def account(self, org_id: str) -> StoredAccount | None:
        with dynamo_errors():
            item = self._table.get_item(Key={"PK": _pk(org_id), "SK": ACCOUNT_SK}, ConsistentRead=True).get("Item")
        if not item:
            return None
        data = plain(item)
        fields = {k: data[k] for k in CreditAccount.__dataclass_fields__ if k in data}
        return StoredAccount(CreditAccount(**fields), int(data["version"]), int(data["seq"]))

    def reservation(self, org_id: str, run_id: str) -> dict[str, Any] | None:
        with dynamo_errors():
            item = self._table.get_item(Key={"PK": _pk(org_id), "SK": f"RESV#{run_id}"}, ConsistentRead=True)
        return plain(item["Item"]) if "Item" in item else None

    def period(self, org_id: str, period_key: str) -> dict[str, Any]:
        with dynamo_errors():
            item = self._table.get_item(Key={"PK": _pk(org_id), "SK": f"PERIOD#{period_key}"}, ConsistentRead=True)
        return plain(item.get("Item") or {})

    def project_periods(self, org_id: str, period_key: str) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": Key("PK").eq(_pk(org_id)) & Key("SK").begins_with(f"PERIOD#{period_key}#PRJ#"),
            "ConsistentRead": True,
        }
        items: list[dict[str, Any]] = []
        with dynamo_errors():
            while True:
                resp = self._table.query(**kwargs)
                items += [plain(i) for i in resp["Items"]]
                if "LastEvaluatedKey" not in resp:
                    return items
                kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def entries(self, org_id: str, cursor: str | None, limit: int) -> Page[dict[str, Any]]:
        """Newest first."""
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": Key("PK").eq(_pk(org_id)) & Key("SK").begins_with("CLEDGER#"),
            "ScanIndexForward": False,
            "Limit": limit,
            "ConsistentRead": True,
        }
        start = decode_cursor(cursor, "PK", _pk(org_id))
        if start:
            if not str(start.get("SK", "")).startswith("CLEDGER#"):
                decode_cursor("!", "PK", "")
            kwargs["ExclusiveStartKey"] = start
        with dynamo_errors():
            resp = self._table.query(**kwargs)
        return Page([plain(i) for i in resp["Items"]], encode_cursor(resp.get("LastEvaluatedKey"), "PK"))

    def expired_reservations(self, now_iso: str, limit: int = 100) -> list[dict[str, Any]]:
        with dynamo_errors():
            resp = self._table.query(
                IndexName="GSI2",
                KeyConditionExpression=Key("GSI2PK").eq(ACTIVE_RESERVATIONS) & Key("GSI2SK").lte(now_iso),
                Limit=limit,
            )
        return [plain(i) for i in resp["Items"]]

    # ------------------------------------------------------------------ the one write
    def commit(
        self,
        org_id: str,
        stored: StoredAccount,
        after: CreditAccount,
        entries: list[Entry],
        *,
        entry_fields: dict[str, Any],
        now_iso: str,
        extra: list[dict[str, Any]],
    ) -> None:
        """Writes the account, its new entries and `extra` transaction items atomically.
        VersionConflict if the account moved on; RecordConflict if an extra item's condition failed."""
        fields = asdict(after)
        version = stored.version + 1
        sets = ", ".join(f"#{k} = :{k}" for k in fields)
        account_item: dict[str, Any] = {
            "Update": {
                "TableName": self._name,
                "Key": {"PK": _pk(org_id), "SK": ACCOUNT_SK},
                "UpdateExpression": f"SET {sets}, version = :v, seq = :seq",
                "ConditionExpression": "attribute_not_exists(PK)" if stored.version == 0 else "version = :read",
                "ExpressionAttributeNames": {f"#{k}": k for k in fields},
                "ExpressionAttributeValues": {
                    **{f":{k}": v for k, v in fields.items()},
                    ":v": version,
                    ":seq": stored.seq + len(entries),
                    **({} if stored.version == 0 else {":read": stored.version}),
                },
            }
        }
        entry_items = [
            {
                "Put": {
                    "TableName": self._name,
                    "ConditionExpression": "attribute_not_exists(PK)",
                    "Item": {
                        "PK": _pk(org_id),
                        "SK": f"CLEDGER#{stored.seq + i + 1:012d}",
                        "type": "credit_entry",
                        "kind": e.kind.value,
                        "delta": e.delta,
                        "credits": e.credits,
                        "balance_after": e.balance_after,
                        "period_key": after.period_key,
                        "created_at": now_iso,
                        **entry_fields,
                    },
                }
            }
            for i, e in enumerate(entries)
        ]
        try:
            with dynamo_errors():
                self._client.transact_write_items(TransactItems=[account_item, *entry_items, *extra])
        except TransactionConditionFailed as exc:
            if 0 in exc.indexes:
                raise VersionConflict from exc
            raise RecordConflict from exc

    # ------------------------------------------------------------------ transaction items
    def outbox(self, org_id: str, cause: str, messages: Sequence[Message], now: datetime) -> list[dict[str, Any]]:
        """The outbox items of a change's messages, for the change's own transaction."""
        return outbox_puts(self._name, org_id, cause, messages, now)

    def put_reservation(self, org_id: str, run_id: str, record: dict[str, Any]) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self._name,
                "ConditionExpression": "attribute_not_exists(PK)",
                "Item": {
                    "PK": _pk(org_id),
                    "SK": f"RESV#{run_id}",
                    "type": "credit_reservation",
                    "GSI2PK": ACTIVE_RESERVATIONS,
                    "GSI2SK": record["hold_expires_at"],
                    **record,
                },
            }
        }

    def end_reservation(self, org_id: str, run_id: str, status: str, fields: dict[str, Any]) -> dict[str, Any]:
        key = {"PK": _pk(org_id), "SK": f"RESV#{run_id}"}
        return close_indexed(self._name, key, expected="reserved", status=status, fields=fields)

    def add_counters(
        self, org_id: str, sk: str, counters: dict[str, int], sets: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """ADD to counters of a period (or project-period) item, creating it if needed."""
        sets = sets or {}
        names = {f"#a{i}": k for i, k in enumerate(counters)} | {f"#s{i}": k for i, k in enumerate(sets)}
        values = {f":a{i}": v for i, v in enumerate(counters.values())} | {
            f":s{i}": v for i, v in enumerate(sets.values())
        }
        expression = "ADD " + ", ".join(f"#a{i} :a{i}" for i in range(len(counters)))
        if sets:
            expression = "SET " + ", ".join(f"#s{i} = :s{i}" for i in range(len(sets))) + " " + expression
        return {
            "Update": {
                "TableName": self._name,
                "Key": {"PK": _pk(org_id), "SK": sk},
                "UpdateExpression": expression,
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
        }

    def write(self, items: list[dict[str, Any]]) -> None:
        """A transaction of counter updates guarded by a marker put (e.g. an ingestion batch id)."""
        try:
            with dynamo_errors():
                self._client.transact_write_items(TransactItems=items)
        except TransactionConditionFailed as exc:
            raise RecordConflict from exc

    def marker(self, pk: str, sk: str, expires_at: int, fields: dict[str, Any]) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self._name,
                "ConditionExpression": "attribute_not_exists(PK)",
                "Item": {"PK": pk, "SK": sk, "expires_at": expires_at, **fields},
            }
        }

    def raise_peak(self, org_id: str, period_key: str, field: str, value: int) -> None:
        """Keeps the highest value seen (storage snapshots); a lower or equal one changes nothing."""
        try:
            with dynamo_errors():
                self._table.update_item(
                    Key={"PK": _pk(org_id), "SK": f"PERIOD#{period_key}"},
                    UpdateExpression="SET #f = :v",
                    ConditionExpression=Attr(field).not_exists() | Attr(field).lt(value),
                    ExpressionAttributeNames={"#f": field},
                    ExpressionAttributeValues={":v": value},
                )
        except TransactionConditionFailed:
            return

    def set_period_fields(self, org_id: str, period_key: str, fields: dict[str, Any]) -> None:
        names = {f"#f{i}": k for i, k in enumerate(fields)}
        values = {f":f{i}": v for i, v in enumerate(fields.values())}
        with dynamo_errors():
            self._table.update_item(
                Key={"PK": _pk(org_id), "SK": f"PERIOD#{period_key}"},
                UpdateExpression="SET " + ", ".join(f"#f{i} = :f{i}" for i in range(len(fields))),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )

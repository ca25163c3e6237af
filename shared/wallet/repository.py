"""DynamoDB layout of the wallet (org partition of BillingTable):

  SK=WALLET                 the account: balance, held, pending, floor, low_threshold, status,
                            available (= balance - held - floor), version, seq, auto-top-up fields,
                            billing_mode (the org's, kept in step by the org's writes: see mode_sync)
  SK=WLEDGER#<seq:012d>     entries, append-only: kind, amount, balance_after, currency, project,
                            platform, ref, actor, idempotency_key, created_at
  SK=HOLD#<hold_id>         holds: pending -> posted | voided | expired (GSI2 HOLD#ACTIVE while pending)
  SK=TOPUP#<topup_id>       top-ups: method, amount, status, payment intent, charge, refunded
                            (GSI2 AUTO#INFLIGHT while an auto-top-up has no payment intent yet)
  SK=WSPEND#<yyyy-mm-dd>    spend per day (runway)
  SK=IDEM#<key>             one per money movement's cause: written in the movement's transaction

Balance changes are versioned (`version = :read`), so `balance_after` is exact and no update is lost.
Holds do not move money: they change `held` / `available` arithmetically under the condition
`available >= :amount`, so 1,000 concurrent holds need no retries and can never pass the floor."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from boto3.dynamodb.conditions import Attr, Key

from shared.dynamo import TransactionConditionFailed, close_indexed, dynamo_errors, plain
from shared.outbox import Message, outbox_puts
from shared.pagination import Page, decode_cursor, encode_cursor
from shared.wallet.account import Movement, WalletAccount, WalletStatus

ACCOUNT_SK = "WALLET"
ACTIVE_HOLDS = "HOLD#ACTIVE"
AUTO_IN_FLIGHT = "AUTO#INFLIGHT"
_ACCOUNT_FIELDS = ("currency", "balance", "held", "pending", "floor", "low_threshold", "status")


def _pk(org_id: str) -> str:
    return f"ORG#{org_id}"


@dataclass(frozen=True)
class StoredWallet:
    account: WalletAccount
    version: int  # 0 = not stored yet
    seq: int
    settings: dict[str, Any] = field(default_factory=dict)  # auto-top-up and the rest of the item


class VersionConflict(Exception):
    pass


class RecordConflict(Exception):
    """A conditional record (marker, hold, top-up) was not in the expected state."""


class HoldRefused(Exception):
    pass


class ModeChanged(Exception):
    """The org's billing mode changed after it was read (checked when the wallet is first written)."""


def account_key(org_id: str) -> dict[str, str]:
    return {"PK": _pk(org_id), "SK": ACCOUNT_SK}


def mode_sync(
    table_name: str, org_id: str, mode: str, *, wallet_exists: bool, agency_fee_bps: int | None = None
) -> dict[str, Any]:
    """The transaction item an org's billing-mode change carries, so the wallet's copy of the mode never
    disagrees with the org's: holds check the copy and need no third item. If the wallet did not exist
    when read, the item asserts it still does not; the wallet's first write copies the org's mode and
    asserts it is still the org's mode. Of two racing transactions one fails, and it reads again.
    The change bumps the wallet's version, so a balance change that read the old mode retries. Leaving
    agency mode keeps the fee rate it had, for the late bills of spend made in agency mode."""
    if wallet_exists:
        values: dict[str, Any] = {":m": mode, ":one": 1}
        update = "SET billing_mode = :m, version = version + :one"
        if agency_fee_bps is not None:
            update += ", agency_fee_bps = :fee"
            values[":fee"] = agency_fee_bps
        return {
            "Update": {
                "TableName": table_name,
                "Key": account_key(org_id),
                "UpdateExpression": update,
                "ConditionExpression": "attribute_exists(PK)",
                "ExpressionAttributeValues": values,
            }
        }
    return {
        "ConditionCheck": {
            "TableName": table_name,
            "Key": account_key(org_id),
            "ConditionExpression": "attribute_not_exists(PK)",
        }
    }


class WalletRepository:
    def __init__(self, table: Any):
        self._table = table
        self._client = table.meta.client
        self._name = table.name

    # ------------------------------------------------------------------ reads
    def get(self, org_id: str) -> StoredWallet | None:
        with dynamo_errors():
            item = self._table.get_item(Key=account_key(org_id), ConsistentRead=True).get("Item")
        if not item:
            return None
        data = plain(item)
        account = WalletAccount(**{k: data[k] for k in _ACCOUNT_FIELDS})
        account = WalletAccount(**{**account.__dict__, "status": WalletStatus(data["status"])})
        return StoredWallet(account, int(data["version"]), int(data["seq"]), data)

    def item(self, org_id: str, sk: str) -> dict[str, Any] | None:
        with dynamo_errors():
            got = self._table.get_item(Key={"PK": _pk(org_id), "SK": sk}, ConsistentRead=True).get("Item")
        return plain(got) if got else None

    def entries(self, org_id: str, cursor: str | None, limit: int, filters: dict[str, Any]) -> Page[dict[str, Any]]:
        """Newest first; filters: kind, project_id, platform, from/to (ISO dates)."""
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": Key("PK").eq(_pk(org_id)) & Key("SK").begins_with("WLEDGER#"),
            "ScanIndexForward": False,
            "Limit": limit,
            "ConsistentRead": True,
        }
        parts: list[Any] = [Attr(n).eq(filters[n]) for n in ("kind", "project_id", "platform") if filters.get(n)]
        if filters.get("from"):
            parts.append(Attr("created_at").gte(filters["from"]))
        if filters.get("to"):
            parts.append(Attr("created_at").lt(filters["to"]))
        if parts:
            condition = parts[0]
            for part in parts[1:]:
                condition = condition & part
            kwargs["FilterExpression"] = condition
        start = decode_cursor(cursor, "PK", _pk(org_id))
        if start:
            if not str(start.get("SK", "")).startswith("WLEDGER#"):
                decode_cursor("!", "PK", "")
            kwargs["ExclusiveStartKey"] = start
        with dynamo_errors():
            resp = self._table.query(**kwargs)
        return Page([plain(i) for i in resp["Items"]], encode_cursor(resp.get("LastEvaluatedKey"), "PK"))

    def spend_days(self, org_id: str, days: list[str]) -> dict[str, int]:
        keys = [{"PK": _pk(org_id), "SK": f"WSPEND#{d}"} for d in days]
        with dynamo_errors():
            got = self._client.batch_get_item(RequestItems={self._name: {"Keys": keys, "ConsistentRead": True}})
        return {i["SK"].removeprefix("WSPEND#"): int(i["amount"]) for i in got["Responses"].get(self._name, [])}

    def expired_holds(self, now_iso: str, limit: int = 100) -> list[dict[str, Any]]:
        with dynamo_errors():
            resp = self._table.query(
                IndexName="GSI2",
                Limit=limit,
                KeyConditionExpression=Key("GSI2PK").eq(ACTIVE_HOLDS) & Key("GSI2SK").lte(now_iso),
            )
        return [plain(i) for i in resp["Items"]]

    def stalled_auto_top_ups(self, started_before_iso: str, limit: int = 50) -> list[dict[str, Any]]:
        """Auto-top-ups claimed before then that still have no payment intent, oldest first."""
        with dynamo_errors():
            resp = self._table.query(
                IndexName="GSI2",
                Limit=limit,
                KeyConditionExpression=Key("GSI2PK").eq(AUTO_IN_FLIGHT) & Key("GSI2SK").lte(started_before_iso),
            )
        return [plain(i) for i in resp["Items"]]

    def settle_topup_record(
        self, org_id: str, topup_id: str, fields: dict[str, Any], *, only_from: str | None = None
    ) -> None:
        """Sets `fields` on a top-up and takes it off the in-flight auto-top-up list; with `only_from`, the
        fields are set only on a top-up still in that status (a credit that landed first is never
        overwritten), and it leaves the list either way."""
        if only_from is not None:
            try:
                self._set_topup(org_id, topup_id, fields, only_from)
            except TransactionConditionFailed:
                fields = {}
            else:
                return
        self._set_topup(org_id, topup_id, fields, None)

    def _set_topup(self, org_id: str, topup_id: str, fields: dict[str, Any], only_from: str | None) -> None:
        update: dict[str, Any] = {"UpdateExpression": "REMOVE GSI2PK, GSI2SK"}
        if fields:
            sets = ", ".join(f"#f{i} = :f{i}" for i in range(len(fields)))
            update = {
                "UpdateExpression": f"SET {sets} REMOVE GSI2PK, GSI2SK",
                "ExpressionAttributeNames": {f"#f{i}": k for i, k in enumerate(fields)},
                "ExpressionAttributeValues": {f":f{i}": v for i, v in enumerate(fields.values())},
            }
        condition = "attribute_exists(PK)"
        if only_from is not None:
            condition += " AND #status = :from"
            update.setdefault("ExpressionAttributeNames", {})["#status"] = "status"
            update.setdefault("ExpressionAttributeValues", {})[":from"] = only_from
        with dynamo_errors():
            self._table.update_item(
                Key={"PK": _pk(org_id), "SK": f"TOPUP#{topup_id}"}, ConditionExpression=condition, **update
            )

    # ------------------------------------------------------------------ money movements
    def post(
        self,
        org_id: str,
        stored: StoredWallet,
        after: WalletAccount,
        movements: list[Movement],
        *,
        entry_fields: dict[str, Any],
        now_iso: str,
        mode: str,
        held_delta: int = 0,
        sets: dict[str, Any] | None = None,
        extra: list[dict[str, Any]] | None = None,
        per_entry: list[dict[str, Any]] | None = None,
    ) -> None:
        """Writes a balance change with its entries (and `extra` items) in one transaction.
        VersionConflict if another balance change came first; RecordConflict if an extra's condition failed;
        ModeChanged if this is the wallet's first write and the org's mode is no longer `mode`."""
        sets = dict(sets or {})
        values: dict[str, Any] = {
            ":balance": after.balance,
            ":status": after.status.value,
            ":v": stored.version + 1,
            ":seq": stored.seq + len(movements),
        }
        names = {"#status": "status"}
        parts = ["balance = :balance", "#status = :status", "version = :v", "seq = :seq"]
        if stored.version == 0:
            base = {k: getattr(after, k) for k in ("currency", "pending", "floor", "low_threshold")}
            sets |= base | {"billing_mode": mode}
            values |= {":held": held_delta, ":available": after.balance - held_delta - after.floor}
            parts += ["held = :held", "available = :available"]
            condition = "attribute_not_exists(PK)"
        else:
            moved = after.balance - stored.account.balance - held_delta - (after.floor - stored.account.floor)
            values |= {":hd": held_delta, ":ad": moved, ":read": stored.version}
            parts += ["held = held + :hd", "available = available + :ad"]
            sets |= {
                k: getattr(after, k)
                for k in ("pending", "floor", "low_threshold")
                if getattr(after, k) != getattr(stored.account, k)
            }
            condition = "version = :read"
        for i, (k, v) in enumerate(sets.items()):
            names[f"#s{i}"] = k
            values[f":s{i}"] = v
            parts.append(f"#s{i} = :s{i}")
        account_item = {
            "Update": {
                "TableName": self._name,
                "Key": account_key(org_id),
                "UpdateExpression": "SET " + ", ".join(parts),
                "ConditionExpression": condition,
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
        }
        entries = [
            {
                "Put": {
                    "TableName": self._name,
                    "ConditionExpression": "attribute_not_exists(PK)",
                    "Item": {
                        "PK": _pk(org_id),
                        "SK": f"WLEDGER#{stored.seq + i + 1:012d}",
                        "type": "wallet_entry",
                        "kind": m.kind.value,
                        "amount": m.amount,
                        "balance_after": m.balance_after,
                        "currency": after.currency,
                        "created_at": now_iso,
                        **entry_fields,
                        **(per_entry[i] if per_entry else {}),
                    },
                }
            }
            for i, m in enumerate(movements)
        ]
        items = [account_item, *entries, *(extra or [])]
        if stored.version == 0:  # the wallet's copy of the billing mode starts equal to the org's
            items.append(
                {
                    "ConditionCheck": {
                        "TableName": self._name,
                        "Key": {"PK": _pk(org_id), "SK": "ORG"},
                        "ConditionExpression": "billing_mode = :mode",
                        "ExpressionAttributeValues": {":mode": mode},
                    }
                }
            )
        try:
            with dynamo_errors():
                self._client.transact_write_items(TransactItems=items)
        except TransactionConditionFailed as exc:
            if 0 in exc.indexes:
                raise VersionConflict from exc
            if stored.version == 0 and len(items) - 1 in exc.indexes:
                raise ModeChanged from exc
            raise RecordConflict from exc

    # ------------------------------------------------------------------ holds (no money moves)
    def place_hold(self, org_id: str, hold: dict[str, Any]) -> None:
        """One transaction of two items, no reads: the wallet must be in agency mode (its copy of the
        org's mode), cover the amount and not be paused. HoldRefused otherwise; RecordConflict if the
        hold id exists (a replay)."""
        try:
            with dynamo_errors():
                self._client.transact_write_items(
                    TransactItems=[
                        {
                            "Update": {
                                "TableName": self._name,
                                "Key": account_key(org_id),
                                "UpdateExpression": "SET held = held + :a, available = available - :a",
                                "ConditionExpression": "available >= :a AND #s <> :paused AND billing_mode = :agency",
                                "ExpressionAttributeNames": {"#s": "status"},
                                "ExpressionAttributeValues": {
                                    ":a": hold["amount_minor"],
                                    ":paused": WalletStatus.PAUSED.value,
                                    ":agency": "agency",
                                },
                            }
                        },
                        {
                            "Put": {
                                "TableName": self._name,
                                "ConditionExpression": "attribute_not_exists(PK)",
                                "Item": {
                                    "PK": _pk(org_id),
                                    "SK": f"HOLD#{hold['hold_id']}",
                                    "type": "wallet_hold",
                                    "GSI2PK": ACTIVE_HOLDS,
                                    "GSI2SK": hold["expires_at"],
                                    **hold,
                                },
                            }
                        },
                    ]
                )
        except TransactionConditionFailed as exc:
            if 1 in exc.indexes:
                raise RecordConflict from exc
            raise HoldRefused from exc

    def copy_mode(self, org_id: str, mode: str) -> bool:
        """Gives a wallet written before it kept a copy of the org's billing mode that copy, if the org
        still has the mode it was read with. False if there was nothing to do."""
        try:
            with dynamo_errors():
                self._client.transact_write_items(
                    TransactItems=[
                        {
                            "Update": {
                                "TableName": self._name,
                                "Key": account_key(org_id),
                                "UpdateExpression": "SET billing_mode = :m",
                                "ConditionExpression": "attribute_exists(PK) AND attribute_not_exists(billing_mode)",
                                "ExpressionAttributeValues": {":m": mode},
                            }
                        },
                        {
                            "ConditionCheck": {
                                "TableName": self._name,
                                "Key": {"PK": _pk(org_id), "SK": "ORG"},
                                "ConditionExpression": "billing_mode = :m",
                                "ExpressionAttributeValues": {":m": mode},
                            }
                        },
                    ]
                )
        except TransactionConditionFailed:
            return False
        return True

    def end_hold(self, org_id: str, hold_id: str, amount: int, status: str, fields: dict[str, Any]) -> None:
        """Voids or expires a pending hold (its amount is free again). RecordConflict if not pending."""
        try:
            with dynamo_errors():
                self._client.transact_write_items(
                    TransactItems=[
                        {
                            "Update": {
                                "TableName": self._name,
                                "Key": account_key(org_id),
                                "UpdateExpression": "SET held = held - :a, available = available + :a",
                                "ExpressionAttributeValues": {":a": amount},
                            }
                        },
                        self.close_hold(org_id, hold_id, status, fields),
                    ]
                )
        except TransactionConditionFailed as exc:
            raise RecordConflict from exc

    def close_hold(self, org_id: str, hold_id: str, status: str, fields: dict[str, Any]) -> dict[str, Any]:
        key = {"PK": _pk(org_id), "SK": f"HOLD#{hold_id}"}
        return close_indexed(self._name, key, expected="pending", status=status, fields=fields)

    # ------------------------------------------------------------------ transaction items
    def outbox(self, org_id: str, cause: str, messages: Sequence[Message], now: datetime) -> list[dict[str, Any]]:
        """The outbox items of a change's messages, for the change's own transaction."""
        return outbox_puts(self._name, org_id, cause, messages, now)

    def marker(self, org_id: str, key: str, fields: dict[str, Any]) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self._name,
                "ConditionExpression": "attribute_not_exists(PK)",
                "Item": {"PK": _pk(org_id), "SK": f"IDEM#{key}", **fields},
            }
        }

    def put(self, org_id: str, sk: str, fields: dict[str, Any]) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self._name,
                "ConditionExpression": "attribute_not_exists(PK)",
                "Item": {"PK": _pk(org_id), "SK": sk, **fields},
            }
        }

    def set_fields(
        self, org_id: str, sk: str, fields: dict[str, Any], condition: tuple[str, Any] | None = None
    ) -> dict[str, Any]:
        names = {f"#f{i}": k for i, k in enumerate(fields)}
        values = {f":f{i}": v for i, v in enumerate(fields.values())}
        update: dict[str, Any] = {
            "TableName": self._name,
            "Key": {"PK": _pk(org_id), "SK": sk},
            "UpdateExpression": "SET " + ", ".join(f"#f{i} = :f{i}" for i in range(len(fields))),
        }
        if condition:
            names["#c"], values[":c"] = condition[0], condition[1]
            update["ConditionExpression"] = "#c = :c"
        update["ExpressionAttributeNames"], update["ExpressionAttributeValues"] = names, values
        return {"Update": update}

    def add_spend_day(self, org_id: str, day: str, amount: int) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self._name,
                "Key": {"PK": _pk(org_id), "SK": f"WSPEND#{day}"},
                "UpdateExpression": "ADD amount :a",
                "ExpressionAttributeValues": {":a": amount},
            }
        }

    def add_period_spend(
        self, org_id: str, period_key: str, platform: str, project_id: str, spend: int, fee: int
    ) -> dict[str, Any]:
        """Running aggregate per period x platform x project: what the invoice reads (never the ledger)."""
        return {
            "Update": {
                "TableName": self._name,
                "Key": {"PK": _pk(org_id), "SK": f"WPERIOD#{period_key}#{platform}#{project_id}"},
                "UpdateExpression": "SET platform = :p, project_id = :j ADD ad_spend :s, fee :f, bills :one",
                "ExpressionAttributeValues": {":p": platform, ":j": project_id, ":s": spend, ":f": fee, ":one": 1},
            }
        }

    def topups(self, org_id: str) -> list[dict[str, Any]]:
        """Every top-up of the org, in any status."""
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": Key("PK").eq(_pk(org_id)) & Key("SK").begins_with("TOPUP#"),
            "ConsistentRead": True,
        }
        found: list[dict[str, Any]] = []
        while True:
            with dynamo_errors():
                resp = self._table.query(**kwargs)
            found += [plain(i) for i in resp["Items"]]
            if "LastEvaluatedKey" not in resp:
                return found
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def period_spend(self, org_id: str, period_key: str) -> list[dict[str, Any]]:
        with dynamo_errors():
            resp = self._table.query(
                KeyConditionExpression=Key("PK").eq(_pk(org_id)) & Key("SK").begins_with(f"WPERIOD#{period_key}#"),
                ConsistentRead=True,
            )
        return [plain(i) for i in resp["Items"]]

    def write(self, items: list[dict[str, Any]]) -> None:
        try:
            with dynamo_errors():
                self._client.transact_write_items(TransactItems=items)
        except TransactionConditionFailed as exc:
            raise RecordConflict from exc

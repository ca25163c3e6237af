"""DynamoDB plumbing shared by the repositories (the only code that talks to boto3)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import fields
from decimal import Decimal
from functools import cache
from typing import Any, TypeAlias

import boto3
from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from shared import keys
from shared.errors import ConcurrentUpdateError, ThrottledError

_THROTTLING = frozenset({"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"})


Item: TypeAlias = dict[str, Any]  # a DynamoDB item as boto3's resource layer reads and writes it
TxItem: TypeAlias = dict[str, Any]  # one element of TransactWriteItems (Put / Update / ConditionCheck)


@cache
def dynamodb_resource() -> Any:
    """One resource per process (cold start); endpoint from AWS_ENDPOINT_URL_DYNAMODB when set."""
    return boto3.resource("dynamodb")


class PerThreadTable:
    """A DynamoDB Table whose resource is made per thread, for services whose work is spread over threads
    (the sweeper's workers): boto3 clients are thread-safe, resources are not. Everything a repository
    asks of a Table (`get_item`, `query`, `meta.client`, `name`...) is answered by the calling thread's own.
    They are made from one session, one thread at a time (a session is not thread-safe; a new session per
    thread would load the service's models again: ~25x slower, paid by every sweep's new workers)."""

    def __init__(self, name: str):
        self.name = name
        self._local = threading.local()
        self._session = boto3.session.Session()
        self._making = threading.Lock()

    def _table(self) -> Any:
        table = getattr(self._local, "table", None)
        if table is None:
            with self._making:
                table = self._local.table = self._session.resource("dynamodb").Table(self.name)
        return table

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._table(), attribute)


class TransactionConditionFailed(Exception):
    """A conditional write failed; `indexes` are the failing positions of the transaction items."""

    def __init__(self, indexes: list[int]):
        super().__init__(f"conditions failed at {indexes}")
        self.indexes = indexes


@contextmanager
def dynamo_errors() -> Iterator[None]:
    """Map DynamoDB errors to domain errors: conditions, conflicts, throttling."""
    try:
        yield
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "ConditionalCheckFailedException":
            raise TransactionConditionFailed([0]) from exc
        if code == "TransactionCanceledException":
            reasons = exc.response.get("CancellationReasons", [])
            failed = [i for i, r in enumerate(reasons) if r.get("Code") == "ConditionalCheckFailed"]
            if failed:
                raise TransactionConditionFailed(failed) from exc
            if any(r.get("Code") == "TransactionConflict" for r in reasons):
                raise ConcurrentUpdateError("Another request changed this at the same time; retry.") from exc
            if any(r.get("Code") in _THROTTLING for r in reasons):
                raise ThrottledError("The service is busy; retry shortly.") from exc
        if code == "TransactionConflictException":
            raise ConcurrentUpdateError("Another request changed this at the same time; retry.") from exc
        if code in _THROTTLING:
            raise ThrottledError("The service is busy; retry shortly.") from exc
        raise


def org_items(table: Any, org_id: str, prefix: str, where: Any = None) -> list[Item]:
    """Every item of the org's partition whose sort key starts with `prefix` (strongly consistent), page
    after page (a query answers at most 1 MB); `where`: a filter (boto3 condition) applied by DynamoDB."""
    query: dict[str, Any] = {
        "KeyConditionExpression": Key("PK").eq(keys.org_pk(org_id)) & Key("SK").begins_with(prefix),
        "ConsistentRead": True,
    }
    if where is not None:
        query["FilterExpression"] = where
    items: list[Item] = []
    with dynamo_errors():
        while True:
            resp = table.query(**query)
            items += [plain(i) for i in resp["Items"]]
            if "LastEvaluatedKey" not in resp:
                return items
            query["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


BATCH_GET_ATTEMPTS = 8


def batch_get(
    client: Any, table_name: str, wanted: Sequence[Mapping[str, str]], *, consistent: bool = True, **asked: object
) -> list[Item]:
    """The items of up to 100 keys in one BatchGetItem (`asked`: its projection), what DynamoDB leaves
    unprocessed (under load, any batch may) asked again with backoff; ThrottledError if it stays so."""
    from shared.retry import backoff

    items: list[Item] = []
    keys_asked = [dict(k) for k in wanted]
    request: Mapping[str, Any] = {table_name: {"Keys": keys_asked, "ConsistentRead": consistent, **asked}}
    for attempt in range(BATCH_GET_ATTEMPTS):
        with dynamo_errors():
            resp = client.batch_get_item(RequestItems=request)
        items += resp.get("Responses", {}).get(table_name, [])
        request = resp.get("UnprocessedKeys") or {}
        if not request:
            return items
        time.sleep(backoff(attempt, cap=1.0))
    raise ThrottledError("DynamoDB left keys unprocessed; retry shortly.")


def set_fields(values: Mapping[str, Any]) -> dict[str, Any]:
    """An update's `SET` of each of `values` (attribute names and values as placeholders)."""
    return {
        "UpdateExpression": "SET " + ", ".join(f"#f{i} = :f{i}" for i in range(len(values))),
        "ExpressionAttributeNames": {f"#f{i}": k for i, k in enumerate(values)},
        "ExpressionAttributeValues": {f":f{i}": v for i, v in enumerate(values.values())},
    }


def plain(item: dict[str, Any]) -> dict[str, Any]:
    """DynamoDB numbers come back as Decimal; our stored numbers are all integers."""
    return {k: (int(v) if isinstance(v, Decimal) else v) for k, v in item.items()}


def close_indexed(
    table_name: str, key: dict[str, str], *, expected: str, status: str, fields: dict[str, Any]
) -> dict[str, Any]:
    """The transaction item that moves a record out of its open state (`status` from `expected`, with
    `fields`) and takes it off the sparse GSI2 list of open records; the condition fails otherwise."""
    names = {"#s": "status", **{f"#f{i}": k for i, k in enumerate(fields)}}
    values = {":new": status, ":expected": expected, **{f":f{i}": v for i, v in enumerate(fields.values())}}
    sets = ", ".join(["#s = :new", *(f"#f{i} = :f{i}" for i in range(len(fields)))])
    return {
        "Update": {
            "TableName": table_name,
            "Key": key,
            "UpdateExpression": f"SET {sets} REMOVE GSI2PK, GSI2SK",
            "ConditionExpression": "#s = :expected",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
    }


def from_item(cls: Any, item: Mapping[str, Any]) -> Any:
    """A record dataclass from a stored item: its own fields, the rest ignored."""
    return cls(**{f.name: item[f.name] for f in fields(cls) if f.name in item})

"""Counts what the code under test asks of DynamoDB: calls, time spent in them, items written and the
capacity DynamoDB reports (ReturnConsumedCapacity=TOTAL is injected into every data call).

It patches botocore's client class, so it sees every boto3 session in the process
(the services build their own sessions, which the default session's event hooks would not reach)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import botocore.client

CAPACITY_OPS = {
    "GetItem",
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "Query",
    "Scan",
    "BatchGetItem",
    "BatchWriteItem",
    "TransactWriteItems",
    "TransactGetItems",
}
WRITE_OPS = {"PutItem", "UpdateItem", "DeleteItem"}


@dataclass
class Tally:
    calls: int = 0
    write_items: int = 0  # items written (a transaction's items counted one by one)
    transact_items: int = 0
    transactions: int = 0
    rcu: float = 0.0
    wcu: float = 0.0
    capacity_reported: int = 0  # responses that carried ConsumedCapacity
    capacity_missing: int = 0

    def minus(self, other: Tally) -> Tally:
        return Tally(**{k: getattr(self, k) - getattr(other, k) for k in self.__dataclass_fields__})


class Probe:
    def __init__(self) -> None:
        self.tally = Tally()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._installed = False

    # ------------------------------------------------------------------ per-thread DynamoDB time
    def ddb_seconds(self) -> float:
        return float(getattr(self._local, "ddb", 0.0))

    def reset_thread(self) -> None:
        self._local.ddb = 0.0

    def snapshot(self) -> Tally:
        with self._lock:
            return Tally(**vars(self.tally))

    @contextmanager
    def measuring(self) -> Iterator[list[Tally]]:
        """Yields a list that holds, after the block, the tally of what happened inside it."""
        out: list[Tally] = []
        before = self.snapshot()
        try:
            yield out
        finally:
            out.append(self.snapshot().minus(before))

    # ------------------------------------------------------------------ patches
    def install(self) -> None:
        if self._installed:
            return
        self._installed = True
        probe = self
        original_call = getattr(botocore.client.BaseClient, "_make_api_call")  # noqa: B009 - private, untyped

        def _make_api_call(client: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
            """A DynamoDB call's time is the SDK call's, as the caller waits for it: the client's
            validation, serialization and signing, the request, and parsing the response."""
            if client.meta.service_model.service_name != "dynamodb":
                return original_call(client, operation_name, api_params)
            if operation_name in CAPACITY_OPS and "ReturnConsumedCapacity" not in api_params:
                api_params = {**api_params, "ReturnConsumedCapacity": "TOTAL"}
            started = time.perf_counter()
            try:
                response = original_call(client, operation_name, api_params)
            finally:
                probe._local.ddb = probe.ddb_seconds() + time.perf_counter() - started
            probe._record(operation_name, api_params, response)
            return response

        setattr(botocore.client.BaseClient, "_make_api_call", _make_api_call)  # noqa: B010 - a class-wide patch

    def _record(self, op: str, params: dict[str, Any], response: dict[str, Any]) -> None:
        writes = transact = 0
        if op in WRITE_OPS:
            writes = 1
        elif op == "TransactWriteItems":
            transact = writes = len(params.get("TransactItems", []))
        elif op == "BatchWriteItem":
            writes = sum(len(v) for v in params.get("RequestItems", {}).values())
        consumed = response.get("ConsumedCapacity")
        entries = consumed if isinstance(consumed, list) else ([consumed] if consumed else [])
        rcu = wcu = 0.0
        for entry in entries:
            total = float(entry.get("CapacityUnits", 0.0))
            read = entry.get("ReadCapacityUnits")
            write = entry.get("WriteCapacityUnits")
            if read is None and write is None:
                if op in WRITE_OPS or op in ("TransactWriteItems", "BatchWriteItem"):
                    wcu += total
                else:
                    rcu += total
            else:
                rcu += float(read or 0.0)
                wcu += float(write or 0.0)
        with self._lock:
            t = self.tally
            t.calls += 1
            t.write_items += writes
            t.transact_items += transact
            t.transactions += 1 if transact else 0
            t.rcu += rcu
            t.wcu += wcu
            if op in CAPACITY_OPS:
                if entries:
                    t.capacity_reported += 1
                else:
                    t.capacity_missing += 1


PROBE = Probe()

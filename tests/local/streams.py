"""DynamoDB Streams -> Lambda, locally: what Lambda's event source mapping does in AWS.

Reads the table's stream from DynamoDB Local (its `dynamodbstreams` API), keeps the records the
mapping's FilterCriteria match, and invokes the function with them in Lambda's event shape, in order
per shard. A batch item failure (ReportBatchItemFailures) or a function error is retried from the
failed record, as Lambda does, until it succeeds: nothing is skipped. `flush()` waits until every
record written so far was delivered, so tests see the outbox's messages as soon as they ask.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Invoke = Callable[[str, Any], tuple[bytes, str | None]]


@dataclass(frozen=True)
class StreamSource:
    function: str  # logical id
    table: str  # logical id
    patterns: tuple[dict[str, Any], ...]  # FilterCriteria patterns (any matches)
    batch_size: int = 100


def stream_sources(template: dict[str, Any]) -> list[StreamSource]:
    """Every `Type: DynamoDB` event of the template's functions."""
    found = []
    for name, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        for event in (resource.get("Properties", {}).get("Events") or {}).values():
            if event.get("Type") != "DynamoDB":
                continue
            props = event["Properties"]
            table = props["Stream"]["Fn::GetAtt"][0]
            filters = (props.get("FilterCriteria") or {}).get("Filters") or []
            patterns = tuple(json.loads(f["Pattern"]) for f in filters)
            found.append(StreamSource(name, table, patterns, int(props.get("BatchSize", 100))))
    return found


def matches(pattern: Any, value: Any) -> bool:
    """Lambda's event filtering, for the forms our template uses: nested keys, value lists, prefix."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(k in value and matches(p, value[k]) for k, p in pattern.items())
    if isinstance(pattern, list):
        for option in pattern:
            if isinstance(option, dict) and "prefix" in option:
                if isinstance(value, str) and value.startswith(option["prefix"]):
                    return True
            elif option == value:
                return True
        return False
    return bool(pattern == value)


@dataclass
class _Shard:
    iterator: str | None
    pending: list[dict[str, Any]] = field(default_factory=list)  # matched, not delivered yet


class StreamPump:
    def __init__(
        self, streams: Any, stream_arn: str, source: StreamSource, invoke: Invoke, region: str = "us-east-1"
    ) -> None:
        self._streams, self._arn, self._source, self._invoke, self._region = streams, stream_arn, source, invoke, region
        self._shards: dict[str, _Shard] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"stream-{source.function}", daemon=True)
        self.failures = 0  # deliveries retried (for tests)
        self.paused = threading.Event()  # set: nothing is delivered (a stream that lost its records)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def pause(self) -> None:
        """From now on nothing is delivered (waits for a pass in progress) until `resume()`."""
        with self._lock:
            self.paused.set()

    def resume(self) -> None:
        self.paused.clear()

    def flush(self, timeout: float = 30.0) -> None:
        """Returns once every record in the stream so far was delivered; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.paused.is_set() or self.pump_once() == 0:
                return
            time.sleep(0.05)
        raise TimeoutError(f"{self._source.function}: stream records still undelivered after {timeout}s")

    def pump_once(self) -> int:
        """One pass over every shard. Returns how many matched records are still undelivered (0: caught up)."""
        with self._lock:
            if self.paused.is_set():
                return 0
            self._discover()
            left = 0
            for shard in self._shards.values():
                self._read(shard)
                self._deliver(shard)
                left += len(shard.pending)
            return left

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            if self.paused.is_set():
                continue
            try:
                self.pump_once()
            except Exception:
                time.sleep(0.5)

    def _discover(self) -> None:
        description = self._streams.describe_stream(StreamArn=self._arn)["StreamDescription"]
        for shard in description.get("Shards", []):
            shard_id = shard["ShardId"]
            if shard_id not in self._shards:
                iterator = self._streams.get_shard_iterator(
                    StreamArn=self._arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]
                self._shards[shard_id] = _Shard(iterator)

    def _read(self, shard: _Shard) -> None:
        while shard.iterator is not None:
            got = self._streams.get_records(ShardIterator=shard.iterator, Limit=1000)
            shard.iterator = got.get("NextShardIterator")
            records = got.get("Records", [])
            shard.pending += [r for r in map(self._lambda_record, records) if self._wanted(r)]
            if not records:
                return

    def _wanted(self, record: dict[str, Any]) -> bool:
        return not self._source.patterns or any(matches(p, record) for p in self._source.patterns)

    def _lambda_record(self, record: dict[str, Any]) -> dict[str, Any]:
        dynamodb = dict(record["dynamodb"])
        created = dynamodb.get("ApproximateCreationDateTime")
        if created is not None and not isinstance(created, int | float):
            dynamodb["ApproximateCreationDateTime"] = int(created.timestamp())
        return {
            "eventID": record["eventID"],
            "eventName": record["eventName"],
            "eventVersion": record.get("eventVersion", "1.1"),
            "eventSource": "aws:dynamodb",
            "awsRegion": self._region,
            "dynamodb": dynamodb,
            "eventSourceARN": self._arn,
        }

    def _deliver(self, shard: _Shard) -> None:
        while shard.pending:
            batch = shard.pending[: self._source.batch_size]
            body, error = self._invoke(self._source.function, {"Records": batch})
            if error is not None:
                self.failures += 1
                return  # the whole batch again, next pass
            failed = [f["itemIdentifier"] for f in (json.loads(body or b"{}") or {}).get("batchItemFailures", [])]
            if failed:
                self.failures += 1
                known = [i for i, r in enumerate(batch) if r["dynamodb"]["SequenceNumber"] in failed]
                del shard.pending[: min(known) if known else 0]  # from the first failure on, again (as
                return  # Lambda does; an id it does not know fails the whole batch)
            del shard.pending[: len(batch)]

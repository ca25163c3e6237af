"""The outbox publisher in the simulation: the real `OutboxPublisher` (with the real `EventPublisher` and
`Notifier`) sending the org's outbox items the way the table's stream hands them over, in order, a batch
stopping at its first failure (Lambda retries from it), to recording fakes at the boto3 boundary: an
EventBridge `put_events` and an SNS `publish` that fail as the seed chose (PutEvents throttled or 5xx, a
partial failure: `FailedEntryCount` 1 with the entry's ErrorCode, SNS errors, a timeout after the message
was accepted) and a crash after a send and before the item is marked sent.

Deliveries are at least once by design (README, *The outbox*): consumers dedupe by `event_id`. What the
consumers saw is kept per scenario (`Consumers`) for the invariant `events_delivered_once`. Tasks (the
seat sync) are not simulated: the subscription is mirrored, not in the emulator (their items are left)."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError, ReadTimeoutError

from shared.events import EventPublisher
from shared.notify import Notifier
from shared.outbox import OUTBOX_PREFIX, OutboxPublisher
from tests.sim.scenario import OUTBOX_FAULTS
from tests.sim.world import FaultPlan, FaultyTable, SimCrash

FAILED_SEND = (ClientError, ReadTimeoutError, RuntimeError, SimCrash)  # injected: a stream batch stops there
DRAIN_PASSES = 8  # at the life's end: passes until nothing is unsent (the last one fault free)


@dataclass
class Consumers:
    """What EventBridge's rules and SNS's subscribers received: each delivery by event_id (raw, before the
    consumers' dedupe), its payload, and the sends whose outcome the publisher could not know (a lost
    answer, a crash before the mark): the only ones a second delivery of an id is allowed for."""

    deliveries: Counter[str] = field(default_factory=Counter)
    payloads: dict[str, dict[str, Any]] = field(default_factory=dict)
    unknown: Counter[str] = field(default_factory=Counter)
    changed: list[str] = field(default_factory=list)  # an id delivered again with another payload
    errors: list[str] = field(default_factory=list)  # what the publisher raised that no fault explains

    def receive(self, event_id: str, payload: dict[str, Any]) -> None:
        self.deliveries[event_id] += 1
        first = self.payloads.setdefault(event_id, payload)
        if first != payload:
            self.changed.append(event_id)

    def seen(self) -> set[str]:
        """What consumers acted on: each event id once (they dedupe)."""
        return set(self.deliveries)


def _error(code: str, operation: str, status: int) -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": "sim"}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, operation)


class FakeEvents:
    """EventBridge's PutEvents at the boto3 boundary."""

    def __init__(self, faults: FaultPlan, consumers: Consumers):
        self._faults, self._consumers = faults, consumers

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        if self._faults.fire("eventbridge_throttle"):
            raise _error("ThrottlingException", "PutEvents", 400)
        if self._faults.fire("eventbridge_5xx"):
            raise _error("InternalException", "PutEvents", 500)
        if self._faults.fire("eventbridge_partial"):
            failed = {"ErrorCode": "InternalFailure", "ErrorMessage": "sim: entry not accepted"}
            return {"FailedEntryCount": 1, "Entries": [failed]}
        for entry in Entries:
            detail = json.loads(entry["Detail"])
            self._consumers.receive(str(detail["event_id"]), {"detail_type": entry["DetailType"], "detail": detail})
        if self._faults.fire("send_timeout"):  # accepted, the answer lost
            for entry in Entries:
                self._consumers.unknown[str(json.loads(entry["Detail"])["event_id"])] += 1
            raise ReadTimeoutError(endpoint_url="https://events.sim")
        return {"FailedEntryCount": 0, "Entries": [{"EventId": "sim"} for _ in Entries]}


class FakeSns:
    """SNS Publish at the boto3 boundary."""

    def __init__(self, faults: FaultPlan, consumers: Consumers):
        self._faults, self._consumers = faults, consumers

    def publish(self, **request: Any) -> dict[str, Any]:
        if self._faults.fire("sns_error"):
            raise _error(self._faults.rng.choice(["Throttling", "InternalError"]), "Publish", 500)
        body = json.loads(request["Message"])
        event_id = str(request["MessageAttributes"]["event_id"]["StringValue"])
        self._consumers.receive(event_id, {"subject": request["Subject"], **body})
        if self._faults.fire("send_timeout"):
            self._consumers.unknown[event_id] += 1
            raise ReadTimeoutError(endpoint_url="https://sns.sim")
        return {"MessageId": "sim"}


class _MarkTable(FaultyTable):
    """The publisher's table: a crash may come between a send and its mark (`outbox_crash_before_mark`), and
    the mark may fail as any write (throttled, a crash before or after it)."""

    def __init__(self, table: Any, faults: FaultPlan, consumers: Consumers):
        super().__init__(table, faults)
        self._consumers = consumers

    def __getattr__(self, name: str) -> Any:
        got = super().__getattr__(name)
        if name != "update_item":
            return got

        def update_item(**kwargs: Any) -> Any:
            sent = str(kwargs["Key"]["SK"]).removeprefix(OUTBOX_PREFIX)
            try:
                if self._faults.fire("outbox_crash_before_mark"):
                    raise SimCrash("crash after a send, before its mark")
                return got(**kwargs)
            except Exception:  # sent, and not known to be marked: the stream hands it over again
                self._consumers.unknown[sent] += 1
                raise

        return update_item


@dataclass
class Stream:
    """One scenario's outbox publisher, its fakes, what consumers saw, and its own fault stream (so the
    outbox's faults never shift the draws of the scenario's other faults)."""

    faults: FaultPlan
    consumers: Consumers
    publisher: OutboxPublisher
    rng: random.Random
    lag: float  # the chance a step's messages wait for a later step (the stream lags)
    written: Callable[[], int]  # the outbox writes the scenario's services tried so far (FaultPlan.outbox_writes)
    read_at: int | None = None  # `written()` when a batch last left nothing unsent (None: something may be)

    def touched(self) -> None:
        """Something wrote past the services' count (a tampered store): the next batch reads."""
        self.read_at = None


PUBLISHER_DDB_FAULTS = ("ddb_throttle", "crash_before_write", "crash_after_write")  # on its marks


def stream_for(seed: int, rates: dict[str, float], table: Any, written: Callable[[], int]) -> Stream:
    """The scenario's stream: the outbox faults of its rates (and the DynamoDB ones, on the marks); `written`
    counts the writes that may have added items to it (the stream's records)."""
    rng = random.Random(seed ^ 0x0B0C5)
    mine = {k: v for k, v in rates.items() if k in OUTBOX_FAULTS or k in PUBLISHER_DDB_FAULTS}
    faults = FaultPlan(random.Random(seed ^ 0x5E4D), mine)
    consumers = Consumers()
    events = EventPublisher(FakeEvents(faults, consumers), "sim")
    notifier = Notifier(FakeSns(faults, consumers), "arn:aws:sns:us-east-1:000000000000:sim")
    publisher = OutboxPublisher(events, notifier, _MarkTable(table, faults, consumers))
    return Stream(faults, consumers, publisher, rng, rng.choice([0.5, 0.75, 0.9]), written)  # a few steps a batch


def unsent(table: Any, org_id: str) -> list[dict[str, Any]]:
    """The org's events and notices not marked sent, in the order they were written (the stream's)."""
    query: dict[str, Any] = {
        "KeyConditionExpression": Key("PK").eq(f"ORG#{org_id}") & Key("SK").begins_with(OUTBOX_PREFIX),
        "FilterExpression": Attr("sent_at").not_exists() & Attr("kind").is_in(["event", "notice"]),
        "ConsistentRead": True,
    }
    items: list[dict[str, Any]] = []
    while True:
        page = table.query(**query)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return sorted(items, key=lambda i: (str(i.get("created_at", "")), str(i["SK"])))
        query["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def publish(stream: Stream, table: Any, org_id: str) -> int:
    """One stream batch: the unsent items in order, stopping at the first that fails (left for the retry,
    with everything after it). How many were delivered and marked. No outbox item written since a batch
    left nothing unsent: the stream has no record to hand over, and the outbox is not read."""
    written = stream.written()
    if stream.read_at == written:
        return 0
    stream.read_at, done = None, 0
    for image in unsent(table, org_id):
        try:
            stream.publisher.deliver(image)
        except FAILED_SEND:
            return done
        except Exception as exc:  # a bug (or a malformed item): Lambda would retry it forever, unsent
            stream.consumers.errors.append(f"{image['SK']}: {type(exc).__name__} {exc}"[:300])
            return done
        done += 1
    stream.read_at = written
    return done


def after_step(stream: Stream, table: Any, org_id: str) -> None:
    """The stream after a step: usually it hands the new items over at once; sometimes it lags a step."""
    if org_id and stream.rng.random() >= stream.lag:
        publish(stream, table, org_id)


def drain(stream: Stream, table: Any, org_id: str) -> None:
    """At the life's end: batches until one leaves nothing unsent (Lambda's retries; the last batch fault
    free). The first reads the outbox whatever the count says (an item written some way it missed is
    delivered late, never lost)."""
    stream.touched()
    for attempt in range(DRAIN_PASSES):
        stream.faults.armed = attempt < DRAIN_PASSES - 1
        publish(stream, table, org_id)
        if stream.read_at is not None:
            break
    stream.faults.armed = True

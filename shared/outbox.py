"""The transactional outbox: events (EventBridge), notifications (SNS) and Stripe side effects (tasks:
the seat quantity sync) are written as items in the same DynamoDB transaction as the change that causes
them, so a change is never committed without its messages, nor a message sent for a change that was not
committed.

  PK=ORG#<org_id>  SK=OUTBOX#<message_id>   kind (event | notice | task), body (JSON), created_at,
                                            expires_at (epoch seconds: the table's TTL removes it)

The table's stream (NEW_IMAGE, filtered to inserted OUTBOX# items) triggers the outbox publisher
(functions/outbox_publisher), which sends each message (or performs each task) and retries until it is
done. Every message carries its id (`event_id`), stable for the change that made it, so consumers dedupe
deliveries; a task is idempotent itself (its Stripe request carries a key of the change).

A task never holds back the messages behind it on the stream (a seat sync Stripe refuses must not delay
another org's pause): a task that fails is listed for a retry (GSI2 `OUTBOX#RETRY`, due time as sort key)
with backoff, which the sweeper performs; one Stripe refuses as invalid (4xx), or still failing after a
day, ends as `failed` (logged, counted as `OutboxTaskFailed`, alarmed)."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Protocol

from shared import keys
from shared.dynamo import Item, TransactionConditionFailed, TxItem, dynamo_errors
from shared.errors import InvalidRequestError
from shared.event_schemas import checked
from shared.observability import logger
from shared.sweep import due_entries, sweep

OUTBOX_PREFIX = "OUTBOX#"
RESEND_AFTER = timedelta(hours=20)  # the stream keeps records 24 h; the publisher retries them until then
UNSENT = keys.OUTBOX_UNSENT  # GSI2, sharded by message id (shared/keys.py)
RETRY = keys.OUTBOX_RETRY  # tasks to perform again, by due time
TASK_GIVE_UP_AFTER = 12  # attempts: 1 + 2 + 4 ... minutes, capped at an hour: about a day


class TaskDeferred(Exception):
    """A task failed: it is listed for a retry (or ended as failed); the stream goes on without it."""

    def __init__(self, message: str, *, ended: bool):
        super().__init__(message)
        self.ended = ended


KEEP_FOR = timedelta(days=14)  # delivered long before; kept to answer "was it sent?"


@dataclass(frozen=True)
class Event:
    """An EventBridge event: detail-type `Resource.Verb`, source layers.billing."""

    detail_type: str
    detail: Mapping[str, Any]


@dataclass(frozen=True)
class Notice:
    """A notification to the org's people (the notifications topic)."""

    kind: str
    subject: str
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SeatSyncTask:
    """A Stripe side effect of a seat change (the org is the outbox item's): bring the subscription's
    extra-seat quantity to the org's members. `seat_revision` is the org's revision the change wrote; the
    Stripe update is keyed by it, so a retried task changes the subscription once."""

    seat_revision: int

    name: ClassVar[str] = "task:seat_sync"


Message = Event | Notice | SeatSyncTask


class SeatSyncer(Protocol):
    """What performs a SeatSyncTask (shared.billing.subscriptions.SeatSync)."""

    def seats_changed(self, org_id: str, *, revision: int | None = None) -> None: ...


def message_id(org_id: str, cause: str, index: int, message: Message) -> str:
    """Stable for (the org, the change, its n-th message): a retried transaction writes the same ids, and
    two orgs' changes never share one (their causes may: invoice ids are per org)."""
    match message:
        case Event():
            name = message.detail_type
        case Notice():
            name = f"notice:{message.kind}"
        case SeatSyncTask():
            name = message.name
    return hashlib.sha256(f"{org_id}|{cause}|{index}|{name}".encode()).hexdigest()[:32]


def _kind_and_body(message: Message) -> tuple[str, dict[str, object]]:
    match message:
        case Event():
            detail = checked(message.detail_type, dict(message.detail))  # the promised shape, or no commit
            return "event", {"detail_type": message.detail_type, "detail": detail}
        case Notice():
            body = {"kind": message.kind, "subject": message.subject, "message": message.message}
            return "notice", {**body, "details": dict(message.details)}
        case SeatSyncTask():
            return "task", {"task": "seat_sync", "seat_revision": message.seat_revision}


@dataclass(frozen=True)
class Announcement:
    """Messages to write once, named by their cause, in the transaction of the change they announce."""

    cause: str
    messages: tuple[Message, ...]


def outbox_puts(table_name: str, org_id: str, cause: str, messages: Sequence[Message], now: datetime) -> list[TxItem]:
    """The transaction items that put `messages` in the outbox, for the change named by `cause`."""
    items = []
    for index, message in enumerate(messages):
        mid = message_id(org_id, cause, index, message)
        kind, body = _kind_and_body(message)
        item = {
            "PK": f"ORG#{org_id}",
            "SK": f"{OUTBOX_PREFIX}{mid}",
            "message_id": mid,
            "org_id": org_id,
            "kind": kind,
            "body": json.dumps(body, default=str, sort_keys=True),
            "created_at": now.isoformat(),
            "expires_at": int((now + KEEP_FOR).timestamp()),
            "GSI2PK": keys.listed_pk(
                UNSENT, mid
            ),  # until sent: the sweeper re-sends what the stream could not (after 24 h)
            "GSI2SK": f"{now.isoformat()}#{mid}",
        }
        items.append({"Put": {"TableName": table_name, "Item": item}})
    return items


class OutboxPublisher:
    """Sends one outbox item (its stream image) where it goes, with its id, or performs its task, then
    marks it sent. A send or task that fails raises: the item is retried (nothing is marked)."""

    def __init__(
        self,
        events: Any,
        notifier: Any,
        table: Any | None = None,
        seats: Callable[[], SeatSyncer] | None = None,
    ) -> None:
        self._events = events
        self._notifier = notifier
        self._table = table
        self._seats = seats  # made on the first task only: events and notices need no Stripe

    def deliver(self, image: Mapping[str, Any]) -> None:
        """Sends it (or performs it) and marks it sent. A failed event or notice raises as it is; a failed
        task raises TaskDeferred once it is listed for its retry (or ended)."""
        if image["kind"] == "task":
            try:
                self._send(image)
            except Exception as exc:
                raise TaskDeferred(str(exc), ended=self._retry_later(image, exc)) from exc
        else:
            self._send(image)
        self._update(image, "SET sent_at = :now REMOVE GSI2PK, GSI2SK", {":now": datetime.now(UTC).isoformat()})

    def _retry_later(self, image: Mapping[str, Any], exc: Exception) -> bool:
        """Lists a failed task for its next attempt; True when it ends instead (refused, or too many)."""
        attempts = int(image.get("attempts", 0)) + 1
        if isinstance(exc, InvalidRequestError) or attempts >= TASK_GIVE_UP_AFTER:
            logger.error("outbox task failed for good", extra={"message_id": image.get("message_id")}, exc_info=exc)
            failed = {":now": datetime.now(UTC).isoformat(), ":why": str(exc)[:500], ":n": attempts}
            self._update(image, "SET failed_at = :now, failure = :why, attempts = :n REMOVE GSI2PK, GSI2SK", failed)
            return True
        due = datetime.now(UTC) + min(timedelta(hours=1), timedelta(minutes=2 ** (attempts - 1)))
        retry = {":n": attempts, ":pk": keys.listed_pk(RETRY, str(image["message_id"])), ":due": due.isoformat()}
        self._update(image, "SET attempts = :n, GSI2PK = :pk, GSI2SK = :due", retry)
        return False

    def _update(self, image: Mapping[str, Any], expression: str, values: dict[str, object]) -> None:
        """An update of the item (the stream filter ignores updates); none once it expired (TTL)."""
        if self._table is None:
            return
        gone = self._table.meta.client.exceptions.ConditionalCheckFailedException
        with contextlib.suppress(gone):  # expired meanwhile: never re-created
            self._table.update_item(
                Key={"PK": image["PK"], "SK": image["SK"]},
                UpdateExpression=expression,
                ConditionExpression="attribute_exists(PK)",
                ExpressionAttributeValues=values,
            )

    def resend_unsent(self, created_before: datetime, *, now: datetime | None = None) -> int:
        """What the stream never delivered (its records last 24 h), oldest first per shard, and the tasks
        due for another attempt by `now`, within the Lambda's time budget. One that fails again never stops
        the others (it stays listed). Returns how many were sent."""
        assert self._table is not None, "resending needs the table"
        sent = 0
        for listed, until in ((UNSENT, created_before), (RETRY, now or datetime.now(UTC))):
            entries = due_entries(self._table, listed, until.isoformat())
            sent += sweep(f"outbox {listed}", entries, self._resend, workers=1).done  # in order, one at a time
        return sent

    def _resend(self, image: Item) -> bool:
        self.deliver(image)
        return True

    def _send(self, image: Mapping[str, Any]) -> None:
        body = json.loads(str(image["body"]))
        mid, org_id = str(image["message_id"]), str(image["org_id"])
        if image["kind"] == "event":
            self._events.publish(body["detail_type"], {**body["detail"], "event_id": mid})
            return
        if image["kind"] == "task":
            self._perform(org_id, body)
            return
        self._notifier.notify(
            org_id=org_id,
            kind=body["kind"],
            subject=body["subject"],
            message=body["message"],
            details=body["details"],
            event_id=mid,
        )

    def _perform(self, org_id: str, body: Mapping[str, Any]) -> None:
        if body["task"] != "seat_sync":
            raise ValueError(f"unknown outbox task {body['task']!r}")  # retried: a newer publisher knows it
        if self._seats is None:
            raise RuntimeError("this publisher performs no seat syncs")
        self._seats().seats_changed(org_id, revision=int(body["seat_revision"]))


class OutboxWriter:
    """For messages no change of ours rides with (a Stripe event we only pass on): written on their own,
    named by their cause, so a redelivered Stripe event writes the same ids and sends nothing twice."""

    def __init__(self, table: Any, clock: Any) -> None:
        self._table = table
        self._clock = clock

    def send(self, org_id: str, cause: str, messages: Sequence[Message]) -> None:
        items = outbox_puts(self._table.name, org_id, cause, messages, self._clock.now())
        self._table.meta.client.transact_write_items(TransactItems=items)

    def send_once(self, org_id: str, cause: str, messages: Sequence[Message]) -> bool:
        """As `send`, unless these messages were written before (delivered or not): False then."""
        items = outbox_puts(self._table.name, org_id, cause, messages, self._clock.now())
        for item in items:
            item["Put"]["ConditionExpression"] = "attribute_not_exists(PK)"
        try:
            with dynamo_errors():
                self._table.meta.client.transact_write_items(TransactItems=items)
        except TransactionConditionFailed:
            return False
        return True

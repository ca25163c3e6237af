"""The outbox's items and the events' promised shapes (pure: no stack)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from shared.errors import InvalidRequestError, UpstreamError
from shared.event_schemas import EVENTS
from shared.outbox import TASK_GIVE_UP_AFTER, Event, Notice, OutboxPublisher, SeatSyncTask, TaskDeferred, outbox_puts

NOW = datetime(2028, 2, 29, 23, 59, 30, tzinfo=UTC)
PAUSED = {"org_id": "o1", "balance_minor": -1, "currency": "USD", "status": "paused", "previous_status": "low"}


def _items(cause: str, *messages: Event | Notice | SeatSyncTask, org_id: str = "o1") -> list[dict[str, object]]:
    return [i["Put"]["Item"] for i in outbox_puts("T", org_id, cause, list(messages), NOW)]


def test_ids_are_stable_for_a_change_and_distinct_within_it() -> None:
    messages = (Event("Wallet.AgencySpendPaused", PAUSED), Notice("Wallet.AgencySpendPaused", "s", "m", PAUSED))
    first, again = _items("wallet:o1:v7", *messages), _items("wallet:o1:v7", *messages)
    assert [i["SK"] for i in first] == [i["SK"] for i in again]  # a retried transaction writes the same ids
    assert len({i["SK"] for i in first}) == 2  # two items of one transaction never share a key
    assert {i["SK"] for i in first}.isdisjoint(i["SK"] for i in _items("wallet:o1:v8", *messages))
    assert all(str(i["SK"]).startswith("OUTBOX#") and i["PK"] == "ORG#o1" for i in first)
    assert all(i["expires_at"] == int(NOW.timestamp()) + 14 * 86400 for i in first)


def test_an_event_not_in_its_promised_shape_is_never_written() -> None:
    with pytest.raises(ValidationError):
        _items("c", Event("Wallet.AgencySpendPaused", {**PAUSED, "balance_minor": "12"}))
    with pytest.raises(ValidationError):
        _items("c", Event("Wallet.AgencySpendPaused", {**PAUSED, "surprise": 1}))
    with pytest.raises(KeyError):
        _items("c", Event("Wallet.Unknown", PAUSED))


class _Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, object]]] = []

    def publish(self, detail_type: str, detail: dict[str, object]) -> None:
        self.sent.append((detail_type, detail))

    def notify(self, **fields: object) -> None:
        self.sent.append(("notice", dict(fields)))


def test_the_publisher_sends_each_item_with_its_id() -> None:
    recorder = _Recorder()
    publisher = OutboxPublisher(recorder, recorder)
    for item in _items("wallet:o1:v7", Event("Wallet.AgencySpendPaused", PAUSED), Notice("K", "s", "m", {"a": 1})):
        publisher.deliver(item)
    (event_type, event), (_, notice) = recorder.sent
    assert event_type == "Wallet.AgencySpendPaused" and event == {**PAUSED, "event_id": event["event_id"]}
    assert notice["event_id"] and notice["event_id"] != event["event_id"] and notice["details"] == {"a": 1}


def test_the_readme_lists_every_event_with_its_fields() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for detail_type, schema in EVENTS.items():
        assert f"`{detail_type}`" in readme, detail_type
        for field in schema.model_fields:
            assert f"`{field}`" in readme, (detail_type, field)


def test_two_orgs_never_share_a_message_id_even_for_the_same_cause() -> None:
    # Invoice ids are per org (inv_<period>): two orgs with one anchor issue the same one.
    issued = Event(
        "Invoice.Issued",
        {"org_id": "x", "invoice_id": "inv_1", "number": None, "period_key": "p", "currency": "USD"}
        | {"total_minor": 0, "amount_due_minor": 0},
    )
    a = _items("invoice-issued:inv_20261101T000000Z", issued, org_id="org_a")
    b = _items("invoice-issued:inv_20261101T000000Z", issued, org_id="org_b")
    assert {i["message_id"] for i in a}.isdisjoint(i["message_id"] for i in b)


# ------------------------------------------------------------------ tasks: the Stripe seat sync


def test_a_seat_sync_task_is_named_by_the_seat_revision_it_follows() -> None:
    [item] = _items("seats:6", SeatSyncTask(6))
    assert (item["kind"], json.loads(str(item["body"]))) == ("task", {"task": "seat_sync", "seat_revision": 6})
    assert item["GSI2PK"].startswith("OUTBOX#UNSENT#")  # the sweeper performs it too, if the stream never delivers it
    assert _items("seats:6", SeatSyncTask(6))[0]["SK"] == item["SK"]  # a retried transaction: the same item
    assert _items("seats:7", SeatSyncTask(7))[0]["SK"] != item["SK"]  # the next seat change: its own task


class _Seats:
    def __init__(self, fail: bool = False, refuse: bool = False) -> None:
        self.synced: list[tuple[str, int | None]] = []
        self.fail, self.refuse = fail, refuse

    def seats_changed(self, org_id: str, *, revision: int | None = None) -> None:
        if self.refuse:
            raise InvalidRequestError("No such subscription", code="stripe_resource_missing")
        if self.fail:
            raise UpstreamError("Stripe could not be reached or failed. Retry: it is safe.")
        self.synced.append((org_id, revision))


class _Table:
    """Records the publisher's `sent_at` marks."""

    def __init__(self) -> None:
        self.marked: list[object] = []
        self.updates: list[dict[str, object]] = []
        self.meta = SimpleNamespace(
            client=SimpleNamespace(exceptions=SimpleNamespace(ConditionalCheckFailedException=KeyError))
        )

    def update_item(self, **params: object) -> None:
        self.updates.append(params)
        if "sent_at" in str(params["UpdateExpression"]):
            self.marked.append(params["Key"])


def test_the_publisher_performs_a_seat_task_and_makes_the_seat_sync_only_for_one() -> None:
    recorder, seats, table, made = _Recorder(), _Seats(), _Table(), []

    def make() -> _Seats:
        made.append(1)
        return seats

    publisher = OutboxPublisher(recorder, recorder, table, seats=make)
    publisher.deliver(_items("wallet:o1:v7", Event("Wallet.AgencySpendPaused", PAUSED))[0])
    assert made == []  # events need no Stripe: nothing of it is built
    publisher.deliver(_items("seats:6", SeatSyncTask(6))[0])
    assert seats.synced == [("o1", 6)] and len(table.marked) == 2


def test_a_seat_task_stripe_fails_is_listed_for_a_retry_never_marked_sent() -> None:
    recorder, table = _Recorder(), _Table()
    publisher = OutboxPublisher(recorder, recorder, table, seats=lambda: _Seats(fail=True))
    with pytest.raises(TaskDeferred) as deferred:
        publisher.deliver(_items("seats:6", SeatSyncTask(6))[0])
    assert not deferred.value.ended and isinstance(deferred.value.__cause__, UpstreamError)
    assert table.marked == []  # never marked sent
    [retry] = table.updates
    values = retry["ExpressionAttributeValues"]
    assert isinstance(values, dict) and (str(values[":pk"]).rsplit("#", 1)[0], values[":n"]) == ("OUTBOX#RETRY", 1)
    with pytest.raises(TaskDeferred):  # a publisher without the seat sync never drops a task
        OutboxPublisher(recorder, recorder, table).deliver(_items("seats:6", SeatSyncTask(6))[0])


def test_a_seat_task_stripe_refuses_or_that_failed_all_day_ends_failed() -> None:
    table = _Table()
    refused = OutboxPublisher(_Recorder(), _Recorder(), table, seats=lambda: _Seats(fail=True, refuse=True))
    with pytest.raises(TaskDeferred) as deferred:
        refused.deliver(_items("seats:6", SeatSyncTask(6))[0])
    assert deferred.value.ended and "failed_at" in str(table.updates[-1]["UpdateExpression"])
    tired = OutboxPublisher(_Recorder(), _Recorder(), table, seats=lambda: _Seats(fail=True))
    with pytest.raises(TaskDeferred) as deferred:
        tired.deliver({**_items("seats:6", SeatSyncTask(6))[0], "attempts": TASK_GIVE_UP_AFTER - 1})
    assert deferred.value.ended

"""The outbox's items and the events' promised shapes (pure: no stack)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.event_schemas import EVENTS
from shared.outbox import Event, Notice, OutboxPublisher, outbox_puts

NOW = datetime(2028, 2, 29, 23, 59, 30, tzinfo=UTC)
PAUSED = {"org_id": "o1", "balance_minor": -1, "currency": "USD", "status": "paused", "previous_status": "low"}


def _items(cause: str, *messages: Event | Notice, org_id: str = "o1") -> list[dict[str, object]]:
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

"""The transactional outbox: a wallet change and its messages commit together, and the messages
reach EventBridge and SNS through the table's stream, even when those services fail for a while."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from tests.helpers import capture_events, capture_notifications, drain, new_user, org_items
from tests.integration.test_wallet import NOW, _bill
from tests.integration.wallet_kit import WalletKit, agency_org, fund, wallet_kit

pytestmark = pytest.mark.integration


@pytest.fixture
def kit(stack: Any) -> WalletKit:
    return wallet_kit(stack, NOW)


def _outage(client: Any, operation: str, failures: list[str]) -> Any:
    def down(**_: Any) -> None:
        failures.append(operation)
        raise EndpointConnectionError(endpoint_url=f"https://{operation}.local")

    client.meta.events.register(f"before-send.{operation}", down)
    return down


def test_a_pause_is_announced_once_eventbridge_and_sns_are_back(kit: WalletKit, stack: Any) -> None:
    from functions.outbox_publisher.handler import publisher

    events_client, sns_client = publisher()._events._events, publisher()._notifier._sns
    org_id, project, owner = agency_org(kit)
    fund(kit, org_id, 1_000, new_user())
    kit.wallet.configure(owner, org_id, {"low_threshold_minor": 0, "floor_minor": 0})
    events = capture_events(stack, {"detail-type": ["Wallet.AgencySpendPaused"]})
    notices = capture_notifications(stack)
    failures: list[str] = []
    # Given EventBridge and SNS are down
    down = [
        (events_client, "events.PutEvents", _outage(events_client, "events.PutEvents", failures)),
        (sns_client, "sns.Publish", _outage(sns_client, "sns.Publish", failures)),
    ]
    try:
        # When a bill pauses the wallet, Then the bill is recorded (nothing of the outage reaches it)
        recorded = _bill(kit, org_id, project, 5_000, "paused-in-outage")
        assert not recorded["replayed"]
        stored = kit.repo.get(org_id)
        assert stored is not None and stored.account.status.value == "paused"
        # and the publisher keeps failing, and retrying, while they are down
        for pump in stack.streams:
            for _ in range(3):
                pump.pump_once()
        assert "events.PutEvents" in failures
        # (a replay of the bill commits nothing, so it announces nothing)
        assert _bill(kit, org_id, project, 5_000, "paused-in-outage")["replayed"]
    finally:
        for client, operation, handler in down:
            client.meta.events.unregister(f"before-send.{operation}", handler)
    # When they are back, Then the pause is announced: one event and one notification, with one id
    paused = [e["detail"] for e in drain(stack, events) if e["detail"].get("org_id") == org_id]
    assert len(paused) == 1 and paused[0]["status"] == "paused"
    told = [n for n in drain(stack, notices) if n.get("org_id") == org_id and n["kind"] == "Wallet.AgencySpendPaused"]
    assert len(told) == 1 and told[0]["event_id"] and paused[0]["event_id"]  # stable ids, to dedupe on


def test_a_stuck_message_holds_back_the_ones_after_it_and_none_goes_out_twice(kit: WalletKit, stack: Any) -> None:
    from functions.outbox_publisher.handler import publisher

    sns_client = publisher()._notifier._sns
    # Given two orgs paused one after the other while SNS refuses the first org's notices only
    first, first_project, first_owner = agency_org(kit)
    second, second_project, second_owner = agency_org(kit)
    for org_id, owner in ((first, first_owner), (second, second_owner)):
        fund(kit, org_id, 1_000, new_user())
        kit.wallet.configure(owner, org_id, {"low_threshold_minor": 0, "floor_minor": 0})
    notices = capture_notifications(stack)
    stuck: list[str] = []

    def refuse_first(params: dict[str, Any], **_: Any) -> None:
        if first in str(params):  # the request, with the notice for the first org
            stuck.append(first)
            raise EndpointConnectionError(endpoint_url="https://sns.local")

    sns_client.meta.events.register("before-call.sns.Publish", refuse_first)
    try:
        _bill(kit, first, first_project, 5_000, "stuck-1")
        _bill(kit, second, second_project, 5_000, "behind-1")
        for pump in stack.streams:
            for _ in range(5):
                pump.pump_once()
        assert stuck
    finally:
        sns_client.meta.events.unregister("before-call.sns.Publish", refuse_first)
    # Then, once SNS takes it, each org is told once: the second org's notice waited, it was not repeated
    told = [n["org_id"] for n in drain(stack, notices) if n["kind"] == "Wallet.AgencySpendPaused"]
    assert told.count(first) == 1 and told.count(second) == 1


def test_what_the_stream_never_delivered_the_sweeper_sends(kit: WalletKit, stack: Any, table: Any) -> None:
    from functions.outbox_publisher.handler import publisher

    # Given a pause whose messages the stream never delivers (its records are gone after 24 h)
    org_id, project, owner = agency_org(kit)
    fund(kit, org_id, 1_000, new_user())
    kit.wallet.configure(owner, org_id, {"low_threshold_minor": 0, "floor_minor": 0})
    events = capture_events(stack, {"detail-type": ["Wallet.AgencySpendPaused"]})
    for pump in stack.streams:
        pump.flush()
        pump.pause()
    try:
        _bill(kit, org_id, project, 5_000, "never-streamed")
        unsent = [i for i in org_items(table, org_id) if i["SK"].startswith("OUTBOX#") and "sent_at" not in i]
        assert len(unsent) == 2 and all(i["GSI2PK"] == "OUTBOX#UNSENT" for i in unsent)  # the pause's event, notice
        # When the sweeper looks for messages older than the stream keeps
        assert publisher().resend_unsent(datetime.now(UTC)) >= len(unsent)
        paused = [e["detail"] for e in _received(stack, events) if e["detail"].get("org_id") == org_id]
    finally:
        for pump in stack.streams:
            pump.resume()
    # Then they are sent, and marked so (off the unsent list)
    assert len(paused) == 1 and paused[0]["status"] == "paused"
    sent = [i for i in org_items(table, org_id) if i["SK"].startswith("OUTBOX#")]
    assert all(i.get("sent_at") and "GSI2PK" not in i for i in sent)


def _received(stack: Any, queue_url: str) -> list[dict[str, Any]]:
    """The queue's messages now, without waiting for the (paused) stream."""
    sqs = stack.client("sqs")
    got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    return [json.loads(m["Body"]) for m in got]

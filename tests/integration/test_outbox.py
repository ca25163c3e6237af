"""The transactional outbox: a wallet change and its messages commit together, and the messages
reach EventBridge and SNS through the table's stream, even when those services fail for a while."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from tests.helpers import capture_events, capture_notifications, drain, new_user
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

"""The transactional outbox: a wallet change and its messages commit together, and the messages
reach EventBridge and SNS through the table's stream, even when those services fail for a while; a seat
change and its Stripe seat sync likewise, even when Stripe fails for a while."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from tests.helpers import ApiClient, capture_events, capture_notifications, drain, new_user, org_items
from tests.integration.stripe_kit import DAY, PERIOD_START, StripeKit
from tests.integration.test_wallet import NOW, _bill
from tests.integration.wallet_kit import WalletKit, agency_org, fund, wallet_kit, wallet_settings

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
    kit.wallet.configure(owner, org_id, wallet_settings(low_threshold_minor=0, floor_minor=0))
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
        assert not recorded.replayed
        stored = kit.repo.get(org_id)
        assert stored is not None and stored.account.status.value == "paused"
        # and the publisher keeps failing, and retrying, while they are down
        for pump in stack.streams:
            for _ in range(3):
                pump.pump_once()
        assert failures  # (which send fails first depends on the order of the shard's records)
        # (a replay of the bill commits nothing, so it announces nothing)
        assert _bill(kit, org_id, project, 5_000, "paused-in-outage").replayed
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
        kit.wallet.configure(owner, org_id, wallet_settings(low_threshold_minor=0, floor_minor=0))
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
    kit.wallet.configure(owner, org_id, wallet_settings(low_threshold_minor=0, floor_minor=0))
    events = capture_events(stack, {"detail-type": ["Wallet.AgencySpendPaused"]})
    for pump in stack.streams:
        pump.flush()
        pump.pause()
    try:
        _bill(kit, org_id, project, 5_000, "never-streamed")
        unsent = [i for i in org_items(table, org_id) if i["SK"].startswith("OUTBOX#") and "sent_at" not in i]
        assert len(unsent) == 2 and all(
            i["GSI2PK"].startswith("OUTBOX#UNSENT#") for i in unsent
        )  # the pause's event, notice
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


# ------------------------------------------------------------------ the Stripe seat sync, through the outbox


@pytest.fixture
def stripe_kit(stack: Any, table: Any) -> StripeKit:
    return StripeKit(stack, table)


def _subscribed_org(api: ApiClient, kit: StripeKit, members: int) -> tuple[str, str, str, str]:
    """A Pro org (3 seats included, extra seats 15.00/month) with `members` people, on day 10 of a 30-day
    period, everything synced. Returns (org, owner, subscription, customer)."""
    owner = new_user()
    created = api.call("POST", "/v1/orgs", as_user=owner, json={"name": "Seats", "plan_id": "free"})
    assert created.status == 201, created.body
    org_id = str(created.body["org_id"])
    clock, customer = kit.subscribe(api, owner, org_id, "pro")
    kit.advance(clock, PERIOD_START + 10 * DAY)
    for _ in range(members - 1):
        assert _add(api, owner, org_id).status == 201
    kit.synced()
    org = kit.repo.get_org(org_id)
    assert org is not None and org.subscription is not None
    return org_id, owner, org.subscription.subscription_id, customer


def _add(api: ApiClient, owner: str, org_id: str) -> Any:
    return api.call("POST", f"/v1/orgs/{org_id}/members", as_user=owner, json={"user_id": new_user()})


def _stripe_extra_seats(kit: StripeKit, subscription_id: str) -> int:
    sub = kit.client.v1.subscriptions.retrieve(subscription_id)
    return sum(i.quantity or 0 for i in sub["items"].data if str(i.price.lookup_key).endswith(":seat"))


def _seat_updates(kit: StripeKit, org_id: str) -> list[str]:
    """The idempotency keys of the subscription changes our seat syncs made (one per change)."""
    keys = [e["request"]["idempotency_key"] for e in kit.emulator.events("customer.subscription.updated")]
    return [k for k in keys if str(k).startswith(f"seats:{org_id}:")]


def _seat_tasks(table: Any, org_id: str) -> list[dict[str, Any]]:
    return [i for i in org_items(table, org_id) if str(i["SK"]).startswith("OUTBOX#") and i["kind"] == "task"]


def test_a_seat_change_reaches_stripe_only_through_the_outbox(
    api: ApiClient, stripe_kit: StripeKit, stack: Any, table: Any
) -> None:
    kit = stripe_kit
    org_id, owner, sub_id, customer = _subscribed_org(api, kit, members=1)
    stack.flush_outbox()
    for pump in stack.streams:
        pump.pause()
    try:
        # When the org grows to 4 members (one extra seat) while the outbox is not being sent
        for _ in range(3):
            assert _add(api, owner, org_id).status == 201
        # Then the requests called no Stripe: the quantity is unchanged, and each seat change wrote its task
        assert _stripe_extra_seats(kit, sub_id) == 0 and _seat_updates(kit, org_id) == []
        tasks = _seat_tasks(table, org_id)
        assert sorted(json.loads(t["body"])["seat_revision"] for t in tasks) == [1, 2, 3]
        assert all(t["GSI2PK"].startswith("OUTBOX#UNSENT#") for t in tasks)
    finally:
        for pump in stack.streams:
            pump.resume()
    # When the outbox is sent, Then Stripe bills one extra seat, prorated (1500 * 20/30), changed once, by
    # the latest seat change (the two before it find the org past them and leave it to that one)
    kit.synced()
    assert _stripe_extra_seats(kit, sub_id) == 1
    assert _seat_updates(kit, org_id) == [f"seats:{org_id}:{sub_id}:3"]
    pending = kit.client.v1.invoice_items.list(params={"customer": customer, "pending": True}).data
    assert [i.amount for i in pending] == [1000]
    sub = api.call("GET", f"/v1/orgs/{org_id}/subscription", as_user=owner).body
    assert (sub["members"], sub["extra_seats_billed"]) == (4, 1)
    assert all(t.get("sent_at") and "GSI2PK" not in t for t in _seat_tasks(table, org_id))


def _task(table: Any, org_id: str, sk: str) -> dict[str, Any]:
    return dict(table.get_item(Key={"PK": f"ORG#{org_id}", "SK": sk}, ConsistentRead=True)["Item"])


def test_a_seat_sync_stripe_fails_is_retried_until_it_goes_and_changes_stripe_once(
    api: ApiClient, stripe_kit: StripeKit, stack: Any, table: Any
) -> None:
    kit = stripe_kit
    # Given a Pro org with its 3 included seats taken, and its webhooks delivered
    org_id, owner, sub_id, customer = _subscribed_org(api, kit, members=3)
    failures = sum(pump.failures for pump in stack.streams)
    for pump in stack.streams:
        pump.pause()
    try:
        # and Stripe failing: every request of the first sync attempt (its read, and the SDK's retry) is
        # refused, then the update of the second is made but both its replies are lost (the SDK's retry
        # sends the same idempotency key, so Stripe replays the change instead of making it again)
        stack.stripe.fail_next(2, status=500, method="GET", path="/v1/subscriptions/")
        stack.stripe.fail_next(2, status=500, after_execute=True, method="POST", path="/v1/subscriptions/")
        # When a fourth member is added, Then the request succeeds (it does not call Stripe)
        assert _add(api, owner, org_id).status == 201
        latest = max(_seat_tasks(table, org_id), key=lambda t: int(json.loads(t["body"])["seat_revision"]))
        assert json.loads(latest["body"])["seat_revision"] == 3 and latest["GSI2PK"].startswith("OUTBOX#UNSENT#")
        # and the publisher's attempt fails: the task is listed for a retry (the stream goes on)
        for pump in stack.streams:
            pump.resume()
        kit.synced()
        assert sum(pump.failures for pump in stack.streams) == failures  # nothing held back on the stream
        latest = _task(table, org_id, latest["SK"])
        assert (latest["GSI2PK"].rsplit("#", 1)[0], latest["attempts"], "sent_at" in latest) == (
            "OUTBOX#RETRY",
            1,
            False,
        )
        # and the sweeper's retries go on until Stripe answers (the third attempt finds the change the second
        # made, and makes none); none is made before it is due
        from functions.outbox_publisher.handler import publisher

        # (the counts include other tests' messages on this worker's stack: this task's state is checked)
        now = datetime.now(UTC)
        publisher().resend_unsent(now - timedelta(hours=20), now=now)
        assert _task(table, org_id, latest["SK"])["attempts"] == 1
        publisher().resend_unsent(now - timedelta(hours=20), now=now + timedelta(minutes=2))
        assert _task(table, org_id, latest["SK"])["attempts"] == 2
        assert publisher().resend_unsent(now - timedelta(hours=20), now=now + timedelta(minutes=10)) >= 1
        assert _task(table, org_id, latest["SK"]).get("sent_at")
        kit.synced()
    finally:
        for pump in stack.streams:
            pump.resume()
        stack.stripe.clear_faults()
    # Then the quantity is synced, by one change to the subscription, under the seat revision's key
    assert _stripe_extra_seats(kit, sub_id) == 1
    assert _seat_updates(kit, org_id) == [f"seats:{org_id}:{sub_id}:3"]
    pending = kit.client.v1.invoice_items.list(params={"customer": customer, "pending": True}).data
    assert [i.amount for i in pending] == [1000]
    sub = api.call("GET", f"/v1/orgs/{org_id}/subscription", as_user=owner).body
    assert (sub["members"], sub["extra_seats_billed"]) == (4, 1)
    assert all(t.get("sent_at") for t in _seat_tasks(table, org_id))


def test_a_seat_sync_stripe_refuses_ends_failed_and_holds_back_no_other_orgs_pause(
    api: ApiClient, stripe_kit: StripeKit, kit: WalletKit, stack: Any, table: Any
) -> None:
    from functions.outbox_publisher import handler

    counted: list[str] = []
    add_metric = handler.metrics.add_metric
    handler.metrics.add_metric = lambda **kw: (counted.append(kw["name"]), add_metric(**kw))[1]  # type: ignore[method-assign]
    try:
        # Given an org whose subscription Stripe no longer has, and a funded agency wallet of another org
        org_id, owner, _, _ = _subscribed_org(api, stripe_kit, members=3)
        table.update_item(
            Key={"PK": f"ORG#{org_id}", "SK": "ORG"},
            UpdateExpression="SET subscription.subscription_id = :gone",
            ExpressionAttributeValues={":gone": "sub_gone_from_stripe"},
        )
        other, project, other_owner = agency_org(kit)
        fund(kit, other, 1_000, new_user())
        kit.wallet.configure(other_owner, other, wallet_settings(low_threshold_minor=0, floor_minor=0))
        events = capture_events(stack, {"detail-type": ["Wallet.AgencySpendPaused"]})
        for pump in stack.streams:
            pump.pause()
        # When the first org's seat change (Stripe refuses its sync) is followed by the other's pause
        assert _add(api, owner, org_id).status == 201
        _bill(kit, other, project, 5_000, "behind-the-refused-task")
        for pump in stack.streams:
            pump.resume()
        # Then the pause is announced, and the refused task ends failed (alarmed), not retried
        paused = [e["detail"] for e in drain(stack, events) if e["detail"].get("org_id") == other]
        assert len(paused) == 1
        [task] = [t for t in _seat_tasks(table, org_id) if json.loads(t["body"])["seat_revision"] == 3]
        assert task.get("failed_at") and "GSI2PK" not in task and "sent_at" not in task
        assert "OutboxTaskFailed" in counted
    finally:
        handler.metrics.add_metric = add_metric  # type: ignore[method-assign]
        for pump in stack.streams:
            pump.resume()

"""The Stripe webhook endpoint: signatures on the raw body, at most once per event, order-proof."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import time
from typing import Any

import pytest
import requests

from tests.helpers import ApiClient, new_user, org_items
from tests.integration.stripe_kit import DAY, PERIOD_START, StripeKit

pytestmark = pytest.mark.integration

HANDLED = {
    "checkout.session.completed",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "invoice.created",
    "invoice.finalized",
    "invoice.paid",
    "invoice.payment_failed",
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "charge.refunded",
    "charge.dispute.created",
}


def sign(payload: str, *, secret: str = "whsec_local", at: int | None = None) -> str:
    t = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def post(api: ApiClient, payload: str, signature: str) -> requests.Response:
    return requests.post(
        f"{api.base_url}/webhooks/stripe",
        data=payload.encode(),
        timeout=30,
        headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
    )


@pytest.fixture
def kit(stack: Any, table: Any) -> StripeKit:
    return StripeKit(stack, table)


def _state(table: Any, kit: StripeKit, org_id: str, customer: str) -> dict[str, Any]:
    kit.stack.flush_outbox()  # messages committed so far are sent (marked `sent_at`) before we look
    items = {i["SK"]: {k: v for k, v in i.items() if k != "subscription_synced_ms"} for i in org_items(table, org_id)}
    refunds = [r.id for r in kit.client.v1.refunds.list(params={"limit": 100}).data]
    balance = kit.client.v1.customers.retrieve(customer).balance
    return {"items": items, "refunds": refunds, "balance": balance}


def _life_of_an_org(api: ApiClient, kit: StripeKit) -> tuple[str, str, list[dict[str, Any]]]:
    """Drives one org through every handled event type; returns (org, customer, its events)."""
    first = len(kit.emulator.events())
    owner = new_user()
    org_id = api.call("POST", "/v1/orgs", as_user=owner, json={"name": "Life"}).body["org_id"]
    clock, customer = kit.subscribe(api, owner, org_id, "pro")
    kit.advance(clock, PERIOD_START + 10 * DAY)
    assert api.call("PUT", f"/v1/orgs/{org_id}/subscription", as_user=owner, json={"plan_id": "scale"}).status == 200
    kit.advance(clock, PERIOD_START + 20 * DAY)
    assert api.call("PUT", f"/v1/orgs/{org_id}/subscription", as_user=owner, json={"plan_id": "pro"}).status == 200
    kit.emulator.wait_for_deliveries()  # the downgrade's refund
    bad = kit.client.v1.payment_methods.attach("pm_card_chargeCustomerFail", params={"customer": customer})
    sub_id = kit.repo.get_org(org_id).subscription.subscription_id  # type: ignore[union-attr]
    kit.client.v1.subscriptions.update(sub_id, params={"default_payment_method": bad.id})
    kit.advance(clock, PERIOD_START + 30 * DAY + 3600)  # renewal fails: payment_failed events
    charge = kit.client.v1.charges.list(params={"customer": customer}).data[0]
    requests.post(
        f"{kit.base_url}/_emulator/charges/{charge.id}/dispute",
        timeout=30,
        headers={"Authorization": "Bearer sk_test_local"},
    )
    kit.client.v1.subscriptions.cancel(sub_id)
    kit.emulator.wait_for_deliveries()
    return org_id, customer, kit.emulator.events()[first:]


def test_tampered_wrong_secret_and_stale_signatures_are_rejected(api: ApiClient, kit: StripeKit, table: Any) -> None:
    owner = new_user()
    org_id = api.call("POST", "/v1/orgs", as_user=owner, json={"name": "Sig"}).body["org_id"]
    _, customer = kit.subscribe(api, owner, org_id, "pro")
    event = next(e for e in reversed(kit.emulator.events()) if e["type"] == "customer.subscription.created")
    payload = json.dumps(event)
    before = _state(table, kit, org_id, customer)
    tampered = payload.replace('"pro"', '"scale"')
    for body, signature in (
        (tampered, sign(payload)),
        (payload, sign(payload, secret="whsec_someone_else")),
        (payload, sign(payload, at=int(time.time()) - 301)),
        (payload, "t=1,v1=deadbeef"),
        (payload, ""),
    ):
        reply = post(api, body, signature)
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"]["code"] == "invalid_signature"
    assert _state(table, kit, org_id, customer) == before
    # A correct signature on the same payload is accepted (already handled once: replayed reply).
    assert post(api, payload, sign(payload)).status_code == 200


def test_unknown_event_types_are_acknowledged_and_ignored(api: ApiClient) -> None:
    payload = json.dumps(
        {
            "id": f"evt_{new_user()}",
            "object": "event",
            "type": "customer.tax_id.created",
            "created": int(time.time()),
            "api_version": "2026-10-28.endive",
            "livemode": False,
            "data": {"object": {"id": "txi_1", "object": "tax_id"}},
        }
    )
    reply = post(api, payload, sign(payload))
    assert reply.status_code == 200
    assert reply.json()["outcome"] == "ignored"


def test_every_handled_event_replayed_ten_times_shuffled_changes_nothing(
    api: ApiClient, kit: StripeKit, table: Any
) -> None:
    org_id, customer, events = _life_of_an_org(api, kit)
    assert {e["type"] for e in events} >= HANDLED, HANDLED - {e["type"] for e in events}
    settled = _state(table, kit, org_id, customer)
    assert settled["items"]["ORG"]["plan_id"] == "free"  # canceled at the end
    deliveries = [e for e in events if e["type"] in HANDLED] * 10
    random.Random(7).shuffle(deliveries)
    for event in deliveries:
        payload = json.dumps(event)
        assert post(api, payload, sign(payload)).status_code == 200
    assert _state(table, kit, org_id, customer) == settled


def test_out_of_order_delivery_never_rolls_state_back(api: ApiClient, kit: StripeKit, table: Any, stack: Any) -> None:
    # Given an org that went Pro -> Scale -> Pro -> canceled, whose events we forget having seen
    org_id, customer, events = _life_of_an_org(api, kit)
    settled = _state(table, kit, org_id, customer)
    _forget_processed_events(stack)
    # When the subscription events arrive again, newest first and shuffled
    subscription_events = [e for e in events if e["type"].startswith("customer.subscription.")]
    for order in (
        list(reversed(subscription_events)),
        random.Random(3).sample(subscription_events, len(subscription_events)),
    ):
        for event in order:
            payload = json.dumps(event)
            assert post(api, payload, sign(payload)).status_code == 200
        # Then the org still mirrors Stripe's current state
        assert _state(table, kit, org_id, customer)["items"]["ORG"] == settled["items"]["ORG"]


def _forget_processed_events(stack: Any) -> None:
    """Empties the dedupe table (this test process's own DynamoDB Local) so events act again."""
    ddb, name = stack.client("dynamodb"), stack.env["IDEMPOTENCY_TABLE_NAME"]
    for page in ddb.get_paginator("scan").paginate(TableName=name, ProjectionExpression="id"):
        for item in page["Items"]:
            ddb.delete_item(TableName=name, Key={"id": item["id"]})

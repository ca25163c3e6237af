"""Checkout completion (subscription, payment, setup), signed webhook delivery with retries, portal."""

# ruff: noqa: RUF001, RUF003 - Stripe writes quantities with a multiplication sign ("2 × Pro")

from __future__ import annotations

import json

import pytest
import stripe

from tests.local.stripe_emulator import StripeEmulator
from tests.stripe_emulator.helpers import WebhookReceiver, complete_checkout, monthly_price


def _events_of(emulator: StripeEmulator, ids: set[str]) -> list[str]:
    """Types of the events about any of `ids` (by data.object.id or its customer), in creation order."""
    out = []
    for event in emulator.events():
        obj = event["data"]["object"]
        if obj["id"] in ids or obj.get("customer") in ids:
            out.append(event["type"])
    return out


def test_checkout_subscription_complete(
    client: stripe.StripeClient, emulator: StripeEmulator, receiver: WebhookReceiver
) -> None:
    price = monthly_price(client, "Pro", 2000)
    customer = client.v1.customers.create(params={"email": "buyer@example.com"})
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "customer": customer.id,
            "client_reference_id": "acct_42",
            "line_items": [{"price": price.id, "quantity": 2}],
            "subscription_data": {"metadata": {"account_id": "acct_42"}},
            "metadata": {"purpose": "signup"},
            "success_url": "https://app.example.com/ok",
            "cancel_url": "https://app.example.com/cancel",
        }
    )
    assert session.id.startswith("cs_test_")
    assert session.url == f"{emulator.base_url}/checkout/{session.id}"
    assert session.status == "open"
    assert session.amount_total == 4000

    done = complete_checkout(client, session.id)
    assert done.status == "complete"
    assert done.payment_status == "paid"
    assert done.subscription.startswith("sub_")

    sub = client.v1.subscriptions.retrieve(
        done.subscription, params={"expand": ["latest_invoice.payments.data.payment.payment_intent", "customer"]}
    )
    assert sub.status == "active"
    assert sub.metadata.to_dict() == {"account_id": "acct_42"}
    assert sub.customer.invoice_settings.default_payment_method == sub.default_payment_method
    assert sub.items.data[0].quantity == 2
    assert sub.items.data[0].price.id == price.id
    assert sub.items.data[0].current_period_start == sub.billing_cycle_anchor
    assert "current_period_start" not in sub  # the period is on the items
    invoice = sub.latest_invoice
    assert invoice.parent.subscription_details.subscription == sub.id and "subscription" not in invoice
    assert invoice.billing_reason == "subscription_create"
    assert invoice.status == "paid"
    assert invoice.amount_paid == invoice.total == 4000
    assert invoice.number.endswith("-0001")
    assert invoice.lines.data[0].description == "2 × Pro (at $20.00 / month)"
    assert invoice.lines.data[0].parent.subscription_item_details.subscription_item == sub.items.data[0].id
    payment_intent = invoice.payments.data[0].payment.payment_intent
    assert payment_intent.status == "succeeded"
    charge = client.v1.charges.retrieve(payment_intent.latest_charge)
    assert charge.payment_method_details.card.last4 == "4242"

    types = _events_of(emulator, {customer.id, session.id})
    expected_order = [
        "customer.subscription.created",
        "invoice.created",
        "invoice.finalized",
        "payment_intent.succeeded",
        "invoice.paid",
        "customer.subscription.updated",
        "checkout.session.completed",
    ]
    positions = [types.index(t) for t in expected_order]
    assert positions == sorted(positions), types

    emulator.wait_for_deliveries(timeout=10)
    delivered = {json.loads(r.body)["id"]: r for r in receiver.received}
    for event in emulator.events("checkout.session.completed"):
        received = delivered[event["id"]]
        assert received.content_type == "application/json; charset=utf-8"
        verified = stripe.Webhook.construct_event(received.body, received.signature, "whsec_local")
        assert verified.type == "checkout.session.completed"
        assert verified.data.object.client_reference_id == "acct_42"
    for received in receiver.received:  # every delivery is correctly signed
        stripe.Webhook.construct_event(received.body, received.signature, "whsec_local")
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(receiver.received[0].body, receiver.received[0].signature, "whsec_other")


def test_webhooks_are_delivered_in_order(
    client: stripe.StripeClient, emulator: StripeEmulator, receiver: WebhookReceiver
) -> None:
    # (its own events: under xdist the module's other tests may run on another worker)
    for n in range(3):
        client.v1.customers.create(params={"email": f"order{n}@example.com"})
    emulator.wait_for_deliveries()
    received_ids = [json.loads(r.body)["id"] for r in receiver.received]
    created_ids = [e["id"] for e in emulator.events()]
    assert received_ids == created_ids[: len(received_ids)]
    first = emulator.events()[0]
    assert first["object"] == "event"
    assert first["api_version"] == "2026-10-28.endive"
    assert first["pending_webhooks"] == 1
    assert set(first["request"]) == {"id", "idempotency_key"}


def test_declined_card_at_checkout_keeps_session_open(client: stripe.StripeClient) -> None:
    price = monthly_price(client, "Pro", 2000)
    session = client.v1.checkout.sessions.create(
        params={"mode": "subscription", "line_items": [{"price": price.id, "quantity": 1}], "success_url": "https://x"}
    )
    with pytest.raises(stripe.CardError) as err:
        complete_checkout(client, session.id, "pm_card_chargeDeclined")
    assert err.value.code == "card_declined"
    assert client.v1.checkout.sessions.retrieve(session.id).status == "open"


def test_checkout_payment_and_setup_modes(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(params={"email": "topup@example.com"})
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "customer": customer.id,
            "line_items": [
                {"price_data": {"currency": "usd", "unit_amount": 5000, "product_data": {"name": "Ad wallet top-up"}}}
            ],
            "payment_intent_data": {"metadata": {"wallet": "w1"}},
            "success_url": "https://x",
        }
    )
    assert session.amount_total == 5000
    done = complete_checkout(client, session.id)
    assert done.payment_status == "paid"
    payment_intent = client.v1.payment_intents.retrieve(done.payment_intent)
    assert payment_intent.status == "succeeded"
    assert payment_intent.amount == 5000
    assert payment_intent.metadata.to_dict() == {"wallet": "w1"}
    items = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["line_items"]}).line_items
    assert items.data[0].description == "Ad wallet top-up"

    setup = client.v1.checkout.sessions.create(
        params={"mode": "setup", "currency": "usd", "customer": customer.id, "success_url": "https://x"}
    )
    done = complete_checkout(client, setup.id)
    assert done.status == "complete"
    assert done.payment_status == "no_payment_required"
    refreshed = client.v1.customers.retrieve(
        customer.id, params={"expand": ["invoice_settings.default_payment_method"]}
    )
    assert refreshed.invoice_settings.default_payment_method.card.last4 == "4242"
    methods = client.v1.customers.payment_methods.list(customer.id)
    assert [m.id for m in methods.data] == [refreshed.invoice_settings.default_payment_method.id]


def test_expire_checkout_session(client: stripe.StripeClient) -> None:
    price = monthly_price(client, "Pro", 2000)
    session = client.v1.checkout.sessions.create(
        params={"mode": "subscription", "line_items": [{"price": price.id, "quantity": 1}], "success_url": "https://x"}
    )
    assert client.v1.checkout.sessions.expire(session.id).status == "expired"
    with pytest.raises(stripe.InvalidRequestError):
        complete_checkout(client, session.id)


def test_webhook_retried_after_a_500(
    client: stripe.StripeClient, emulator: StripeEmulator, receiver: WebhookReceiver
) -> None:
    emulator.wait_for_deliveries()
    receiver.fail_next = 1
    customer = client.v1.customers.create(params={"email": "retry@example.com"})
    emulator.wait_for_deliveries(timeout=10)
    event = emulator.events("customer.created")[-1]
    assert event["data"]["object"]["id"] == customer.id
    attempts = [(d.attempt, d.status_code) for d in emulator.deliveries if d.event_id == event["id"]]
    assert attempts == [(1, 500), (2, 200)]
    assert [json.loads(r.body)["id"] for r in receiver.received].count(event["id"]) == 1


def test_billing_portal_session(client: stripe.StripeClient, emulator: StripeEmulator) -> None:
    customer = client.v1.customers.create()
    session = client.v1.billing_portal.sessions.create(
        params={"customer": customer.id, "return_url": "https://app.example.com/billing"}
    )
    assert session.id.startswith("bps_")
    assert session.url == f"{emulator.base_url}/billing_portal/{session.id}"
    assert session.return_url == "https://app.example.com/billing"

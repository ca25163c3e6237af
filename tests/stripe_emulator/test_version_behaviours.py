"""Behaviours of the pinned API version the emulator models: flexible billing mode by default (production pins
classic), the minimum charge amount, and test clocks' advance limit and asynchronous advance."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from shared.stripe_gateway import StripeGateway
from tests.local.stripe_emulator import StripeEmulator
from tests.stripe_clock import advance_clock, wait_until_ready
from tests.stripe_emulator.helpers import clock_customer, complete_checkout, monthly_price, ts

APR_1, APR_11, MAY_1, JUN_1, JUL_1 = ts(2025, 4, 1), ts(2025, 4, 11), ts(2025, 5, 1), ts(2025, 6, 1), ts(2025, 7, 1)
HOUR = 3600


def _seat_change(client: stripe.StripeClient, sub: Any, quantity: int, behavior: Any) -> Any:
    return client.v1.subscriptions.update(
        sub.id, params={"items": [{"id": sub.items.data[0].id, "quantity": quantity}], "proration_behavior": behavior}
    )


# ---------------------------------------------------------------------------------------------- billing mode


def test_new_subscriptions_default_to_flexible_whose_prorations_the_emulator_refuses(
    client: stripe.StripeClient,
) -> None:
    _clock, customer = clock_customer(client, APR_1)
    price = monthly_price(client, "Flex", 2000)
    sub = client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": price.id}]})
    assert sub.billing_mode.type == "flexible"
    assert sub.billing_mode.flexible.proration_discounts == "included"
    # Flexible prorations (credits from what was debited) are not modelled: refused, never answered as classic.
    for behavior in ("create_prorations", "always_invoice"):
        with pytest.raises(stripe.InvalidRequestError) as refused:
            _seat_change(client, sub, 2, behavior)
        assert refused.value.code == "emulator_flexible_prorations_unsupported"
        assert "billing_mode[type]=classic" in str(refused.value.user_message)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.create_preview(
            params={
                "subscription": sub.id,
                "subscription_details": {"items": [{"id": sub.items.data[0].id, "quantity": 2}]},
            }
        )
    # No prorations: nothing to model differently.
    assert _seat_change(client, sub, 2, "none").items.data[0].quantity == 2

    classic = client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": price.id}], "billing_mode": {"type": "classic"}}
    )
    assert (classic.billing_mode.type, classic.billing_mode.flexible) == ("classic", None)
    assert _seat_change(client, classic, 2, "create_prorations").items.data[0].quantity == 2


def test_checkout_subscriptions_default_to_flexible_and_production_pins_classic(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    customer = client.v1.customers.create(params={"email": "mode@example.com"})
    price = monthly_price(client, "Checkout mode", 1500)
    default = client.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "customer": customer.id,
            "line_items": [{"price": price.id, "quantity": 1}],
            "success_url": "https://example.com/ok",
        }
    )
    done = complete_checkout(client, default.id)
    assert client.v1.subscriptions.retrieve(done.subscription).billing_mode.type == "flexible"

    gateway = StripeGateway("sk_test_local", "whsec_local", api_base=emulator.base_url, max_retries=0)
    session_id, _url = gateway.create_subscription_checkout(
        customer_id=customer.id,
        org_id="org_mode",
        plan_id="pro",
        items=[(price.id, 1)],
        success_url="https://example.com/ok",
        cancel_url="https://example.com/cancel",
        key="checkout:org_mode:test",
    )
    done = complete_checkout(client, session_id)
    sub = gateway.get_subscription(done.subscription)
    assert client.v1.subscriptions.retrieve(sub.subscription_id).billing_mode.type == "classic"
    # So the seat changes production makes get the classic prorations our tests compute.
    gateway.update_subscription(
        sub.subscription_id,
        items=[{"id": sub.items[0].item_id, "quantity": 2}],
        metadata={},
        proration_behavior="create_prorations",
        proration_date=None,
        key="seats:org_mode:test",
    )


# -------------------------------------------------------------------------------------------- minimum charge


def test_a_renewal_below_the_minimum_charge_is_carried_to_the_next_invoice(client: stripe.StripeClient) -> None:
    clock, customer = clock_customer(client, APR_1)
    tiny = monthly_price(client, "Tiny", 30)  # $0.30 < Stripe's $0.50 minimum for USD
    sub = client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": tiny.id}], "billing_mode": {"type": "classic"}}
    )
    first = client.v1.invoices.retrieve(sub.latest_invoice, params={"expand": ["payments"]})
    # Not charged: paid at once with nothing paid, the 30 cents owed as a debit on the customer balance.
    assert (first.status, first.total, first.amount_due, first.amount_paid, first.amount_remaining) == (
        "paid",
        30,
        0,
        0,
        0,
    )
    assert (first.starting_balance, first.ending_balance) == (0, 30)
    assert first.payments.data == []
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"
    assert client.v1.customers.retrieve(customer.id).balance == 30
    ledger = client.v1.customers.balance_transactions.list(customer.id)
    assert [(t.type, t.amount, t.invoice) for t in ledger.data] == [("applied_to_invoice", 30, first.id)]
    assert client.v1.charges.list(params={"customer": customer.id}).data == []

    # May: 30 + the 30 carried = 60 >= 50, charged; the debit is used up.
    advance_clock(client, clock.id, MAY_1 + HOUR)
    renewal = client.v1.invoices.retrieve(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    assert (renewal.status, renewal.total, renewal.starting_balance, renewal.amount_due, renewal.amount_paid) == (
        "paid",
        30,
        30,
        60,
        60,
    )
    assert renewal.ending_balance == 0
    assert client.v1.customers.retrieve(customer.id).balance == 0
    assert [c.amount for c in client.v1.charges.list(params={"customer": customer.id}).data] == [60]


def test_one_off_invoices_and_the_minimum(client: stripe.StripeClient) -> None:
    _clock, customer = clock_customer(client, APR_1)

    def invoice_of(amount: int, **extra: Any) -> Any:
        invoice = client.v1.invoices.create(params={"customer": customer.id, "auto_advance": False, **extra})
        client.v1.invoice_items.create(
            params={"customer": customer.id, "invoice": invoice.id, "amount": amount, "currency": "usd"}
        )
        return client.v1.invoices.finalize_invoice(invoice.id)

    below = invoice_of(49)
    assert (below.status, below.amount_due, below.amount_paid, below.ending_balance) == ("paid", 0, 0, 49)
    at_minimum = invoice_of(1)  # 1 + the 49 carried = 50: charged
    assert (at_minimum.status, at_minimum.amount_due, at_minimum.starting_balance) == ("open", 50, 49)
    assert client.v1.invoices.pay(at_minimum.id).amount_paid == 50
    assert client.v1.customers.retrieve(customer.id).balance == 0
    # Sent invoices are paid by the customer: no minimum applies.
    sent = invoice_of(20, collection_method="send_invoice")
    assert (sent.status, sent.amount_due, sent.ending_balance) == ("open", 20, 0)


# ---------------------------------------------------------------------------------------------- test clocks


def test_an_advance_answers_advancing_then_the_clock_is_ready(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    clock, customer = clock_customer(client, APR_1)
    price = monthly_price(client, "Clock", 2000)
    sub = client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": price.id}]})
    answer = client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": MAY_1 + HOUR})
    assert (answer.status, answer.frozen_time) == ("advancing", APR_1)
    assert answer.status_details.advancing.target_frozen_time == MAY_1 + HOUR
    ready = wait_until_ready(client, clock.id)
    assert (ready.frozen_time, ready.status_details.to_dict()) == (MAY_1 + HOUR, {})
    assert client.v1.invoices.retrieve(client.v1.subscriptions.retrieve(sub.id).latest_invoice).status == "paid"
    events = [
        (e["type"], e["created"], e["data"]["object"]["status"])
        for e in emulator.events()
        if e["type"].startswith("test_helpers.test_clock.") and e["data"]["object"]["id"] == clock.id
    ]
    assert events == [
        ("test_helpers.test_clock.advancing", APR_1, "advancing"),
        ("test_helpers.test_clock.ready", MAY_1 + HOUR, "ready"),
    ]


def test_a_clock_advances_at_most_two_intervals_of_its_shortest_subscription(client: stripe.StripeClient) -> None:
    clock, customer = clock_customer(client, APR_1)
    monthly = monthly_price(client, "Monthly", 2000)
    weekly = monthly_price(client, "Weekly", 500, recurring={"interval": "week"})
    client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": monthly.id}]})
    with pytest.raises(stripe.InvalidRequestError) as too_far:
        client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": JUN_1 + 1})
    assert (too_far.value.http_status, too_far.value.param) == (400, "frozen_time")
    assert "two intervals" in str(too_far.value.user_message)
    assert client.v1.test_helpers.test_clocks.retrieve(clock.id).status == "ready"  # nothing started
    advance_clock(client, clock.id, JUN_1, step=JUN_1 - APR_1)  # exactly two months: allowed

    # A weekly subscription on the same clock sets the limit to two weeks.
    client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": weekly.id}]})
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": JUN_1 + 15 * 86_400})
    assert advance_clock(client, clock.id, JUL_1, step=14 * 86_400).frozen_time == JUL_1

    # Without subscriptions: two years.
    bare = client.v1.test_helpers.test_clocks.create(params={"frozen_time": APR_1})
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.test_helpers.test_clocks.advance(bare.id, params={"frozen_time": ts(2027, 4, 1) + 1})
    client.v1.test_helpers.test_clocks.advance(bare.id, params={"frozen_time": ts(2027, 4, 1)})
    assert wait_until_ready(client, bare.id).frozen_time == ts(2027, 4, 1)

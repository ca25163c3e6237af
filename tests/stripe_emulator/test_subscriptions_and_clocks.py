"""Subscription changes with hand-computed prorations, previews, customer credit, renewals on test clocks.

Every scenario starts a $20.00/month subscription on 2025-04-01 00:00 UTC, so the first period is
[Apr 1, May 1) = 30 days = 2,592,000 s, and changes happen on day 10 (Apr 11 00:00): 20 days remain.
"""

# ruff: noqa: RUF001, RUF003 - Stripe writes quantities with a multiplication sign ("2 × Pro")

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import stripe

from tests.local.stripe_emulator import StripeEmulator
from tests.stripe_clock import advance_clock
from tests.stripe_emulator.helpers import clock_customer, helper, monthly_price, ts

APR_1, APR_11, MAY_1, JUN_1 = ts(2025, 4, 1), ts(2025, 4, 11), ts(2025, 5, 1), ts(2025, 6, 1)


def _subscribe(client: stripe.StripeClient, quantity: int, payment_method: str = "pm_card_visa") -> Any:
    clock, customer = clock_customer(client, APR_1, payment_method)
    price = monthly_price(client, "Pro", 2000)
    # Classic billing mode, as production pins it (flexible, the default, prorates differently).
    sub = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": price.id, "quantity": quantity}],
            "billing_mode": {"type": "classic"},
        }
    )
    return clock, customer, price, sub


def _lines(invoice: Any) -> list[tuple[str, int]]:
    return [(line.description, line.amount) for line in invoice.lines.data]


def test_subscription_create_bills_the_first_period(client: stripe.StripeClient) -> None:
    _, _customer, _, sub = _subscribe(client, 1)
    assert sub.status == "active"
    # The period is on the items only (this API version has none on the subscription)
    assert "current_period_start" not in sub and "current_period_end" not in sub
    assert (sub.items.data[0].current_period_start, sub.items.data[0].current_period_end) == (APR_1, MAY_1)
    invoice = client.v1.invoices.retrieve(sub.latest_invoice)
    assert "subscription" not in invoice  # it is under `parent`
    assert invoice.parent.type == "subscription_details"
    assert invoice.parent.subscription_details.subscription == sub.id
    assert invoice.status == "paid"
    assert invoice.amount_paid == 2000
    assert invoice.created == APR_1  # test-clock time, not wall time
    assert invoice.lines.data[0].period.start == APR_1
    assert invoice.lines.data[0].period.end == MAY_1


def test_quantity_change_create_prorations_then_renewal(client: stripe.StripeClient) -> None:
    clock, customer, _price, sub = _subscribe(client, 1)
    advance_clock(client, clock.id, APR_11)
    item = sub.items.data[0]
    # 1 -> 3 seats on day 10 of 30:
    #   credit  -round(2000 x 1 x 20/30) = -round(1333.33) = -1333
    #   charge  +round(2000 x 3 x 20/30) = +4000
    client.v1.subscriptions.update(
        sub.id, params={"items": [{"id": item.id, "quantity": 3}], "proration_behavior": "create_prorations"}
    )
    pending = client.v1.invoice_items.list(params={"customer": customer.id, "pending": True})
    amounts = sorted(ii.amount for ii in pending.data)
    assert amounts == [-1333, 4000]
    assert all(ii.proration for ii in pending.data)
    descriptions = {ii.description for ii in pending.data}
    assert descriptions == {"Unused time on 1 × Pro after 11 Apr 2025", "Remaining time on 3 × Pro after 11 Apr 2025"}

    # The upcoming invoice: both prorations plus May in advance (3 x 2000) = -1333 + 4000 + 6000 = 8667.
    preview = client.v1.invoices.create_preview(params={"subscription": sub.id})
    assert preview.id.startswith("upcoming_in_")
    assert preview.total == preview.amount_due == 8667
    assert sorted(_lines(preview)) == sorted(
        [
            ("Unused time on 1 × Pro after 11 Apr 2025", -1333),
            ("Remaining time on 3 × Pro after 11 Apr 2025", 4000),
            ("3 × Pro (at $20.00 / month)", 6000),
        ]
    )

    renewed = advance_clock(client, clock.id, MAY_1 + 3600)
    assert renewed.status == "ready"
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert (sub.items.data[0].current_period_start, sub.items.data[0].current_period_end) == (MAY_1, JUN_1)
    invoice = client.v1.invoices.retrieve(sub.latest_invoice)
    assert invoice.billing_reason == "subscription_cycle"
    assert invoice.status == "paid"
    assert sorted(_lines(invoice)) == sorted(_lines(preview))
    assert invoice.amount_paid == 8667
    assert (invoice.period_start, invoice.period_end) == (APR_1, MAY_1)
    assert client.v1.invoice_items.list(params={"customer": customer.id, "pending": True}).data == []


def test_always_invoice_preview_equals_the_update(client: stripe.StripeClient) -> None:
    clock, _customer, _price, sub = _subscribe(client, 1)
    advance_clock(client, clock.id, APR_11 + 7200)
    item = sub.items.data[0]
    details: Any = {
        "items": [{"id": item.id, "quantity": 3}],
        "proration_behavior": "always_invoice",
        "proration_date": APR_11,
    }
    preview = client.v1.invoices.create_preview(params={"subscription": sub.id, "subscription_details": details})
    # Same arithmetic as above, invoiced right away: -1333 + 4000 = 2667.
    assert preview.total == 2667
    assert preview.billing_reason == "subscription_update"
    updated = client.v1.subscriptions.update(
        sub.id,
        params={
            "items": [{"id": item.id, "quantity": 3}],
            "proration_behavior": "always_invoice",
            "proration_date": APR_11,
            "expand": ["latest_invoice"],
        },
    )
    invoice = updated.latest_invoice
    assert invoice.billing_reason == "subscription_update"
    assert invoice.status == "paid"
    assert _lines(invoice) == _lines(preview)
    assert [line.parent.subscription_item_details.proration for line in invoice.lines.data] == [True, True]
    assert (invoice.total, invoice.amount_due, invoice.amount_paid) == (2667, 2667, 2667)
    assert updated.items.data[0].quantity == 3


def test_a_preview_that_adds_an_item_names_one_for_its_lines(client: stripe.StripeClient) -> None:
    # (the contract: a line's subscription_item is never null, even for an item the change would add)
    clock, _customer, _price, sub = _subscribe(client, 1)
    advance_clock(client, clock.id, APR_11 + 7200)
    seat = monthly_price(client, "Seat", 1500)
    details: Any = {
        "items": [{"id": sub.items.data[0].id, "quantity": 1}, {"price": seat.id, "quantity": 2}],
        "proration_behavior": "always_invoice",
        "proration_date": APR_11,
    }
    preview = client.v1.invoices.create_preview(params={"subscription": sub.id, "subscription_details": details})
    items = [line.parent.subscription_item_details.subscription_item for line in preview.lines.data]
    assert items and all(str(i).startswith("si_") for i in items)
    assert any(line.amount > 0 and "Seat" in line.description for line in preview.lines.data)


def test_downgrade_always_invoice_credits_the_customer_balance(client: stripe.StripeClient) -> None:
    clock, customer, _price, sub = _subscribe(client, 3)
    advance_clock(client, clock.id, APR_11)
    # 3 -> 1 seat on day 10 of 30: -round(2000 x 3 x 20/30) + round(2000 x 1 x 20/30) = -4000 + 1333 = -2667
    updated = client.v1.subscriptions.update(
        sub.id,
        params={
            "items": [{"id": sub.items.data[0].id, "quantity": 1}],
            "proration_behavior": "always_invoice",
            "expand": ["latest_invoice"],
        },
    )
    invoice = updated.latest_invoice
    assert invoice.total == -2667
    assert invoice.amount_due == 0
    assert invoice.status == "paid"
    assert (invoice.starting_balance, invoice.ending_balance) == (0, -2667)
    assert client.v1.customers.retrieve(customer.id).balance == -2667
    ledger = client.v1.customers.balance_transactions.list(customer.id)
    assert [(t.type, t.amount, t.invoice) for t in ledger.data] == [("applied_to_invoice", -2667, invoice.id)]

    # May renewal: 1 x 2000 = 2000, paid from the 2667 credit -> amount_due 0, 667 credit left.
    advance_clock(client, clock.id, MAY_1)
    draft = client.v1.invoices.retrieve(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    # A draft for an hour: the balance shows as starting_balance but is only applied at finalization.
    assert (draft.status, draft.starting_balance, draft.ending_balance) == ("draft", -2667, None)
    assert client.v1.customers.retrieve(customer.id).balance == -2667
    advance_clock(client, clock.id, MAY_1 + 3600)
    renewal = client.v1.invoices.retrieve(draft.id)
    assert (renewal.total, renewal.starting_balance, renewal.ending_balance, renewal.amount_due) == (
        2000,
        -2667,
        -667,
        0,
    )
    assert renewal.status == "paid"
    assert client.v1.customers.retrieve(customer.id).balance == -667


def test_proration_none_and_subscription_items_endpoint(client: stripe.StripeClient) -> None:
    _clock, customer, _price, sub = _subscribe(client, 1)
    item = sub.items.data[0]
    client.v1.subscription_items.update(item.id, params={"quantity": 2, "proration_behavior": "none"})
    assert client.v1.invoice_items.list(params={"customer": customer.id, "pending": True}).data == []
    assert client.v1.subscriptions.retrieve(sub.id).items.data[0].quantity == 2
    # Adding a second price with prorations on day 0 of 30 (whole period remains): charge 500.
    addon = monthly_price(client, "Addon", 500)
    added = client.v1.subscription_items.create(params={"subscription": sub.id, "price": addon.id, "quantity": 1})
    assert added.id.startswith("si_")
    pending = client.v1.invoice_items.list(params={"customer": customer.id, "pending": True}).data
    assert [(ii.amount, ii.description) for ii in pending] == [(500, "Remaining time on 1 × Addon after 1 Apr 2025")]
    deleted = client.v1.subscription_items.delete(added.id, params={"proration_behavior": "none"})
    assert deleted.deleted is True
    assert len(client.v1.subscriptions.retrieve(sub.id).items.data) == 1


def test_declined_renewal_goes_past_due_then_recovers(client: stripe.StripeClient, emulator: StripeEmulator) -> None:
    clock, customer, _price, sub = _subscribe(client, 1)
    bad = client.v1.payment_methods.attach("pm_card_chargeDeclined", params={"customer": customer.id})
    assert bad.card.last4 == "0002"
    client.v1.customers.update(customer.id, params={"invoice_settings": {"default_payment_method": bad.id}})

    advance_clock(client, clock.id, MAY_1 + 3600)
    sub = client.v1.subscriptions.retrieve(sub.id, params={"expand": ["latest_invoice"]})
    assert sub.status == "past_due"
    invoice = sub.latest_invoice
    assert invoice.status == "open"
    assert invoice.attempt_count == 1
    assert invoice.amount_remaining == 2000
    failed = [e for e in emulator.events("invoice.payment_failed") if e["data"]["object"]["id"] == invoice.id]
    assert len(failed) == 1
    assert failed[0]["created"] == MAY_1 + 3600  # the renewal draft is finalized and charged an hour later

    with pytest.raises(stripe.CardError) as err:
        client.v1.invoices.pay(invoice.id)
    assert err.value.code == "card_declined"
    assert err.value.error.decline_code == "generic_decline"
    assert err.value.error.payment_intent.status == "requires_payment_method"

    good = client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    client.v1.customers.update(customer.id, params={"invoice_settings": {"default_payment_method": good.id}})
    paid = client.v1.invoices.pay(invoice.id)
    assert paid.status == "paid"
    assert paid.attempt_count == 3
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"
    assert [e["data"]["object"]["id"] for e in emulator.events("invoice.paid")].count(invoice.id) == 1


def test_metered_prices_are_refused(client: stripe.StripeClient) -> None:
    """Production never bills through billing meters (usage becomes invoice items): not emulated, said so."""
    product = client.v1.products.create(params={"name": "Usage"})
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.prices.create(
            params={
                "product": product.id,
                "currency": "usd",
                "unit_amount": 1,
                "recurring": {"interval": "month", "usage_type": "metered", "meter": "mtr_test_x"},
            }
        )
    assert (refused.value.http_status, refused.value.param) == (400, "recurring[usage_type]")
    with pytest.raises(stripe.InvalidRequestError) as gone:
        client.v1.billing.meters.list()
    assert gone.value.http_status == 404


def test_clock_advance_over_several_periods_and_cancel_at_period_end(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    clock, _customer, _price, sub = _subscribe(client, 1)
    start = len(emulator.events())
    # Apr 1 -> Jul 15 is more than two months: advance_clock goes in steps of 31 days (4 advances).
    advance_clock(client, clock.id, ts(2025, 7, 15))
    invoices = client.v1.invoices.list(params={"subscription": sub.id})
    # Created Apr 1; renewed May 1, Jun 1, Jul 1.
    assert [i.created for i in invoices.data] == [ts(2025, 7, 1), JUN_1, MAY_1, APR_1]
    assert all(i.status == "paid" for i in invoices.data)
    client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})
    advance_clock(client, clock.id, ts(2025, 8, 2))
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "canceled"
    assert sub.ended_at == ts(2025, 8, 1)
    assert len(client.v1.invoices.list(params={"subscription": sub.id}).data) == 4
    deleted = [e for e in emulator.events("customer.subscription.deleted") if e["data"]["object"]["id"] == sub.id]
    assert len(deleted) == 1
    steps = [
        (e["type"], e["data"]["object"]["status_details"].get("advancing", {}).get("target_frozen_time"))
        for e in emulator.events()[start:]
        if e["type"].startswith("test_helpers.test_clock.") and e["data"]["object"]["id"] == clock.id
    ]
    targets = [ts(2025, 5, 2), ts(2025, 6, 2), ts(2025, 7, 3), ts(2025, 7, 15), ts(2025, 8, 2)]
    assert steps == [
        step
        for t in targets
        for step in (("test_helpers.test_clock.advancing", t), ("test_helpers.test_clock.ready", None))
    ]


def test_cancel_now_with_prorated_credit(client: stripe.StripeClient) -> None:
    clock, customer, _price, sub = _subscribe(client, 1)
    advance_clock(client, clock.id, APR_11)
    canceled = client.v1.subscriptions.cancel(sub.id, params={"prorate": True, "invoice_now": True})
    assert canceled.status == "canceled"
    assert canceled.canceled_at == APR_11
    # Unused 20 of 30 days: -1333, credited to the balance by the final invoice.
    assert client.v1.customers.retrieve(customer.id).balance == -1333
    assert client.v1.subscriptions.list(params={"customer": customer.id}).data == []
    assert len(client.v1.subscriptions.list(params={"customer": customer.id, "status": "all"}).data) == 1


def test_routes_and_parameters_this_version_removed_are_refused(client: stripe.StripeClient) -> None:
    _, customer, price, sub = _subscribe(client, 2)
    # The upcoming invoice is `POST /v1/invoices/create_preview` now
    with pytest.raises(stripe.InvalidRequestError) as upcoming:
        client.raw_request("get", "/v1/invoices/upcoming", subscription=sub.id)
    assert upcoming.value.http_status == 404
    # Invoice items take `pricing[price]`, not `price`
    with pytest.raises(stripe.InvalidRequestError) as priced:
        client.v1.invoice_items.create(params={"customer": customer.id, "price": price.id})  # type: ignore[typeddict-unknown-key]
    assert (priced.value.http_status, priced.value.code, priced.value.param) == (400, "parameter_unknown", "price")
    # Lists without a `created` filter refuse one
    with pytest.raises(stripe.InvalidRequestError) as created:
        client.v1.subscription_items.list(params={"subscription": sub.id, "created": {"gte": APR_1}})  # type: ignore[typeddict-unknown-key]
    assert (created.value.code, created.value.param) == ("parameter_unknown", "created")
    assert client.v1.invoices.list(params={"customer": customer.id, "created": {"gte": APR_1}}).data  # it has one
    # `pricing[price]` is how an invoice item names its (one-time) price now
    setup_fee = client.v1.prices.create(params={"product": price.product, "currency": "usd", "unit_amount": 500})
    item = client.v1.invoice_items.create(params={"customer": customer.id, "pricing": {"price": setup_fee.id}})
    assert (item.amount, item.pricing.price_details.price) == (500, setup_fee.id)


def test_manual_invoice_with_pending_items(client: stripe.StripeClient, emulator: StripeEmulator) -> None:
    _clock, customer = clock_customer(client, APR_1)
    client.v1.invoice_items.create(
        params={"customer": customer.id, "amount": 1234, "currency": "usd", "description": "Setup fee"}
    )
    invoice = client.v1.invoices.create(
        params={"customer": customer.id, "pending_invoice_items_behavior": "include", "auto_advance": False}
    )
    assert invoice.status == "draft"
    assert invoice.number is None
    assert invoice.total == 1234
    finalized = client.v1.invoices.finalize_invoice(invoice.id)
    assert finalized.status == "open"
    assert finalized.number is not None
    assert finalized.hosted_invoice_url == f"{emulator.base_url}/invoice/{invoice.id}"
    paid = client.v1.invoices.pay(invoice.id)
    assert paid.status == "paid"
    assert paid.status_transitions.paid_at == APR_1
    other = client.v1.invoices.create(params={"customer": customer.id})
    client.v1.invoice_items.create(
        params={"customer": customer.id, "amount": 500, "currency": "usd", "invoice": other.id}
    )
    client.v1.invoices.finalize_invoice(other.id)
    assert client.v1.invoices.void_invoice(other.id).status == "void"
    assert helper is not None


def test_an_invoice_item_of_quantity_and_unit_amount_decimal(client: stripe.StripeClient) -> None:
    """Our overage: quantity x a fractional unit price (1.8 cents). Stripe computes the amount, rounded
    half-even; its line shows the quantity and the unit price. It refuses an amount with a unit price, and
    a unit price of more than 12 decimal places."""
    _clock, customer = clock_customer(client, APR_1)
    draft = client.v1.invoices.create(params={"customer": customer.id, "auto_advance": False})
    for quantity, unit, amount in ((150, "1.8", 270), (5, "0.5", 2), (7, "0.5", 4), (2_750_000, "0.0005", 1375)):
        item = client.v1.invoice_items.create(
            params={
                "customer": customer.id,
                "invoice": draft.id,
                "quantity": quantity,
                "unit_amount_decimal": unit,
                "currency": "usd",
                "description": "Generation credits over the 3,000 included",
            }
        )
        assert (item.amount, item.quantity, item.pricing.unit_amount_decimal) == (amount, quantity, Decimal(unit))
    lines = client.v1.invoices.retrieve(draft.id).lines.data
    assert [(li.quantity, li.pricing.unit_amount_decimal, li.amount) for li in lines] == [
        (150, Decimal("1.8"), 270),
        (5, Decimal("0.5"), 2),  # 2.5 -> 2 (half-even)
        (7, Decimal("0.5"), 4),  # 3.5 -> 4
        (2_750_000, Decimal("0.0005"), 1375),
    ]
    both = {"customer": customer.id, "amount": 270, "unit_amount_decimal": "1.8", "currency": "usd"}
    with pytest.raises(stripe.InvalidRequestError) as exclusive:
        client.v1.invoice_items.create(params=both)  # type: ignore[arg-type]
    assert (exclusive.value.http_status, exclusive.value.code) == (400, "parameters_exclusive")
    fine = {"customer": customer.id, "quantity": 1, "unit_amount_decimal": "0.1234567890123", "currency": "usd"}
    with pytest.raises(stripe.InvalidRequestError) as places:
        client.v1.invoice_items.create(params=fine)  # type: ignore[arg-type]
    assert (places.value.code, places.value.param) == ("parameter_invalid_decimal", "unit_amount_decimal")
    with pytest.raises(stripe.InvalidRequestError) as no_currency:
        client.v1.invoice_items.create(params={"customer": customer.id, "quantity": 3, "unit_amount_decimal": "2"})
    assert (no_currency.value.code, no_currency.value.param) == ("parameter_missing", "currency")


def test_an_invoice_paid_out_of_band_records_what_was_paid_off_stripe(client: stripe.StripeClient) -> None:
    _clock, customer = clock_customer(client, APR_1)
    sent = client.v1.invoices.create(
        params={"customer": customer.id, "collection_method": "send_invoice", "days_until_due": 30}
    )
    client.v1.invoice_items.create(
        params={"customer": customer.id, "invoice": sent.id, "amount": 250_000, "currency": "usd"}
    )
    client.v1.invoices.finalize_invoice(sent.id)
    assert client.v1.invoices.retrieve(sent.id).amount_paid_off_stripe == 0
    paid = client.v1.invoices.pay(sent.id, params={"paid_out_of_band": True})  # the wire arrived
    assert (paid.status, paid.amount_paid_off_stripe, paid.status_transitions.paid_at) == ("paid", 250_000, APR_1)

"""Payment intents (off-session), refunds, customer balance transactions, disputes."""

from __future__ import annotations

import pytest
import stripe

from tests.local.stripe_emulator import StripeEmulator
from tests.stripe_emulator.helpers import helper


@pytest.fixture
def customer_with_card(client: stripe.StripeClient) -> tuple[stripe.Customer, stripe.PaymentMethod]:
    customer = client.v1.customers.create(params={"email": "payer@example.com"})
    pm = client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    return customer, pm


def test_off_session_payment_intent_succeeds(
    client: stripe.StripeClient, customer_with_card: tuple[stripe.Customer, stripe.PaymentMethod]
) -> None:
    customer, pm = customer_with_card
    assert pm.id.startswith("pm_") and pm.id != "pm_card_visa"
    assert (pm.card.brand, pm.card.last4, pm.customer) == ("visa", "4242", customer.id)
    listed = client.v1.payment_methods.list(params={"customer": customer.id, "type": "card"})
    assert [m.id for m in listed.data] == [pm.id]
    intent = client.v1.payment_intents.create(
        params={
            "amount": 2500,
            "currency": "usd",
            "customer": customer.id,
            "payment_method": pm.id,
            "confirm": True,
            "off_session": True,
            "metadata": {"order": "o1"},
            "expand": ["latest_charge"],
        }
    )
    assert intent.status == "succeeded"
    assert intent.amount_received == 2500
    assert intent.latest_charge.status == "succeeded"
    assert intent.latest_charge.payment_method_details.card.last4 == "4242"
    assert intent.latest_charge.metadata.to_dict() == {"order": "o1"}
    charges = client.v1.charges.list(params={"payment_intent": intent.id})
    assert [c.id for c in charges.data] == [intent.latest_charge.id]


def test_off_session_payment_intent_declines(client: stripe.StripeClient, emulator: StripeEmulator) -> None:
    customer = client.v1.customers.create()
    bad = client.v1.payment_methods.attach("pm_card_chargeDeclined", params={"customer": customer.id})
    with pytest.raises(stripe.CardError) as err:
        client.v1.payment_intents.create(
            params={
                "amount": 2500,
                "currency": "usd",
                "customer": customer.id,
                "payment_method": bad.id,
                "confirm": True,
                "off_session": True,
            }
        )
    assert err.value.http_status == 402
    assert err.value.code == "card_declined"
    assert err.value.error.decline_code == "generic_decline"
    intent = err.value.error.payment_intent
    assert intent.status == "requires_payment_method"
    assert intent.last_payment_error.code == "card_declined"
    failed = [e for e in emulator.events("payment_intent.payment_failed") if e["data"]["object"]["id"] == intent.id]
    assert len(failed) == 1
    # Retrying the same intent with a good card succeeds.
    good = client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    confirmed = client.v1.payment_intents.confirm(intent.id, params={"payment_method": good.id, "off_session": True})
    assert confirmed.status == "succeeded"


def test_refunds_partial_full_and_over_refund(
    client: stripe.StripeClient,
    emulator: StripeEmulator,
    customer_with_card: tuple[stripe.Customer, stripe.PaymentMethod],
) -> None:
    customer, pm = customer_with_card
    intent = client.v1.payment_intents.create(
        params={"amount": 1000, "currency": "usd", "customer": customer.id, "payment_method": pm.id, "confirm": True}
    )
    partial = client.v1.refunds.create(
        params={"payment_intent": intent.id, "amount": 300, "reason": "requested_by_customer"}
    )
    assert partial.id.startswith("re_")
    assert (partial.amount, partial.status, partial.charge) == (300, "succeeded", intent.latest_charge)
    charge = client.v1.charges.retrieve(intent.latest_charge)
    assert (charge.amount_refunded, charge.refunded) == (300, False)

    with pytest.raises(stripe.InvalidRequestError) as over:
        client.v1.refunds.create(params={"charge": charge.id, "amount": 800})
    assert over.value.param == "amount"
    assert "greater than unrefunded amount on charge ($7.00)" in str(over.value.user_message)

    rest = client.v1.refunds.create(params={"charge": charge.id})  # all that remains
    assert rest.amount == 700
    charge = client.v1.charges.retrieve(charge.id)
    assert (charge.amount_refunded, charge.refunded) == (1000, True)
    assert [r.amount for r in charge.refunds.data] == [700, 300]

    with pytest.raises(stripe.InvalidRequestError) as done:
        client.v1.refunds.create(params={"charge": charge.id})
    assert done.value.code == "charge_already_refunded"

    refunded = [e for e in emulator.events("charge.refunded") if e["data"]["object"]["id"] == charge.id]
    assert [e["data"]["object"]["amount_refunded"] for e in refunded] == [300, 1000]
    assert refunded[0]["data"]["previous_attributes"]["amount_refunded"] == 0
    assert len(client.v1.refunds.list(params={"charge": charge.id}).data) == 2


def test_customer_balance_transactions(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create()
    credit = client.v1.customers.balance_transactions.create(
        customer.id, params={"amount": -1500, "currency": "usd", "description": "Goodwill", "metadata": {"t": "1"}}
    )
    assert credit.id.startswith("cbtxn_")
    assert (credit.object, credit.amount, credit.ending_balance, credit.type) == (
        "customer_balance_transaction",
        -1500,
        -1500,
        "adjustment",
    )
    debit = client.v1.customers.balance_transactions.create(customer.id, params={"amount": 500, "currency": "usd"})
    assert debit.ending_balance == -1000
    assert client.v1.customers.retrieve(customer.id).balance == -1000
    listed = client.v1.customers.balance_transactions.list(customer.id)
    assert [t.id for t in listed.data] == [debit.id, credit.id]
    assert client.v1.customers.balance_transactions.retrieve(customer.id, credit.id).description == "Goodwill"


def test_dispute_helper(
    client: stripe.StripeClient,
    emulator: StripeEmulator,
    customer_with_card: tuple[stripe.Customer, stripe.PaymentMethod],
) -> None:
    customer, pm = customer_with_card
    intent = client.v1.payment_intents.create(
        params={"amount": 4200, "currency": "usd", "customer": customer.id, "payment_method": pm.id, "confirm": True}
    )
    dispute = helper(client, f"/_emulator/charges/{intent.latest_charge}/dispute", reason="fraudulent")
    assert dispute.id.startswith("dp_")
    assert (dispute.amount, dispute.reason, dispute.charge) == (4200, "fraudulent", intent.latest_charge)
    assert client.v1.charges.retrieve(intent.latest_charge).disputed is True
    created = emulator.events("charge.dispute.created")
    assert created[-1]["data"]["object"]["id"] == dispute.id

"""Delayed-notification payments for wallet top-ups: ACH Direct Debit (us_bank_account) and US bank transfers
(wire) into the customer's cash balance (customer_balance), with their webhooks."""

from __future__ import annotations

import json
from typing import Any

import pytest
import stripe

from tests.local.stripe_emulator import StripeEmulator
from tests.stripe_clock import advance_clock
from tests.stripe_emulator.helpers import WebhookReceiver, helper, ts

DAY = 86_400
T0 = ts(2025, 6, 2)
MANDATE = {"customer_acceptance": {"type": "online", "online": {"ip_address": "203.0.113.7", "user_agent": "pytest"}}}


def ach_params(customer: str, payment_method: str, amount: int = 5000, **extra: Any) -> dict[str, Any]:
    return {
        "amount": amount,
        "currency": "usd",
        "customer": customer,
        "allowed_payment_method_types": ["us_bank_account"],
        "payment_method": payment_method,
        "confirm": True,
        "mandate_data": MANDATE,
        "metadata": {"wallet_topup": "t1"},
        **extra,
    }


def wire_params(customer: str, amount: int = 10_000, **extra: Any) -> dict[str, Any]:
    return {
        "amount": amount,
        "currency": "usd",
        "customer": customer,
        "allowed_payment_method_types": ["customer_balance"],
        "payment_method_data": {"type": "customer_balance"},
        "payment_method_options": {
            "customer_balance": {"funding_type": "bank_transfer", "bank_transfer": {"type": "us_bank_transfer"}},
        },
        "confirm": True,
        "metadata": {"wallet_topup": "w1"},
        **extra,
    }


def events_for(emulator: StripeEmulator, *ids: str) -> list[dict[str, Any]]:
    """Every event about one of the intents `ids` (or their charges / cash balance transactions), oldest first."""
    wanted = set(ids)
    out = []
    for event in emulator.events():
        obj = event["data"]["object"]
        applied_to = (obj.get(obj.get("type", "")) or {}).get("payment_intent")  # cash balance transactions
        if wanted & {obj.get("id"), obj.get("payment_intent"), applied_to}:
            out.append(event)
    return out


def types_for(emulator: StripeEmulator, *ids: str) -> list[str]:
    return [e["type"] for e in events_for(emulator, *ids)]


def assert_delivered_and_signed(emulator: StripeEmulator, receiver: WebhookReceiver, *ids: str) -> None:
    """Each event of these intents was delivered once, in creation order, with a valid signature."""
    emulator.wait_for_deliveries(timeout=10)
    wanted = [e["id"] for e in events_for(emulator, *ids)]
    mine = [r for r in receiver.received if json.loads(r.body)["id"] in wanted]
    assert [json.loads(r.body)["id"] for r in mine] == wanted
    for received in mine:
        event = stripe.Webhook.construct_event(received.body, received.signature, "whsec_local")
        assert event.type == next(e["type"] for e in emulator.events() if e["id"] == event.id)


# ====================================================================== ACH
def test_ach_success_settles_when_the_clock_passes_four_days(
    client: stripe.StripeClient, emulator: StripeEmulator, receiver: WebhookReceiver
) -> None:
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": T0})
    customer = client.v1.customers.create(params={"email": "ach@example.com", "test_clock": clock.id})
    intent = client.v1.payment_intents.create(params=ach_params(customer.id, "pm_usBankAccount_success"))
    assert intent.status == "processing"
    assert intent.payment_method_types == ["us_bank_account"]
    assert intent.metadata.to_dict() == {"wallet_topup": "t1"}
    charge = client.v1.charges.retrieve(intent.latest_charge)
    assert (charge.status, charge.paid, charge.amount) == ("pending", False, 5000)
    details = charge.payment_method_details
    assert details.type == "us_bank_account"
    assert (details.us_bank_account.last4, details.us_bank_account.routing_number) == ("6789", "110000000")
    mandate = client.v1.mandates.retrieve(details.us_bank_account.mandate)
    assert (mandate.type, mandate.status, mandate.payment_method) == ("single_use", "active", intent.payment_method)
    pm = client.v1.payment_methods.retrieve(intent.payment_method)
    assert pm.type == "us_bank_account" and pm.us_bank_account.bank_name == "STRIPE TEST BANK"

    advance_clock(client, clock.id, T0 + 4 * DAY - 1)
    assert client.v1.payment_intents.retrieve(intent.id).status == "processing"
    advance_clock(client, clock.id, T0 + 5 * DAY)
    settled = client.v1.payment_intents.retrieve(intent.id)
    assert (settled.status, settled.amount_received) == ("succeeded", 5000)
    charge = client.v1.charges.retrieve(intent.latest_charge)
    assert (charge.status, charge.paid, charge.created) == ("succeeded", True, T0)

    events = [e for e in emulator.events() if e["data"]["object"].get("id") in (intent.id, charge.id)]
    assert [e["type"] for e in events] == [
        "payment_intent.created",
        "charge.pending",
        "payment_intent.processing",
        "charge.succeeded",
        "payment_intent.succeeded",
    ]
    assert [e["created"] for e in events] == [T0, T0, T0, T0 + 4 * DAY, T0 + 4 * DAY]
    assert_delivered_and_signed(emulator, receiver, intent.id)


def test_ach_success_with_the_settle_helper_and_a_dispute(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    customer = client.v1.customers.create(params={"email": "ach-noclock@example.com"})
    pm = client.v1.payment_methods.attach("pm_usBankAccount_success", params={"customer": customer.id})
    intent = client.v1.payment_intents.create(params=ach_params(customer.id, pm.id, 2500))
    assert intent.status == "processing"
    settled = helper(client, f"/_emulator/payment_intents/{intent.id}/settle")
    assert settled.status == "succeeded"
    assert client.v1.charges.retrieve(intent.latest_charge).status == "succeeded"
    with pytest.raises(stripe.InvalidRequestError):  # only processing intents settle
        helper(client, f"/_emulator/payment_intents/{intent.id}/settle")
    assert types_for(emulator, intent.id)[-2:] == ["charge.succeeded", "payment_intent.succeeded"]
    # The existing dispute helper works on the ACH charge.
    dispute = helper(client, f"/_emulator/charges/{intent.latest_charge}/dispute")
    assert (dispute.amount, dispute.payment_method_details.type) == (2500, "us_bank_account")
    assert client.v1.charges.retrieve(intent.latest_charge).disputed is True
    assert emulator.events("charge.dispute.created")[-1]["data"]["object"]["id"] == dispute.id


def test_ach_pending_charge_cannot_be_disputed_and_dispute_token(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    customer = client.v1.customers.create()
    intent = client.v1.payment_intents.create(params=ach_params(customer.id, "pm_usBankAccount_dispute"))
    with pytest.raises(stripe.InvalidRequestError):
        helper(client, f"/_emulator/charges/{intent.latest_charge}/dispute")
    helper(client, f"/_emulator/payment_intents/{intent.id}/settle")
    assert types_for(emulator, intent.id)[-3:] == [
        "charge.succeeded",
        "payment_intent.succeeded",
        "charge.dispute.created",
    ]


def test_ach_failure_on_clock_then_retry_with_another_account(
    client: stripe.StripeClient, emulator: StripeEmulator, receiver: WebhookReceiver
) -> None:
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": T0})
    customer = client.v1.customers.create(params={"test_clock": clock.id})
    intent = client.v1.payment_intents.create(params=ach_params(customer.id, "pm_usBankAccount_accountClosed"))
    assert intent.status == "processing"  # failures only show at settlement
    advance_clock(client, clock.id, T0 + 4 * DAY)
    failed = client.v1.payment_intents.retrieve(intent.id)
    assert failed.status == "requires_payment_method"
    assert failed.payment_method is None
    assert (failed.last_payment_error.code, failed.last_payment_error.charge) == (
        "account_closed",
        intent.latest_charge,
    )
    assert failed.last_payment_error.payment_method.us_bank_account.last4 == "1113"
    charge = client.v1.charges.retrieve(intent.latest_charge)
    assert (charge.status, charge.failure_code, charge.paid) == ("failed", "account_closed", False)
    assert types_for(emulator, intent.id) == [
        "payment_intent.created",
        "charge.pending",
        "payment_intent.processing",
        "charge.failed",
        "payment_intent.payment_failed",
    ]
    assert_delivered_and_signed(emulator, receiver, intent.id)
    # The customer retries the same intent with a good account.
    retried = client.v1.payment_intents.confirm(
        intent.id, params={"payment_method": "pm_usBankAccount_success", "mandate_data": MANDATE}
    )
    assert retried.status == "processing" and retried.latest_charge != intent.latest_charge
    advance_clock(client, clock.id, T0 + 8 * DAY)
    assert client.v1.payment_intents.retrieve(intent.id).status == "succeeded"


def test_ach_failure_with_the_helper(client: stripe.StripeClient, emulator: StripeEmulator) -> None:
    customer = client.v1.customers.create()
    intent = client.v1.payment_intents.create(params=ach_params(customer.id, "pm_usBankAccount_success"))
    failed = helper(client, f"/_emulator/payment_intents/{intent.id}/settle", outcome="failed")
    assert (failed.status, failed.last_payment_error.code) == ("requires_payment_method", "insufficient_funds")
    assert types_for(emulator, intent.id)[-2:] == ["charge.failed", "payment_intent.payment_failed"]
    # insufficientFunds fails by itself; the processing token never settles on its own.
    other = client.v1.payment_intents.create(params=ach_params(customer.id, "pm_usBankAccount_insufficientFunds"))
    assert helper(client, f"/_emulator/payment_intents/{other.id}/settle").last_payment_error.code == (
        "insufficient_funds"
    )


def test_ach_validation(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create()
    with pytest.raises(stripe.InvalidRequestError) as err:  # the PM type must be allowed
        client.v1.payment_intents.create(
            params={**ach_params(customer.id, "pm_usBankAccount_success"), "allowed_payment_method_types": ["card"]}
        )
    assert err.value.param == "payment_method"
    with pytest.raises(stripe.InvalidRequestError) as err:  # the name this API version removed
        legacy = dict(ach_params(customer.id, "pm_usBankAccount_success"))
        del legacy["allowed_payment_method_types"]
        client.v1.payment_intents.create(params={**legacy, "payment_method_types": ["us_bank_account"]})  # type: ignore[typeddict-unknown-key]
    assert (err.value.code, err.value.param) == ("payment_method_types_no_longer_supported", "payment_method_types")
    with pytest.raises(stripe.InvalidRequestError) as err:
        client.v1.payment_intents.create(
            params={**ach_params(customer.id, "pm_usBankAccount_success"), "currency": "eur"}
        )
    assert err.value.param == "currency"
    # Bank details instead of a token: Stripe's test account numbers.
    intent = client.v1.payment_intents.create(
        params={
            **{k: v for k, v in ach_params(customer.id, "").items() if k != "payment_method"},
            "payment_method_data": {
                "type": "us_bank_account",
                "us_bank_account": {"routing_number": "110000000", "account_number": "000123456789"},
                "billing_details": {"name": "Jenny Rosen"},
            },
        }
    )
    assert intent.status == "processing"
    pm = client.v1.payment_methods.retrieve(intent.payment_method)
    assert (pm.us_bank_account.last4, pm.billing_details.name) == ("6789", "Jenny Rosen")


def test_ach_create_is_idempotent(client: stripe.StripeClient, emulator: StripeEmulator) -> None:
    customer = client.v1.customers.create()
    params = ach_params(customer.id, "pm_usBankAccount_success", 7000)
    first = client.v1.payment_intents.create(params=params, options={"idempotency_key": "topup-ach-1"})
    again = client.v1.payment_intents.create(params=params, options={"idempotency_key": "topup-ach-1"})
    assert again.id == first.id and again.last_response.headers.get("Idempotent-Replayed") == "true"
    assert len(client.v1.payment_intents.list(params={"customer": customer.id}).data) == 1
    assert types_for(emulator, first.id).count("payment_intent.processing") == 1
    with pytest.raises(stripe.IdempotencyError):
        client.v1.payment_intents.create(params={**params, "amount": 7001}, options={"idempotency_key": "topup-ach-1"})


# ================================================================= wires
def test_wire_funded_in_one_go(
    client: stripe.StripeClient, emulator: StripeEmulator, receiver: WebhookReceiver
) -> None:
    customer = client.v1.customers.create(params={"name": "Acme Corp"})
    intent = client.v1.payment_intents.create(params=wire_params(customer.id))
    assert intent.status == "requires_action"
    assert intent.payment_method_types == ["customer_balance"]
    instructions = intent.next_action.display_bank_transfer_instructions
    assert intent.next_action.type == "display_bank_transfer_instructions"
    assert (instructions.type, instructions.amount_remaining, instructions.currency) == (
        "us_bank_transfer",
        10_000,
        "usd",
    )
    assert instructions.reference
    aba = instructions.financial_addresses[0]
    assert aba.type == "aba" and aba.supported_networks == ["ach", "domestic_wire_us"]
    assert aba.aba.routing_number and aba.aba.account_number
    assert client.v1.payment_methods.retrieve(intent.payment_method).type == "customer_balance"

    funded = client.v1.test_helpers.customers.fund_cash_balance(
        customer.id, params={"amount": 10_000, "currency": "usd", "reference": instructions.reference}
    )
    assert (funded.type, funded.net_amount, funded.ending_balance) == ("funded", 10_000, 10_000)
    assert funded.funded.bank_transfer.reference == instructions.reference
    paid = client.v1.payment_intents.retrieve(intent.id)
    assert (paid.status, paid.amount_received, paid.next_action) == ("succeeded", 10_000, None)
    charge = client.v1.charges.retrieve(paid.latest_charge)
    assert (charge.status, charge.payment_method_details.type, charge.amount) == (
        "succeeded",
        "customer_balance",
        10_000,
    )
    cash = client.v1.customers.cash_balance.retrieve(customer.id)
    assert cash.available.to_dict() == {}
    txns = client.v1.customers.cash_balance_transactions.list(customer.id)
    assert [(t.type, t.net_amount) for t in reversed(txns.data)] == [
        ("funded", 10_000),
        ("applied_to_payment", -10_000),
    ]
    assert types_for(emulator, intent.id) == [
        "payment_intent.created",
        "payment_intent.requires_action",
        "customer_cash_balance_transaction.created",  # applied_to_payment
        "charge.succeeded",
        "payment_intent.succeeded",
    ]
    assert_delivered_and_signed(emulator, receiver, intent.id)


def test_wire_funded_in_two_parts_and_reference_matching(client: stripe.StripeClient, emulator: StripeEmulator) -> None:
    customer = client.v1.customers.create()
    older = client.v1.payment_intents.create(params=wire_params(customer.id, 4000))
    intent = client.v1.payment_intents.create(params=wire_params(customer.id, 10_000))
    reference = intent.next_action.display_bank_transfer_instructions.reference
    assert reference != older.next_action.display_bank_transfer_instructions.reference

    client.v1.test_helpers.customers.fund_cash_balance(
        customer.id, params={"amount": 6000, "currency": "usd", "reference": reference}
    )
    partial = client.v1.payment_intents.retrieve(intent.id)
    assert partial.status == "requires_action"
    assert partial.next_action.display_bank_transfer_instructions.amount_remaining == 4000
    assert client.v1.payment_intents.retrieve(older.id).status == "requires_action"  # reference wins over age

    client.v1.test_helpers.customers.fund_cash_balance(
        customer.id, params={"amount": 4000, "currency": "usd", "reference": reference}
    )
    assert client.v1.payment_intents.retrieve(intent.id).status == "succeeded"
    assert types_for(emulator, intent.id) == [
        "payment_intent.created",
        "payment_intent.requires_action",
        "customer_cash_balance_transaction.created",
        "payment_intent.partially_funded",
        "customer_cash_balance_transaction.created",
        "charge.succeeded",
        "payment_intent.succeeded",
    ]
    # No reference: the oldest open intent; what is left stays on the cash balance.
    client.v1.test_helpers.customers.fund_cash_balance(customer.id, params={"amount": 5000, "currency": "usd"})
    assert client.v1.payment_intents.retrieve(older.id).status == "succeeded"
    assert client.v1.customers.cash_balance.retrieve(customer.id).available.to_dict() == {"usd": 1000}
    assert emulator.events()[-1]["type"] == "cash_balance.funds_available"
    # The balance pays (part of) the next transfer intent at confirmation.
    small = client.v1.payment_intents.create(params=wire_params(customer.id, 800))
    assert small.status == "succeeded"
    assert client.v1.customers.cash_balance.retrieve(customer.id).available.to_dict() == {"usd": 200}


def test_wire_cancel_returns_applied_funds(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create()
    intent = client.v1.payment_intents.create(params=wire_params(customer.id, 10_000))
    client.v1.test_helpers.customers.fund_cash_balance(customer.id, params={"amount": 3000, "currency": "usd"})
    canceled = client.v1.payment_intents.cancel(intent.id)
    assert canceled.status == "canceled"
    assert client.v1.customers.cash_balance.retrieve(customer.id).available.to_dict() == {"usd": 3000}
    txns = client.v1.customers.cash_balance_transactions.list(customer.id)
    assert txns.data[0].type == "unapplied_from_payment" and txns.data[0].net_amount == 3000


def test_wire_validation_and_idempotency(client: stripe.StripeClient, emulator: StripeEmulator) -> None:
    with pytest.raises(stripe.InvalidRequestError) as err:  # a customer is required
        client.v1.payment_intents.create(params={k: v for k, v in wire_params("").items() if k != "customer"})
    assert err.value.param == "customer"
    customer = client.v1.customers.create()
    with pytest.raises(stripe.InvalidRequestError) as err:
        client.v1.payment_intents.create(params={**wire_params(customer.id), "payment_method_options": {}})
    assert err.value.param == "payment_method_options[customer_balance][funding_type]"
    params = wire_params(customer.id, 9000)
    first = client.v1.payment_intents.create(params=params, options={"idempotency_key": "topup-wire-1"})
    again = client.v1.payment_intents.create(params=params, options={"idempotency_key": "topup-wire-1"})
    assert again.id == first.id
    assert again.next_action.display_bank_transfer_instructions.reference == (
        first.next_action.display_bank_transfer_instructions.reference
    )
    assert len(client.v1.payment_intents.list(params={"customer": customer.id}).data) == 1

"""Wallet top-ups through the API and Stripe: ACH pending until it settles, wire instructions until
funded, a dispute after crediting takes the money back, support refunds go back to the card."""

from __future__ import annotations

from typing import Any

import pytest
import requests
import stripe

from tests.helpers import ApiClient, new_user, org_items
from tests.integration.stripe_kit import API_KEY
from tests.paid import paid_org_over_http

pytestmark = pytest.mark.integration


def _agency(api: ApiClient, stack: Any, table: Any, currency: str = "USD") -> tuple[str, str]:
    """A Pro agency org, subscribed through Checkout (a saved card); what that caused is done."""
    owner = new_user()
    org_id = paid_org_over_http(api, stack, table, owner, name="Agency", plan_id="pro", currency=currency)
    stack.flush_outbox()
    stack.stripe.wait_for_deliveries()
    stack.flush_outbox()
    return owner, org_id


def _wallet(api: ApiClient, owner: str, org_id: str) -> dict[str, Any]:
    return dict(api.call("GET", f"/v1/orgs/{org_id}/wallet", as_user=owner).body)


def _stripe(stack: Any) -> stripe.StripeClient:
    return stripe.StripeClient(API_KEY, base_addresses={"api": stack.env["STRIPE_API_BASE"]})


def _helper(stack: Any, path: str, **data: str) -> None:
    reply = requests.post(
        f"{stack.env['STRIPE_API_BASE']}{path}", data=data, timeout=30, headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert reply.status_code == 200, reply.text
    stack.stripe.wait_for_deliveries()


def test_ach_is_pending_until_it_settles_and_a_dispute_takes_it_back(api: ApiClient, stack: Any, table: Any) -> None:
    owner, org_id = _agency(api, stack, table)
    reply = api.call(
        "POST",
        f"/v1/orgs/{org_id}/wallet/top-ups",
        as_user=owner,
        headers={"Idempotency-Key": "a1"},
        json={"amount_minor": 30_000, "method": "ach", "payment_method_id": "pm_usBankAccount_success"},
    )
    assert (reply.status, reply.body["status"]) == (202, "pending")
    stack.stripe.wait_for_deliveries()
    wallet = _wallet(api, owner, org_id)
    assert (wallet["balance_minor"], wallet["pending_minor"]) == (0, 30_000)

    _helper(stack, f"/_emulator/payment_intents/{reply.body['payment_intent_id']}/settle", outcome="succeeded")
    wallet = _wallet(api, owner, org_id)
    assert (wallet["balance_minor"], wallet["pending_minor"]) == (30_000, 0)

    charge_id = _stripe(stack).v1.payment_intents.retrieve(reply.body["payment_intent_id"]).latest_charge
    _helper(stack, f"/_emulator/charges/{charge_id}/dispute")
    wallet = _wallet(api, owner, org_id)
    assert wallet["balance_minor"] == 0
    kinds = [e["kind"] for e in api.call("GET", f"/v1/orgs/{org_id}/wallet/transactions", as_user=owner).body["items"]]
    assert kinds == ["reversal", "topup"]


def test_a_failed_ach_debit_never_credits(api: ApiClient, stack: Any, table: Any) -> None:
    owner, org_id = _agency(api, stack, table)
    reply = api.call(
        "POST",
        f"/v1/orgs/{org_id}/wallet/top-ups",
        as_user=owner,
        headers={"Idempotency-Key": "a2"},
        json={"amount_minor": 30_000, "method": "ach", "payment_method_id": "pm_usBankAccount_insufficientFunds"},
    )
    stack.stripe.wait_for_deliveries()
    _helper(stack, f"/_emulator/payment_intents/{reply.body['payment_intent_id']}/settle")
    wallet = _wallet(api, owner, org_id)
    assert (wallet["balance_minor"], wallet["pending_minor"]) == (0, 0)


def test_a_wire_shows_instructions_and_credits_when_funded(api: ApiClient, stack: Any, table: Any) -> None:
    owner, org_id = _agency(api, stack, table)
    reply = api.call(
        "POST",
        f"/v1/orgs/{org_id}/wallet/top-ups",
        as_user=owner,
        headers={"Idempotency-Key": "w1"},
        json={"amount_minor": 500_000, "method": "wire"},
    )
    assert reply.status == 202 and reply.body["instructions"]["reference"]
    stack.stripe.wait_for_deliveries()
    assert _wallet(api, owner, org_id)["pending_minor"] == 500_000
    client = _stripe(stack)
    org = api.call("GET", f"/v1/orgs/{org_id}/subscription", as_user=owner).body
    assert org["has_billing_account"]
    customer = client.v1.payment_intents.retrieve(reply.body["payment_intent_id"]).customer
    client.v1.test_helpers.customers.fund_cash_balance(
        str(customer),
        params={"amount": 500_000, "currency": "usd", "reference": reply.body["instructions"]["reference"]},
    )
    stack.stripe.wait_for_deliveries()
    wallet = _wallet(api, owner, org_id)
    assert (wallet["balance_minor"], wallet["pending_minor"]) == (500_000, 0)


def test_support_refunds_go_back_to_the_card_and_never_exceed_what_is_refundable(
    api: ApiClient, stack: Any, table: Any
) -> None:
    owner, org_id = _agency(api, stack, table)  # subscribed through Checkout: a saved card
    api.call(
        "POST",
        f"/v1/orgs/{org_id}/wallet/top-ups",
        as_user=owner,
        headers={"Idempotency-Key": "c1"},
        json={"amount_minor": 20_000, "method": "card"},
    )
    stack.stripe.wait_for_deliveries()
    staff, support = new_user("staff"), ("support",)
    too_much = api.call(
        "POST",
        f"/v1/orgs/{org_id}/wallet/refunds",
        as_user=staff,
        groups=support,
        json={"amount_minor": 20_001, "reason": "withdraw"},
        headers={"Idempotency-Key": "r0"},
    )
    assert (too_much.status, too_much.code) == (422, "refund_exceeds_refundable")
    member = api.call(
        "POST",
        f"/v1/orgs/{org_id}/wallet/refunds",
        as_user=owner,
        json={"amount_minor": 100, "reason": "withdraw"},
        headers={"Idempotency-Key": "r1"},
    )
    assert (member.status, member.code) == (403, "forbidden")
    for _ in range(3):
        done = api.call(
            "POST",
            f"/v1/orgs/{org_id}/wallet/refunds",
            as_user=staff,
            groups=support,
            json={"amount_minor": 7_500, "reason": "withdraw"},
            headers={"Idempotency-Key": "r2"},
        )
        assert done.status == 201 and done.body["amount_minor"] == 7_500
    client = _stripe(stack)
    refunds = [
        r
        for r in client.v1.refunds.list(params={"limit": 100}).data
        if r.metadata and r.metadata.to_dict().get("org_id") == org_id
    ]
    assert [r.amount for r in refunds] == [7_500]
    assert _wallet(api, owner, org_id)["balance_minor"] == 12_500


@pytest.mark.parametrize("method", ["ach", "wire"])
def test_a_bank_top_up_of_a_eur_wallet_is_refused_clearly_and_writes_nothing(
    api: ApiClient, stack: Any, table: Any, method: str
) -> None:
    # Given a EUR agency org (US bank rails carry dollars only)
    owner, org_id = _agency(api, stack, table, currency="EUR")
    before = org_items(table, org_id)
    payment = {"amount_minor": 30_000, "method": method}
    if method == "ach":
        payment["payment_method_id"] = "pm_usBankAccount_success"
    # When the owner asks for a bank top-up, Then it is refused with a code, before Stripe or the table
    reply = api.call(
        "POST", f"/v1/orgs/{org_id}/wallet/top-ups", as_user=owner, headers={"Idempotency-Key": "eur"}, json=payment
    )
    assert (reply.status, reply.code) == (422, "bank_method_unsupported_for_currency")
    assert "card" in reply.body["error"]["message"]
    assert org_items(table, org_id) == before

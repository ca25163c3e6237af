"""Stripe's answers in every order relative to our own calls (found by an outside review of issue 13):
refunds reported before the credit, our refund failing later, a dispute won, webhooks faster than
Stripe's reply to us, another customer's subscription naming our org, and overage waiting for an
invoice that will never come."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.helpers import ApiClient, new_user
from tests.integration.stripe_kit import StripeKit
from tests.integration.test_stripe_trust import _balance, _deliver, _event, _funded
from tests.integration.wallet_kit import WalletKit, agency_org, wallet_kit

pytestmark = pytest.mark.integration


@pytest.fixture
def kit(stack: Any, table: Any) -> StripeKit:
    return StripeKit(stack, table)


@contextmanager
def _held(kit: StripeKit) -> Iterator[None]:
    """Stripe records its events but delivers none (our endpoint is down)."""
    url = kit.emulator.webhook_url
    kit.emulator.set_webhook_endpoint(None)
    try:
        yield
    finally:
        kit.emulator.set_webhook_endpoint(url)


def _support_refund(api: ApiClient, org_id: str, amount: int) -> Any:
    return api.call(
        "POST",
        f"/v1/orgs/{org_id}/wallet/refunds",
        as_user=new_user(),
        groups=("support",),
        headers={"Idempotency-Key": new_user()},
        json={"amount_minor": amount, "reason": "closing"},
    )


def test_a_refund_reported_before_the_credit_is_taken_once_the_credit_lands(api: ApiClient, kit: StripeKit) -> None:
    # Given an org with a saved card, and our webhook endpoint down while a top-up is paid and refunded in part
    owner, org_id, _, _ = _funded(api, kit, 1_000)
    with _held(kit):
        reply = api.call(
            "POST",
            f"/v1/orgs/{org_id}/wallet/top-ups",
            as_user=owner,
            headers={"Idempotency-Key": new_user()},
            json={"amount_minor": 20_000, "method": "card"},
        )
        intent = reply.body["payment_intent_id"]
        charge = str(kit.client.v1.payment_intents.retrieve(intent).latest_charge)
        refund = kit.client.v1.refunds.create(params={"charge": charge, "amount": 6_000})
    # When the events arrive refunds first, then the payment
    outcomes = [
        _deliver(api, _event(kit, "charge.refunded", charge)).json()["outcome"],
        _deliver(api, _event(kit, "refund.created", refund.id)).json()["outcome"],
        _deliver(api, _event(kit, "payment_intent.succeeded", intent)).json()["outcome"],
    ]
    kit.stack.flush_outbox()
    # Then the credit takes the refund with it: the wallet holds what Stripe kept
    assert outcomes == ["noted", "noted", "wallet_credited"]
    assert _balance(api, owner, org_id) == 1_000 + 20_000 - 6_000


def test_our_refund_that_fails_later_is_given_back_once(api: ApiClient, kit: StripeKit, stack: Any) -> None:
    # Given a card top-up of 20,000 and a support refund of 5,000 to it
    owner, org_id, _, topup = _funded(api, kit)
    assert _support_refund(api, org_id, 5_000).status == 201
    kit.emulator.wait_for_deliveries()
    assert _balance(api, owner, org_id) == 15_000
    # When the bank returns the refund: Stripe marks it failed and says so (twice)
    charge = str(kit.client.v1.payment_intents.retrieve(topup["payment_intent_id"]).latest_charge)
    [refund] = kit.client.v1.refunds.list(params={"charge": charge}).data
    store = stack.stripe.store
    with store.lock:
        store.objects[refund.id]["status"] = "failed"
        store.objects[charge]["amount_refunded"] -= 5_000
        failed = store.emit("refund.failed", store.objects[refund.id])
    kit.emulator.wait_for_deliveries()
    assert _deliver(api, failed).status_code == 200
    kit.stack.flush_outbox()
    # Then the wallet has it back, once, and support may refund it again
    assert _balance(api, owner, org_id) == 20_000
    assert _support_refund(api, org_id, 20_000).status == 201


def test_a_dispute_the_org_won_gives_the_money_back_once(api: ApiClient, kit: StripeKit, stack: Any) -> None:
    owner, org_id, _, topup = _funded(api, kit)
    charge = str(kit.client.v1.payment_intents.retrieve(topup["payment_intent_id"]).latest_charge)
    kit.client.raw_request("post", f"/_emulator/charges/{charge}/dispute")
    kit.emulator.wait_for_deliveries()
    kit.stack.flush_outbox()
    assert _balance(api, owner, org_id) == 0
    dispute = next(e for e in reversed(kit.emulator.events()) if e["type"] == "charge.dispute.created")
    store = stack.stripe.store
    with store.lock:
        store.objects[dispute["data"]["object"]["id"]]["status"] = "won"
        closed = store.emit("charge.dispute.closed", store.objects[dispute["data"]["object"]["id"]])
    kit.emulator.wait_for_deliveries()
    for _ in range(2):
        assert _deliver(api, closed).status_code == 200
    kit.stack.flush_outbox()
    assert _balance(api, owner, org_id) == 20_000


def test_another_customers_subscription_naming_our_org_changes_nothing(api: ApiClient, kit: StripeKit) -> None:
    # Given a Pro agency org, and another customer's subscription whose metadata names it
    owner, org_id, customer, _ = _funded(api, kit)
    price = kit.client.v1.subscriptions.list(params={"customer": customer}).data[0]["items"].data[0].price.id
    other = kit.client.v1.customers.create(params={"name": "someone else"})
    card = kit.client.v1.payment_methods.attach("pm_card_visa", params={"customer": other.id})
    kit.client.v1.customers.update(other.id, params={"invoice_settings": {"default_payment_method": card.id}})
    theirs = kit.client.v1.subscriptions.create(
        params={"customer": other.id, "items": [{"price": price}], "metadata": {"org_id": org_id}}
    )
    # When it is canceled
    kit.client.v1.subscriptions.cancel(theirs.id)
    kit.emulator.wait_for_deliveries()
    # Then the org keeps its plan, its mode and its own subscription
    org = api.call("GET", f"/v1/orgs/{org_id}", as_user=owner).body
    assert (org["plan"]["plan_id"], org["billing_mode"]) == ("pro", "agency")
    assert api.call("GET", f"/v1/orgs/{org_id}/subscription", as_user=owner).body["status"] == "active"


def test_an_invoice_of_a_linked_customer_is_its_orgs_whatever_its_subscription_names(
    api: ApiClient, kit: StripeKit
) -> None:
    # Given a Pro agency org, and another org on Free whose linked customer subscribes in Stripe with
    # metadata naming the first org
    owner, org_id, customer, _ = _funded(api, kit)
    price = kit.client.v1.subscriptions.list(params={"customer": customer}).data[0]["items"].data[0].price.id
    other_owner = new_user()
    other_org = api.call("POST", "/v1/orgs", as_user=other_owner, json={"name": "Other"}).body["org_id"]
    other = kit.client.v1.customers.create(params={"name": "the other org"})
    kit.repo.link_stripe_customer(other_org, other.id)
    card = kit.client.v1.payment_methods.attach("pm_card_visa", params={"customer": other.id})
    kit.client.v1.customers.update(other.id, params={"invoice_settings": {"default_payment_method": card.id}})
    # When it is paid (invoice.paid: the org is the one its customer is linked to)
    kit.client.v1.subscriptions.create(
        params={"customer": other.id, "items": [{"price": price}], "metadata": {"org_id": org_id}}
    )
    kit.emulator.wait_for_deliveries()
    # Then the subscription is the other org's, and the first keeps its plan, mode and subscription
    assert api.call("GET", f"/v1/orgs/{other_org}", as_user=other_owner).body["plan"]["plan_id"] == "pro"
    org = api.call("GET", f"/v1/orgs/{org_id}", as_user=owner).body
    assert (org["plan"]["plan_id"], org["billing_mode"]) == ("pro", "agency")
    assert api.call("GET", f"/v1/orgs/{org_id}/subscription", as_user=owner).body["status"] == "active"


def _webhooks_first(stack: Any, kit: WalletKit, method: str) -> None:
    """The gateway's `method` answers only after Stripe's webhooks about it were handled."""
    real = getattr(kit.gateway, method)

    def slow(*args: Any, **kwargs: Any) -> Any:
        out = real(*args, **kwargs)
        stack.stripe.wait_for_deliveries()
        stack.flush_outbox()
        return out

    setattr(kit.gateway, method, slow)


def test_a_card_credit_faster_than_stripes_reply_is_never_overwritten(stack: Any, api: ApiClient) -> None:
    from shared.auth import Caller
    from tests.integration.test_wallet import NOW
    from tests.integration.test_wallet_refunds import SUPPORT

    kit = wallet_kit(stack, NOW)
    org_id, _, owner = agency_org(kit)
    customer = kit.gateway.create_customer(org_id=org_id, name="Fast", email=None)
    kit.org_repo.link_stripe_customer(org_id, customer)
    card = kit.gateway._client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer})
    kit.gateway._client.v1.customers.update(customer, params={"invoice_settings": {"default_payment_method": card.id}})
    _webhooks_first(stack, kit, "charge_card")
    topup = kit.wallet.top_up(owner, org_id, amount_minor=20_000, method="card", idempotency_key="k", return_url=None)
    stored = kit.repo.topup(org_id, topup.topup_id)
    assert stored is not None and stored.status == "succeeded"
    kit.wallet.refund(SUPPORT, org_id, amount_minor=20_000, reason="closing", idempotency_key=new_user())
    view = kit.wallet.view(Caller(owner.user_id, None, frozenset()), org_id)
    assert view.account.balance == 0


def test_a_wire_paid_at_once_from_the_cash_balance_leaves_nothing_pending(stack: Any) -> None:
    from tests.integration.test_wallet import NOW

    kit = wallet_kit(stack, NOW)
    org_id, _, owner = agency_org(kit)
    customer = kit.gateway.create_customer(org_id=org_id, name="Cash", email=None)
    kit.org_repo.link_stripe_customer(org_id, customer)
    kit.gateway._client.v1.test_helpers.customers.fund_cash_balance(
        customer, params={"amount": 50_000, "currency": "usd"}
    )
    _webhooks_first(stack, kit, "start_bank_payment")
    topup = kit.wallet.top_up(owner, org_id, amount_minor=30_000, method="wire", idempotency_key="w", return_url=None)
    stored = kit.repo.get(org_id)
    assert stored is not None and (stored.account.balance, stored.account.pending) == (30_000, 0)
    record = kit.repo.topup(org_id, topup.topup_id)
    assert record is not None and record.status == "succeeded" and record.payment_intent_id


def test_overage_waiting_for_a_next_invoice_is_invoiced_when_the_subscription_ends(
    api: ApiClient, stack: Any, table: Any
) -> None:
    from tests.integration.stripe_kit import DAY, PERIOD_START
    from tests.integration.test_overage_billing import _renewal, september_overage
    from tests.integration.test_stripe_webhooks import post, sign

    stripe_kit, _, clock_id, customer = september_overage(api, stack, table)
    # Given September's overage deferred to the next invoice (the renewal finalized before our webhook)
    with _held(stripe_kit):
        stripe_kit.advance(clock_id, PERIOD_START + 30 * DAY + 60)
        stripe_kit.advance(clock_id, PERIOD_START + 30 * DAY + 3600 + 120)
    renewal = _renewal(stripe_kit, customer)
    created = next(
        e for e in stack.stripe.events() if e["type"] == "invoice.created" and e["data"]["object"]["id"] == renewal.id
    )
    payload = json.dumps({**created, "id": f"evt_{new_user()}"})
    assert post(api, payload, sign(payload)).json()["outcome"] == "overage_deferred 828"
    # When the subscription is canceled mid-October (no next invoice will come)
    sub_id = stripe_kit.client.v1.subscriptions.list(params={"customer": customer}).data[0].id
    stripe_kit.client.v1.subscriptions.cancel(sub_id)
    stripe_kit.emulator.wait_for_deliveries()
    # Then the deferred overage is invoiced and charged on its own, once
    invoices = stripe_kit.client.v1.invoices.list(params={"customer": customer}).data
    own = [i for i in invoices if i.billing_reason == "manual"]
    assert [(i.total, i.status) for i in own] == [(828, "paid")]
    assert stripe_kit.client.v1.invoice_items.list(params={"customer": customer, "pending": True}).data == []


def test_a_subscription_never_paid_is_replaced_by_the_one_the_customer_paid(
    api: ApiClient, kit: StripeKit, table: Any
) -> None:
    # Given an org whose mirrored subscription is one it never paid (incomplete), and a paid one of its customer
    owner, org_id, customer, _ = _funded(api, kit)
    paid = kit.client.v1.subscriptions.list(params={"customer": customer}).data[0]
    table.update_item(
        Key={"PK": f"ORG#{org_id}", "SK": "ORG"},
        UpdateExpression="SET subscription.subscription_id = :old, subscription.#s = :incomplete",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":old": "sub_never_paid", ":incomplete": "incomplete"},
    )
    # When the paid one changes, Then it becomes the org's
    kit.client.v1.subscriptions.update(paid.id, params={"metadata": {"org_id": org_id, "note": "touched"}})
    kit.emulator.wait_for_deliveries()
    shown = api.call("GET", f"/v1/orgs/{org_id}/subscription", as_user=owner).body
    assert shown["status"] == "active"
    stored = kit.repo.get_org(org_id)
    assert stored is not None and stored.subscription is not None and stored.subscription.subscription_id == paid.id

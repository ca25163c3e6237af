"""Every public method of the Stripe gateway, against the emulator, speaks the pinned API version.

The emulator checks every request it receives against the contract derived from the SDK (tests/contract) and
records it (`stack.stripe.contract.requests`), and (strict, as in every test) answers 500 for any object of its
own outside the contract, which the autouse fixture of tests/conftest.py also asserts. Here each gateway call's
requests are taken from that record: each method that talks to Stripe made at least one, none had a problem,
and every public method of `StripeGateway` was called (found by introspection: a new one fails this test until
it is driven here)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from decimal import Decimal
from types import FunctionType
from typing import Any

import pytest
import stripe

from shared.stripe_gateway import PAYMENT_MOVED_EVENTS, PricedQuantity, StripeGateway, StripeKeys
from tests.helpers import new_user
from tests.integration.test_stripe_webhooks import sign
from tests.local.stripe_emulator.contract import CheckedRequest, ContractGuard

pytestmark = pytest.mark.integration

# Public methods that never call Stripe: building a gateway, verifying a webhook's signature.
NO_STRIPE_CALL = frozenset({"from_keys", "parse_webhook"})
URLS = {"success_url": "https://app.layers.test/ok", "cancel_url": "https://app.layers.test/cancel"}


def _public_methods() -> set[str]:
    return {
        name
        for name, member in vars(StripeGateway).items()
        if not name.startswith("_") and isinstance(member, FunctionType | classmethod | staticmethod)
    }


class _Recorded:
    """A gateway (or its class) whose public methods, when called, record the requests the emulator checked
    meanwhile, per method name (shared by every `_Recorded` of one `calls`)."""

    def __init__(self, target: Any, guard: ContractGuard, calls: dict[str, list[CheckedRequest]]) -> None:
        self._target, self._guard, self.calls = target, guard, calls

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._target, name)

        def recorded(*args: Any, **kwargs: Any) -> Any:
            mark = self._guard.mark()
            try:
                return method(*args, **kwargs)
            finally:
                self.calls.setdefault(name, []).extend(self._guard.requests_since(mark))

        return recorded


def test_every_gateway_method_sends_only_what_the_pinned_version_accepts(stack: Any) -> None:
    guard: ContractGuard = stack.stripe.contract
    base = stack.env["STRIPE_API_BASE"]
    client = stripe.StripeClient("sk_test_local", base_addresses={"api": base}, max_network_retries=0)
    calls: dict[str, list[CheckedRequest]] = {}
    keys = StripeKeys("sk_test_local", "whsec_local")
    g = _Recorded(_Recorded(StripeGateway, guard, calls).from_keys(lambda: keys, api_base=base), guard, calls)
    org = new_user("org")

    # Catalog and customer
    price = g.price_id(
        f"layers:contract:{org}:USD:base", product_name="Pro", unit_amount_minor=2000, currency="USD", metadata={}
    )
    customer = g.create_customer(org_id=org, name="Contract Co", email="billing@example.com")
    assert g.customer_balance(customer) == 0
    assert abs(g.now_for(customer) - time.time()) < 60
    assert g.default_card(customer) is None

    # A subscription through Checkout, then a seat change previewed and made
    session_id, url = g.create_subscription_checkout(
        customer_id=customer, org_id=org, plan_id="pro", items=[(price, 1)], key=f"checkout:{org}", **URLS
    )
    assert url
    done = client.deserialize(
        client.raw_request(
            "post", f"/_emulator/checkout/sessions/{session_id}/complete", payment_method="pm_card_visa"
        ),
        api_mode="V1",
    )
    card = g.default_card(customer)
    assert card is not None
    sub = g.get_subscription(done.subscription)
    assert sub.current_period_start < sub.current_period_end  # read from the items
    seats = [{"id": sub.items[0].item_id, "quantity": 2}]
    now = g.now_for(customer)
    preview = g.preview_subscription_change(
        customer_id=customer, subscription_id=sub.subscription_id, items=seats, proration_date=now
    )
    assert preview.subscription_id == sub.subscription_id  # read from `parent`
    updated = g.update_subscription(
        sub.subscription_id,
        items=seats,
        metadata={"org_id": org},
        proration_behavior="create_prorations",
        proration_date=now,
        key=f"seats:{org}",
    )
    assert updated.items[0].quantity == 2
    first = g.get_invoice(str(sub.latest_invoice_id))
    assert (first.subscription_id, first.status) == (sub.subscription_id, "paid")
    assert first.invoice_id in {i.invoice_id for i in g.list_invoices(customer_id=customer)}

    # Our overage on a draft, the customer's Stripe balance
    draft = client.v1.invoices.create(params={"customer": customer, "auto_advance": False})
    g.add_invoice_item(
        customer_id=customer,
        invoice_id=draft.id,
        priced=PricedQuantity(150, Decimal("1.8"), "USD"),  # 150 credits x 1.8 cents = 270 cents
        description="Usage overage",
        period=(now - 3600, now),
        metadata={"billing_key": f"overage:{org}"},
        key=f"overage:{org}",
    )
    assert g.invoice_item_keys(str(draft.id)) == {f"overage:{org}"}
    (line,) = g.get_invoice(str(draft.id)).lines  # quantity x unit price, Stripe's amount half-even
    assert (line.quantity, line.unit_amount_decimal, line.amount_minor) == (150, Decimal("1.8"), 270)
    g.add_invoice_item(  # a pending one, for the customer's next invoice; then invoiced on its own
        customer_id=customer,
        invoice_id=None,
        priced=PricedQuantity(250, Decimal("1"), "USD"),
        description="Usage overage, deferred",
        period=(now - 3600, now),
        metadata={"billing_key": f"overage:{org}:deferred"},
        key=f"overage:{org}:deferred",
    )
    assert g.pending_item_keys(customer) == {f"overage:{org}:deferred"}  # waiting, not on the draft
    own = g.invoice_pending_items(customer_id=customer, key=f"final:{org}")
    assert own is not None and g.get_invoice(own).total_minor == 250
    assert g.invoice_pending_items(customer_id=customer, key=f"final:{org}") is None  # nothing left pending
    assert g.pending_item_keys(customer) == set()
    balance = g.adjust_customer_balance(
        customer_id=customer, amount_minor=-500, currency="USD", description="Credit", key=f"credit:{org}"
    )
    assert balance == g.customer_balance(customer) == -500

    # A card top-up, its charge, a refund and a dispute, re-read as the webhook handlers do
    intent_id = g.charge_card(
        customer_id=customer,
        payment_method=card,
        amount_minor=5000,
        currency="USD",
        metadata={"org_id": org},
        key=f"topup:{org}",
    )
    intent = g.get_payment_intent(intent_id)
    assert (intent.status, intent.amount_received_minor) == ("succeeded", 5000)
    charge = next(c for c in g.list_charges(customer_id=customer) if c.charge_id == intent.latest_charge_id)
    refund_id = g.refund(charge_id=charge.charge_id, amount_minor=1000, metadata={"org_id": org}, key=f"refund:{org}")
    assert g.get_refund(refund_id).amount_minor == 1000
    assert [r.refund_id for r in g.charge_refunds(charge.charge_id).refunds] == [refund_id]
    dispute = client.deserialize(
        client.raw_request("post", f"/_emulator/charges/{charge.charge_id}/dispute"), api_mode="V1"
    )
    assert g.get_dispute(dispute.id).charge_id == charge.charge_id

    # Reconciliation's lists: created ranges, one customer's or one intent's, page by page
    span = (now - 86_400, now + 86_400)
    intents = g.payment_intents_page(created=span, customer_id=customer)
    assert intent_id in {i.intent_id for i in intents.items}
    assert g.payment_intents_page(created=span, after=intents.items[0].intent_id).items is not None
    assert [r.refund_id for r in g.refunds_page(created=span, payment_intent_id=intent_id).items] == [refund_id]
    assert [d.dispute_id for d in g.disputes_page(payment_intent_id=intent_id).items] == [dispute.id]
    assert g.disputes_page(created=span).items
    moved, after, pages = set(), None, 0
    while intent_id not in moved and pages < 50:  # the range's events of payments that moved, newest first
        page = g.payments_moved_page(created=(now - 60, now + 86_400), after=after)
        assert {m.type for m in page.items} <= set(PAYMENT_MOVED_EVENTS)
        moved |= {m.payment_intent_id for m in page.items if m.type == "payment_intent.succeeded"}
        after, pages = page.last_id, pages + 1
        if not page.has_more:
            break
    assert intent_id in moved
    assert {f"overage:{org}:deferred"} <= {
        i.metadata.get("billing_key", "") for i in g.invoice_items_page(customer_id=customer).items
    }

    # Bank top-ups (ACH debit, wire), a one-off Checkout payment, the billing portal
    bank = {"customer_id": customer, "amount_minor": 5000, "currency": "USD", "metadata": {"org_id": org}}
    _, ach = g.start_bank_payment(method="ach", payment_method="pm_usBankAccount_success", key=f"ach:{org}", **bank)
    assert ach["status"] == "processing"
    _, wire = g.start_bank_payment(method="wire", key=f"wire:{org}", **bank)
    assert wire["status"] == "requires_action" and wire["reference"]
    assert g.create_payment_checkout(name="Credits", key=f"credits:{org}", **bank, **URLS)[1]
    assert g.create_portal_session(customer_id=customer, return_url=URLS["success_url"])

    # A webhook as the emulator sent it
    paid = next(
        e
        for e in reversed(stack.stripe.events("invoice.paid"))
        if e["data"]["object"]["customer"] == customer and e["data"]["object"]["parent"]
    )
    payload = json.dumps(paid)
    assert g.parse_webhook(payload, sign(payload)).invoice().subscription_id == sub.subscription_id

    # Enterprise contracts (support-made subscriptions): invoiced with net terms, or charged to the card
    contracted = g.create_customer(org_id=f"{org}-contract", name="Contract Co Enterprise", email=None)
    invoiced = g.create_contract_subscription(
        customer_id=contracted,
        price_id=price,
        collection="send_invoice",
        days_until_due=30,
        metadata={"org_id": f"{org}-contract", "plan_id": "enterprise"},
        key=f"contract:{org}:invoiced",
    )
    assert (invoiced.customer_id, invoiced.status) == (contracted, "active")
    assert invoiced.metadata["plan_id"] == "enterprise"
    charged = g.create_contract_subscription(
        customer_id=customer,
        price_id=price,
        collection="charge_automatically",
        days_until_due=30,  # not sent: net terms are for invoices only
        metadata={"org_id": org, "plan_id": "enterprise"},
        key=f"contract:{org}:charged",
    )
    assert (charged.customer_id, charged.status) == (customer, "active")
    # A downgrade to Free: the subscription ends when its paid period does
    ending = g.cancel_at_period_end(charged.subscription_id, key=f"cancel:{org}")
    assert ending.subscription_id == charged.subscription_id and ending.cancel_at_period_end is True
    assert ending.status == "active"  # paid until the period ends

    # Every public method was called; each that talks to Stripe sent requests, all within the contract
    assert _public_methods() - set(calls) == set(), "public gateway methods this test does not drive"
    silent = sorted(name for name, made in calls.items() if not made and name not in NO_STRIPE_CALL)
    assert silent == [], "these methods sent no request the emulator checked"
    problems = {name: [(r.method, r.path, r.problems) for r in made if r.problems] for name, made in calls.items()}
    assert {name: found for name, found in problems.items() if found} == {}


def test_item_keys_are_read_past_stripes_page_of_100(stack: Any) -> None:
    """A customer with 130 pending items, a draft with 104: every key is read (Stripe lists 100 a page), and
    the filters hold on every page (the draft's items are not pending, the pending ones on no invoice)."""
    base = stack.env["STRIPE_API_BASE"]
    client = stripe.StripeClient("sk_test_local", base_addresses={"api": base}, max_network_retries=0)
    g = StripeGateway.from_keys(lambda: StripeKeys("sk_test_local", "whsec_local"), api_base=base)
    org = new_user("org")
    customer = g.create_customer(org_id=org, name="Many Items", email=None)
    now = int(time.time())

    def item(n: int, invoice_id: str | None) -> None:
        g.add_invoice_item(
            customer_id=customer,
            invoice_id=invoice_id,
            priced=PricedQuantity(1 + n % 7, Decimal("0.5"), "USD"),
            description=f"Item {n}",
            period=(now - 3600, now),
            metadata={"billing_key": f"k:{org}:{n}"},
            key=f"k:{org}:{n}",
        )

    for n in range(130):
        item(n, None)
    draft = client.v1.invoices.create(params={"customer": customer, "auto_advance": False})
    for n in range(130, 234):
        item(n, str(draft.id))
    assert g.pending_item_keys(customer) == {f"k:{org}:{n}" for n in range(130)}
    assert g.invoice_item_keys(str(draft.id)) == {f"k:{org}:{n}" for n in range(130, 234)}

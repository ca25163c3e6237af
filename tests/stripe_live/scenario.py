"""One pass over the gateway's Stripe calls, and over the behaviours the emulator models, against a target:
Stripe's test mode (test_against_stripe.py, with STRIPE_API_KEY=sk_test_...) or the emulator
(tests/stripe_emulator/test_live_scenario.py, so the scenario keeps working where no key is).

Every request the gateway (and the scenario's own client) sends, and every object answered, is recorded and
checked against the pinned API version's contract (tests/contract/validate.py). The assertions are what the
emulator claims about Stripe: run against Stripe, a failure says where the emulator (or our code) is wrong.
Nothing here needs a webhook endpoint, and nothing is left running: the test clock is deleted at the end.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import pytest
import stripe

from shared.errors import InvalidRequestError
from shared.stripe_gateway import PricedQuantity, StripeGateway
from shared.stripe_http import DeadlineSession
from tests.contract.validate import object_problems, request_problems
from tests.local.stripe_emulator.forms import parse_form
from tests.stripe_clock import DAY, advance_clock, wait_until_ready

UNIT = 2000  # the scenario's monthly price, USD minor units
TINY = 30  # below Stripe's USD minimum charge (50)


@dataclass(frozen=True)
class Exchange:
    method: str
    path: str
    params: dict[str, Any]
    status: int
    body: Any


@dataclass
class Recorder:
    """Every HTTP exchange of the SDK's sessions (the gateway's and the scenario client's: both are
    `DeadlineSession`s) while `recording()`."""

    exchanges: list[Exchange] = field(default_factory=list)

    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        original = DeadlineSession.request
        recorder = self

        def request(session: DeadlineSession, method: Any, url: Any, *args: Any, **kwargs: Any) -> Any:
            response = original(session, method, url, *args, **kwargs)
            parts = urlsplit(str(url))
            data = kwargs.get("data")
            form = data.decode() if isinstance(data, bytes) else (data or parts.query)
            try:
                body = response.json()
            except ValueError:
                body = None
            recorder.exchanges.append(
                Exchange(str(method).upper(), parts.path, parse_form(str(form)), response.status_code, body)
            )
            return response

        with mock.patch.object(DeadlineSession, "request", request):
            yield

    def sent(self, method: str, path: str) -> list[dict[str, Any]]:
        return [e.params for e in self.exchanges if (e.method, e.path) == (method, path)]

    def mark(self) -> int:
        return len(self.exchanges)

    def problems(self, since: int = 0) -> list[str]:
        """Requests outside the contract, and answered objects (2xx) that violate it (from exchange `since`)."""
        found: list[str] = []
        for e in self.exchanges[since:]:
            found += [f"{e.method} {e.path}: {p}" for p in request_problems(e.method, e.path, e.params)]
            if 200 <= e.status < 300 and isinstance(e.body, dict) and "object" in e.body:
                found += [f"{e.method} {e.path} answered {p}" for p in object_problems(e.body)]
        return found


@dataclass
class Target:
    gateway: StripeGateway
    client: stripe.StripeClient
    recorder: Recorder
    run: str  # unique per run: lookup keys, idempotency keys and metadata do not collide
    poll: float  # how often a test clock is looked at while it advances
    timeout: float


def target(api_key: str, api_base: str | None, *, poll: float, timeout: float) -> Target:
    base: Any = {"api": api_base} if api_base else None
    client = stripe.StripeClient(
        api_key,
        base_addresses=base,
        http_client=stripe.RequestsClient(session=DeadlineSession()),
        max_network_retries=2,
    )
    gateway = StripeGateway(api_key, "whsec_unused", api_base=api_base, max_retries=2)
    return Target(gateway, client, Recorder(), uuid.uuid4().hex[:12], poll, timeout)


@dataclass(frozen=True)
class Setup:
    price_id: str
    customer_id: str
    card_id: str


def _round(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


# ------------------------------------------------------------------------------------------------ the steps


def catalog_and_customer(t: Target) -> Setup:
    """A price found by lookup key (created once), our customer, a saved card as the invoice default."""
    g, run = t.gateway, t.run
    key = f"layers:live:{run}:USD:base"
    price_id = g.price_id(key, product_name=f"Live {run}", unit_amount_minor=UNIT, currency="USD", metadata={})
    assert g.price_id(key, product_name=f"Live {run}", unit_amount_minor=UNIT, currency="USD", metadata={}) == price_id
    customer_id = g.create_customer(org_id=f"org_{run}", name=f"Live {run}", email=f"live-{run}@example.com")
    assert g.default_card(customer_id) is None
    card = t.client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer_id})
    t.client.v1.customers.update(customer_id, params={"invoice_settings": {"default_payment_method": card.id}})
    assert g.default_card(customer_id) == card.id
    assert g.customer_balance(customer_id) == 0
    assert abs(g.now_for(customer_id) - time.time()) < 300  # no test clock: Stripe's now
    return Setup(price_id, customer_id, str(card.id))


def checkouts(t: Target, s: Setup) -> None:
    """Both Checkout Sessions are accepted; the subscription one pins classic billing mode."""
    session_id, url = t.gateway.create_subscription_checkout(
        customer_id=s.customer_id,
        org_id=f"org_{t.run}",
        plan_id="pro",
        items=[(s.price_id, 1)],
        success_url="https://example.com/ok",
        cancel_url="https://example.com/cancel",
        key=f"checkout:{t.run}:sub",
    )
    assert session_id.startswith("cs_test_") and url
    sent = t.recorder.sent("POST", "/v1/checkout/sessions")[-1]
    assert sent["subscription_data"]["billing_mode"] == {"type": "classic"}
    session_id, url = t.gateway.create_payment_checkout(
        customer_id=s.customer_id,
        name="Credit pack",
        amount_minor=1500,
        currency="USD",
        metadata={"org_id": f"org_{t.run}", "kind": "live_test"},
        success_url="https://example.com/ok",
        cancel_url="https://example.com/cancel",
        key=f"checkout:{t.run}:pack",
    )
    assert session_id.startswith("cs_test_") and url


def card_payment_and_refund(t: Target, s: Setup) -> None:
    g = t.gateway
    intent_id = g.charge_card(
        customer_id=s.customer_id,
        payment_method=s.card_id,
        amount_minor=1000,
        currency="USD",
        metadata={"org_id": f"org_{t.run}", "kind": "live_test"},
        key=f"topup:{t.run}",
    )
    intent = g.get_payment_intent(intent_id)
    assert (intent.status, intent.amount_received_minor, intent.customer_id) == ("succeeded", 1000, s.customer_id)
    assert intent.latest_charge_id is not None
    charge_id = intent.latest_charge_id
    refund_id = g.refund(
        charge_id=charge_id, amount_minor=300, metadata={"reason": "live_test"}, key=f"refund:{t.run}:{charge_id}"
    )
    refund = g.get_refund(refund_id)
    assert (refund.charge_id, refund.amount_minor, refund.currency) == (charge_id, 300, "USD")
    assert refund.status in ("pending", "succeeded")
    assert [r.refund_id for r in g.charge_refunds(charge_id).refunds] == [refund_id]
    charges = {c.charge_id: c for c in g.list_charges(customer_id=s.customer_id)}
    assert charges[charge_id].refundable_minor == 700


def wire_top_up(t: Target, s: Setup) -> None:
    intent_id, shown = t.gateway.start_bank_payment(
        customer_id=s.customer_id,
        method="wire",
        amount_minor=5000,
        currency="USD",
        metadata={"org_id": f"org_{t.run}", "kind": "live_test"},
        key=f"wire:{t.run}",
    )
    assert intent_id.startswith("pi_")
    assert shown["status"] == "requires_action"
    assert shown.get("reference") and shown.get("financial_addresses")


def balance_and_minimum_charge(t: Target, s: Setup) -> None:
    """Balance adjustments; then an invoice below the minimum charge: paid without a charge, its amount carried
    to the customer balance (a customer of its own: one with a cash balance is treated differently)."""
    g = t.gateway
    customer_id = g.create_customer(org_id=f"org_{t.run}_min", name=f"Min {t.run}", email=None)
    card = t.client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer_id})
    t.client.v1.customers.update(customer_id, params={"invoice_settings": {"default_payment_method": card.id}})
    assert (
        g.adjust_customer_balance(
            customer_id=customer_id, amount_minor=-100, currency="USD", description="live test", key=f"bal:{t.run}:1"
        )
        == -100
    )
    assert (
        g.adjust_customer_balance(
            customer_id=customer_id, amount_minor=100, currency="USD", description="live test", key=f"bal:{t.run}:2"
        )
        == 0
    )
    draft = t.client.v1.invoices.create(params={"customer": customer_id, "auto_advance": False})
    now = int(time.time())
    g.add_invoice_item(
        customer_id=customer_id,
        invoice_id=str(draft.id),
        priced=PricedQuantity(TINY, Decimal("1"), "USD"),
        description="Tiny overage",
        period=(now - DAY, now),
        metadata={"billing_key": f"live:{t.run}"},
        key=f"item:{t.run}",
    )
    assert g.invoice_item_keys(str(draft.id)) == {f"live:{t.run}"}
    t.client.v1.invoices.finalize_invoice(str(draft.id))
    tiny = g.get_invoice(str(draft.id))
    assert (tiny.status, tiny.total_minor, tiny.amount_due_minor, tiny.amount_paid_minor) == ("paid", TINY, 0, 0)
    assert (tiny.starting_balance_minor, tiny.ending_balance_minor) == (0, TINY)
    assert g.customer_balance(customer_id) == TINY
    assert str(draft.id) in {i.invoice_id for i in g.list_invoices(customer_id=customer_id)}
    assert g.list_charges(customer_id=customer_id) == []


def billing_mode_default(t: Target, s: Setup) -> None:
    """A subscription created without billing_mode is flexible at this version (then canceled)."""
    sub = t.client.v1.subscriptions.create(params={"customer": s.customer_id, "items": [{"price": s.price_id}]})
    try:
        assert sub.billing_mode.type == "flexible"
    finally:
        t.client.v1.subscriptions.cancel(sub.id)


def subscription_on_a_clock(t: Target, s: Setup) -> None:
    """A classic subscription on a test clock: the advance answers `advancing`, the limit is refused, classic
    prorations previewed and invoiced at once (always_invoice), as the emulator computes them."""
    g, c = t.gateway, t.client
    start = (int(time.time()) // DAY) * DAY
    clock = c.v1.test_helpers.test_clocks.create(params={"frozen_time": start, "name": f"live {t.run}"})
    try:
        customer = c.v1.customers.create(
            params={"name": f"Clock {t.run}", "test_clock": clock.id, "metadata": {"org_id": f"org_{t.run}"}}
        )
        card = c.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
        created = c.v1.subscriptions.create(
            params={
                "customer": customer.id,
                "items": [{"price": s.price_id, "quantity": 1}],
                "billing_mode": {"type": "classic"},
                "default_payment_method": card.id,
                "metadata": {"org_id": f"org_{t.run}"},
            }
        )
        assert created.billing_mode.type == "classic"
        sub = g.get_subscription(str(created.id))
        assert (sub.status, sub.current_period_start) == ("active", start)
        assert g.now_for(customer.id) == start

        with pytest.raises(stripe.InvalidRequestError) as too_far:
            c.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": start + 70 * DAY})
        assert (too_far.value.http_status, too_far.value.param) == (400, "frozen_time")
        answer = c.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": start + 10 * DAY})
        assert answer.status == "advancing"
        at = wait_until_ready(c, clock.id, timeout=t.timeout, poll=t.poll).frozen_time
        assert at == start + 10 * DAY

        item = [{"id": sub.items[0].item_id, "quantity": 3}]
        preview = g.preview_subscription_change(
            customer_id=customer.id, subscription_id=sub.subscription_id, items=item, proration_date=at
        )
        remaining, period = sub.current_period_end - at, sub.current_period_end - sub.current_period_start
        expected = -_round(Decimal(UNIT) * remaining / period) + _round(Decimal(UNIT * 3) * remaining / period)
        assert preview.total_minor == expected
        updated = g.update_subscription(
            sub.subscription_id,
            items=item,
            metadata={"org_id": f"org_{t.run}"},
            proration_behavior="always_invoice",
            proration_date=at,
            key=f"plan:{t.run}",
        )
        assert updated.items[0].quantity == 3 and updated.latest_invoice_id is not None
        invoice = g.get_invoice(updated.latest_invoice_id)
        assert (invoice.billing_reason, invoice.status, invoice.total_minor) == (
            "subscription_update",
            "paid",
            expected,
        )
        assert sorted(line.amount_minor for line in invoice.lines) == sorted(
            line.amount_minor for line in preview.lines
        )
        assert advance_clock(c, clock.id, at + DAY, timeout=t.timeout, poll=t.poll).frozen_time == at + DAY
    finally:
        with contextlib.suppress(stripe.StripeError):
            c.v1.test_helpers.test_clocks.delete(clock.id)


def portal(t: Target, s: Setup) -> None:
    """Needs the account's default portal configuration (saved once in the Dashboard's test mode)."""
    try:
        url = t.gateway.create_portal_session(customer_id=s.customer_id, return_url="https://example.com/billing")
    except InvalidRequestError as error:
        if "configuration" in str(error).lower():
            pytest.skip(f"no customer portal configuration in this test account: {error}")
        raise
    assert url.startswith("http")


STEPS = (checkouts, card_payment_and_refund, wire_top_up, balance_and_minimum_charge, billing_mode_default)

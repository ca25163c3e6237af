"""Every emulated endpoint: method, path and the engine method that serves it.

Stripe's endpoints (`/v1/...`) take the parameters the pinned API version's contract allows (tests/contract;
checked by the server before routing: contract.py); the handlers add the semantic checks the contract cannot
make. The emulator's own test helpers (`/_emulator/...`) declare the parameters they accept here."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .engine import Engine
from .params import ANY, Schema

Handler = Callable[..., dict[str, Any]]

_ID = r"([^/]+)"


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    schema: Schema | None  # None: a Stripe endpoint, whose parameters the contract checks
    handler: Handler


def build_routes(e: Engine) -> list[Route]:
    stripe: list[tuple[str, str, Handler]] = [
        # customers
        ("POST", "/v1/customers", e.create_customer),
        ("GET", "/v1/customers", e.list_customers),
        ("GET", f"/v1/customers/{_ID}", lambda p, i: e.get("customer", i)),
        ("POST", f"/v1/customers/{_ID}", e.update_customer),
        ("DELETE", f"/v1/customers/{_ID}", e.delete_customer),
        ("POST", f"/v1/customers/{_ID}/balance_transactions", e.create_balance_transaction),
        ("GET", f"/v1/customers/{_ID}/balance_transactions", e.list_balance_transactions),
        ("GET", f"/v1/customers/{_ID}/balance_transactions/{_ID}", e.retrieve_balance_transaction),
        ("GET", f"/v1/customers/{_ID}/payment_methods", e.list_customer_payment_methods),
        ("GET", f"/v1/customers/{_ID}/cash_balance", e.retrieve_cash_balance),
        ("GET", f"/v1/customers/{_ID}/cash_balance_transactions", e.list_cash_balance_transactions),
        ("GET", f"/v1/customers/{_ID}/cash_balance_transactions/{_ID}", e.retrieve_cash_balance_transaction),
        # catalog
        ("POST", "/v1/products", e.create_product),
        ("GET", "/v1/products", e.list_products),
        ("GET", f"/v1/products/{_ID}", lambda p, i: e.get("product", i)),
        ("POST", f"/v1/products/{_ID}", e.update_product),
        ("POST", "/v1/prices", e.create_price),
        ("GET", "/v1/prices", e.list_prices),
        ("GET", f"/v1/prices/{_ID}", lambda p, i: e.get("price", i)),
        ("POST", f"/v1/prices/{_ID}", e.update_price),
        # payment methods
        ("POST", "/v1/payment_methods", e.create_payment_method),
        ("GET", "/v1/payment_methods", e.list_payment_methods),
        ("GET", f"/v1/payment_methods/{_ID}", e.retrieve_payment_method),
        ("POST", f"/v1/payment_methods/{_ID}/attach", e.attach_payment_method),
        ("POST", f"/v1/payment_methods/{_ID}/detach", e.detach_payment_method),
        # payment intents, charges, refunds
        ("POST", "/v1/payment_intents", e.create_payment_intent),
        ("GET", "/v1/payment_intents", e.list_payment_intents),
        ("GET", f"/v1/payment_intents/{_ID}", lambda p, i: e.get("payment_intent", i)),
        ("POST", f"/v1/payment_intents/{_ID}/confirm", e.confirm_payment_intent),
        ("POST", f"/v1/payment_intents/{_ID}/cancel", e.cancel_payment_intent),
        ("GET", "/v1/charges", e.list_charges),
        ("GET", f"/v1/charges/{_ID}", lambda p, i: e.get("charge", i)),
        ("POST", "/v1/refunds", e.create_refund),
        ("GET", "/v1/refunds", e.list_refunds),
        ("GET", f"/v1/refunds/{_ID}", lambda p, i: e.get("refund", i)),
        ("GET", f"/v1/disputes/{_ID}", lambda p, i: e.get("dispute", i)),
        ("GET", f"/v1/setup_intents/{_ID}", lambda p, i: e.get("setup_intent", i)),
        ("GET", f"/v1/mandates/{_ID}", lambda p, i: e.get("mandate", i)),
        # checkout, portal
        ("POST", "/v1/checkout/sessions", e.create_checkout_session),
        ("GET", "/v1/checkout/sessions", e.list_checkout_sessions),
        ("GET", f"/v1/checkout/sessions/{_ID}", lambda p, i: e.get("checkout.session", i)),
        ("GET", f"/v1/checkout/sessions/{_ID}/line_items", e.list_checkout_line_items),
        ("POST", f"/v1/checkout/sessions/{_ID}/expire", e.expire_checkout_session),
        ("POST", "/v1/billing_portal/sessions", e.create_portal_session),
        # subscriptions
        ("POST", "/v1/subscriptions", e.create_subscription),
        ("GET", "/v1/subscriptions", e.list_subscriptions),
        ("GET", f"/v1/subscriptions/{_ID}", lambda p, i: e.get("subscription", i)),
        ("POST", f"/v1/subscriptions/{_ID}", e.update_subscription),
        ("DELETE", f"/v1/subscriptions/{_ID}", e.cancel_subscription),
        ("POST", "/v1/subscription_items", e.create_subscription_item),
        ("GET", "/v1/subscription_items", e.list_subscription_items),
        ("GET", f"/v1/subscription_items/{_ID}", lambda p, i: e.get("subscription_item", i)),
        ("POST", f"/v1/subscription_items/{_ID}", e.update_subscription_item),
        ("DELETE", f"/v1/subscription_items/{_ID}", e.delete_subscription_item),
        # invoices
        ("POST", "/v1/invoices/create_preview", e.preview_invoice),
        ("POST", "/v1/invoices", e.create_invoice),
        ("GET", "/v1/invoices", e.list_invoices),
        ("GET", f"/v1/invoices/{_ID}", lambda p, i: e.get("invoice", i)),
        ("POST", f"/v1/invoices/{_ID}", e.update_invoice),
        ("GET", f"/v1/invoices/{_ID}/lines", e.list_invoice_lines),
        ("POST", f"/v1/invoices/{_ID}/finalize", e.finalize_invoice),
        ("POST", f"/v1/invoices/{_ID}/pay", e.pay_invoice),
        ("POST", f"/v1/invoices/{_ID}/void", e.void_invoice),
        ("POST", f"/v1/invoices/{_ID}/mark_uncollectible", e.mark_uncollectible),
        ("GET", "/v1/invoice_payments", e.list_invoice_payments),
        ("GET", f"/v1/invoice_payments/{_ID}", lambda p, i: e.get("invoice_payment", i)),
        ("POST", "/v1/invoiceitems", e.create_invoice_item),
        ("GET", "/v1/invoiceitems", e.list_invoice_items),
        ("GET", f"/v1/invoiceitems/{_ID}", lambda p, i: e.get("invoiceitem", i)),
        ("DELETE", f"/v1/invoiceitems/{_ID}", e.delete_invoice_item),
        # billing meters
        ("POST", "/v1/billing/meters", e.create_meter),
        ("GET", "/v1/billing/meters", e.list_meters),
        ("GET", f"/v1/billing/meters/{_ID}", lambda p, i: e.get("billing.meter", i)),
        ("GET", f"/v1/billing/meters/{_ID}/event_summaries", e.meter_event_summaries),
        ("POST", "/v1/billing/meter_events", e.create_meter_event),
        # test clocks
        ("POST", "/v1/test_helpers/test_clocks", e.create_test_clock),
        ("GET", "/v1/test_helpers/test_clocks", e.list_test_clocks),
        ("GET", f"/v1/test_helpers/test_clocks/{_ID}", lambda p, i: e.get("test_helpers.test_clock", i)),
        ("DELETE", f"/v1/test_helpers/test_clocks/{_ID}", e.delete_test_clock),
        ("POST", f"/v1/test_helpers/test_clocks/{_ID}/advance", e.advance_test_clock),
        ("POST", f"/v1/test_helpers/customers/{_ID}/fund_cash_balance", e.fund_cash_balance),
        # events, webhook endpoints
        ("GET", "/v1/events", e.list_events),
        ("GET", f"/v1/events/{_ID}", lambda p, i: e.get("event", i)),
        ("POST", "/v1/webhook_endpoints", e.create_webhook_endpoint),
        ("GET", "/v1/webhook_endpoints", e.list_webhook_endpoints),
    ]
    emulator_only: list[tuple[str, str, Schema, Handler]] = [  # test helpers that are not Stripe routes (README)
        ("POST", f"/_emulator/checkout/sessions/{_ID}/complete", {"payment_method": ANY}, e.complete_checkout_session),
        ("POST", f"/_emulator/charges/{_ID}/dispute", {"amount": ANY, "reason": ANY}, e.create_dispute),
        ("POST", f"/_emulator/payment_intents/{_ID}/settle", {"outcome": ANY}, e.settle_payment_intent),
    ]
    routes = [Route(method, re.compile(f"^{path}$"), None, handler) for method, path, handler in stripe]
    return routes + [Route(m, re.compile(f"^{path}$"), schema, handler) for m, path, schema, handler in emulator_only]

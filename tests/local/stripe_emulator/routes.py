"""Every emulated endpoint: method, path, the parameters it accepts (anything else is `parameter_unknown`)
and the engine method that serves it. Keep the schemas honest: list only what the engine implements."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .engine import Engine
from .params import ANY, FREE, Schema

Handler = Callable[..., dict[str, Any]]

_ID = r"([^/]+)"
_PAGE: Schema = {"limit": ANY, "starting_after": ANY, "ending_before": ANY, "created": ANY}
_NONE: Schema = {}

CUSTOMER = {
    "email": ANY,
    "name": ANY,
    "phone": ANY,
    "description": ANY,
    "metadata": FREE,
    "balance": ANY,
    "invoice_settings": {"default_payment_method": ANY},
}
PRODUCT = {"id": ANY, "name": ANY, "active": ANY, "description": ANY, "metadata": FREE, "unit_label": ANY}
RECURRING = {"interval": ANY, "interval_count": ANY, "usage_type": ANY, "meter": ANY}
PRICE = {
    "currency": ANY,
    "product": ANY,
    "product_data": {"name": ANY, "metadata": FREE},
    "unit_amount": ANY,
    "unit_amount_decimal": ANY,
    "recurring": RECURRING,
    "lookup_key": ANY,
    "transfer_lookup_key": ANY,
    "metadata": FREE,
    "nickname": ANY,
    "active": ANY,
}
SUB_ITEM = {"id": ANY, "price": ANY, "quantity": ANY, "deleted": ANY, "metadata": FREE}
PRORATION = {"proration_behavior": ANY, "proration_date": ANY, "payment_behavior": ANY}
SUBSCRIPTION_CREATE = {
    "customer": ANY,
    "items": [{"price": ANY, "quantity": ANY, "metadata": FREE}],
    "default_payment_method": ANY,
    "metadata": FREE,
    "proration_behavior": ANY,
    "payment_behavior": ANY,
    "collection_method": ANY,
}
SUBSCRIPTION_UPDATE = {
    "items": [SUB_ITEM],
    "cancel_at_period_end": ANY,
    "default_payment_method": ANY,
    "metadata": FREE,
    **PRORATION,
}
PREVIEW = {
    "customer": ANY,
    "subscription": ANY,
    "subscription_details": {
        "items": [SUB_ITEM],
        "proration_date": ANY,
        "proration_behavior": ANY,
        "cancel_at_period_end": ANY,
    },
}
UPCOMING = {
    "customer": ANY,
    "subscription": ANY,
    "subscription_items": [SUB_ITEM],
    "subscription_proration_date": ANY,
    "subscription_proration_behavior": ANY,
    "subscription_cancel_at_period_end": ANY,
}
INVOICE_CREATE = {
    "customer": ANY,
    "subscription": ANY,
    "auto_advance": ANY,
    "collection_method": ANY,
    "pending_invoice_items_behavior": ANY,
    "description": ANY,
    "metadata": FREE,
    "default_payment_method": ANY,
}
INVOICE_ITEM = {
    "customer": ANY,
    "amount": ANY,
    "currency": ANY,
    "price": ANY,
    "quantity": ANY,
    "description": ANY,
    "subscription": ANY,
    "invoice": ANY,
    "period": {"start": ANY, "end": ANY},
    "metadata": FREE,
}
US_BANK_ACCOUNT = {"account_number": ANY, "routing_number": ANY, "account_holder_type": ANY, "account_type": ANY}
BILLING_DETAILS = {"name": ANY, "email": ANY, "phone": ANY}
PAYMENT_INTENT = {
    "amount": ANY,
    "currency": ANY,
    "customer": ANY,
    "payment_method": ANY,
    "confirm": ANY,
    "off_session": ANY,
    "metadata": FREE,
    "description": ANY,
    "setup_future_usage": ANY,
    "allowed_payment_method_types": [ANY],
    "payment_method_types": [ANY],  # removed by this version: create refuses it with Stripe's own code
    "payment_method_data": {
        "type": ANY,
        "us_bank_account": US_BANK_ACCOUNT,
        "billing_details": BILLING_DETAILS,
    },
    "payment_method_options": {
        "card": FREE,
        "us_bank_account": {"verification_method": ANY},
        "customer_balance": {
            "funding_type": ANY,
            "bank_transfer": {"type": ANY, "requested_address_types": [ANY]},
        },
    },
    "mandate_data": {
        "customer_acceptance": {
            "type": ANY,
            "accepted_at": ANY,
            "online": {"ip_address": ANY, "user_agent": ANY},
            "offline": FREE,
        }
    },
}
PAYMENT_INTENT_CONFIRM = {
    k: PAYMENT_INTENT[k]
    for k in ("payment_method", "off_session", "payment_method_data", "payment_method_options", "mandate_data")
}
CHECKOUT = {
    "mode": ANY,
    "customer": ANY,
    "customer_email": ANY,
    "client_reference_id": ANY,
    "metadata": FREE,
    "success_url": ANY,
    "cancel_url": ANY,
    "currency": ANY,
    "line_items": [
        {
            "price": ANY,
            "quantity": ANY,
            "price_data": {
                "currency": ANY,
                "unit_amount": ANY,
                "unit_amount_decimal": ANY,
                "product": ANY,
                "product_data": {"name": ANY, "metadata": FREE, "description": ANY},
                "recurring": {"interval": ANY, "interval_count": ANY},
            },
        }
    ],
    "subscription_data": {"metadata": FREE},
    "payment_intent_data": {"metadata": FREE, "description": ANY, "setup_future_usage": ANY},
    "setup_intent_data": {"metadata": FREE, "description": ANY},
    "payment_method_types": [ANY],
}
METER = {
    "display_name": ANY,
    "event_name": ANY,
    "default_aggregation": {"formula": ANY},
    "customer_mapping": {"event_payload_key": ANY, "type": ANY},
    "value_settings": {"event_payload_key": ANY},
    "event_time_window": ANY,
}


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    schema: Schema
    handler: Handler


def build_routes(e: Engine) -> list[Route]:
    table: list[tuple[str, str, Schema, Handler]] = [
        # customers
        ("POST", "/v1/customers", {**CUSTOMER, "test_clock": ANY}, e.create_customer),
        ("GET", "/v1/customers", {**_PAGE, "email": ANY, "test_clock": ANY}, e.list_customers),
        ("GET", f"/v1/customers/{_ID}", _NONE, lambda p, i: e.get("customer", i)),
        ("POST", f"/v1/customers/{_ID}", CUSTOMER, e.update_customer),
        ("DELETE", f"/v1/customers/{_ID}", _NONE, e.delete_customer),
        (
            "POST",
            f"/v1/customers/{_ID}/balance_transactions",
            {"amount": ANY, "currency": ANY, "description": ANY, "metadata": FREE},
            e.create_balance_transaction,
        ),
        ("GET", f"/v1/customers/{_ID}/balance_transactions", _PAGE, e.list_balance_transactions),
        ("GET", f"/v1/customers/{_ID}/balance_transactions/{_ID}", _NONE, e.retrieve_balance_transaction),
        ("GET", f"/v1/customers/{_ID}/payment_methods", {**_PAGE, "type": ANY}, e.list_customer_payment_methods),
        ("GET", f"/v1/customers/{_ID}/cash_balance", _NONE, e.retrieve_cash_balance),
        ("GET", f"/v1/customers/{_ID}/cash_balance_transactions", _PAGE, e.list_cash_balance_transactions),
        (
            "GET",
            f"/v1/customers/{_ID}/cash_balance_transactions/{_ID}",
            _NONE,
            e.retrieve_cash_balance_transaction,
        ),
        # catalog
        ("POST", "/v1/products", PRODUCT, e.create_product),
        ("GET", "/v1/products", {**_PAGE, "active": ANY, "ids": [ANY]}, e.list_products),
        ("GET", f"/v1/products/{_ID}", _NONE, lambda p, i: e.get("product", i)),
        ("POST", f"/v1/products/{_ID}", {**PRODUCT, "default_price": ANY}, e.update_product),
        ("POST", "/v1/prices", PRICE, e.create_price),
        (
            "GET",
            "/v1/prices",
            {**_PAGE, "active": ANY, "product": ANY, "currency": ANY, "type": ANY, "lookup_keys": [ANY]},
            e.list_prices,
        ),
        ("GET", f"/v1/prices/{_ID}", _NONE, lambda p, i: e.get("price", i)),
        (
            "POST",
            f"/v1/prices/{_ID}",
            {"active": ANY, "metadata": FREE, "nickname": ANY, "lookup_key": ANY, "transfer_lookup_key": ANY},
            e.update_price,
        ),
        # payment methods
        (
            "POST",
            "/v1/payment_methods",
            {
                "type": ANY,
                "card": {"token": ANY},
                "us_bank_account": US_BANK_ACCOUNT,
                "billing_details": BILLING_DETAILS,
                "metadata": FREE,
            },
            e.create_payment_method,
        ),
        ("GET", "/v1/payment_methods", {**_PAGE, "customer": ANY, "type": ANY}, e.list_payment_methods),
        ("GET", f"/v1/payment_methods/{_ID}", _NONE, e.retrieve_payment_method),
        ("POST", f"/v1/payment_methods/{_ID}/attach", {"customer": ANY}, e.attach_payment_method),
        ("POST", f"/v1/payment_methods/{_ID}/detach", _NONE, e.detach_payment_method),
        # payment intents, charges, refunds
        ("POST", "/v1/payment_intents", PAYMENT_INTENT, e.create_payment_intent),
        ("GET", "/v1/payment_intents", {**_PAGE, "customer": ANY}, e.list_payment_intents),
        ("GET", f"/v1/payment_intents/{_ID}", _NONE, lambda p, i: e.get("payment_intent", i)),
        (
            "POST",
            f"/v1/payment_intents/{_ID}/confirm",
            PAYMENT_INTENT_CONFIRM,
            e.confirm_payment_intent,
        ),
        ("POST", f"/v1/payment_intents/{_ID}/cancel", {"cancellation_reason": ANY}, e.cancel_payment_intent),
        ("GET", "/v1/charges", {**_PAGE, "customer": ANY, "payment_intent": ANY}, e.list_charges),
        ("GET", f"/v1/charges/{_ID}", _NONE, lambda p, i: e.get("charge", i)),
        (
            "POST",
            "/v1/refunds",
            {"charge": ANY, "payment_intent": ANY, "amount": ANY, "reason": ANY, "metadata": FREE},
            e.create_refund,
        ),
        ("GET", "/v1/refunds", {**_PAGE, "charge": ANY, "payment_intent": ANY}, e.list_refunds),
        ("GET", f"/v1/refunds/{_ID}", _NONE, lambda p, i: e.get("refund", i)),
        ("GET", f"/v1/disputes/{_ID}", _NONE, lambda p, i: e.get("dispute", i)),
        ("GET", f"/v1/setup_intents/{_ID}", _NONE, lambda p, i: e.get("setup_intent", i)),
        ("GET", f"/v1/mandates/{_ID}", _NONE, lambda p, i: e.get("mandate", i)),
        # checkout, portal
        ("POST", "/v1/checkout/sessions", CHECKOUT, e.create_checkout_session),
        (
            "GET",
            "/v1/checkout/sessions",
            {**_PAGE, "customer": ANY, "subscription": ANY, "payment_intent": ANY, "status": ANY},
            e.list_checkout_sessions,
        ),
        ("GET", f"/v1/checkout/sessions/{_ID}", _NONE, lambda p, i: e.get("checkout.session", i)),
        ("GET", f"/v1/checkout/sessions/{_ID}/line_items", _PAGE, e.list_checkout_line_items),
        ("POST", f"/v1/checkout/sessions/{_ID}/expire", _NONE, e.expire_checkout_session),
        ("POST", "/v1/billing_portal/sessions", {"customer": ANY, "return_url": ANY}, e.create_portal_session),
        # subscriptions
        ("POST", "/v1/subscriptions", SUBSCRIPTION_CREATE, e.create_subscription),
        (
            "GET",
            "/v1/subscriptions",
            {**_PAGE, "customer": ANY, "status": ANY, "price": ANY, "test_clock": ANY},
            e.list_subscriptions,
        ),
        ("GET", f"/v1/subscriptions/{_ID}", _NONE, lambda p, i: e.get("subscription", i)),
        ("POST", f"/v1/subscriptions/{_ID}", SUBSCRIPTION_UPDATE, e.update_subscription),
        (
            "DELETE",
            f"/v1/subscriptions/{_ID}",
            {"invoice_now": ANY, "prorate": ANY, "cancellation_details": {"comment": ANY, "feedback": ANY}},
            e.cancel_subscription,
        ),
        (
            "POST",
            "/v1/subscription_items",
            {"subscription": ANY, "price": ANY, "quantity": ANY, "metadata": FREE, **PRORATION},
            e.create_subscription_item,
        ),
        ("GET", "/v1/subscription_items", {**_PAGE, "subscription": ANY}, e.list_subscription_items),
        ("GET", f"/v1/subscription_items/{_ID}", _NONE, lambda p, i: e.get("subscription_item", i)),
        (
            "POST",
            f"/v1/subscription_items/{_ID}",
            {"price": ANY, "quantity": ANY, "metadata": FREE, **PRORATION},
            e.update_subscription_item,
        ),
        ("DELETE", f"/v1/subscription_items/{_ID}", PRORATION, e.delete_subscription_item),
        # invoices
        ("POST", "/v1/invoices/create_preview", PREVIEW, e.preview_invoice),
        ("GET", "/v1/invoices/upcoming", UPCOMING, e.upcoming_invoice),
        ("POST", "/v1/invoices", INVOICE_CREATE, e.create_invoice),
        (
            "GET",
            "/v1/invoices",
            {**_PAGE, "customer": ANY, "subscription": ANY, "status": ANY, "collection_method": ANY},
            e.list_invoices,
        ),
        ("GET", f"/v1/invoices/{_ID}", _NONE, lambda p, i: e.get("invoice", i)),
        (
            "POST",
            f"/v1/invoices/{_ID}",
            {"metadata": FREE, "description": ANY, "auto_advance": ANY, "default_payment_method": ANY},
            e.update_invoice,
        ),
        ("GET", f"/v1/invoices/{_ID}/lines", _PAGE, e.list_invoice_lines),
        ("POST", f"/v1/invoices/{_ID}/finalize", {"auto_advance": ANY}, e.finalize_invoice),
        (
            "POST",
            f"/v1/invoices/{_ID}/pay",
            {"payment_method": ANY, "paid_out_of_band": ANY, "off_session": ANY},
            e.pay_invoice,
        ),
        ("POST", f"/v1/invoices/{_ID}/void", _NONE, e.void_invoice),
        ("POST", f"/v1/invoices/{_ID}/mark_uncollectible", _NONE, e.mark_uncollectible),
        ("GET", "/v1/invoice_payments", {**_PAGE, "invoice": ANY}, e.list_invoice_payments),
        ("GET", f"/v1/invoice_payments/{_ID}", _NONE, lambda p, i: e.get("invoice_payment", i)),
        ("POST", "/v1/invoiceitems", INVOICE_ITEM, e.create_invoice_item),
        (
            "GET",
            "/v1/invoiceitems",
            {**_PAGE, "customer": ANY, "pending": ANY, "invoice": ANY},
            e.list_invoice_items,
        ),
        ("GET", f"/v1/invoiceitems/{_ID}", _NONE, lambda p, i: e.get("invoiceitem", i)),
        ("DELETE", f"/v1/invoiceitems/{_ID}", _NONE, e.delete_invoice_item),
        # billing meters
        ("POST", "/v1/billing/meters", METER, e.create_meter),
        ("GET", "/v1/billing/meters", {**_PAGE, "status": ANY}, e.list_meters),
        ("GET", f"/v1/billing/meters/{_ID}", _NONE, lambda p, i: e.get("billing.meter", i)),
        (
            "GET",
            f"/v1/billing/meters/{_ID}/event_summaries",
            {**_PAGE, "customer": ANY, "start_time": ANY, "end_time": ANY, "value_grouping_window": ANY},
            e.meter_event_summaries,
        ),
        (
            "POST",
            "/v1/billing/meter_events",
            {"event_name": ANY, "payload": FREE, "identifier": ANY, "timestamp": ANY},
            e.create_meter_event,
        ),
        # test clocks
        ("POST", "/v1/test_helpers/test_clocks", {"frozen_time": ANY, "name": ANY}, e.create_test_clock),
        ("GET", "/v1/test_helpers/test_clocks", _PAGE, e.list_test_clocks),
        ("GET", f"/v1/test_helpers/test_clocks/{_ID}", _NONE, lambda p, i: e.get("test_helpers.test_clock", i)),
        ("DELETE", f"/v1/test_helpers/test_clocks/{_ID}", _NONE, e.delete_test_clock),
        ("POST", f"/v1/test_helpers/test_clocks/{_ID}/advance", {"frozen_time": ANY}, e.advance_test_clock),
        (
            "POST",
            f"/v1/test_helpers/customers/{_ID}/fund_cash_balance",
            {"amount": ANY, "currency": ANY, "reference": ANY},
            e.fund_cash_balance,
        ),
        # events, webhook endpoints
        ("GET", "/v1/events", {**_PAGE, "type": ANY, "types": [ANY]}, e.list_events),
        ("GET", f"/v1/events/{_ID}", _NONE, lambda p, i: e.get("event", i)),
        (
            "POST",
            "/v1/webhook_endpoints",
            {"url": ANY, "enabled_events": [ANY], "description": ANY, "metadata": FREE, "api_version": ANY},
            e.create_webhook_endpoint,
        ),
        ("GET", "/v1/webhook_endpoints", _PAGE, e.list_webhook_endpoints),
        # test helpers that are not Stripe routes (see README)
        (
            "POST",
            f"/_emulator/checkout/sessions/{_ID}/complete",
            {"payment_method": ANY},
            e.complete_checkout_session,
        ),
        ("POST", f"/_emulator/charges/{_ID}/dispute", {"amount": ANY, "reason": ANY}, e.create_dispute),
        ("POST", f"/_emulator/payment_intents/{_ID}/settle", {"outcome": ANY}, e.settle_payment_intent),
    ]
    return [Route(method, re.compile(f"^{path}$"), schema, handler) for method, path, schema, handler in table]

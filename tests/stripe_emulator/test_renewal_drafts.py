"""Renewal invoices on test clocks: a draft for one hour (invoice.created), then finalized and charged.

A $20.00/month subscription starts on 2025-04-01 00:00 UTC; it renews on May 1 and the renewal draft is
finalized at May 1 01:00 (created + 3600 s).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import stripe

from tests.local.stripe_emulator import StripeEmulator
from tests.stripe_clock import advance_clock
from tests.stripe_emulator.helpers import WebhookReceiver, clock_customer, monthly_price, ts

APR_1, MAY_1 = ts(2025, 4, 1), ts(2025, 5, 1)
HOUR = 3600


class HandlerReceiver:
    """A webhook endpoint that runs `on_event(event)` synchronously before answering 200 (like an integrator's
    handler); what the handler raised is kept in `errors`."""

    def __init__(self, on_event: Callable[[dict[str, Any]], None]) -> None:
        self.errors: list[BaseException] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                event = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                try:
                    on_event(event)
                except Exception as error:  # reported by the test, not retried by the emulator
                    outer.errors.append(error)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/webhook"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _subscribe(client: stripe.StripeClient) -> tuple[Any, Any, Any]:
    clock, customer = clock_customer(client, APR_1)
    price = monthly_price(client, "Pro", 2000)
    sub = client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": price.id}]})
    return clock, customer, sub


def _invoice_events(emulator: StripeEmulator, invoice_id: str) -> list[tuple[str, int]]:
    return [
        (e["type"], e["created"])
        for e in emulator.events()
        if e["type"].startswith("invoice.") and e["data"]["object"]["id"] == invoice_id
    ]


def test_item_added_by_the_invoice_created_handler_is_billed_with_the_renewal(
    client: stripe.StripeClient, emulator: StripeEmulator, receiver: WebhookReceiver
) -> None:
    clock, customer, sub = _subscribe(client)
    emulator.wait_for_deliveries()
    added: list[Any] = []

    def on_event(event: dict[str, Any]) -> None:
        invoice = event["data"]["object"]
        if event["type"] != "invoice.created" or invoice["billing_reason"] != "subscription_cycle":
            return
        assert (invoice["status"], invoice["auto_advance"]) == ("draft", True)
        # The integrator's handler runs while the clock advance is in progress and calls back into Stripe.
        hook_client = stripe.StripeClient(
            "sk_test_local", base_addresses={"api": emulator.base_url}, max_network_retries=0
        )
        item = hook_client.v1.invoice_items.create(
            params={
                "customer": invoice["customer"],
                "invoice": invoice["id"],
                "amount": 1234,
                "currency": "usd",
                "description": "April overage",
            }
        )
        added.append(item)

    hooks = HandlerReceiver(on_event)
    emulator.set_webhook_endpoint(hooks.url)
    try:
        # One call crosses both the renewal (May 1 00:00) and its finalization (01:00).
        ready = advance_clock(client, clock.id, MAY_1 + 2 * HOUR)
        emulator.wait_for_deliveries()
    finally:
        emulator.set_webhook_endpoint(receiver.url)
        hooks.stop()
    assert hooks.errors == []
    assert ready.status == "ready"
    assert len(added) == 1
    item = added[0]

    renewal = client.v1.invoices.retrieve(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    assert renewal.billing_reason == "subscription_cycle"
    assert (renewal.created, renewal.status_transitions.finalized_at) == (MAY_1, MAY_1 + HOUR)
    assert renewal.status == "paid"
    assert (renewal.total, renewal.amount_due, renewal.amount_paid) == (3234, 3234, 3234)
    assert renewal.automatically_finalizes_at is None
    assert renewal.number is not None
    assert [(line.description, line.amount) for line in renewal.lines.data] == [
        ("1 × Pro (at $20.00 / month)", 2000),  # noqa: RUF001 - Stripe's multiplication sign
        ("April overage", 1234),
    ]
    line = renewal.lines.data[1]
    assert line.parent.type == "invoice_item_details"
    assert line.parent.invoice_item_details.invoice_item == item.id
    listed = client.v1.invoice_items.list(params={"invoice": renewal.id})
    assert [ii.id for ii in listed.data] == [item.id]
    assert listed.data[0].invoice == renewal.id

    created = next(e for e in emulator.events("invoice.created") if e["data"]["object"]["id"] == renewal.id)
    assert created["data"]["object"]["status"] == "draft"
    assert created["data"]["object"]["automatically_finalizes_at"] == MAY_1 + HOUR
    assert created["data"]["object"]["total"] == 2000
    assert _invoice_events(emulator, renewal.id) == [
        ("invoice.created", MAY_1),
        ("invoice.finalized", MAY_1 + HOUR),
        ("invoice.paid", MAY_1 + HOUR),
        ("invoice.payment_succeeded", MAY_1 + HOUR),
    ]
    item_event = next(e for e in emulator.events("invoiceitem.created") if e["data"]["object"]["id"] == item.id)
    finalized = next(e for e in emulator.events("invoice.finalized") if e["data"]["object"]["id"] == renewal.id)
    ids = [e["id"] for e in emulator.events()]
    assert ids.index(created["id"]) < ids.index(item_event["id"]) < ids.index(finalized["id"])
    assert item_event["created"] == MAY_1  # added during the hour, on the clock's time

    # The invoice is finalized now: no more items.
    with pytest.raises(stripe.InvalidRequestError) as err:
        client.v1.invoice_items.create(
            params={"customer": customer.id, "invoice": renewal.id, "amount": 100, "currency": "usd"}
        )
    assert err.value.http_status == 400
    assert err.value.error.type == "invalid_request_error"
    assert err.value.error.param == "invoice"
    assert client.v1.invoice_items.list(params={"invoice": renewal.id}).data[0].id == item.id


def test_draft_hour_across_calls_pending_items_and_explicit_finalize(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    clock, customer, sub = _subscribe(client)
    # Created before the renewal: pulled into the renewal draft at creation.
    early = client.v1.invoice_items.create(
        params={"customer": customer.id, "subscription": sub.id, "amount": 300, "currency": "usd"}
    )
    advance_clock(client, clock.id, MAY_1 + 60)
    draft = client.v1.invoices.retrieve(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    assert (draft.status, draft.auto_advance, draft.number) == ("draft", True, None)
    assert draft.automatically_finalizes_at == draft.next_payment_attempt == MAY_1 + HOUR
    assert draft.total == 2300
    assert client.v1.invoice_items.retrieve(early.id).invoice == draft.id
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"

    added = client.v1.invoice_items.create(
        params={"customer": customer.id, "invoice": draft.id, "amount": 1234, "currency": "usd"}
    )
    assert client.v1.invoices.retrieve(draft.id).total == 3534
    # Without `invoice`, an item created during the hour stays pending for the next invoice (as in Stripe).
    later = client.v1.invoice_items.create(params={"customer": customer.id, "amount": 50, "currency": "usd"})
    assert client.v1.invoice_items.retrieve(later.id).invoice is None
    listed = client.v1.invoice_items.list(params={"invoice": draft.id})
    assert {ii.id for ii in listed.data} == {early.id, added.id}

    # Finalizing explicitly before the hour is over charges it at once; the clock does not finalize it again.
    finalized = client.v1.invoices.finalize_invoice(draft.id)
    assert finalized.status == "paid"
    assert (finalized.amount_paid, finalized.status_transitions.finalized_at) == (3534, MAY_1 + 60)
    advance_clock(client, clock.id, MAY_1 + 2 * HOUR)
    assert [t for t, _ in _invoice_events(emulator, draft.id)].count("invoice.finalized") == 1
    assert client.v1.invoice_items.retrieve(later.id).invoice is None


def test_draft_kept_with_auto_advance_false(client: stripe.StripeClient) -> None:
    clock, _customer, sub = _subscribe(client)
    advance_clock(client, clock.id, MAY_1)
    draft_id = client.v1.subscriptions.retrieve(sub.id).latest_invoice
    held = client.v1.invoices.update(draft_id, params={"auto_advance": False})
    assert held.automatically_finalizes_at is None
    advance_clock(client, clock.id, MAY_1 + 2 * HOUR)
    assert client.v1.invoices.retrieve(draft_id).status == "draft"
    assert client.v1.invoices.pay(draft_id).status == "paid"


def test_multi_period_advance_renews_each_period_once_in_order(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    clock, customer, sub = _subscribe(client)
    start = len(emulator.events())
    advance_clock(client, clock.id, ts(2025, 8, 15))
    renewals = [ts(2025, 5, 1), ts(2025, 6, 1), ts(2025, 7, 1), ts(2025, 8, 1)]
    invoices = list(reversed(client.v1.invoices.list(params={"subscription": sub.id}).data))[1:]
    assert [(i.created, i.billing_reason, i.status) for i in invoices] == [
        (t, "subscription_cycle", "paid") for t in renewals
    ]
    assert [i.status_transitions.finalized_at for i in invoices] == [t + HOUR for t in renewals]
    numbers = [i.number for i in invoices]
    assert numbers == sorted(numbers) and len(set(numbers)) == 4

    mine = {sub.id, customer.id, clock.id} | {i.id for i in invoices}
    timeline = [
        (e["type"], e["created"])
        for e in emulator.events()[start:]
        if e["data"]["object"]["id"] in mine
        and e["type"] in ("customer.subscription.updated", "invoice.created", "invoice.finalized", "invoice.paid")
    ]
    expected: list[tuple[str, int]] = []
    for t in renewals:
        expected += [
            ("customer.subscription.updated", t),
            ("invoice.created", t),
            ("invoice.finalized", t + HOUR),
            ("invoice.paid", t + HOUR),
        ]
    assert timeline == expected
    assert client.v1.subscriptions.retrieve(sub.id).items.data[0].current_period_start == ts(2025, 8, 1)

"""Test helpers: calling the emulator's /_emulator routes through the SDK, a tiny webhook receiver, fixtures."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import stripe


def ts(*args: int) -> int:
    """UTC timestamp: ts(2025, 4, 11) -> 1744329600."""
    return int(datetime(*args, tzinfo=UTC).timestamp())  # type: ignore[misc]


def helper(client: stripe.StripeClient, path: str, **params: Any) -> Any:
    """POST to an emulator-only test helper route and get a StripeObject back."""
    response = client.raw_request("post", path, **params)
    return client.deserialize(response, api_mode="V1")


def complete_checkout(client: stripe.StripeClient, session_id: str, payment_method: str = "pm_card_visa") -> Any:
    return helper(client, f"/_emulator/checkout/sessions/{session_id}/complete", payment_method=payment_method)


def monthly_price(client: stripe.StripeClient, name: str, unit_amount: int, **extra: Any) -> stripe.Price:
    product = client.v1.products.create(params={"name": name})
    return client.v1.prices.create(
        params={
            "product": product.id,
            "currency": "usd",
            "unit_amount": unit_amount,
            "recurring": {"interval": "month"},
            **extra,
        }
    )


def clock_customer(
    client: stripe.StripeClient, frozen_time: int, payment_method: str = "pm_card_visa"
) -> tuple[stripe.test_helpers.TestClock, stripe.Customer]:
    """A customer living on a fresh test clock, with `payment_method` attached as invoice default."""
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": frozen_time})
    customer = client.v1.customers.create(params={"email": "clock@example.com", "test_clock": clock.id})
    pm = client.v1.payment_methods.attach(payment_method, params={"customer": customer.id})
    customer = client.v1.customers.update(customer.id, params={"invoice_settings": {"default_payment_method": pm.id}})
    return clock, customer


@dataclass
class Received:
    body: str
    signature: str
    content_type: str


@dataclass
class WebhookReceiver:
    """A local webhook endpoint that records every POST; `fail_next` answers 500 that many times first."""

    received: list[Received] = field(default_factory=list)
    fail_next: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                with outer.lock:
                    failing = outer.fail_next > 0
                    if failing:
                        outer.fail_next -= 1
                    else:
                        outer.received.append(
                            Received(body, self.headers["Stripe-Signature"], self.headers["Content-Type"])
                        )
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/webhook"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

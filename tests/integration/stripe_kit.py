"""Test-side access to the Stripe emulator through the real SDK, plus its test helpers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import requests
import stripe

from shared.orgs.repository import OrgRepository
from tests.helpers import ApiClient
from tests.stripe_clock import advance_clock

API_KEY = "sk_test_local"
# A 30-day billing period (September) starting at midnight: prorations are easy to compute by hand.
PERIOD_START = int(datetime(2026, 9, 1, tzinfo=UTC).timestamp())
DAY = 86_400


class StripeKit:
    def __init__(self, stack: Any, table: Any):
        self.stack = stack
        self.emulator = stack.stripe
        self.base_url = stack.env["STRIPE_API_BASE"]
        self.client = stripe.StripeClient(API_KEY, base_addresses={"api": self.base_url}, max_network_retries=0)
        self.repo = OrgRepository(table)

    def customer_on_clock(self, org_id: str, frozen_time: int = PERIOD_START) -> tuple[str, str]:
        """A test clock and a customer living on it, linked to the org the way checkout links one."""
        clock = self.client.v1.test_helpers.test_clocks.create(params={"frozen_time": frozen_time})
        customer = self.client.v1.customers.create(
            params={"name": org_id, "test_clock": clock.id, "metadata": {"org_id": org_id}}
        )
        assert self.repo.link_stripe_customer(org_id, customer.id) == customer.id
        return clock.id, customer.id

    def complete_checkout(self, session_id: str, payment_method: str = "pm_card_visa") -> requests.Response:
        resp = requests.post(
            f"{self.base_url}/_emulator/checkout/sessions/{session_id}/complete",
            data={"payment_method": payment_method},
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=30,
        )
        self.emulator.wait_for_deliveries()
        return resp

    def synced(self) -> None:
        """The outbox's tasks done (seat syncs: the publisher calls Stripe), then the webhooks they caused
        delivered."""
        self.stack.flush_outbox()
        self.emulator.wait_for_deliveries()

    def advance(self, clock_id: str, frozen_time: int) -> None:
        """As against Stripe: in steps within the clock's limit, each awaited until the clock is ready (an
        advance answers `advancing` first); then the webhooks it caused delivered."""
        advance_clock(self.client, clock_id, frozen_time)
        self.emulator.wait_for_deliveries()

    def subscribe(
        self, api: ApiClient, owner: str, org_id: str, plan_id: str = "pro", start: int = PERIOD_START
    ) -> tuple[str, str]:
        """Checkout on a test clock at `start`, completed with a good card. Returns (clock, customer)."""
        clock_id, customer_id = self.customer_on_clock(org_id, start)
        reply = api.call(
            "POST",
            f"/v1/orgs/{org_id}/subscription/checkout",
            as_user=owner,
            json={
                "plan_id": plan_id,
                "success_url": "https://app.layers.test/ok",
                "cancel_url": "https://app.layers.test/cancel",
            },
        )
        assert reply.status == 201, reply.body
        done = self.complete_checkout(reply.body["checkout_session_id"])
        assert done.status_code == 200, done.text
        return clock_id, customer_id

"""Overage billing attacked from outside: crashes at botocore's boundary between a Stripe add and the one
record, late usage arriving meanwhile, DynamoDB leaving keys of a BatchGetItem unprocessed."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.errors import ConflictError
from shared.stripe_gateway import StripeGateway
from shared.usage.billing import OverageBilling
from tests.helpers import ApiClient, new_user
from tests.integration.credit_kit import credit_kit
from tests.integration.stripe_kit import DAY, PERIOD_START, StripeKit
from tests.integration.test_overage_billing import crashing_before_the_record

SEPTEMBER, ENDED = "2026-09-01T00:00:00Z", datetime(2026, 9, 30, 21, 44, 3, tzinfo=UTC)


def _late_lines(stripe_kit: StripeKit, customer: str, invoice_id: str) -> list[int]:
    items = stripe_kit.client.v1.invoice_items.list(params={"customer": customer, "limit": 100}).auto_paging_iter()
    return [
        i.amount
        for i in items
        if i.invoice == invoice_id and "credits_late:" in str(i.metadata.to_dict().get("billing_key"))
    ]


def _september_late(api: ApiClient, stack: Any, table: Any) -> tuple[StripeKit, Any, str, str, str, OverageBilling]:
    """Pro from 1 September: 3,000 credits used, then three September generations of 100 credits each
    (`late-1..3`) reserved, to settle late. Returns (stripe kit, credit kit, org, clock, customer, billing)."""
    stripe_kit = StripeKit(stack, table)
    owner = new_user()
    org_id = api.call("POST", "/v1/orgs", as_user=owner, json={"name": "Late", "plan_id": "free"}).body["org_id"]
    project = api.call("POST", f"/v1/orgs/{org_id}/projects", as_user=owner, json={"name": "P"}).body["project_id"]
    clock_id, customer = stripe_kit.subscribe(api, owner, org_id, "pro")
    kit = credit_kit(
        stack.env["TABLE_NAME"], stack.env["EVENT_BUS_NAME"], datetime(2026, 9, 15, 13, 7, tzinfo=UTC), table=table
    )
    runs = {"used": 300, "late-1": 10, "late-2": 10, "late-3": 10}  # 10 credits an image: 3,000, then 100 each
    for run, images in runs.items():
        kit.credits.reserve(
            org_id=org_id,
            project_id=project,
            template_id="social-content",
            generation_type="image",
            quantity=images,
            workflow_run_id=run,
            actor="t",
        )
    kit.credits.settle(org_id=org_id, workflow_run_id="used", quantity=None, occurred_at=None, actor="t")
    gateway = StripeGateway("sk_test_local", "whsec_local", api_base=stack.env["STRIPE_API_BASE"])
    billing = OverageBilling(kit.orgs, kit.org_repo, kit.repo, kit.usage, gateway)
    return stripe_kit, kit, org_id, clock_id, customer, billing


def _renewals(
    stripe_kit: StripeKit, kit: Any, billing: OverageBilling, org_id: str, clock_id: str, customer: str
) -> str:
    """September's renewal bills 100 late credits, 100 more settle late after it; October's renewal drafted
    (its id returned), not billed yet."""
    gateway = billing._gateway
    kit.clock.at = datetime(2026, 10, 1, 0, 30, tzinfo=UTC)
    stripe_kit.advance(clock_id, PERIOD_START + 30 * DAY + 60)
    first = next(
        i
        for i in stripe_kit.client.v1.invoices.list(params={"customer": customer}).data
        if i.billing_reason == "subscription_cycle"
    )
    kit.credits.settle(org_id=org_id, workflow_run_id="late-1", quantity=None, occurred_at=ENDED, actor="t")
    assert billing.bill_renewal(org_id, gateway.get_invoice(first.id)).added_minor == 180
    kit.credits.settle(org_id=org_id, workflow_run_id="late-2", quantity=None, occurred_at=ENDED, actor="t")
    kit.clock.at = datetime(2026, 11, 1, 0, 30, tzinfo=UTC)
    stripe_kit.advance(clock_id, PERIOD_START + 61 * DAY + 60)
    return str(
        next(
            i.id
            for i in stripe_kit.client.v1.invoices.list(params={"customer": customer}).data
            if i.billing_reason == "subscription_cycle" and i.id != first.id
        )
    )


def test_late_credits_arriving_after_a_crash_before_their_record_are_billed_once(
    api: ApiClient, stack: Any, table: Any
) -> None:
    stripe_kit, kit, org_id, clock_id, customer, billing = _september_late(api, stack, table)
    gateway = billing._gateway
    webhooks = stack.stripe.webhook_url
    stack.stripe.set_webhook_endpoint(None)  # (we play the invoice.created handler ourselves)
    try:
        # Given September's renewal billed 100 late credits, and 100 more settled late after it
        second = _renewals(stripe_kit, kit, billing, org_id, clock_id, customer)
        # When October's renewal adds that late line (key ...:credits_late:200) and dies before recording it
        with crashing_before_the_record(table, SEPTEMBER) as crashes, pytest.raises(ConnectionError):
            billing.bill_renewal(org_id, gateway.get_invoice(second))
        assert crashes == [1]
        assert _late_lines(stripe_kit, customer, second) == [180]
        # And a third September generation settles late before the webhook is retried
        kit.credits.settle(org_id=org_id, workflow_run_id="late-3", quantity=None, occurred_at=ENDED, actor="t")
        billing.bill_renewal(org_id, gateway.get_invoice(second))
    finally:
        stack.stripe.set_webhook_endpoint(webhooks)
    # Then October's renewal bills the 200 late credits not billed before once: 200 x 1.8 = 360, not 180 + 360
    assert sum(_late_lines(stripe_kit, customer, second)) == 360
    assert kit.repo.period(org_id, SEPTEMBER)["billed_credits_late"] == 300


def test_two_deliveries_of_a_renewal_with_late_credits_arriving_between_bill_them_once(
    api: ApiClient, stack: Any, table: Any
) -> None:
    stripe_kit, kit, org_id, clock_id, customer, billing = _september_late(api, stack, table)
    gateway = billing._gateway
    webhooks = stack.stripe.webhook_url
    stack.stripe.set_webhook_endpoint(None)
    read, go = threading.Event(), threading.Event()
    events = table.meta.client.meta.events

    refused: list[Exception] = []

    def stalled_delivery() -> None:
        try:
            billing.bill_renewal(org_id, gateway.get_invoice(second))
        except ConflictError as exc:  # (the webhook answers 409: Stripe delivers it again)
            refused.append(exc)

    def slow(**_: Any) -> None:  # the first delivery stalls right after reading the periods' counters
        if threading.current_thread().name == "first" and not read.is_set():
            read.set()
            go.wait(60)

    try:
        second = _renewals(stripe_kit, kit, billing, org_id, clock_id, customer)
        events.register("after-call.dynamodb.BatchGetItem", slow)
        try:
            # When October's invoice.created is handled (late total 200) and stalls; a September generation
            # settles late (300); the invoice.finalized of the same draft is handled meanwhile, to its end
            first = threading.Thread(name="first", target=stalled_delivery)
            first.start()
            assert read.wait(60)
            kit.credits.settle(org_id=org_id, workflow_run_id="late-3", quantity=None, occurred_at=ENDED, actor="t")
            billing.bill_renewal(org_id, gateway.get_invoice(second))
            go.set()
            first.join(60)
        finally:
            events.unregister("after-call.dynamodb.BatchGetItem", slow)
    finally:
        stack.stripe.set_webhook_endpoint(webhooks)
    # Then the stalled delivery, billing from the same 100 with a stale total, is refused by Stripe (the same
    # idempotency key, other parameters); the 200 late credits not billed before are billed once: 360, not 360 + 180
    assert len(refused) == 1
    assert sum(_late_lines(stripe_kit, customer, second)) == 360
    # And its redelivery adds nothing
    assert billing.bill_renewal(org_id, gateway.get_invoice(second)).added_minor == 0
    assert sum(_late_lines(stripe_kit, customer, second)) == 360
    assert kit.repo.period(org_id, SEPTEMBER)["billed_credits_late"] == 300

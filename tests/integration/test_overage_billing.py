"""Overage reaches Stripe exactly once per period, on the renewal invoice, and reconciles with what
we recorded. The subscription runs on a Stripe test clock; usage is recorded in-process with the
service clock set inside that period."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import time_machine

from shared.credits.periods import period_containing
from shared.stripe_gateway import StripeGateway
from shared.usage.billing import OverageBilling
from shared.usage.metering import UsageEvent
from shared.usage.service import SdkEvent
from tests.helpers import ApiClient, new_user
from tests.integration.credit_kit import credit_kit
from tests.integration.stripe_kit import DAY, PERIOD_START, StripeKit
from tests.integration.test_stripe_webhooks import sign

pytestmark = pytest.mark.integration


def test_period_overage_is_billed_once_on_the_renewal_invoice(api: ApiClient, stack: Any, table: Any) -> None:
    stripe_kit = StripeKit(stack, table)
    owner = new_user()
    org_id = api.call("POST", "/v1/orgs", as_user=owner, json={"name": "Over", "plan_id": "free"}).body["org_id"]
    project = api.call("POST", f"/v1/orgs/{org_id}/projects", as_user=owner, json={"name": "P"}).body["project_id"]
    clock_id, customer = stripe_kit.subscribe(api, owner, org_id, "pro")

    # September usage (Pro: 3,000 credits, 2,000 runs, 1M SDK events, 50 GB included)
    kit = credit_kit(stack.env["TABLE_NAME"], stack.env["EVENT_BUS_NAME"], datetime(2026, 9, 15, tzinfo=UTC))
    for run, images in (("a", 300), ("b", 46)):  # 10 credits each: 3,460 credits -> 460 over
        kit.credits.reserve(
            org_id=org_id,
            project_id=project,
            template_id="social-content",
            generation_type="image",
            quantity=images,
            workflow_run_id=run,
            actor="t",
        )
        kit.credits.settle(org_id=org_id, workflow_run_id=run, quantity=None, occurred_at=None, actor="t")
    kit.clock.at = datetime(2026, 9, 25, 16, 12, 7, tzinfo=UTC)
    kit.usage.ingest_sdk_events("sept", [SdkEvent(org_id, datetime(2026, 9, 20, tzinfo=UTC), 1_400_000)])
    kit.usage.record_storage(org_id, datetime(2026, 9, 21, tzinfo=UTC), 52_300_000_000)  # peak 52.3 GB -> 53 GB

    # Stripe renews on 1 October: a draft invoice; our invoice.created handler adds the overage
    stripe_kit.advance(clock_id, PERIOD_START + 30 * DAY + 60)
    draft = _renewal(stripe_kit, customer)
    assert draft.status == "draft"
    # A retried billing step (in-process, and the webhook delivered again) adds nothing
    gateway = StripeGateway("sk_test_local", "whsec_local", api_base=stack.env["STRIPE_API_BASE"])
    billing = OverageBilling(kit.orgs, kit.org_repo, kit.repo, kit.usage, gateway)
    assert billing.bill_renewal(org_id, gateway.get_invoice(draft.id)).added_minor == 0
    event = next(
        e
        for e in reversed(stack.stripe.events())
        if e["type"] == "invoice.created" and e["data"]["object"]["id"] == draft.id
    )
    payload = json.dumps(event)
    assert (
        requests.post(
            f"{api.base_url}/webhooks/stripe", data=payload, timeout=30, headers={"Stripe-Signature": sign(payload)}
        ).status_code
        == 200
    )

    # An hour later Stripe finalizes and charges it
    stripe_kit.advance(clock_id, PERIOD_START + 30 * DAY + 3600 + 60)
    invoice = stripe_kit.client.v1.invoices.retrieve(draft.id)
    ours = {
        line.metadata.to_dict().get("metric"): line.amount
        for line in invoice.lines.data
        if line.metadata and line.metadata.to_dict().get("billing_key")
    }
    # credits 460 x 1.8 = 828; SDK events 400,000 x 0.0015 = 600; storage 3 GB x 8 = 24; runs: within allowance
    assert ours == {"credits": 828, "sdk_events": 600, "media_storage_gb": 24}
    assert (invoice.status, invoice.total, invoice.amount_paid) == ("paid", 4900 + 828 + 600 + 24, 6352)

    # Reconciles with what we recorded for September
    september = kit.repo.period(org_id, "2026-09-01T00:00:00Z")
    assert (september["credits_overage"], september["billed_credits"]) == (460, 460)
    assert september["billed_invoice_id"] == draft.id
    assert billing.bill_renewal(org_id, gateway.get_invoice(draft.id)).added_minor == 0  # paid: nothing more, ever
    # What reconciliation expects is what Stripe charged, at the fractional unit prices billed (1.8, 0.0015)
    org = kit.org_repo.get_org(org_id)
    assert org is not None
    assert billing.owed(org, billing.closed_period(org, gateway.get_invoice(draft.id))) == ours


def september_overage(api: ApiClient, stack: Any, table: Any) -> tuple[StripeKit, str, str, str]:
    """A Pro org subscribed on a test clock at PERIOD_START that used 3,460 credits in September (460 over
    its 3,000 included: 828 of overage). Returns (kit, org, clock, customer)."""
    stripe_kit = StripeKit(stack, table)
    owner = new_user()
    org_id = api.call("POST", "/v1/orgs", as_user=owner, json={"name": "Over", "plan_id": "free"}).body["org_id"]
    project = api.call("POST", f"/v1/orgs/{org_id}/projects", as_user=owner, json={"name": "P"}).body["project_id"]
    clock_id, customer = stripe_kit.subscribe(api, owner, org_id, "pro")
    kit = credit_kit(stack.env["TABLE_NAME"], stack.env["EVENT_BUS_NAME"], datetime(2026, 9, 15, tzinfo=UTC))
    kit.credits.reserve(
        org_id=org_id,
        project_id=project,
        template_id="social-content",
        generation_type="image",
        quantity=346,
        workflow_run_id="r",
        actor="t",
    )
    kit.credits.settle(org_id=org_id, workflow_run_id="r", quantity=None, occurred_at=None, actor="t")
    return stripe_kit, org_id, clock_id, customer


def _renewal(stripe_kit: StripeKit, customer: str) -> Any:
    invoices = stripe_kit.client.v1.invoices.list(params={"customer": customer}).data
    return next(i for i in invoices if i.billing_reason == "subscription_cycle")


def test_overage_of_a_renewal_finalized_before_its_webhook_goes_on_the_next_invoice_once(
    api: ApiClient, stack: Any, table: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from functions.stripe_webhook import handler

    counted: list[str] = []
    add_metric = handler.metrics.add_metric
    monkeypatch.setattr(handler.metrics, "add_metric", lambda **kw: (counted.append(kw["name"]), add_metric(**kw))[1])
    # Given 460 credits over Pro's 3,000 in September
    stripe_kit, org_id, clock_id, customer = september_overage(api, stack, table)
    # And our webhook endpoint unreachable for the renewal's hour: Stripe finalizes and charges it bare
    webhooks = stack.stripe.webhook_url
    stack.stripe.set_webhook_endpoint(None)
    try:
        stripe_kit.advance(clock_id, PERIOD_START + 30 * DAY + 60)
        stripe_kit.advance(clock_id, PERIOD_START + 30 * DAY + 3600 + 120)
    finally:
        stack.stripe.set_webhook_endpoint(webhooks)
    renewal = _renewal(stripe_kit, customer)
    assert (renewal.status, renewal.total) == ("paid", 4900)
    # When its invoice.created (and finalized) arrive late, twice each
    outcomes = []
    for type_ in ("invoice.created", "invoice.finalized", "invoice.created", "invoice.finalized"):
        event = next(e for e in stack.stripe.events() if e["type"] == type_ and e["data"]["object"]["id"] == renewal.id)
        payload = json.dumps({**event, "id": f"evt_{new_user()}"})  # each a delivery of its own
        reply = requests.post(
            f"{api.base_url}/webhooks/stripe", data=payload, timeout=30, headers={"Stripe-Signature": sign(payload)}
        )
        outcomes.append(reply.json()["outcome"])
    # Then the overage is billed once, as a pending item for the next invoice, and the alarm's metric counted
    assert outcomes == ["overage_deferred 828", "overage_billed 0", "overage_billed 0", "overage_billed 0"]
    assert counted.count("RenewalOverageDeferred") == 1
    pending = stripe_kit.client.v1.invoice_items.list(params={"customer": customer, "pending": True}).data
    assert [(i.amount, i.metadata.to_dict()["billing_key"]) for i in pending] == [
        (828, f"overage:{org_id}:2026-09-01T00:00:00Z:credits")
    ]
    # And the next renewal charges it, once
    stripe_kit.advance(clock_id, PERIOD_START + 61 * DAY + 3600 + 120)
    invoices = stripe_kit.client.v1.invoices.list(params={"customer": customer}).data
    november = next(i for i in invoices if i.billing_reason == "subscription_cycle" and i.id != renewal.id)
    assert (november.status, november.total) == ("paid", 4900 + 828)
    assert stripe_kit.client.v1.invoice_items.list(params={"customer": customer, "pending": True}).data == []


def test_late_credits_after_the_draft_was_billed_are_billed_once_on_the_next_renewal(
    api: ApiClient, stack: Any, table: Any
) -> None:
    stripe_kit = StripeKit(stack, table)
    owner = new_user()
    org_id = api.call("POST", "/v1/orgs", as_user=owner, json={"name": "Late", "plan_id": "free"}).body["org_id"]
    project = api.call("POST", f"/v1/orgs/{org_id}/projects", as_user=owner, json={"name": "P"}).body["project_id"]
    clock_id, customer = stripe_kit.subscribe(api, owner, org_id, "pro")
    kit = credit_kit(stack.env["TABLE_NAME"], stack.env["EVENT_BUS_NAME"], datetime(2026, 9, 15, tzinfo=UTC))
    runs = {"used": 300, "late-1": 10, "late-2": 10}  # 10 credits an image: 3,000 (all included), 100, 100
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
    september, ended = "2026-09-01T00:00:00Z", datetime(2026, 9, 30, 23, 0, tzinfo=UTC)
    kit.clock.at = datetime(2026, 10, 1, 0, 30, tzinfo=UTC)
    webhooks = stack.stripe.webhook_url
    stack.stripe.set_webhook_endpoint(None)  # (we play the invoice.created handler ourselves)
    try:
        stripe_kit.advance(clock_id, PERIOD_START + 30 * DAY + 60)
        draft = _renewal(stripe_kit, customer)
        # Given a September generation settled late, before the draft was billed: 100 late credits on it
        kit.credits.settle(org_id=org_id, workflow_run_id="late-1", quantity=None, occurred_at=ended, actor="t")
        assert billing.bill_renewal(org_id, gateway.get_invoice(draft.id)).added_minor == 180
        # When another settles late after that, and the draft is seen again (a redelivery, its finalization)
        kit.credits.settle(org_id=org_id, workflow_run_id="late-2", quantity=None, occurred_at=ended, actor="t")
        assert kit.repo.period(org_id, september)["credits_late"] == 200
        assert billing.bill_renewal(org_id, gateway.get_invoice(draft.id)).added_minor == 0
    finally:
        stack.stripe.set_webhook_endpoint(webhooks)
    # Then what the draft billed stays recorded as billed: 100, not the late total
    assert kit.repo.period(org_id, september)["billed_credits_late"] == 100
    # And October's renewal bills the other 100 late credits, once (100 x 1.8 = 180)
    stripe_kit.advance(clock_id, PERIOD_START + 61 * DAY + 60)
    october = gateway.get_invoice(
        next(
            i.id
            for i in stripe_kit.client.v1.invoices.list(params={"customer": customer}).data
            if i.billing_reason == "subscription_cycle" and i.id != draft.id
        )
    )
    assert [line.amount_minor for line in october.lines if "Late generation credits" in line.description] == [180]


def _ours(stripe_kit: StripeKit, customer: str) -> list[tuple[str, int, str]]:
    """Our overage items of the customer, wherever they are: (billing_key, amount, invoice or 'pending')."""
    items = stripe_kit.client.v1.invoice_items.list(params={"customer": customer, "limit": 100}).auto_paging_iter()
    found = [(i.metadata.to_dict().get("billing_key"), i.amount, i.invoice or "pending") for i in items]
    return sorted((str(k), a, str(inv)) for k, a, inv in found if k)


def _deliver_again(api: ApiClient, stack: Any, type_: str, object_id: str) -> str:
    event = next(
        e for e in reversed(stack.stripe.events()) if e["type"] == type_ and e["data"]["object"]["id"] == object_id
    )
    payload = json.dumps({**event, "id": f"evt_{new_user()}"})
    reply = requests.post(
        f"{api.base_url}/webhooks/stripe", data=payload, timeout=30, headers={"Stripe-Signature": sign(payload)}
    )
    return str(reply.json()["outcome"])


def test_a_subscription_cancelled_at_its_periods_end_bills_that_periods_overage_once(
    api: ApiClient, stack: Any, table: Any
) -> None:
    # Given 460 credits over Pro's 3,000 in September, and the subscription set to end with September
    stripe_kit, org_id, clock_id, customer = september_overage(api, stack, table)
    sub_id = stripe_kit.client.v1.subscriptions.list(params={"customer": customer}).data[0].id
    stripe_kit.client.v1.subscriptions.update(sub_id, params={"cancel_at_period_end": True})
    stripe_kit.emulator.wait_for_deliveries()
    # When September ends: the subscription ends, with no renewal invoice to carry the overage
    stripe_kit.advance(clock_id, PERIOD_START + 30 * DAY + 3600 + 120)
    invoices = stripe_kit.client.v1.invoices.list(params={"customer": customer}).data
    assert not [i for i in invoices if i.billing_reason == "subscription_cycle"]
    # Then the final invoice bills September's overage once (460 x 1.8 = 828), under the renewal's key
    key = f"overage:{org_id}:2026-09-01T00:00:00Z:credits"
    [(billed_key, amount, invoice_id)] = _ours(stripe_kit, customer)
    assert (billed_key, amount) == (key, 828) and invoice_id != "pending"
    final = stripe_kit.client.v1.invoices.retrieve(invoice_id)
    assert (final.status, final.total) == ("paid", 828)
    # And the deletion delivered again bills nothing more
    assert _deliver_again(api, stack, "customer.subscription.deleted", sub_id) == "subscription_canceled"
    assert _ours(stripe_kit, customer) == [(key, 828, invoice_id)]
    # And the reconciliation owes what was billed, at Pro's price, though the org is on Free now (found by the
    # simulation: it priced the ended subscription's period at Free's, nothing, and saw a mismatch)
    kit = credit_kit(stack.env["TABLE_NAME"], stack.env["EVENT_BUS_NAME"], datetime(2026, 10, 3, 7, 12, tzinfo=UTC))
    gateway = StripeGateway("sk_test_local", "whsec_local", api_base=stack.env["STRIPE_API_BASE"])
    billing = OverageBilling(kit.orgs, kit.org_repo, kit.repo, kit.usage, gateway)
    org = kit.org_repo.require_org(org_id)
    assert org.plan_id == "free"
    september = period_containing(org, datetime(2026, 9, 15, tzinfo=UTC))
    assert september.key == "2026-09-01T00:00:00Z"
    assert billing.owed(org, september) == {"credits": 828}


def test_a_subscription_cancelled_mid_period_bills_its_overage_and_the_last_periods_late_usage_once(
    api: ApiClient, stack: Any, table: Any
) -> None:
    stripe_kit = StripeKit(stack, table)
    owner = new_user()
    org_id = api.call("POST", "/v1/orgs", as_user=owner, json={"name": "Gone", "plan_id": "free"}).body["org_id"]
    project = api.call("POST", f"/v1/orgs/{org_id}/projects", as_user=owner, json={"name": "P"}).body["project_id"]
    clock_id, customer = stripe_kit.subscribe(api, owner, org_id, "pro")
    kit = credit_kit(stack.env["TABLE_NAME"], stack.env["EVENT_BUS_NAME"], datetime(2026, 9, 15, 9, 41, tzinfo=UTC))
    for run, images in (("sept", 300), ("late", 10)):  # 10 credits an image: 3,000 (all included), then 100
        kit.credits.reserve(
            org_id=org_id,
            project_id=project,
            template_id="social-content",
            generation_type="image",
            quantity=images,
            workflow_run_id=run,
            actor="t",
        )
    kit.credits.settle(org_id=org_id, workflow_run_id="sept", quantity=None, occurred_at=None, actor="t")
    # Given September renewed (nothing over), then in October: a September generation settled late (100
    # credits), 1,300,000 SDK events (300,000 over Pro's 1M) and 2,100 workflow runs (100 over its 2,000)
    stripe_kit.advance(clock_id, PERIOD_START + 30 * DAY + 3600 + 120)
    kit.clock.at = datetime(2026, 10, 9, 17, 3, 52, tzinfo=UTC)
    september_end = datetime(2026, 9, 30, 22, 17, tzinfo=UTC)
    kit.credits.settle(org_id=org_id, workflow_run_id="late", quantity=None, occurred_at=september_end, actor="t")
    kit.usage.ingest_sdk_events("oct", [SdkEvent(org_id, datetime(2026, 10, 8, 6, 0, tzinfo=UTC), 1_300_000)])
    runs = [UsageEvent("workflow_runs", org_id, kit.clock.at, 700, f"runs-{n}") for n in range(3)]
    kit.usage.record_events(runs)
    # When the subscription is cancelled at once on 12 October
    stripe_kit.advance(clock_id, PERIOD_START + 41 * DAY + 3 * 3600)
    sub_id = stripe_kit.client.v1.subscriptions.list(params={"customer": customer, "status": "all"}).data[0].id
    stripe_kit.client.v1.subscriptions.cancel(sub_id)
    stripe_kit.emulator.wait_for_deliveries()
    # Then October's overage and September's late credits are invoiced once, on the final invoice:
    # SDK events 300,000 x 0.0015 = 450; runs 100 x 0.8 = 80; late credits 100 x 1.8 = 180
    october = "2026-10-01T00:00:00Z"
    ours = _ours(stripe_kit, customer)
    assert {(k, a) for k, a, _ in ours} == {
        (f"overage:{org_id}:{october}:sdk_events", 450),
        (f"overage:{org_id}:{october}:workflow_runs", 80),
        (f"overage:{org_id}:2026-09-01T00:00:00Z:credits_late:100", 180),
    }
    [invoice_id] = {inv for _, _, inv in ours}
    assert invoice_id != "pending"
    assert stripe_kit.client.v1.invoices.retrieve(invoice_id).status == "paid"
    # And a redelivered deletion adds nothing
    assert _deliver_again(api, stack, "customer.subscription.deleted", sub_id) == "subscription_canceled"
    assert _ours(stripe_kit, customer) == ours


@contextmanager
def crashing_before_the_record(table: Any, period_key: str) -> Iterator[list[int]]:
    """The function dies right before its write of the period item (DynamoDB's UpdateItem of the period, at
    botocore's boundary): what it added to Stripe is there, nothing of it recorded. Yields the crashes."""
    events, crashes = table.meta.client.meta.events, []

    def crash(params: dict[str, Any], **_: Any) -> None:
        if not crashes and f"PERIOD#{period_key}" in str(params.get("body")):
            crashes.append(1)
            raise ConnectionError("the function died before its record")

    events.register("before-call.dynamodb.UpdateItem", crash)
    try:
        yield crashes
    finally:
        events.unregister("before-call.dynamodb.UpdateItem", crash)


def test_a_renewal_crashed_before_its_one_record_bills_each_line_once_and_records_them_all_on_retry(
    api: ApiClient, stack: Any, table: Any
) -> None:
    # Given September over three allowances: 460 credits over Pro's 3,000, 1,400,000 SDK events (400,000 over
    # its 1M), a 52.3 GB storage peak (53 GB: 3 over its 50)
    stripe_kit, org_id, clock_id, customer = september_overage(api, stack, table)
    at = datetime(2026, 9, 25, 16, 12, 7, tzinfo=UTC)
    kit = credit_kit(stack.env["TABLE_NAME"], stack.env["EVENT_BUS_NAME"], at, table=table)
    kit.usage.ingest_sdk_events("sept", [SdkEvent(org_id, datetime(2026, 9, 20, 7, 31, 4, tzinfo=UTC), 1_400_000)])
    kit.usage.record_storage(org_id, datetime(2026, 9, 21, 13, 5, 59, tzinfo=UTC), 52_300_000_000)
    # And the renewal's draft, its invoice.created not delivered to us yet
    webhooks = stack.stripe.webhook_url
    stack.stripe.set_webhook_endpoint(None)
    try:
        stripe_kit.advance(clock_id, PERIOD_START + 30 * DAY + 60)
    finally:
        stack.stripe.set_webhook_endpoint(webhooks)
    draft = _renewal(stripe_kit, customer)
    gateway = StripeGateway("sk_test_local", "whsec_local", api_base=stack.env["STRIPE_API_BASE"])
    billing = OverageBilling(kit.orgs, kit.org_repo, kit.repo, kit.usage, gateway)
    september = "2026-09-01T00:00:00Z"
    # When its billing adds the three lines to the draft and dies before its one write of the period item
    with crashing_before_the_record(table, september) as crashes, pytest.raises(ConnectionError):
        billing.bill_renewal(org_id, gateway.get_invoice(draft.id))
    assert crashes == [1]
    assert not any(k.startswith("billed_") for k in kit.repo.period(org_id, september))
    lines = {f"overage:{org_id}:{september}:{m}": a for m, a in (("credits", 828), ("sdk_events", 600))}
    lines[f"overage:{org_id}:{september}:media_storage_gb"] = 24
    assert _ours(stripe_kit, customer) == sorted((k, a, draft.id) for k, a in lines.items())
    # Then the retry (the webhook delivered) finds them on the draft: it adds nothing and records them all
    assert billing.bill_renewal(org_id, gateway.get_invoice(draft.id)).added_minor == 0
    record = kit.repo.period(org_id, september)
    assert {k: record[f"billed_{k.rpartition(':')[2]}"] for k in lines} == {
        k: n for k, n in zip(lines, (460, 400_000, 3), strict=True)
    }
    assert {record[f"billed_key_{k.rpartition(':')[2]}"] for k in lines} == set(lines)
    assert (record["billed_invoice_id"], record["billed_included_sdk_events"]) == (draft.id, 1_000_000)
    # And Stripe finalizes and charges the draft with each line once; the reconciliation owes just that
    stripe_kit.advance(clock_id, PERIOD_START + 30 * DAY + 3600 + 60)
    invoice = stripe_kit.client.v1.invoices.retrieve(draft.id)
    assert (invoice.status, invoice.total) == ("paid", 4900 + 828 + 600 + 24)
    assert _ours(stripe_kit, customer) == sorted((k, a, draft.id) for k, a in lines.items())
    org = kit.org_repo.require_org(org_id)
    owed = billing.owed(org, billing.closed_period(org, gateway.get_invoice(draft.id)))
    assert owed == {"credits": 828, "sdk_events": 600, "media_storage_gb": 24}


def test_a_final_bill_retried_after_a_crash_sees_its_line_past_the_first_page_of_pending_items(
    api: ApiClient, stack: Any, table: Any
) -> None:
    # Given 460 credits over Pro's 3,000 in September, whose final bill put its line on the customer's
    # pending items and crashed before recording it
    stripe_kit, org_id, _clock_id, customer = september_overage(api, stack, table)
    at = datetime(2026, 10, 1, 0, 41, tzinfo=UTC)
    kit = credit_kit(stack.env["TABLE_NAME"], stack.env["EVENT_BUS_NAME"], at, table=table)
    gateway = StripeGateway("sk_test_local", "whsec_local", api_base=stack.env["STRIPE_API_BASE"])
    billing = OverageBilling(kit.orgs, kit.org_repo, kit.repo, kit.usage, gateway)
    ended = datetime(2026, 10, 1, tzinfo=UTC)
    with crashing_before_the_record(table, "2026-09-01T00:00:00Z") as crashes, pytest.raises(ConnectionError):
        billing.bill_final(org_id, customer, ended)
    assert crashes == [1]
    key = f"overage:{org_id}:2026-09-01T00:00:00Z:credits"
    assert _ours(stripe_kit, customer) == [(key, 828, "pending")]
    # And 130 newer pending items of the customer (Stripe lists them newest first, 100 a page)
    for n in range(130):
        stripe_kit.client.v1.invoice_items.create(
            params={"customer": customer, "amount": 100 + n, "currency": "usd", "metadata": {"billing_key": f"x:{n}"}}
        )
    # When the bill is retried after Stripe's 24 h idempotency window (its key makes a new item again)
    with time_machine.travel(datetime.now(UTC) + timedelta(hours=25), tick=True):
        assert billing.bill_final(org_id, customer, ended) == 0
    # Then the line is on the pending items once, and every key was seen
    assert [k for k, _, _ in _ours(stripe_kit, customer)].count(key) == 1
    assert len(gateway.pending_item_keys(customer)) == 131
    assert kit.repo.period(org_id, "2026-09-01T00:00:00Z")["billed_key_credits"] == key

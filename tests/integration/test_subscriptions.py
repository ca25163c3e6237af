"""Subscriptions end to end: the local API, the Stripe emulator through the real SDK, its signed
webhooks back to our webhook function, DynamoDB Local. Amounts are hand-computed.

Every subscription here starts on a test clock at 2026-09-01 00:00 UTC: a 30-day period (September),
so a change on day 10 prorates over 20/30 of the period and one on day 20 over 10/30."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import ApiClient, capture_notifications, drain, new_user
from tests.integration.stripe_kit import DAY, PERIOD_START, StripeKit

pytestmark = pytest.mark.integration


@pytest.fixture
def kit(stack: Any, table: Any) -> StripeKit:
    return StripeKit(stack, table)


def _org(api: ApiClient, owner: str, plan_id: str = "free", **body: Any) -> str:
    reply = api.call("POST", "/v1/orgs", as_user=owner, json={"name": "Acme", "plan_id": plan_id, **body})
    assert reply.status == 201, reply.body
    return str(reply.body["org_id"])


def _add_members(api: ApiClient, owner: str, org_id: str, n: int) -> list[str]:
    users = [new_user() for _ in range(n)]
    for user in users:
        assert api.call("POST", f"/v1/orgs/{org_id}/members", as_user=owner, json={"user_id": user}).status == 201
    return users


def test_checkout_makes_the_subscription_active_with_plan_period_and_anniversary(
    api: ApiClient, kit: StripeKit
) -> None:
    owner = new_user()
    org_id = _org(api, owner)
    kit.subscribe(api, owner, org_id, "pro")
    sub = api.call("GET", f"/v1/orgs/{org_id}/subscription", as_user=owner).body
    assert sub["status"] == "active"
    assert sub["plan"]["plan_id"] == "pro"
    assert sub["current_period_start"] == "2026-09-01T00:00:00.000Z"
    assert sub["current_period_end"] == "2026-10-01T00:00:00.000Z"
    assert sub["billing_anniversary_day"] == 1
    org = api.call("GET", f"/v1/orgs/{org_id}", as_user=owner).body
    assert org["plan"]["plan_id"] == "pro"
    # Stripe charged the first month: 49.00.
    invoices = kit.client.v1.invoices.list(params={"customer": _customer(kit, org_id)}).data
    assert [(i.billing_reason, i.amount_paid, i.status) for i in invoices] == [("subscription_create", 4900, "paid")]


def _customer(kit: StripeKit, org_id: str) -> str:
    org = kit.repo.get_org(org_id)
    assert org is not None and org.stripe_customer_id
    return org.stripe_customer_id


def test_checkout_refuses_free_custom_and_second_subscriptions(api: ApiClient, kit: StripeKit) -> None:
    owner = new_user()
    org_id = _org(api, owner)
    urls = {"success_url": "https://a.test/ok", "cancel_url": "https://a.test/no"}
    free = api.call("POST", f"/v1/orgs/{org_id}/subscription/checkout", as_user=owner, json={"plan_id": "free", **urls})
    assert (free.status, free.code) == (422, "plan_not_billable")
    custom = api.call(
        "POST", f"/v1/orgs/{org_id}/subscription/checkout", as_user=owner, json={"plan_id": "enterprise", **urls}
    )
    assert (custom.status, custom.code) == (403, "plan_requires_sales")
    kit.subscribe(api, owner, org_id, "starter")
    again = api.call("POST", f"/v1/orgs/{org_id}/subscription/checkout", as_user=owner, json={"plan_id": "pro", **urls})
    assert (again.status, again.code) == (409, "subscription_exists")


def test_seats_change_the_stripe_quantity_with_proration(api: ApiClient, kit: StripeKit) -> None:
    # Given Pro (3 seats included, extra seats 15.00/month) on day 10 of a 30-day period
    owner = new_user()
    org_id = _org(api, owner)
    clock, customer = kit.subscribe(api, owner, org_id, "pro")
    kit.advance(clock, PERIOD_START + 10 * DAY)
    # When the org grows to 4 members (one extra seat), and the outbox's seat sync ran
    members = _add_members(api, owner, org_id, 3)
    kit.synced()
    # Then Stripe bills one extra seat, prorated: 1500 * 20/30 = 1000
    sub = api.call("GET", f"/v1/orgs/{org_id}/subscription", as_user=owner).body
    assert (sub["members"], sub["extra_seats_billed"]) == (4, 1)
    pending = kit.client.v1.invoice_items.list(params={"customer": customer, "pending": True}).data
    assert sorted(i.amount for i in pending) == [1000]
    # When a member leaves on day 10 too, the seat is credited back the same way
    assert api.call("DELETE", f"/v1/orgs/{org_id}/members/{members[0]}", as_user=owner).status == 204
    kit.synced()
    sub = api.call("GET", f"/v1/orgs/{org_id}/subscription", as_user=owner).body
    assert (sub["members"], sub["extra_seats_billed"]) == (3, 0)
    pending = kit.client.v1.invoice_items.list(params={"customer": customer, "pending": True}).data
    assert sorted(i.amount for i in pending) == [-1000, 1000]


def test_upgrade_preview_matches_the_charge_and_takes_effect_now(api: ApiClient, kit: StripeKit) -> None:
    owner = new_user()
    org_id = _org(api, owner)
    clock, customer = kit.subscribe(api, owner, org_id, "pro")
    kit.advance(clock, PERIOD_START + 10 * DAY)
    # Pro 49.00 -> Scale 199.00 with 20 of 30 days left:
    #   unused Pro     -round(4900 * 20/30)  = -round(3266.67)  = -3267
    #   remaining Scale round(19900 * 20/30) = round(13266.67)  = 13267
    #   net charged now                                          = 10000
    preview = api.call("POST", f"/v1/orgs/{org_id}/subscription/preview", as_user=owner, json={"plan_id": "scale"})
    assert preview.status == 200, preview.body
    assert preview.body["proration_date"] == PERIOD_START + 10 * DAY
    assert sorted(line["amount_minor"] for line in preview.body["lines"]) == [-3267, 13267]
    assert (preview.body["charge_now_minor"], preview.body["refund_minor"]) == (10000, 0)

    done = api.call(
        "PUT",
        f"/v1/orgs/{org_id}/subscription",
        as_user=owner,
        json={"plan_id": "scale", "proration_date": preview.body["proration_date"]},
    )
    assert done.status == 200, done.body
    assert done.body["proration"]["net_minor"] == 10000
    assert done.body["subscription"]["plan"]["plan_id"] == "scale"
    kit.emulator.wait_for_deliveries()
    assert api.call("GET", f"/v1/orgs/{org_id}", as_user=owner).body["plan"]["plan_id"] == "scale"
    update = [
        i
        for i in kit.client.v1.invoices.list(params={"customer": customer}).data
        if i.billing_reason == "subscription_update"
    ]
    assert [(i.total, i.amount_paid, i.status) for i in update] == [(10000, 10000, "paid")]


def test_mid_cycle_downgrade_refunds_the_unused_part_to_the_card(api: ApiClient, kit: StripeKit) -> None:
    owner = new_user()
    org_id = _org(api, owner)
    clock, customer = kit.subscribe(api, owner, org_id, "scale")
    kit.advance(clock, PERIOD_START + 20 * DAY)
    # Scale 199.00 -> Pro 49.00 with 10 of 30 days left:
    #   unused Scale  -round(19900 * 10/30) = -round(6633.33) = -6633
    #   remaining Pro  round(4900 * 10/30)  =  round(1633.33) =  1633
    #   refunded to the card                                   =  5000
    preview = api.call("POST", f"/v1/orgs/{org_id}/subscription/preview", as_user=owner, json={"plan_id": "pro"})
    assert (preview.body["charge_now_minor"], preview.body["refund_minor"]) == (0, 5000)
    done = api.call(
        "PUT",
        f"/v1/orgs/{org_id}/subscription",
        as_user=owner,
        json={"plan_id": "pro", "proration_date": preview.body["proration_date"]},
    )
    assert done.status == 200, done.body
    assert done.body["proration"]["refund_minor"] == 5000
    kit.emulator.wait_for_deliveries()
    refunds = kit.client.v1.refunds.list(params={"limit": 100}).data
    mine = [r for r in refunds if r.metadata.to_dict().get("org_id") == org_id]
    assert [r.amount for r in mine] == [5000]
    # The refunded credit is consumed: the customer carries no balance into the next invoice.
    assert kit.client.v1.customers.retrieve(customer).balance == 0
    assert api.call("GET", f"/v1/orgs/{org_id}", as_user=owner).body["plan"]["plan_id"] == "pro"


def test_downgrade_that_does_not_fit_is_refused_saying_what_to_archive(api: ApiClient, kit: StripeKit) -> None:
    owner = new_user()
    org_id = _org(api, owner)
    kit.subscribe(api, owner, org_id, "pro")
    for name in ("A", "B"):
        api.call("POST", f"/v1/orgs/{org_id}/projects", as_user=owner, json={"name": name})
    for method, path in (("POST", "/subscription/preview"), ("PUT", "/subscription")):
        reply = api.call(method, f"/v1/orgs/{org_id}{path}", as_user=owner, json={"plan_id": "starter"})
        assert (reply.status, reply.code) == (409, "plan_limit_reached")
        assert "Archive projects first" in reply.body["error"]["message"]
    assert api.call("GET", f"/v1/orgs/{org_id}", as_user=owner).body["plan"]["plan_id"] == "pro"


def test_failed_renewal_marks_past_due_and_notifies_then_recovery_clears_it(
    api: ApiClient, kit: StripeKit, stack: Any
) -> None:
    owner = new_user()
    org_id = _org(api, owner)
    clock, customer = kit.subscribe(api, owner, org_id, "pro")
    queue = capture_notifications(stack)
    # The card on file starts declining before the renewal.
    bad = kit.client.v1.payment_methods.attach("pm_card_chargeCustomerFail", params={"customer": customer})
    kit.client.v1.customers.update(customer, params={"invoice_settings": {"default_payment_method": bad.id}})
    sub_id = kit.repo.get_org(org_id).subscription.subscription_id  # type: ignore[union-attr]
    kit.client.v1.subscriptions.update(sub_id, params={"default_payment_method": bad.id})
    kit.advance(clock, PERIOD_START + 30 * DAY + 3600)

    assert api.call("GET", f"/v1/orgs/{org_id}/subscription", as_user=owner).body["status"] == "past_due"
    notes = [n for n in drain(stack, queue) if n["org_id"] == org_id]
    # the failed payment, and that the grace period started (the plan stays while Stripe retries): once each
    assert sorted(n["kind"] for n in notes) == ["Payment.Failed", "Subscription.GraceStarted"]
    told = {n["kind"]: n["details"] for n in notes}
    assert told["Payment.Failed"]["amount_due_minor"] == 4900
    grace = told["Subscription.GraceStarted"]
    assert (grace["standing"], grace["plan_id"], grace["agency_spend"]) == ("grace", "pro", "allowed")

    # Recovery: a good card pays the open invoice.
    good = kit.client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer})
    open_invoice = kit.client.v1.invoices.list(params={"customer": customer, "status": "open"}).data[0]
    kit.client.v1.invoices.pay(open_invoice.id, params={"payment_method": good.id})
    kit.emulator.wait_for_deliveries()
    assert api.call("GET", f"/v1/orgs/{org_id}/subscription", as_user=owner).body["status"] == "active"


def test_deleted_subscription_cancels_paid_features(api: ApiClient, kit: StripeKit) -> None:
    owner = new_user()
    org_id = _org(api, owner)
    kit.subscribe(api, owner, org_id, "pro")
    assert api.call("PATCH", f"/v1/orgs/{org_id}", as_user=owner, json={"billing_mode": "agency"}).status == 200
    sub_id = kit.repo.get_org(org_id).subscription.subscription_id  # type: ignore[union-attr]
    kit.client.v1.subscriptions.cancel(sub_id)
    kit.emulator.wait_for_deliveries()
    org = api.call("GET", f"/v1/orgs/{org_id}", as_user=owner).body
    assert (org["plan"]["plan_id"], org["billing_mode"]) == ("free", "byo")
    assert api.call("GET", f"/v1/orgs/{org_id}/subscription", as_user=owner).body["status"] == "canceled"


def test_billing_portal_session(api: ApiClient, kit: StripeKit) -> None:
    owner = new_user()
    org_id = _org(api, owner)
    none = api.call("POST", f"/v1/orgs/{org_id}/billing-portal", as_user=owner, json={"return_url": "https://a.test"})
    assert (none.status, none.code) == (409, "no_billing_account")
    kit.subscribe(api, owner, org_id, "starter")
    reply = api.call("POST", f"/v1/orgs/{org_id}/billing-portal", as_user=owner, json={"return_url": "https://a.test"})
    assert reply.status == 200 and "/billing_portal/" in reply.body["url"]

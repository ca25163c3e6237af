"""Enterprise contracts are billed (issue 14): support sets the terms; that creates the org's own Stripe
price and a subscription invoiced to the customer (net 30 by default); the monthly invoice shows the base
fee like any subscription line; overage prices and the platform fee follow the terms."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from tests.helpers import ApiClient, invoice_steps, new_user, org_items
from tests.integration.stripe_kit import StripeKit
from tests.local import devtokens

pytestmark = pytest.mark.integration
OPTIMIZER = devtokens.service_token("ad-optimizer")
TERMS = {
    "base_minor": 250_000,
    "included_credits": 60_000,
    "platform_fee_bps": 150,
    "credit_overage_unit_minor": "0.9",
    "collection": "send_invoice",
    "days_until_due": 45,
}


def _contract(api: ApiClient, org_id: str, terms: dict[str, Any]) -> Any:
    return api.call(
        "PUT",
        f"/v1/orgs/{org_id}/plan",
        as_user=new_user("staff"),
        groups=("support",),
        json={"plan_id": "enterprise", "enterprise_terms": terms},
    )


def test_a_contract_creates_a_sent_invoice_subscription_billed_on_the_monthly_invoice(
    api: ApiClient, stack: Any, table: Any
) -> None:
    kit = StripeKit(stack, table)
    owner = new_user()
    org_id = api.call("POST", "/v1/orgs", as_user=owner, json={"name": "Globex"}).body["org_id"]
    # Support sets the terms: the plan is Enterprise once Stripe has the subscription.
    reply = _contract(api, org_id, TERMS)
    assert reply.status == 200, reply.body
    assert (reply.body["plan"]["plan_id"], reply.body["standing"]) == ("enterprise", "paid")
    kit.emulator.wait_for_deliveries()
    org = kit.repo.get_org(org_id)
    assert org is not None and org.subscription is not None and org.stripe_customer_id
    sub = kit.client.v1.subscriptions.retrieve(org.subscription.subscription_id)
    assert (sub.collection_method, sub.days_until_due, sub.status) == ("send_invoice", 45, "active")
    # Stripe sent the first invoice for the base fee, due in 45 days, not charged.
    (invoice,) = kit.client.v1.invoices.list(params={"customer": org.stripe_customer_id}).data
    assert (invoice.total, invoice.status, invoice.collection_method) == (250_000, "open", "send_invoice")
    assert invoice.due_date is not None and invoice.due_date - invoice.status_transitions.finalized_at == 45 * 86_400
    # A retried request (same terms) creates nothing more.
    assert _contract(api, org_id, TERMS).status == 200
    assert len(kit.client.v1.subscriptions.list(params={"customer": org.stripe_customer_id}).data) == 1
    # The terms' limits, fee and overage price apply.
    services = _services()
    granted = services.orgs.entitlement_of(services.orgs._repo.require_org(org_id))
    assert granted.plan.included_credits == 60_000 and granted.plan.platform_fee_bps == 150
    assert granted.plan.price_book("USD").credit_overage_unit_minor == Decimal("0.9")
    assert granted.plan.price_book("USD").workflow_run_overage_unit_minor == Decimal("0.4")  # the catalog's
    # The monthly invoice shows the base fee as a subscription line, unpaid until the wire arrives.
    issued = _issue_current_invoice(org_id)
    lines = [line for line in issued.lines if line.paid_via == "stripe"]
    assert [line.amount_minor for line in lines] == [250_000]
    assert issued.totals.stripe_unpaid_minor == 250_000


def test_the_fee_on_agency_spend_follows_the_terms(api: ApiClient, stack: Any, table: Any) -> None:
    owner = new_user()
    org_id = api.call("POST", "/v1/orgs", as_user=owner, json={"name": "Initech"}).body["org_id"]
    assert _contract(api, org_id, TERMS).status == 200
    switched = api.call("PATCH", f"/v1/orgs/{org_id}", as_user=owner, json={"billing_mode": "agency"})
    assert (switched.status, switched.body["platform_fee_bps"]) == (200, 150)
    project = api.call("POST", f"/v1/orgs/{org_id}/projects", as_user=owner, json={"name": "Launch"}).body
    bill = {
        "org_id": org_id,
        "platform": "tiktok",
        "bill_id": "g-1",
        "project_id": project["project_id"],
        "amount_minor": 10_000,
        "currency": "USD",
        "billed_on": date.today().isoformat(),
    }
    reply = api.call("POST", "/v1/internal/wallet/bills", token=OPTIMIZER, json=bill)
    assert (reply.status, reply.body["fee_minor"]) == (200, 150), reply.body


def test_changed_terms_switch_the_price_and_members_cannot_set_terms(api: ApiClient, stack: Any, table: Any) -> None:
    kit = StripeKit(stack, table)
    owner = new_user()
    org_id = api.call("POST", "/v1/orgs", as_user=owner, json={"name": "Umbrella"}).body["org_id"]
    refused = api.call(
        "PUT", f"/v1/orgs/{org_id}/plan", as_user=owner, json={"plan_id": "enterprise", "enterprise_terms": TERMS}
    )
    assert (refused.status, refused.code) == (403, "plan_requires_sales")
    assert _contract(api, org_id, TERMS).status == 200
    first = kit.repo.get_org(org_id)
    assert first is not None and first.subscription is not None
    raised = _contract(api, org_id, {**TERMS, "base_minor": 300_000})
    assert raised.status == 200, raised.body
    kit.emulator.wait_for_deliveries()
    sub = kit.client.v1.subscriptions.retrieve(first.subscription.subscription_id)
    assert [item.price.unit_amount for item in sub["items"].data] == [300_000]
    # A subscription to a catalog plan must end before a contract starts.
    other = api.call("POST", "/v1/orgs", as_user=owner, json={"name": "Paying"}).body["org_id"]
    kit.subscribe(api, owner, other, "pro")
    clash = _contract(api, other, TERMS)
    assert (clash.status, clash.code) == (409, "subscription_exists")


def _services() -> Any:
    from functions.api.container import services

    return services()


def _issue_current_invoice(org_id: str) -> Any:
    from shared.credits.periods import period_containing

    services = _services()
    invoices = services.invoices
    org = services.orgs._repo.require_org(org_id)
    period_key = period_containing(org, datetime.now(UTC)).key
    invoice_steps(org_id, period_key)
    invoice = invoices._repo.get(org_id, period_key)
    assert invoice is not None and invoice.status == "issued"
    return invoice


def test_a_contract_signed_again_after_it_ended_is_a_new_paying_subscription(
    api: ApiClient, stack: Any, table: Any
) -> None:
    kit = StripeKit(stack, table)
    org_id = api.call("POST", "/v1/orgs", as_user=new_user(), json={"name": "Again"}).body["org_id"]
    assert _contract(api, org_id, TERMS).status == 200
    first = kit.repo.require_org(org_id).subscription
    assert first is not None
    kit.client.v1.subscriptions.cancel(first.subscription_id)
    kit.emulator.wait_for_deliveries()
    assert kit.repo.require_org(org_id).plan_id == "free"
    # The same terms again: a new subscription that bills, never the old one's replayed answer.
    again = _contract(api, org_id, TERMS)
    assert (again.status, again.body["plan"]["plan_id"]) == (200, "enterprise")
    second = kit.repo.require_org(org_id).subscription
    assert second is not None and second.subscription_id != first.subscription_id
    assert kit.client.v1.subscriptions.retrieve(second.subscription_id).status == "active"


def test_terms_changed_back_and_forth_always_bill_what_the_terms_say(api: ApiClient, stack: Any, table: Any) -> None:
    kit = StripeKit(stack, table)
    org_id = api.call("POST", "/v1/orgs", as_user=new_user(), json={"name": "Flip"}).body["org_id"]
    low = {**TERMS, "base_minor": 100_000}
    for terms in (TERMS, low, TERMS, low):
        assert _contract(api, org_id, terms).status == 200
        org = kit.repo.require_org(org_id)
        assert org.subscription is not None and org.enterprise_terms is not None
        sub = kit.client.v1.subscriptions.retrieve(org.subscription.subscription_id)
        assert [item.price.unit_amount for item in sub["items"].data] == [terms["base_minor"]]
        assert org.enterprise_terms.base_minor == terms["base_minor"]


def test_a_contract_org_cannot_move_itself_to_a_catalog_plan(api: ApiClient, stack: Any, table: Any) -> None:
    owner = new_user()
    org_id = api.call("POST", "/v1/orgs", as_user=owner, json={"name": "Locked"}).body["org_id"]
    assert _contract(api, org_id, TERMS).status == 200
    for path in ("subscription", "subscription/preview"):
        method = "PUT" if path == "subscription" else "POST"
        reply = api.call(method, f"/v1/orgs/{org_id}/{path}", as_user=owner, json={"plan_id": "scale"})
        assert (reply.status, reply.code) == (409, "contract_managed"), reply.body
    assert StripeKit(stack, table).repo.require_org(org_id).plan_id == "enterprise"


def test_a_contract_stripe_refuses_leaves_the_terms_as_they_were(api: ApiClient, stack: Any, table: Any) -> None:
    kit = StripeKit(stack, table)
    org_id = api.call("POST", "/v1/orgs", as_user=new_user(), json={"name": "No card"}).body["org_id"]
    before = org_items(table, org_id)
    refused = _contract(api, org_id, {**TERMS, "collection": "charge_automatically"})  # no card on file
    assert (refused.status, refused.code) == (409, "no_saved_card"), refused.body
    assert org_items(table, org_id) == before  # no terms, no customer: nothing written
    org = kit.repo.require_org(org_id)
    assert (org.enterprise_terms, org.plan_id, org.subscription) == (None, "free", None)
    too_big = _contract(api, org_id, {**TERMS, "base_minor": 100_000_000})  # past Stripe's largest unit_amount
    assert too_big.status == 422


def test_a_contract_whose_subscription_stripe_refuses_writes_nothing(api: ApiClient, stack: Any, table: Any) -> None:
    kit = StripeKit(stack, table)
    org_id = api.call("POST", "/v1/orgs", as_user=new_user(), json={"name": "Refused"}).body["org_id"]
    kit.customer_on_clock(org_id, int(datetime.now(UTC).timestamp()))  # a customer already, as after a Checkout
    before = org_items(table, org_id)
    stack.stripe.fail_next(1, status=400, method="POST", path="/v1/subscriptions")
    refused = _contract(api, org_id, TERMS)
    assert 400 <= refused.status < 500, refused.body
    assert org_items(table, org_id) == before  # the terms stored first were taken back: nothing written


def test_a_new_grace_episode_stays_listed_when_the_sweep_untracks_the_old_one(table: Any) -> None:
    from shared.orgs.repository import OrgRepository

    repo = OrgRepository(table)
    org_id = f"org_grace_{new_user()}"
    repo.track_grace(org_id, "2028-02-29T14:37:00.000Z")
    repo.track_grace(org_id, "2028-03-31T23:59:59.000Z")  # paid, then failed again, while the sweep ran
    repo.untrack_grace(org_id, "2028-02-29T14:37:00.000Z")  # the sweep's read: the old episode
    assert (org_id, "2028-03-31T23:59:59.000Z") in repo.graces_ended("2028-04-01T00:00:00.000Z", 1000)
    repo.untrack_grace(org_id, "2028-03-31T23:59:59.000Z")
    assert all(o != org_id for o, _ in repo.graces_ended("2028-04-01T00:00:00.000Z", 1000))


def test_a_cancelled_contracts_last_period_is_billed_at_the_contracts_prices_once(
    api: ApiClient, stack: Any, table: Any
) -> None:
    from shared.usage.metering import UsageEvent
    from shared.usage.service import SdkEvent
    from tests.integration.credit_kit import credit_kit
    from tests.integration.test_overage_billing import _deliver_again

    kit = StripeKit(stack, table)
    owner = new_user()
    org_id = api.call("POST", "/v1/orgs", as_user=owner, json={"name": "Ending"}).body["org_id"]
    project = api.call("POST", f"/v1/orgs/{org_id}/projects", as_user=owner, json={"name": "P"}).body["project_id"]
    # Given a contract with its own prices (the catalog's Enterprise: credits 1.2, runs 0.4, SDK events 0.0008)
    terms = {**TERMS, "workflow_run_overage_unit_minor": "0.25", "sdk_event_overage_unit_minor": "0.0005"}
    assert _contract(api, org_id, terms).status == 200
    kit.emulator.wait_for_deliveries()
    org = kit.repo.require_org(org_id)
    assert org.subscription is not None and org.stripe_customer_id
    # And usage over its allowances in its period: 60,100 credits (100 over the contract's 60,000), 50,120
    # workflow runs (120 over 50,000) and 50,400,000 SDK events (400,000 over 50M)
    used = credit_kit(stack.env["TABLE_NAME"], stack.env["EVENT_BUS_NAME"], datetime.now(UTC))
    used.credits.reserve(
        org_id=org_id,
        project_id=project,
        template_id="social-content",
        generation_type="image",
        quantity=6_010,
        workflow_run_id="big",
        actor="t",
    )
    used.credits.settle(org_id=org_id, workflow_run_id="big", quantity=None, occurred_at=None, actor="t")
    at = used.clock.at
    runs = [UsageEvent("workflow_runs", org_id, at, n, f"runs-{n}") for n in (25_060, 25_059)]  # + the settlement's
    used.usage.record_events(runs)
    used.usage.ingest_sdk_events("sdk", [SdkEvent(org_id, at, 50_400_000)])
    # When the contract's subscription is cancelled
    kit.client.v1.subscriptions.cancel(org.subscription.subscription_id)
    kit.emulator.wait_for_deliveries()
    assert kit.repo.require_org(org_id).enterprise_terms is None  # the terms ended with it
    # Then the final invoice's lines are at the contract's prices: 100 x 0.9, 120 x 0.25, 400,000 x 0.0005
    billed = _final_items(kit, org.stripe_customer_id)
    assert {(m, q, u, a) for m, q, u, a, _ in billed} == {
        ("credits", 100, Decimal("0.9"), 90),
        ("workflow_runs", 120, Decimal("0.25"), 30),
        ("sdk_events", 400_000, Decimal("0.0005"), 200),
    }
    assert len({inv for *_, inv in billed}) == 1 and None not in {inv for *_, inv in billed}
    # And the deletion delivered twice more, and an older event of the subscription after it, bill nothing more
    sub_id = org.subscription.subscription_id
    for type_ in ("customer.subscription.deleted", "customer.subscription.created", "customer.subscription.deleted"):
        assert _deliver_again(api, stack, type_, sub_id) == "subscription_canceled"
    assert _final_items(kit, org.stripe_customer_id) == billed


def _final_items(kit: StripeKit, customer: str) -> list[tuple[str, int, Decimal, int, str | None]]:
    """Our items of the customer: (metric, quantity, unit price, amount, invoice)."""
    items = kit.client.v1.invoice_items.list(params={"customer": customer, "limit": 100}).auto_paging_iter()
    ours = [(i, i.metadata.to_dict()) for i in items if i.metadata and i.metadata.to_dict().get("billing_key")]
    return sorted(
        (m["metric"], int(i.quantity), Decimal(str(i.pricing.unit_amount_decimal)), int(i.amount), i.invoice)
        for i, m in ours
    )

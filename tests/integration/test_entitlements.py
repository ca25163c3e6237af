"""Paid features only while paid (issue 14): the plan is what Stripe says, a dunning policy with a grace
period, and nothing recorded lost. Service-level where time must move (grace expiry: a clock the test
moves), HTTP where a request is the subject (creation, plan changes)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.auth import Caller
from shared.catalog import plan_catalog
from shared.credits.account import InsufficientCreditsError
from shared.errors import ConflictError, InvalidRequestError, PlanLimitError
from shared.orgs.entitlement import Standing
from shared.orgs.models import BillingMode, Role
from tests.helpers import ApiClient, new_user, org_items, user_org_count
from tests.integration.wallet_kit import WalletKit, agency_org, fund, wallet_kit
from tests.paid import set_status

pytestmark = pytest.mark.integration
GRACE = timedelta(days=plan_catalog().dunning.grace_days)
# A renewal at an odd time of day, in a leap year's February.
RENEWAL = datetime(2028, 2, 29, 14, 37, 12, tzinfo=UTC)


@pytest.fixture
def kit(stack: Any) -> WalletKit:
    return wallet_kit(stack, RENEWAL)


def _notices(table: Any, org_id: str) -> list[str]:
    """The kinds of the notifications written to the org's outbox, oldest first."""
    items = sorted(
        (i for i in org_items(table, org_id) if i["SK"].startswith("OUTBOX#") and i["kind"] == "notice"),
        key=lambda i: i["created_at"],
    )
    return [json.loads(i["body"])["kind"] for i in items]


def _reserve(kit: WalletKit, org_id: str, project_id: str, run: str, quantity: int = 1) -> int:
    return kit.services.credits.reserve(
        org_id=org_id,
        project_id=project_id,
        template_id="social-content",
        generation_type="slideshow",
        quantity=quantity,
        workflow_run_id=run,
        actor="engine",
    ).credits


def _hold(kit: WalletKit, org_id: str, project_id: str, hold_id: str, amount: int = 1_000) -> None:
    kit.wallet.hold(org_id=org_id, hold_id=hold_id, project_id=project_id, platform="meta", amount_minor=amount)


# ---------------------------------------------------------------------- requests that used to grant a plan
def test_an_org_cannot_be_created_on_a_paid_plan_or_in_agency_mode(api: ApiClient, table: Any) -> None:
    owner = new_user()
    for body, code in (
        ({"plan_id": "scale"}, "subscription_required"),
        ({"plan_id": "pro", "billing_mode": "agency"}, "subscription_required"),
        ({"billing_mode": "agency"}, "agency_mode_not_allowed"),
    ):
        reply = api.call("POST", "/v1/orgs", as_user=owner, json={"name": "Sneaky", **body})
        assert (reply.status, reply.code) == (409, code), reply.body
        assert reply.body["error"]["message"]
    assert user_org_count(table, owner) == 0
    created = api.call("POST", "/v1/orgs", as_user=owner, json={"name": "Honest"})
    assert (created.status, created.body["plan"]["plan_id"], created.body["standing"]) == (201, "free", "free")


def test_a_paid_plan_without_a_subscription_is_409_and_writes_nothing(api: ApiClient, table: Any) -> None:
    owner = new_user()
    org_id = api.call("POST", "/v1/orgs", as_user=owner, json={"name": "Free Co"}).body["org_id"]
    before = org_items(table, org_id)
    for plan_id in ("starter", "pro", "scale"):
        reply = api.call("PUT", f"/v1/orgs/{org_id}/plan", as_user=owner, json={"plan_id": plan_id})
        assert (reply.status, reply.code) == (409, "subscription_required"), reply.body
        assert "subscription/checkout" in reply.body["error"]["message"]
    # Custom terms are Layers sales' (support): a member is refused, whatever the plan named.
    terms = {"base_minor": 1, "included_credits": 10**6, "platform_fee_bps": 0}
    sneaky = api.call(
        "PUT", f"/v1/orgs/{org_id}/plan", as_user=owner, json={"plan_id": "enterprise", "enterprise_terms": terms}
    )
    assert (sneaky.status, sneaky.code) == (403, "plan_requires_sales")
    # Free on Free: nothing to do, and nothing is written.
    assert api.call("PUT", f"/v1/orgs/{org_id}/plan", as_user=owner, json={"plan_id": "free"}).status == 200
    assert org_items(table, org_id) == before
    assert api.call("GET", f"/v1/orgs/{org_id}", as_user=owner).body["plan"]["plan_id"] == "free"


# ---------------------------------------------------------------------- dunning
def test_past_due_keeps_the_plan_for_the_grace_period_then_free_limits_apply(kit: WalletKit, table: Any) -> None:
    org_id, project, owner = agency_org(kit)
    fund(kit, org_id, 50_000, "grace")
    org = kit.org_repo.require_org(org_id)
    # The renewal's payment fails: Stripe says past_due.
    kit.clock.at = RENEWAL + timedelta(hours=1)
    org = set_status(kit.mirror, org, "past_due")
    view = kit.orgs.view(org, None)
    assert view.entitlement.standing is Standing.GRACE and view.plan.plan_id == "pro"
    assert view.entitlement.grace_ends == RENEWAL + timedelta(hours=1) + GRACE
    # Within grace: paid limits, holds, credits.
    kit.orgs.create_project(owner, org_id, name="Second")
    _hold(kit, org_id, project, "h-grace")
    assert _reserve(kit, org_id, project, "r-grace", quantity=40) == 2_000  # past Free's 100
    # A redelivered past_due changes nothing (the grace runs from the first failure).
    kit.clock.at += timedelta(days=2)
    org = set_status(kit.mirror, kit.org_repo.require_org(org_id), "past_due")
    assert kit.orgs.entitlement_of(org).grace_ends == view.entitlement.grace_ends
    # One second past grace: the Free limits, with Stripe still retrying (no webhook).
    kit.clock.at = view.entitlement.grace_ends + timedelta(seconds=1)  # type: ignore[operator]
    with pytest.raises(PlanLimitError) as refused:
        kit.orgs.create_project(owner, org_id, name="Third")
    assert "Free plan allows 1" in refused.value.message
    with pytest.raises(ConflictError) as stopped:
        _hold(kit, org_id, project, "h-after")
    assert stopped.value.code == "subscription_unpaid"
    with pytest.raises(InsufficientCreditsError):
        _reserve(kit, org_id, project, "r-after")  # 2,000 used: past Free's 100 included, no overage
    # The sweeper tells the org once, however often it runs.
    assert kit.services.dunning.sweep() >= 1
    kit.services.dunning.sweep()
    assert _notices(table, org_id) == ["Subscription.GraceStarted", "Subscription.Suspended"]
    # Nothing recorded is lost: the hold placed in grace still settles with its bill.
    assert kit.wallet.release_hold(org_id=org_id, hold_id="h-grace").status == "voided"
    assert kit.org_repo.require_org(org_id).active_project_count == 2  # kept: only new ones are refused


@pytest.mark.parametrize("status", ["unpaid", "paused", "incomplete_expired", "canceled"])
def test_unpaid_paused_or_ended_stops_paid_features_at_once(kit: WalletKit, status: str) -> None:
    org_id, project, owner = agency_org(kit)
    fund(kit, org_id, 20_000, f"stop-{status}")
    org = set_status(kit.mirror, kit.org_repo.require_org(org_id), status)
    granted = kit.orgs.entitlement_of(org)
    assert granted.plan.plan_id == "free" and not granted.paid_features
    with pytest.raises(ConflictError) as stopped:
        _hold(kit, org_id, project, f"h-{status}")
    assert stopped.value.code in ("subscription_unpaid", "wallet_not_available")
    with pytest.raises(PlanLimitError):
        kit.orgs.create_project(owner, org_id, name="More")
    with pytest.raises(PlanLimitError) as seats:
        kit.orgs.add_member(owner, org_id, user_id=new_user(), email=None, role=Role.MEMBER)
    assert seats.value.code == "seat_limit_reached"
    # Leaving agency mode is allowed; coming back needs a paying plan.
    kit.orgs.update_org(owner, org_id, name=None, billing_mode=BillingMode.BYO, currency=None)
    with pytest.raises(PlanLimitError):
        kit.orgs.update_org(owner, org_id, name=None, billing_mode=BillingMode.AGENCY, currency=None)


def test_paying_restores_everything_and_says_so(kit: WalletKit, table: Any) -> None:
    org_id, project, owner = agency_org(kit)
    fund(kit, org_id, 30_000, "restore")
    org = set_status(kit.mirror, kit.org_repo.require_org(org_id), "unpaid")
    with pytest.raises(ConflictError):
        _hold(kit, org_id, project, "h-unpaid")
    kit.clock.at += timedelta(days=3)
    org = set_status(kit.mirror, org, "active")
    assert kit.orgs.entitlement_of(org).standing is Standing.PAID
    _hold(kit, org_id, project, "h-paid")
    assert _reserve(kit, org_id, project, "r-paid", quantity=10) == 500
    kit.orgs.create_project(owner, org_id, name="Back")
    assert _notices(table, org_id) == ["Subscription.Suspended", "Subscription.Restored"]
    # A redelivered `active` tells nothing again.
    set_status(kit.mirror, kit.org_repo.require_org(org_id), "active")
    assert _notices(table, org_id) == ["Subscription.Suspended", "Subscription.Restored"]


@pytest.mark.parametrize(
    ("status", "told"),
    [
        ("past_due", "Subscription.GraceStarted"),
        ("unpaid", "Subscription.Suspended"),
        ("canceled", "Subscription.Ended"),
    ],
)
def test_a_standing_change_is_told_though_the_webhook_was_killed_right_after_its_write(
    kit: WalletKit, table: Any, status: str, told: str
) -> None:
    """A Lambda killed right after the subscription's new state was written, then Stripe's redelivery: the
    redelivered webhook finds the standing unchanged, so the change is told in the state's own write (once)."""
    org_id, _, _ = agency_org(kit)
    kit.clock.at = RENEWAL + timedelta(hours=2, minutes=17, seconds=9)
    events, written = kit.mirror._repo._table.meta.client.meta.events, []  # the repository's own client

    def note(params: dict[str, Any], **_: Any) -> None:  # the request that writes the subscription's state
        written.append(f'"{status}"'.encode() in params["body"])

    def killed(**_: Any) -> None:
        if written and written[-1]:
            written.clear()
            raise RuntimeError("the Lambda was killed here, after the state's write")

    hooks = [
        (f"{when}.dynamodb.{op}", hook)
        for op in ("UpdateItem", "TransactWriteItems")
        for when, hook in (("before-call", note), ("after-call", killed))
    ]
    for name, hook in hooks:
        events.register(name, hook)
    try:
        with pytest.raises(RuntimeError):
            set_status(kit.mirror, kit.org_repo.require_org(org_id), status)
    finally:
        for name, hook in hooks:
            events.unregister(name, hook)
    assert kit.org_repo.require_org(org_id).subscription.status.value == status  # written, then killed
    for _ in range(2):  # redelivered (and once more)
        kit.clock.at += timedelta(seconds=41)
        set_status(kit.mirror, kit.org_repo.require_org(org_id), status)
    assert _notices(table, org_id) == [told]
    events = [i for i in org_items(table, org_id) if i["SK"].startswith("OUTBOX#") and i["kind"] == "event"]
    assert [json.loads(e["body"])["detail_type"] for e in events] == [told]
    assert json.loads(events[0]["body"])["detail"]["agency_spend"] == ("allowed" if status == "past_due" else "stopped")


def test_a_standing_change_told_before_its_state_was_written_is_not_told_again(kit: WalletKit, table: Any) -> None:
    """The same change already told (the sweeper at the grace's end, a concurrent webhook's write) when this
    webhook writes the state: the state is written, the change told once."""
    from shared.outbox import outbox_puts

    org_id, _, _ = agency_org(kit)
    kit.clock.at = RENEWAL + timedelta(hours=5, minutes=2, seconds=53)
    repo, real = kit.mirror._repo, kit.mirror._repo.apply_subscription

    def told_first(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("told") is not None:
            announcement, at = kwargs["told"]
            puts = outbox_puts(table.name, org_id, announcement.cause, announcement.messages, at)
            table.meta.client.transact_write_items(TransactItems=puts)
        return real(*args, **kwargs)

    repo.apply_subscription = told_first  # type: ignore[method-assign]
    try:
        org = set_status(kit.mirror, kit.org_repo.require_org(org_id), "unpaid")
    finally:
        repo.apply_subscription = real  # type: ignore[method-assign]
    assert org.subscription is not None and org.subscription.status.value == "unpaid"
    assert _notices(table, org_id) == ["Subscription.Suspended"]


def test_a_suspended_agency_wallet_takes_only_what_it_owes(kit: WalletKit) -> None:
    from shared.wallet.service import Bill

    org_id, project, owner = agency_org(kit)
    fund(kit, org_id, 1_000, "owes")
    set_status(kit.mirror, kit.org_repo.require_org(org_id), "unpaid")
    # Spend already committed on the platform still settles (the wallet may go below zero).
    kit.wallet.record_bill(
        Bill(
            org_id=org_id,
            platform="meta",
            bill_id="b-late",
            project_id=project,
            amount_minor=3_000,
            currency="USD",
            billed_on=RENEWAL.date(),
            hold_id=None,
            actor="meta",
        )
    )
    with pytest.raises(InvalidRequestError) as too_much:
        kit.wallet.top_up(owner, org_id, amount_minor=50_000, method="card", idempotency_key="k1", return_url=None)
    assert too_much.value.code == "amount_exceeds_deficit"
    assert too_much.value.details["deficit_minor"] == 3_000 + 150 - 1_000  # the spend and its 5 % fee


def test_free_is_a_cancellation_at_the_end_of_the_paid_period(api: ApiClient, stack: Any, table: Any) -> None:
    from tests.integration.stripe_kit import DAY, PERIOD_START, StripeKit

    stripe_kit = StripeKit(stack, table)
    owner = new_user()
    org_id = api.call("POST", "/v1/orgs", as_user=owner, json={"name": "Leaving"}).body["org_id"]
    clock, _ = stripe_kit.subscribe(api, owner, org_id, "pro")
    assert api.call("PATCH", f"/v1/orgs/{org_id}", as_user=owner, json={"billing_mode": "agency"}).status == 200
    # Asking for Free keeps what was paid for until the period ends.
    reply = api.call("PUT", f"/v1/orgs/{org_id}/plan", as_user=owner, json={"plan_id": "free"})
    assert (reply.status, reply.body["plan"]["plan_id"], reply.body["standing"]) == (200, "pro", "paid")
    sub = api.call("GET", f"/v1/orgs/{org_id}/subscription", as_user=owner).body
    assert (sub["status"], sub["cancel_at_period_end"]) == ("active", True)
    again = api.call("PUT", f"/v1/orgs/{org_id}/plan", as_user=owner, json={"plan_id": "free"})
    assert again.status == 200  # asked twice: one cancellation
    # The period ends: Stripe ends the subscription, and the org is on Free (agency spend ended with it).
    stripe_kit.advance(clock, PERIOD_START + 30 * DAY + 60)
    org = api.call("GET", f"/v1/orgs/{org_id}", as_user=owner).body
    assert (org["plan"]["plan_id"], org["billing_mode"], org["standing"]) == ("free", "byo", "free")
    assert api.call("GET", f"/v1/orgs/{org_id}/subscription", as_user=owner).body["status"] == "canceled"


def test_credits_reserved_while_paid_settle_against_included_after_a_suspension(kit: WalletKit) -> None:
    org_id, project, _ = agency_org(kit)
    assert _reserve(kit, org_id, project, "r-before", quantity=40) == 2_000  # of Pro's 3,000
    org = set_status(kit.mirror, kit.org_repo.require_org(org_id), "unpaid")
    settled = kit.services.credits.settle(
        org_id=org_id, workflow_run_id="r-before", quantity=None, occurred_at=None, actor="engine"
    )
    assert (settled.split.included, settled.split.overage) == (2_000, 0)
    set_status(kit.mirror, org, "active")
    account = kit.services.credits.summary_account(kit.org_repo.require_org(org_id))
    assert (account.included_used, account.overage, account.included_remaining) == (2_000, 0, 1_000)


def test_a_subscription_written_from_a_stale_read_never_leaves_free_in_agency_mode(kit: WalletKit) -> None:
    from tests.paid import stripe_subscription

    org_id, _, owner = agency_org(kit)
    kit.orgs.update_org(owner, org_id, name=None, billing_mode=BillingMode.BYO, currency=None)
    stale = kit.org_repo.require_org(org_id)  # read by the mirror (BYO) ...
    kit.orgs.update_org(owner, org_id, name=None, billing_mode=BillingMode.AGENCY, currency=None)  # ... then this
    reads = iter([stale])
    real_get = kit.mirror._repo.get_org
    kit.mirror._repo.get_org = lambda oid: next(reads, None) or real_get(oid)  # type: ignore[method-assign]
    try:
        sub = stripe_subscription(
            org_id, "pro", start=RENEWAL, status="canceled", subscription_id=stale.subscription.subscription_id
        )  # type: ignore[union-attr]
        applied = kit.mirror.apply(org_id, sub, kit.mirror.now_ms())
    finally:
        kit.mirror._repo.get_org = real_get  # type: ignore[method-assign]
    assert applied is not None and (applied.plan_id, applied.billing_mode) == ("free", BillingMode.BYO)


def test_the_currency_is_locked_in_the_write_too(kit: WalletKit) -> None:
    owner = Caller(new_user(), None, frozenset())
    org_id = kit.orgs.create_org(
        owner, name="Race", billing_mode=BillingMode.BYO, currency="USD", plan_id="free"
    ).org.org_id
    kit.org_repo.link_stripe_customer(org_id, "cus_race")  # a Checkout linked a customer after the check
    with pytest.raises(ConflictError) as locked:
        kit.org_repo.update_org(org_id, {"currency": "EUR"}, expected={})
    assert locked.value.code == "currency_locked"
    assert kit.org_repo.require_org(org_id).currency == "USD"


def test_an_upgrade_is_had_only_by_paying_for_it(api: ApiClient, stack: Any, table: Any) -> None:
    from tests.integration.stripe_kit import StripeKit

    stripe_kit = StripeKit(stack, table)
    owner = new_user()
    org_id = api.call("POST", "/v1/orgs", as_user=owner, json={"name": "Upgrader"}).body["org_id"]
    _, customer = stripe_kit.subscribe(api, owner, org_id, "pro")
    bad = stripe_kit.client.v1.payment_methods.attach("pm_card_chargeCustomerFail", params={"customer": customer})
    stripe_kit.client.v1.customers.update(customer, params={"invoice_settings": {"default_payment_method": bad.id}})
    sub_id = stripe_kit.repo.require_org(org_id).subscription.subscription_id  # type: ignore[union-attr]
    stripe_kit.client.v1.subscriptions.update(sub_id, params={"default_payment_method": bad.id})
    refused = api.call("PUT", f"/v1/orgs/{org_id}/subscription", as_user=owner, json={"plan_id": "scale"})
    assert refused.status == 402, refused.body
    stripe_kit.emulator.wait_for_deliveries()
    org = api.call("GET", f"/v1/orgs/{org_id}", as_user=owner).body
    assert (org["plan"]["plan_id"], org["standing"]) == ("pro", "paid")
    assert stripe_kit.client.v1.subscriptions.retrieve(sub_id).status == "active"


def test_free_again_after_the_customer_undid_the_cancellation(api: ApiClient, stack: Any, table: Any) -> None:
    from tests.integration.stripe_kit import StripeKit

    stripe_kit = StripeKit(stack, table)
    owner = new_user()
    org_id = api.call("POST", "/v1/orgs", as_user=owner, json={"name": "Undo"}).body["org_id"]
    stripe_kit.subscribe(api, owner, org_id, "pro")
    assert api.call("PUT", f"/v1/orgs/{org_id}/plan", as_user=owner, json={"plan_id": "free"}).status == 200
    sub_id = stripe_kit.repo.require_org(org_id).subscription.subscription_id  # type: ignore[union-attr]
    stripe_kit.client.v1.subscriptions.update(sub_id, params={"cancel_at_period_end": False})  # the portal
    stripe_kit.emulator.wait_for_deliveries()
    assert api.call("PUT", f"/v1/orgs/{org_id}/plan", as_user=owner, json={"plan_id": "free"}).status == 200
    assert stripe_kit.client.v1.subscriptions.retrieve(sub_id).cancel_at_period_end is True

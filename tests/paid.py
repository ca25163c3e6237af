"""Paid orgs for tests, made the way production makes them: an org starts on Free, and a paid plan is
what Stripe's subscription says. Two ways:
- `subscribe_over_http`: Checkout through the API and the Stripe emulator, completed with a good card
  (the webhook mirrors the subscription): for tests that speak HTTP;
- `mirror_subscription`: the webhook mirror given the subscription Stripe would send (no Stripe call): for
  service-level tests (kits), where a subscription is a precondition, not the subject."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from shared.billing.prices import PriceRef
from shared.billing.subscriptions import SubscriptionMirror
from shared.catalog import plan_catalog
from shared.credits.periods import _add_months
from shared.orgs.models import Org
from shared.stripe_gateway import Subscription, SubscriptionItem
from tests.helpers import ApiClient


def stripe_subscription(
    org_id: str,
    plan_id: str,
    *,
    start: datetime,
    status: str = "active",
    subscription_id: str | None = None,
    currency: str = "USD",
) -> Subscription:
    """A subscription as Stripe would send it for `plan_id` (its base price's lookup key names the plan)."""
    anchor = start.astimezone(UTC).replace(microsecond=0)
    ref = PriceRef(plan_catalog().catalog_version, plan_id, currency, "base")
    return Subscription(
        subscription_id=subscription_id or f"sub_{uuid.uuid4().hex[:14]}",
        customer_id=f"cus_{org_id}",
        status=status,
        items=(SubscriptionItem(f"si_{uuid.uuid4().hex[:10]}", "price_test", ref.lookup_key, 1),),
        current_period_start=int(anchor.timestamp()),
        current_period_end=int(_add_months(anchor, 1).timestamp()),
        billing_cycle_anchor=int(anchor.timestamp()),
        cancel_at_period_end=False,
        metadata={"org_id": org_id, "plan_id": plan_id},
        latest_invoice_id=None,
    )


def mirror_subscription(
    mirror: SubscriptionMirror, org_id: str, plan_id: str, *, start: datetime, status: str = "active"
) -> Org:
    """What the webhook does when Stripe says the org's subscription to `plan_id` is `status`."""
    sub = stripe_subscription(org_id, plan_id, start=start, status=status)
    applied = mirror.apply(org_id, sub, mirror.now_ms())
    assert applied is not None and applied.plan_id == plan_id, applied
    return applied


def set_status(mirror: SubscriptionMirror, org: Org, status: str) -> Org:
    """The org's mirrored subscription moved to `status` in Stripe (a failed renewal, a pause...)."""
    sub = org.subscription
    assert sub is not None
    start = sub.current_period_start
    again = stripe_subscription(
        org.org_id, sub.plan_id, start=start, status=status, subscription_id=sub.subscription_id, currency=org.currency
    )
    applied = mirror.apply(org.org_id, again, mirror.now_ms())
    assert applied is not None
    return applied


def subscribe_over_http(api: ApiClient, stack: Any, table: Any, owner: str, org_id: str, plan_id: str = "pro") -> None:
    """Checkout through the API (its customer made by the API), paid with a good card; the webhooks it
    causes delivered."""
    from tests.integration.stripe_kit import StripeKit

    kit = StripeKit(stack, table)
    reply = api.call(
        "POST",
        f"/v1/orgs/{org_id}/subscription/checkout",
        as_user=owner,
        json={
            "plan_id": plan_id,
            "success_url": "https://app.layers.test/ok",
            "cancel_url": "https://app.layers.test/no",
        },
    )
    assert reply.status == 201, reply.body
    done = kit.complete_checkout(reply.body["checkout_session_id"])
    assert done.status_code == 200, done.text


def paid_org_over_http(
    api: ApiClient,
    stack: Any,
    table: Any,
    owner: str,
    *,
    name: str = "Acme",
    plan_id: str = "pro",
    billing_mode: str = "agency",
    currency: str = "USD",
) -> str:
    """An org created on Free, subscribed to `plan_id` through Checkout, then switched to `billing_mode`."""
    created = api.call("POST", "/v1/orgs", as_user=owner, json={"name": name, "currency": currency})
    assert created.status == 201, created.body
    org_id = str(created.body["org_id"])
    subscribe_over_http(api, stack, table, owner, org_id, plan_id)
    got = api.call("GET", f"/v1/orgs/{org_id}", as_user=owner).body
    assert got["plan"]["plan_id"] == plan_id and got["standing"] == "paid", got
    if billing_mode != "byo":
        switched = api.call("PATCH", f"/v1/orgs/{org_id}", as_user=owner, json={"billing_mode": billing_mode})
        assert switched.status == 200, switched.body
    return org_id

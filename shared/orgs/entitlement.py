"""What an org may use now: the one rule that turns its Stripe subscription into limits.

A paid plan is what Stripe says the org pays for. The org's stored `plan_id` is the plan of its
subscription (written only by the webhook mirror, or by a support contract that creates the
subscription); the limits that apply - seats, projects, included credits, overage, agency mode - are
that plan's only while the subscription is paying, or within the catalog's grace period after a
failed payment (`past_due`, while Stripe retries). Otherwise the Free plan's limits apply; nothing
recorded is taken away, and paying restores the plan (see README "Entitlements and dunning")."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from shared.catalog import Plan, PlanCatalog
from shared.orgs.models import Org, SubscriptionStatus


class Standing(StrEnum):
    FREE = "free"  # no paying subscription: never had one, it ended, or its first payment is pending
    PAID = "paid"  # active or trialing
    GRACE = "grace"  # past_due within the grace period: paid features kept while Stripe retries
    SUSPENDED = "suspended"  # unpaid, paused, or past_due past the grace period: Free limits until it pays


_PAYING = (SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING)
_DUNNING = (SubscriptionStatus.PAST_DUE, SubscriptionStatus.UNPAID, SubscriptionStatus.PAUSED)


@dataclass(frozen=True)
class Entitlement:
    standing: Standing
    plan: Plan  # the limits that apply now
    subscribed: Plan  # the plan the org is billed for (its subscription's), whatever its standing
    grace_ends: datetime | None  # while in grace, and after (when the Free limits began)

    @property
    def paid_features(self) -> bool:
        return self.standing in (Standing.PAID, Standing.GRACE)


def in_dunning(status: SubscriptionStatus) -> bool:
    """A subscription Stripe is still trying to collect (or paused): it can be paid and restored."""
    return status in _DUNNING


def entitlement(org: Org, catalog: PlanCatalog, now: datetime) -> Entitlement:
    """The org's standing and the plan whose limits apply at `now`."""
    subscribed = org.effective_plan(catalog.get(org.plan_id))
    free = catalog.free
    sub = org.subscription
    if sub is None or subscribed.plan_id == free.plan_id:
        return Entitlement(Standing.FREE, free, subscribed, None)
    if sub.status in _PAYING:
        return Entitlement(Standing.PAID, subscribed, subscribed, None)
    if not in_dunning(sub.status):  # incomplete (never paid), incomplete_expired, canceled
        return Entitlement(Standing.FREE, free, subscribed, None)
    since = sub.dunning_since or sub.current_period_start
    grace_ends = since + timedelta(days=catalog.dunning.grace_days)
    if sub.status is SubscriptionStatus.PAST_DUE and now < grace_ends:
        return Entitlement(Standing.GRACE, subscribed, subscribed, grace_ends)
    return Entitlement(Standing.SUSPENDED, free, subscribed, min(grace_ends, now))

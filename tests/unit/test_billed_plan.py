"""The one rule of which plan a period's usage is billed at (OrgService.billed_plan): the subscription's for the
periods it covers (also once it was cancelled), Free for the Free time before Checkout and after a cancelled
subscription ended; and where an org's usage may begin (periods.org_began)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from shared.catalog import plan_catalog
from shared.credits.periods import Period, org_began, period_containing
from shared.orgs.models import BillingMode, Org, SubscriptionState, SubscriptionStatus
from shared.orgs.service import OrgService

rng = random.Random()


class _Clock:
    def now(self) -> datetime:
        return datetime(2027, 6, 1, tzinfo=UTC)


def _org(born: datetime, anchor: datetime | None, status: SubscriptionStatus = SubscriptionStatus.ACTIVE) -> Org:
    ended = status is SubscriptionStatus.CANCELED
    sub = None
    if anchor is not None:
        sub = SubscriptionState(
            subscription_id="sub_1",
            status=status,
            plan_id="pro",
            extra_seats=0,
            current_period_start=anchor + timedelta(days=31),
            current_period_end=anchor + timedelta(days=59),  # (February: the anchor is in January)
            billing_anchor=anchor,
            cancel_at_period_end=False,
        )
    return Org(
        org_id="o1",
        name="Acme",
        billing_mode=BillingMode.BYO,
        currency="USD",
        plan_id="free" if ended or sub is None else "pro",
        catalog_version=plan_catalog().catalog_version,
        member_count=1,
        owner_count=1,
        active_project_count=0,
        created_by="u",
        created_at=born,
        updated_at=born,
        subscription=sub,
    )


def _service() -> OrgService:
    return OrgService(cast(Any, None), plan_catalog(), _Clock())


def _born() -> datetime:
    return datetime(2027, 1, 1, tzinfo=UTC) + timedelta(days=rng.randrange(0, 8), microseconds=rng.randrange(10**6))


def test_free_time_before_checkout_is_billed_at_free_and_the_subscriptions_periods_at_its_plan() -> None:
    born = _born()
    anchor = (born + timedelta(days=rng.randrange(0, 4), seconds=rng.randrange(1, 86_400))).replace(microsecond=0)
    on_free, paid = _org(born, None), _org(born, anchor)
    service = _service()
    counted_on_free = period_containing(on_free, born)  # anchored on the creation: counted before Checkout
    before_checkout = period_containing(paid, anchor - timedelta(seconds=1))  # the period ending at Checkout
    assert before_checkout.end == anchor
    for period in (counted_on_free, before_checkout):
        assert service.billed_plan(paid, period).plan_id == "free"
        assert service.billed_plan(on_free, period).plan_id == "free"
    for months in range(3):
        period = period_containing(paid, anchor + timedelta(days=31 * months))
        assert service.billed_plan(paid, period).plan_id == "pro"


def test_a_cancelled_subscriptions_periods_stay_at_its_plan_and_the_time_after_it_is_free() -> None:
    born = _born()
    anchor = (born + timedelta(hours=rng.randrange(1, 72))).replace(microsecond=0)
    cancelled = _org(born, anchor, SubscriptionStatus.CANCELED)
    sub = cancelled.subscription
    assert sub is not None
    service = _service()
    last = period_containing(cancelled, sub.current_period_end - timedelta(seconds=1))
    assert service.billed_plan(cancelled, last).plan_id == "pro"  # as bill_final billed it
    assert service.billed_plan(cancelled, period_containing(cancelled, anchor)).plan_id == "pro"
    after = period_containing(cancelled, sub.current_period_end)
    assert service.billed_plan(cancelled, after).plan_id == "free"
    assert service.billed_plan(cancelled, Period(anchor - timedelta(days=31), anchor)).plan_id == "free"


def test_an_orgs_usage_begins_at_its_creation_to_the_second_or_a_subscription_dated_before_it() -> None:
    born = _born()
    assert org_began(_org(born, None)) == born.replace(microsecond=0)
    later = (born + timedelta(days=2)).replace(microsecond=0)
    assert org_began(_org(born, later)) == born.replace(microsecond=0)
    earlier = (born - timedelta(days=40)).replace(microsecond=0)
    assert org_began(_org(born, earlier)) == earlier


def test_a_subscription_ended_in_the_second_its_period_began_is_billed_for_that_period() -> None:
    """bill_final's period: the one the subscription ran its last second in - or, cancelled in the very second
    its period began (whole seconds, a cancel right after the contract was made), that period, not the one
    before it (found in CI: the contract's final overage billed nothing)."""
    from shared.usage.billing import last_period

    org = _org(_born(), datetime(2027, 1, 9, 13, 7, 21, tzinfo=UTC))
    assert org.subscription is not None
    start, end = org.subscription.current_period_start, org.subscription.current_period_end
    for ended in (start, start + timedelta(seconds=1), start + timedelta(days=rng.randrange(1, 20)), end):
        assert last_period(org, ended).start == start, ended
    assert last_period(org, start - timedelta(seconds=1)).end == start  # ended before it: the one before

"""SeatSync, as the outbox publisher calls it for a seat change's task (pure: fakes, no stack)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from shared.billing.subscriptions import SeatSync
from shared.catalog import plan_catalog
from shared.orgs.models import BillingMode, Org, SubscriptionState, SubscriptionStatus

NOW = datetime(2026, 9, 11, tzinfo=UTC)


def _org(seat_revision: int) -> Org:
    subscription = SubscriptionState(
        subscription_id="sub_1",
        status=SubscriptionStatus.ACTIVE,
        plan_id="pro",
        extra_seats=0,
        current_period_start=NOW,
        current_period_end=NOW,
        billing_anchor=NOW,
        cancel_at_period_end=False,
    )
    return Org(
        org_id="o1",
        name="Acme",
        billing_mode=BillingMode.BYO,
        currency="USD",
        plan_id="pro",
        catalog_version=plan_catalog().catalog_version,
        member_count=4,
        owner_count=1,
        active_project_count=0,
        created_by="u",
        created_at=NOW,
        updated_at=NOW,
        subscription=subscription,
        seat_revision=seat_revision,
    )


class _Repo:
    def __init__(self, org: Org) -> None:
        self.org = org

    def get_org(self, org_id: str) -> Org | None:
        return self.org if org_id == self.org.org_id else None


class _Asked(Exception):
    """The sync went to Stripe."""


class _Stripe:
    def get_subscription(self, subscription_id: str) -> Any:
        raise _Asked(subscription_id)


class _Mirror:
    def now_ms(self) -> int:
        return 0


def _sync(org: Org) -> SeatSync:
    return SeatSync(_Repo(org), _Stripe(), None, plan_catalog(), _Mirror())  # type: ignore[arg-type]


def test_a_task_older_than_the_orgs_seat_revision_is_left_to_the_newer_ones() -> None:
    _sync(_org(seat_revision=5)).seats_changed("o1", revision=4)  # no Stripe call: the task of 5 syncs


@pytest.mark.parametrize("revision", [5, None])
def test_the_latest_task_or_a_webhook_syncs_the_org_as_it_is_now(revision: int | None) -> None:
    with pytest.raises(_Asked):
        _sync(_org(seat_revision=5)).seats_changed("o1", revision=revision)

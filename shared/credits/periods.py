"""Billing periods. Stripe owns them: a period runs from the subscription's anchor, monthly, the
anchor's day-of-month clamped to the month's last day (as Stripe does). Orgs without a Stripe
subscription (Free) get the same monthly periods anchored on the day the org was created.

Usage is counted in the period its timestamp falls in, so a new period starts at 0 with no job and
no race: its counters simply have another key."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime

from shared.orgs.models import Org


def period_key(start: datetime) -> str:
    """The key of the period that starts at `start`: its UTC start to the second (Stripe's periods)."""
    return start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime

    @property
    def key(self) -> str:
        return period_key(self.start)


def _add_months(anchor: datetime, months: int) -> datetime:
    total = anchor.year * 12 + anchor.month - 1 + months
    year, month = divmod(total, 12)
    day = min(anchor.day, calendar.monthrange(year, month + 1)[1])
    return anchor.replace(year=year, month=month + 1, day=day)


def period_containing(org: Org, at: datetime) -> Period:
    """The org's billing period that contains `at` (an instant with its offset: months are counted in UTC,
    as Stripe's periods are)."""
    if at.tzinfo is None:
        raise ValueError("period_containing needs an aware datetime: a naive one is ambiguous")
    at = at.astimezone(UTC)
    anchor = org.subscription.billing_anchor if org.subscription else org.created_at
    anchor = anchor.astimezone(UTC).replace(microsecond=0)  # periods start on whole seconds, as Stripe's do
    # Months between anchor and `at`, then correct by one either way for day/time within the month.
    months = (at.year - anchor.year) * 12 + (at.month - anchor.month)
    start = _add_months(anchor, months)
    if start > at:
        months -= 1
    elif _add_months(anchor, months + 1) <= at:
        months += 1
    return Period(_add_months(anchor, months), _add_months(anchor, months + 1))


def org_began(org: Org) -> datetime:
    """The first instant of the org's first period: its creation, to the second (periods start on whole
    seconds), or its subscription's anchor when that is earlier (a subscription dated back). Usage before
    it has no period of the org."""
    created = org.created_at.astimezone(UTC).replace(microsecond=0)
    return min(created, org.subscription.billing_anchor) if org.subscription else created

"""Usage of a Free period is counted and shown, never owed (README "Usage of a Free period is counted, shown,
never owed"): Free sells no overage, so no renewal bills it and the reconciler expects nothing billed for it -
also when a late event dated before Checkout arrives after it (the Free time before Checkout belongs to the
period ending there, which no subscription covers). Usage dated before the org was created is refused,
`usage_before_org`: the whole request on the route, that event alone on the EventBridge path.

Orgs are created on Free at a random time of day in the services' clock, then subscribe through Checkout on
a Stripe test clock days later; the renewal runs on that clock and its webhooks reach the stack's handler."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.auth import Caller
from shared.credits.periods import Period, period_containing
from shared.errors import InvalidRequestError
from shared.orgs.models import Org
from shared.usage.metering import UsageEvent
from shared.usage.service import GB
from tests.helpers import ApiClient, new_user, org_items
from tests.integration.credit_kit import CreditKit, credit_kit
from tests.integration.reconcile_kit import reconcile_kit
from tests.integration.stripe_kit import StripeKit
from tests.integration.test_usage_metering import _Context, _random_time, handler_path

pytestmark = pytest.mark.integration

rng = random.Random()


def _born() -> datetime:
    """A creation instant in the summer of 2026 at a random second of the day."""
    return datetime(2026, 7, 1, tzinfo=UTC) + timedelta(days=rng.randrange(0, 60), seconds=rng.randrange(86_400))


def _free_org(kit: CreditKit, born: datetime) -> tuple[str, str]:
    """An org created on Free at `born` (the services' clock). Returns (owner, org id)."""
    owner = new_user()
    kit.clock.at = born
    view = kit.orgs.create_org(
        Caller(owner, None, frozenset()), name="Free first", billing_mode="byo", currency="USD", plan_id="free"
    )
    return owner, view.org.org_id


def _runs(org_id: str, at: datetime, quantity: int, event_id: str) -> UsageEvent:
    return UsageEvent("workflow_runs", org_id, at, quantity, event_id)


def _subscribed(kit: CreditKit, api: ApiClient, stack: Any, table: Any) -> tuple[StripeKit, str, str, Org, Period]:
    """An org on Free that used 2,400 workflow runs (Free includes 50; Pro 2,000) before its Checkout to Pro,
    days later at a random time of day. Returns (stripe kit, org, customer, org, the first paid period)."""
    stripe_kit = StripeKit(stack, table)
    born = _born()
    owner, org_id = _free_org(kit, born)
    checkout = born + timedelta(days=rng.randrange(2, 9), seconds=rng.randrange(86_400))
    kit.clock.at = _random_time(born, checkout)
    kit.usage.record_events([_runs(org_id, _random_time(born, kit.clock.at), 2_400, "free-runs")])
    clock_id, customer = stripe_kit.subscribe(api, owner, org_id, "pro", start=int(checkout.timestamp()))
    org = kit.org_repo.require_org(org_id)
    assert org.subscription is not None and org.plan_id == "pro"
    first = period_containing(org, org.subscription.billing_anchor)
    return stripe_kit, clock_id, customer, org, first


def _renew(stripe_kit: StripeKit, clock_id: str, first: Period) -> None:
    """The first renewal on the test clock: its draft (our invoice.created handler adds the overage), then
    finalized and paid an hour later."""
    stripe_kit.advance(clock_id, int(first.end.timestamp()) + 60)
    stripe_kit.advance(clock_id, int(first.end.timestamp()) + 3600 + 120)


def _billed(stripe_kit: StripeKit, customer: str) -> dict[str, int]:
    """Our overage items of the customer, wherever they are: billing_key -> amount."""
    items = stripe_kit.client.v1.invoice_items.list(params={"customer": customer, "limit": 100}).data
    found = {str(i.metadata.to_dict().get("billing_key")): i.amount for i in items}
    return {key: amount for key, amount in found.items() if key != "None"}


def test_usage_over_a_free_periods_allowance_is_counted_shown_and_never_owed(
    api: ApiClient, stack: Any, table: Any
) -> None:
    kit = credit_kit(stack.env["TABLE_NAME"], stack.env["EVENT_BUS_NAME"], _born())
    # Given an org that used 2,400 runs on Free before subscribing to Pro, and 2,100 in its first paid period
    stripe_kit, clock_id, customer, org, first = _subscribed(kit, api, stack, table)
    free = period_containing(org.model_copy(update={"subscription": None}), org.created_at)  # as counted on Free
    kit.clock.at = _random_time(first.start, first.end - timedelta(hours=1))
    kit.usage.record_events([_runs(org.org_id, kit.clock.at, 2_100, "paid-runs")])
    # When the first period renews
    _renew(stripe_kit, clock_id, first)
    # Then the renewal bills the paid period's 100 runs over Pro's 2,000 (x 0.8 = 80), nothing of Free's
    assert _billed(stripe_kit, customer) == {f"overage:{org.org_id}:{first.key}:workflow_runs": 80}
    # And the Free period shows what was used over its allowance, with no price: nothing owed
    (runs, *_) = kit.usage.allowances_of(kit.org_repo.require_org(org.org_id), free)
    assert (runs.metric, runs.used, runs.included, runs.overage, runs.unit_price_minor) == (
        "workflow_runs",
        2_400,
        50,
        2_350,
        None,
    )
    # And the reconciler, over the days of Checkout and the renewal, finds nothing
    recon = reconcile_kit(stack, table, first.end + timedelta(days=1, hours=rng.randrange(24)))
    report = recon.reconcile(org.org_id, days=45)
    assert report.findings == () and recon.open(org.org_id) == []


def test_a_late_event_dated_before_checkout_is_not_billed_by_the_first_renewal(
    api: ApiClient, stack: Any, table: Any
) -> None:
    kit = credit_kit(stack.env["TABLE_NAME"], stack.env["EVENT_BUS_NAME"], _born())
    stripe_kit, clock_id, customer, org, first = _subscribed(kit, api, stack, table)
    anchor = first.start
    # Given, days after Checkout, a late event of 2,600 runs (600 over even Pro's 2,000) dated on Free before it,
    # and media storage of 70 GB (Pro: 50 included) snapshotted before it
    kit.clock.at = anchor + timedelta(days=rng.randrange(1, 6), seconds=rng.randrange(86_400))
    before_checkout = _random_time(org.created_at, anchor - timedelta(seconds=1))
    metered = kit.usage.record_events([_runs(org.org_id, before_checkout, 2_600, "late-free-runs")])
    assert metered.applied == 1
    kit.usage.record_storage(org.org_id, before_checkout, 70 * GB)
    # It belongs to the period ending at Checkout (Stripe's periods start there), which no subscription covers
    free = period_containing(org, before_checkout)
    assert free.end == anchor
    assert {a.metric: (a.used, a.overage, a.unit_price_minor) for a in kit.usage.allowances_of(org, free)} == {
        "workflow_runs": (2_600, 2_550, None),
        "sdk_events": (0, 0, None),
        "media_storage_gb": (70, 69, None),
    }
    # When the first paid period renews (nothing used in it)
    _renew(stripe_kit, clock_id, first)
    renewal = next(
        i
        for i in stripe_kit.client.v1.invoices.list(params={"customer": customer}).data
        if i.billing_reason == "subscription_cycle"
    )
    # Then the renewal charges Pro's fee alone: no overage of the Free time, now or on a later invoice
    assert (renewal.status, renewal.total) == ("paid", 4_900)
    assert _billed(stripe_kit, customer) == {}
    assert kit.orgs.billed_plan(org, free).plan_id == "free" and kit.orgs.billed_plan(org, first).plan_id == "pro"
    # And the reconciler expects nothing billed for it
    recon = reconcile_kit(stack, table, first.end + timedelta(hours=4 + rng.randrange(20)))
    assert recon.reconcile(org.org_id, days=45).findings == ()


def test_usage_dated_before_the_org_was_created_is_refused_on_both_paths(stack: Any, table: Any) -> None:
    from functions.usage_ingest import handler

    # (the EventBridge handler runs on the real clock: the org is created now)
    kit = credit_kit(stack.env["TABLE_NAME"], stack.env["EVENT_BUS_NAME"], datetime.now(UTC))
    _, org_id = _free_org(kit, datetime.now(UTC))
    born = kit.org_repo.require_org(org_id).created_at.replace(microsecond=0)
    kit.clock.at = datetime.now(UTC)
    unborn = born - timedelta(seconds=rng.randrange(1, 20 * 86_400))  # within the 35-day window
    good = _runs(org_id, _random_time(born, kit.clock.at), 3, "after")
    before = org_items(table, org_id)
    # The route: the whole request is refused (422) and nothing changes
    with pytest.raises(InvalidRequestError) as refused:
        kit.usage.record_events([good, _runs(org_id, unborn, 1, "before")])
    assert refused.value.code == "usage_before_org"  # (422: functions/error_codes.py)
    with pytest.raises(InvalidRequestError) as snapshot:
        kit.usage.record_storage(org_id, unborn, 2 * GB)
    assert snapshot.value.code == "usage_before_org"
    assert org_items(table, org_id) == before
    # The EventBridge path: that event alone is refused, the rest counted
    sample = json.loads(handler_path("UsageIngestFunction").read_text())
    events = [
        {
            "metric": e.metric,
            "org_id": org_id,
            "occurred_at": e.occurred_at.isoformat(),
            "quantity": e.quantity,
            "event_id": e.event_id,
        }
        for e in (good, _runs(org_id, unborn, 1, "before"))
    ]
    answer = handler.lambda_handler({**sample, "detail": {"events": events}}, _Context())
    assert answer["applied"] == 1
    assert [(r["event_id"], r["code"]) for r in answer["refused"]] == [("before", "usage_before_org")]
    org = kit.org_repo.require_org(org_id)
    assert kit.usage.allowances_of(org, period_containing(org, good.occurred_at))[0].used == 3

"""Only ended periods are invoiced (issue 15): Stripe periods end at the time of day of the checkout; the
daily run takes a period once it ended at least the settle window ago, never before, and never again once
its invoice is issued."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.orgs.repository import OrgRepository
from shared.orgs.service import SETTLE_WINDOW
from tests.helpers import new_user

pytestmark = pytest.mark.integration
DAY = datetime(2028, 2, 29, tzinfo=UTC)  # a leap day


@pytest.mark.parametrize(
    "ends_at",
    [
        timedelta(0),
        timedelta(hours=2, minutes=59),
        timedelta(hours=3, minutes=1),
        timedelta(hours=14, minutes=37),
        timedelta(hours=23, minutes=59, seconds=59),
    ],
    ids=["00:00", "02:59", "03:01", "14:37", "23:59:59"],
)
@pytest.mark.parametrize("run_hour", [0, 3, 12, 23], ids=lambda h: f"run {h:02d}:00")
def test_a_period_is_due_only_once_it_ended_and_settled(table: Any, ends_at: timedelta, run_hour: int) -> None:
    from functions.invoice_dispatcher.handler import services

    repo, orgs = OrgRepository(table), services().orgs
    org_id = f"org_due_{new_user()}"
    end = DAY + ends_at
    key = (end - timedelta(days=29)).strftime("%Y-%m-%dT%H:%M:%SZ")
    repo.index_period(org_id, key, end.isoformat().replace("+00:00", "Z"))
    for days_later in range(0, 3):
        now = DAY + timedelta(days=days_later, hours=run_hour)
        due = (org_id, key) in orgs.periods_due(end.date(), now)
        assert due is (now >= end + SETTLE_WINDOW), (now, end)


def test_an_issued_period_leaves_the_index(table: Any) -> None:
    from functions.invoice_dispatcher.handler import services

    repo = OrgRepository(table)
    org_id = f"org_due_{new_user()}"
    repo.index_period(org_id, "2028-01-29T14:37:00Z", "2028-02-29T14:37:00Z")
    later = datetime(2028, 3, 1, 3, tzinfo=UTC)
    assert (org_id, "2028-01-29T14:37:00Z") in services().orgs.periods_due(DAY.date(), later)
    repo.unindex_period(org_id, "2028-01-29T14:37:00Z")
    assert (org_id, "2028-01-29T14:37:00Z") not in services().orgs.periods_due(DAY.date(), later)


def test_an_org_created_then_subscribed_minutes_later_has_one_period_to_invoice(table: Any) -> None:
    from shared.auth import Caller
    from shared.orgs.models import BillingMode
    from tests.integration.credit_kit import credit_kit
    from tests.paid import mirror_subscription

    created = datetime(2028, 1, 31, 23, 52, 41, tzinfo=UTC)  # a month end, an odd time of day
    kit = credit_kit(table.name, "", created, table=table)
    owner = Caller(new_user(), None, frozenset())
    org_id = kit.orgs.create_org(
        owner, name="Late", billing_mode=BillingMode.BYO, currency="USD", plan_id="free"
    ).org.org_id
    kit.clock.at = created + timedelta(minutes=7)
    mirror_subscription(kit.mirror, org_id, "pro", start=kit.clock.at)
    listed = table.query(
        KeyConditionExpression="PK = :pk AND begins_with(SK, :p)",
        ExpressionAttributeValues={":pk": f"ORG#{org_id}", ":p": "PERIODIDX#"},
    )["Items"]
    listed = [i for i in listed if "GSI2PK" in i]  # on the run's index (the other stays, unlisted)
    assert [i["period_key"] for i in listed] == ["2028-01-31T23:59:41Z"]  # the subscription's period only
    assert listed[0]["period_end"] == "2028-02-29T23:59:41Z"  # Stripe clamps to the month's last day


@pytest.mark.parametrize("time_of_day", ["02:59:59", "14:37:21", "23:59:59"])
def test_each_invoice_holds_its_period_renewal_whatever_the_time_of_day(
    api: Any, stack: Any, table: Any, time_of_day: str
) -> None:
    from shared.credits.periods import period_containing
    from shared.invoices.repository import InvoiceRepository
    from tests.helpers import invoice_steps
    from tests.integration.stripe_kit import StripeKit

    # Given an org created on Free, subscribed through Checkout at this time of day (a Stripe test clock)
    hour, minute, second = (int(x) for x in time_of_day.split(":"))
    start = datetime(2026, 9, 14, hour, minute, second, tzinfo=UTC)
    kit, owner = StripeKit(stack, table), new_user()
    org_id = api.call("POST", "/v1/orgs", as_user=owner, json={"name": "Any hour"}).body["org_id"]
    clock, customer = kit.subscribe(api, owner, org_id, "pro", start=int(start.timestamp()))
    period = period_containing(kit.repo.require_org(org_id), start)
    assert (period.start, period.end.time()) == (start, start.time())
    # When Stripe renews at the period's end (drafted, finalized and charged an hour later)
    kit.advance(clock, int(period.end.timestamp()) + 3600 + 60)
    # Then the run after the settle window issues the invoice, and it holds the renewal
    assert invoice_steps(org_id, period.key)[-1] == "issued"
    invoice = InvoiceRepository(table).get(org_id, period.key)
    renewals = [
        i.id
        for i in kit.client.v1.invoices.list(params={"customer": customer}).data
        if i.billing_reason == "subscription_cycle"
    ]
    assert invoice is not None and renewals and set(renewals) <= set(invoice.stripe_invoice_ids)
    assert invoice.totals is not None and invoice.totals.charged_through_stripe_minor == 4_900 * 2


def _listed(table: Any, org_id: str) -> dict[str, str]:
    items = table.query(
        KeyConditionExpression="PK = :pk AND begins_with(SK, :p)",
        ExpressionAttributeValues={":pk": f"ORG#{org_id}", ":p": "PERIODIDX#"},
        ConsistentRead=True,
    )["Items"]
    return {str(i["period_key"]): str(i["period_end"]) for i in items if "GSI2PK" in i}


def test_a_renewal_is_listed_with_the_state_that_begins_it_and_a_stale_snapshot_lists_nothing(table: Any) -> None:
    """The mirror lists a period the invoice run must find in the same write as the state that begins it:
    a renewal's period is listed once Stripe's renewed subscription is mirrored; a snapshot older than the
    one mirrored (a late webhook's fetch) writes nothing, not even its period's listing."""
    from shared.auth import Caller
    from shared.orgs.models import BillingMode
    from tests.integration.credit_kit import credit_kit
    from tests.paid import stripe_subscription

    created = datetime(2028, 1, 30, 17, 4, 9, tzinfo=UTC)
    kit = credit_kit(table.name, "", created, table=table)
    org_id = kit.orgs.create_org(
        Caller(new_user(), None, frozenset()),
        name="Renews",
        billing_mode=BillingMode.BYO,
        currency="USD",
        plan_id="free",
    ).org.org_id
    kit.clock.at = created + timedelta(hours=5, minutes=13)
    first = stripe_subscription(org_id, "pro", start=kit.clock.at)
    assert kit.mirror.apply(org_id, first, kit.mirror.now_ms()) is not None
    assert _listed(table, org_id) == {"2028-01-30T22:17:09Z": "2028-02-29T22:17:09Z"}

    renewed_at = datetime(2028, 2, 29, 22, 17, 9, tzinfo=UTC)
    renewed = stripe_subscription(org_id, "pro", start=renewed_at, subscription_id=first.subscription_id)
    kit.clock.at = renewed_at + timedelta(minutes=2)
    fetched = kit.mirror.now_ms()
    stale = stripe_subscription(
        org_id, "pro", start=renewed_at + timedelta(days=31), subscription_id=first.subscription_id
    )
    assert kit.mirror.apply(org_id, renewed, fetched) is not None
    for _ in range(2):  # redelivered: the same state, nothing more listed
        assert kit.mirror.apply(org_id, renewed, fetched + 1) is not None
    assert kit.mirror.apply(org_id, stale, fetched - 1) is None  # fetched before the renewal was mirrored
    assert _listed(table, org_id) == {
        "2028-01-30T22:17:09Z": "2028-02-29T22:17:09Z",
        "2028-02-29T22:17:09Z": "2028-03-29T22:17:09Z",
    }
    org = OrgRepository(table).get_org(org_id)
    assert org is not None and org.subscription is not None
    assert org.subscription.current_period_start == renewed_at


def test_a_crash_right_after_a_new_subscription_is_written_still_leaves_one_period_to_invoice(table: Any) -> None:
    """The Lambda dies right after the mirror wrote the first subscription (its state and period listing):
    the redelivered webhook finds the state already there, yet the period the org was created in (on Free)
    is off the run's index all the same - re-anchoring is done before the write, so a retry redoes it."""
    from shared.auth import Caller
    from shared.orgs.models import BillingMode
    from tests.integration.credit_kit import credit_kit
    from tests.paid import stripe_subscription

    created = datetime(2027, 12, 31, 20, 41, 3, tzinfo=UTC)
    kit = credit_kit(table.name, "", created, table=table)
    org_id = kit.orgs.create_org(
        Caller(new_user(), None, frozenset()),
        name="Crash",
        billing_mode=BillingMode.BYO,
        currency="USD",
        plan_id="free",
    ).org.org_id
    assert list(_listed(table, org_id)) == ["2027-12-31T20:41:03Z"]  # the period it was created in (on Free)
    kit.clock.at = created + timedelta(hours=3, minutes=29)
    sub = stripe_subscription(org_id, "pro", start=kit.clock.at)
    events, crashes = table.meta.client.meta.events, []

    def crash(**_: Any) -> None:
        if not crashes:
            crashes.append(1)
            raise RuntimeError("the Lambda timed out right after its write")

    events.register("after-call.dynamodb.TransactWriteItems", crash)
    try:
        with pytest.raises(RuntimeError):
            kit.mirror.apply(org_id, sub, kit.mirror.now_ms())
    finally:
        events.unregister("after-call.dynamodb.TransactWriteItems", crash)
    assert kit.mirror.apply(org_id, sub, kit.mirror.now_ms()) is not None  # the webhook, redelivered
    assert _listed(table, org_id) == {"2028-01-01T00:10:03Z": "2028-02-01T00:10:03Z"}


def test_one_orgs_due_periods_are_its_listings_by_the_dispatchers_rule(table: Any) -> None:
    """An org's own run (`org_periods_due`) finds what the dispatcher's index lists for the org on the days
    asked, with the dispatcher's rule (settled, not invoiced), and none of another org's - not even one whose
    id begins with its own."""
    from functions.invoice_dispatcher.handler import services

    repo, orgs = OrgRepository(table), services().orgs
    mine = f"org_due_{new_user()}"
    others = (f"{mine}x", f"org_due_{new_user()}")
    ends = {"2028-01-29T00:10:00Z": "2028-02-29T00:10:00Z", "2028-01-29T21:05:00Z": "2028-02-29T21:05:00Z"}
    for org_id in (mine, *others):
        for key, end in ends.items():
            repo.index_period(org_id, key, end)
    repo.index_period(mine, "2028-01-01T00:00:00Z", "2028-02-01T00:00:00Z")  # listed, on another day
    early = datetime(2028, 2, 29, 12, tzinfo=UTC)  # the first settled, the second not ended yet
    assert orgs.org_periods_due(mine, [DAY.date()], early) == ["2028-01-29T00:10:00Z"]
    later = datetime(2028, 3, 1, 1, tzinfo=UTC)
    assert orgs.org_periods_due(mine, [DAY.date()], later) == sorted(ends)
    day = orgs.periods_due(DAY.date(), later)
    assert [due for due in day if due[0] in (mine, *others)] == sorted((o, k) for o in (mine, *others) for k in ends)
    mine_on_index = sorted(k for o, k in day if o == mine)
    assert orgs.org_periods_due(mine, [DAY.date()], later) == mine_on_index
    both_days = [DAY.date(), datetime(2028, 2, 1, tzinfo=UTC).date()]
    assert orgs.org_periods_due(mine, both_days, later) == ["2028-01-01T00:00:00Z", *sorted(ends)]
    repo.unindex_period(mine, "2028-01-29T00:10:00Z")
    assert orgs.org_periods_due(mine, [DAY.date()], later) == ["2028-01-29T21:05:00Z"]
    assert (mine, "2028-01-29T00:10:00Z") not in orgs.periods_due(DAY.date(), later)

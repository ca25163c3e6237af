"""Issue 22: every usage allowance over its limit reaches both invoices - Stripe's renewal (the charge)
and ours (the document) - with its quantity, unit and unit price, in agency and BYO orgs; usage reported
after the period's invoice is carried on the next renewal as a late line. Subscriptions run on a Stripe
test clock checked out at a random time of day; usage is metered in-process inside that period."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from shared.credits.periods import Period, period_containing
from shared.invoices.repository import InvoiceRepository
from shared.money import unit_price_total
from shared.usage.metering import UsageEvent
from tests.helpers import ApiClient, invoice_steps, new_user
from tests.integration.credit_kit import CreditKit, credit_kit
from tests.integration.stripe_kit import StripeKit

pytestmark = pytest.mark.integration
rng = random.Random()

# Pro: 2,000 runs at 0.8, 1,000,000 SDK events at 0.0015, 50 GB at 8 (minor units, USD). Hand-computed,
# half-even per line: 153 runs x 0.8 = 122.4 -> 122; 403,000 events x 0.0015 = 604.5 -> 604 (half-even:
# half-up would say 605); 52.3 GB -> 53 GB, 3 x 8 = 24.
EXPECTED = {
    "workflow_runs": (153, "runs", Decimal("0.8"), 122),
    "sdk_events": (403_000, "events", Decimal("0.0015"), 604),
    "media_storage_gb": (3, "GB", Decimal("8"), 24),
}
PRO_MONTH = 4_900


def _org_on_clock(api: ApiClient, stack: Any, table: Any, mode: str) -> tuple[StripeKit, str, str, Period, str]:
    kit, owner = StripeKit(stack, table), new_user()
    org_id = api.call("POST", "/v1/orgs", as_user=owner, json={"name": f"Usage {mode}"}).body["org_id"]
    start = datetime(2026, 9, 14, tzinfo=UTC) + timedelta(seconds=rng.randrange(86_400))
    clock, customer = kit.subscribe(api, owner, org_id, "pro", start=int(start.timestamp()))
    if mode == "agency":
        assert api.call("PATCH", f"/v1/orgs/{org_id}", as_user=owner, json={"billing_mode": "agency"}).status == 200
    project = api.call("POST", f"/v1/orgs/{org_id}/projects", as_user=owner, json={"name": "P"}).body["project_id"]
    period = period_containing(kit.repo.require_org(org_id), start)
    assert period.start == start
    return kit, org_id, project, period, clock + "|" + customer


def _within(period: Period, until: datetime) -> datetime:
    return period.start + timedelta(seconds=rng.randrange(int((until - period.start).total_seconds())))


def _use_everything(credits: CreditKit, org_id: str, project: str, period: Period) -> None:
    """2,153 runs (one of them a settlement's), 1,403,000 SDK events (re-sent once), a 52.3 GB peak."""
    credits.clock.at = period.start + timedelta(days=20, seconds=rng.randrange(86_400))
    runs = [
        UsageEvent("workflow_runs", org_id, _within(period, credits.clock.at), 100, f"r{n}", project) for n in range(21)
    ]
    runs.append(UsageEvent("workflow_runs", org_id, _within(period, credits.clock.at), 52, "r-last"))
    sdk = [UsageEvent("sdk_events", org_id, _within(period, credits.clock.at), 100_000, f"s{n}") for n in range(14)]
    sdk.append(UsageEvent("sdk_events", org_id, _within(period, credits.clock.at), 3_000, "s-last", project))
    credits.usage.record_events(runs + sdk[:8])
    credits.usage.record_events(sdk[5:])  # three re-sent in the second batch
    credits.credits.reserve(
        org_id=org_id,
        project_id=project,
        template_id="social-content",
        generation_type="image",
        quantity=1,
        workflow_run_id="settled-run",
        actor="t",
    )
    credits.credits.settle(org_id=org_id, workflow_run_id="settled-run", quantity=None, occurred_at=None, actor="t")
    credits.usage.record_storage(org_id, _within(period, credits.clock.at), 52_300_000_000)


@pytest.mark.parametrize("mode", ["agency", "byo"])
def test_every_metric_over_its_allowance_is_on_the_renewal_and_on_our_invoice(
    api: ApiClient, stack: Any, table: Any, mode: str
) -> None:
    kit, org_id, project, period, ids = _org_on_clock(api, stack, table, mode)
    clock, customer = ids.split("|")
    credits = credit_kit(stack.env["TABLE_NAME"], stack.env["EVENT_BUS_NAME"], period.start)
    _use_everything(credits, org_id, project, period)

    # Stripe renews at the period's end: our invoice.created handler adds the overage to the draft,
    # finalized and charged an hour later
    kit.advance(clock, int(period.end.timestamp()) + 3600 + 60)
    renewal = next(
        i
        for i in kit.client.v1.invoices.list(params={"customer": customer}).data
        if i.billing_reason == "subscription_cycle"
    )
    usage_lines = {
        li.metadata.to_dict()["metric"]: (li.quantity, li.pricing.unit_amount_decimal, li.amount)
        for li in renewal.lines.data
        if li.metadata and li.metadata.to_dict().get("metric") in EXPECTED
    }
    assert usage_lines == {m: (q, price, amount) for m, (q, _, price, amount) in EXPECTED.items()}
    overage = sum(amount for _, _, _, amount in EXPECTED.values())
    assert (renewal.status, renewal.total) == ("paid", PRO_MONTH + overage)

    # Our invoice of the period holds the renewal's usage lines as charged (quantity, unit, unit price,
    # amount) and one information line per allowance gone over
    assert invoice_steps(org_id, period.key)[-1] == "issued"
    invoice = InvoiceRepository(table).get(org_id, period.key)
    assert invoice is not None and renewal.id in invoice.stripe_invoice_ids
    charged = {
        (line.quantity, line.unit, line.unit_price_minor, line.amount_minor)
        for line in invoice.lines
        if line.stripe_invoice_id == renewal.id and line.unit in ("runs", "events", "GB")
    }
    assert charged == {(q, unit, price, amount) for q, unit, price, amount in EXPECTED.values()}
    info = {(line.quantity, line.unit, line.unit_price_minor) for line in invoice.lines if line.section == "usage"}
    assert info == {(q, unit, price) for q, unit, price, _ in EXPECTED.values()}
    for q, _, price, amount in EXPECTED.values():
        assert unit_price_total(q, price) == amount  # (the one rounding rule, half-even per line)


def test_runs_reported_after_the_invoice_are_carried_on_the_next_renewal_as_late(
    api: ApiClient, stack: Any, table: Any
) -> None:
    kit, org_id, project, period, ids = _org_on_clock(api, stack, table, "byo")
    clock, customer = ids.split("|")
    credits = credit_kit(stack.env["TABLE_NAME"], stack.env["EVENT_BUS_NAME"], period.start)
    _use_everything(credits, org_id, project, period)
    kit.advance(clock, int(period.end.timestamp()) + 3600 + 60)
    assert invoice_steps(org_id, period.key)[-1] == "issued"
    issued = InvoiceRepository(table).get(org_id, period.key)

    # Ten days into the next period, the engine reports 47 runs of the last one (at its last second too)
    following = period_containing(kit.repo.require_org(org_id), period.end)
    credits.clock.at = following.start + timedelta(days=10, seconds=rng.randrange(86_400))
    late = [UsageEvent("workflow_runs", org_id, period.end - timedelta(seconds=1), 7, "late-edge")]
    late += [
        UsageEvent(
            "workflow_runs", org_id, period.end - timedelta(seconds=rng.randrange(1, 20 * 86_400)), 10, f"late-{n}"
        )
        for n in range(4)
    ]
    assert credits.usage.record_events(late + late).applied == 5
    # They land in their own period (the issued invoice is not touched)...
    assert credits.usage.allowances_of(kit.repo.require_org(org_id), period)[0].used == 2_153 + 47
    assert InvoiceRepository(table).get(org_id, period.key) == issued
    # ...and the next renewal carries them once, as a late line: 47 x 0.8 = 37.6 -> 38
    kit.advance(clock, int(following.end.timestamp()) + 3600 + 60)
    renewals = [
        i
        for i in kit.client.v1.invoices.list(params={"customer": customer}).data
        if i.billing_reason == "subscription_cycle" and i.period_end > period.end.timestamp()
    ]
    late_lines = [
        (li.quantity, li.amount, li.description.endswith(f"(late, for the period from {period.key[:10]})"))
        for r in renewals
        for li in r.lines.data
        if li.metadata and li.metadata.to_dict().get("metric") == "workflow_runs_late"
    ]
    assert late_lines == [(47, 38, True)]
    assert invoice_steps(org_id, following.key)[-1] == "issued"
    next_invoice = InvoiceRepository(table).get(org_id, following.key)
    assert next_invoice is not None
    assert [
        (line.quantity, line.unit, line.amount_minor) for line in next_invoice.lines if line.amount_minor == 38
    ] == [(47, "runs", 38)]


def test_a_downgrade_after_the_invoice_bills_nothing_late_for_the_period_billed(
    api: ApiClient, stack: Any, table: Any
) -> None:
    # Attack (issue 22 review): the period's runs were billed on Pro (2,000 included: 153 over); mid-way
    # through the next period the org moves to Starter (500 included). No run came late: the next renewal
    # carries no late line (re-pricing a billed period at the new allowance would bill 1,500 runs again)
    kit, org_id, project, period, ids = _org_on_clock(api, stack, table, "byo")
    clock, customer = ids.split("|")
    org = kit.repo.require_org(org_id)
    credits = credit_kit(stack.env["TABLE_NAME"], stack.env["EVENT_BUS_NAME"], period.start)
    _use_everything(credits, org_id, project, period)
    kit.advance(clock, int(period.end.timestamp()) + 3600 + 60)
    following = period_containing(org, period.end)
    kit.advance(clock, int((following.start + timedelta(days=12, seconds=rng.randrange(86_400))).timestamp()))
    user = kit.repo.list_members(org_id, None, 10).items[0].user_id  # (the owner, its only member)
    moved = api.call("PUT", f"/v1/orgs/{org_id}/subscription", as_user=user, json={"plan_id": "starter"})
    assert moved.status == 200, moved.body
    kit.synced()
    kit.advance(clock, int(following.end.timestamp()) + 3600 + 60)
    late = [
        (li.metadata.to_dict()["metric"], li.quantity)
        for r in kit.client.v1.invoices.list(params={"customer": customer}).data
        for li in r.lines.data
        if li.metadata and str(li.metadata.to_dict().get("metric", "")).endswith("_late")
    ]
    assert late == []

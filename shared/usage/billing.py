"""Overage billed through Stripe, exactly once per period.

Our choice (of meter events or invoice items): **invoice items on the renewal invoice**. When Stripe
renews a subscription it creates the next invoice as a draft and sends `invoice.created`; for about an
hour it can still take lines. For the period that just closed we add one line per metric over its
allowance: generation credits, workflow runs, SDK events and media storage. Each line carries the
idempotency key `overage:<org>:<period>:<metric>` and `billing_key` metadata. Before adding, we list
what the invoice already has, and the period item records the key of each line made, so a retried
webhook (or a retry after Stripe's 24 h key window) never bills twice.

**A missed window.** If the renewal was finalized before we handled its `invoice.created` (our webhook
was down for an hour, Stripe's delivery was late), the overage is not lost: it becomes pending invoice
items of the customer, which Stripe puts on the customer's next invoice, with the same once-only keys
(`...:next-invoice`), and the webhook function counts `RenewalOverageDeferred` (alarmed: someone should
know the charge moved a month).

Late usage (settled after its period closed) is counted in that period as `credits_late`. Late
credits not billed yet go on the next renewal invoice as their own line. Metered usage (workflow runs,
SDK events) that reached a period after its overage was billed is counted in that period too; the next
renewal bills the overage it adds as a late line (`<metric>_late`, keyed by the period's overage total).

**A Free period is never billed**: every price here is the period's plan's (`OrgService.billed_plan`), Free's
for a period that began before the subscription (the Free time before Checkout, where a late event may land):
Free sells no overage, so its usage over the allowances is counted and shown, and no line is made for it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from shared.catalog import Plan
from shared.credits.periods import Period, period_containing
from shared.credits.repository import CreditRepository
from shared.invoices.figures import metric_label
from shared.money import unit_price_total
from shared.orgs.models import Org
from shared.orgs.repository import OrgRepository
from shared.orgs.service import OrgService
from shared.stripe_gateway import Invoice, PricedQuantity, StripeGateway
from shared.usage.service import UsageService


@dataclass(frozen=True)
class RenewalBilled:
    added_minor: int
    deferred: bool  # the renewal was no longer a draft: added to the customer's next invoice


@dataclass(frozen=True)
class _Line:
    metric: str
    quantity: int
    unit_minor: Decimal  # Stripe computes the amount: unit_price_total(quantity, unit_minor)
    description: str
    period: Period
    key: str


class _Target:
    """Where this call's lines go: the renewal while it is a draft (`invoice_id`), else the customer's next
    invoice (pending items); `on_invoice`: the billing keys already there."""

    def __init__(self, customer_id: str, invoice_id: str | None, on_invoice: set[str]):
        self.customer_id = customer_id
        self.invoice_id = invoice_id
        self._on_invoice = on_invoice

    @classmethod
    def of(cls, invoice: Invoice, on_invoice: set[str]) -> _Target:
        return cls(invoice.customer_id, invoice.invoice_id if invoice.status == "draft" else None, on_invoice)

    def has(self, key: str) -> bool:
        return key in self._on_invoice


def last_period(org: Org, ended_at: datetime) -> Period:
    """The period a subscription ending at `ended_at` ran its last second in (its end is not in it); one
    ended in the very second its period began (Stripe's instants are whole seconds) ran in that period."""
    last = ended_at - timedelta(seconds=1)
    sub = org.subscription
    if sub is not None and last < sub.current_period_start <= ended_at:
        last = sub.current_period_start
    return period_containing(org, last)


class OverageBilling:
    def __init__(
        self,
        orgs: OrgService,
        org_repo: OrgRepository,
        repo: CreditRepository,
        usage: UsageService,
        gateway: StripeGateway,
    ):
        self._orgs = orgs
        self._org_repo = org_repo
        self._repo = repo
        self._usage = usage
        self._gateway = gateway

    def closed_period(self, org: Org, invoice: Invoice) -> Period:
        """The period a renewal invoice closes: the one ending when the invoice's usage period ends."""
        return period_containing(org, datetime.fromtimestamp(invoice.period_end, UTC) - timedelta(seconds=1))

    def bill_renewal(self, org_id: str, invoice: Invoice) -> RenewalBilled:
        """Adds the closed period's overage to its renewal invoice while it is a draft, else (the window
        was missed) to the customer's next invoice. Returns what this call added (0 on a repeat). Safe
        to call any number of times, with the invoice in any status."""
        org = self._org_repo.get_org(org_id)
        if org is None or invoice.invoice_id is None:
            return RenewalBilled(0, deferred=False)
        period = self.closed_period(org, invoice)
        target = _Target.of(invoice, self._gateway.invoice_item_keys(invoice.invoice_id))
        added = self._bill_period(org, period, target)
        self._repo.set_period_fields(org_id, period.key, {"billed_invoice_id": invoice.invoice_id})
        added += self._bill_late_catch_up(org, period, target)
        added += self._bill_late_usage(org, period, target)
        return RenewalBilled(added, deferred=bool(added) and target.invoice_id is None)

    def bill_final(self, org_id: str, customer_id: str, ended_at: datetime) -> int:
        """The subscription ended (cancelled at once, or at its period's end): no renewal will bill its last
        period, so its overage and the late usage of the period before go on the customer's pending items
        now, under the keys a renewal would use (a period a renewal billed is not billed again), for
        `collect_deferred` to invoice. Returns what this call added (0 on a repeat). Called before the
        mirror records the end, so that the period is billed on the terms it ran on (`billed_plan`)."""
        org = self._org_repo.get_org(org_id)
        if org is None:
            return 0
        period = last_period(org, ended_at)
        target = _Target(customer_id, None, self._gateway.pending_item_keys(customer_id))
        added = self._bill_period(org, period, target)
        added += self._bill_late_catch_up(org, period, target)
        return added + self._bill_late_usage(org, period, target)

    def _bill_period(self, org: Org, period: Period, target: _Target) -> int:
        """Each metric's overage of `period` once (by its key, recorded on the period item)."""
        plan = self._orgs.billed_plan(org, period)
        done = self._repo.period(org.org_id, period.key)
        terms = self._billed_terms(org, period)
        added = 0
        for metric, quantity, unit, description in self._lines(org, plan, period):
            key = f"overage:{org.org_id}:{period.key}:{metric}"
            if done.get(f"billed_key_{metric}") == key:
                continue  # billed before (what it billed stays recorded: a repeat never overwrites it)
            amount = unit_price_total(quantity, unit)
            if quantity > 0 and amount and not target.has(key):  # (there already: a crash before the record)
                self._add(org, target, _Line(metric, quantity, unit, description, period, key))
                added += amount
            billed = {f"billed_{metric}": quantity, f"billed_key_{metric}": key, f"billed_unit_{metric}": str(unit)}
            billed |= terms.get(metric, {})
            self._repo.set_period_fields(org.org_id, period.key, billed)
        return added

    def _billed_terms(self, org: Org, period: Period) -> dict[str, dict[str, object]]:
        """Per usage metric, the allowance and unit price its overage is billed at (kept with the billed
        quantity: late usage of the period is billed on the same terms, whatever the plan becomes)."""
        return {
            a.metric: {f"billed_included_{a.metric}": a.included, f"billed_unit_{a.metric}": a.unit_price_minor}
            for a in self._usage.allowances_of(org, period)
            if a.unit_price_minor is not None
        }

    def owed(self, org: Org, period: Period) -> dict[str, int]:
        """What each metric's overage of the period comes to, as `bill_renewal` bills it (late credits,
        billed on a later renewal with their own keys, are not in it). Once billed: what was billed, at the
        unit price it was billed at (the plan may have changed since). For reconciliation."""
        plan = self._orgs.billed_plan(org, period)  # a Free period's overage is never owed (no price)
        counters = self._repo.period(org.org_id, period.key)
        owed = {}
        for metric, quantity, unit, _ in self._lines(org, plan, period):
            if f"billed_key_{metric}" in counters:  # late usage after it is billed on a later renewal
                quantity = int(counters[f"billed_{metric}"])
                unit = Decimal(str(counters.get(f"billed_unit_{metric}", unit)))
            if metric != "credits_late" and quantity > 0:
                owed[metric] = unit_price_total(quantity, unit)
        return owed

    def collect_deferred(self, org_id: str, customer_id: str) -> str | None:
        """The subscription ended: overage waiting for the customer's next invoice (a missed renewal
        window) would wait forever, so it is invoiced now, once. Returns the invoice id, if any."""
        return self._gateway.invoice_pending_items(customer_id=customer_id, key=f"overage-final:{org_id}")

    def _add(self, org: Org, target: _Target, line: _Line) -> None:
        self._gateway.add_invoice_item(
            customer_id=target.customer_id,
            invoice_id=target.invoice_id,
            priced=PricedQuantity(line.quantity, line.unit_minor, org.currency),
            description=line.description,
            period=(int(line.period.start.timestamp()), int(line.period.end.timestamp())),
            metadata={
                "org_id": org.org_id,
                "period_key": line.period.key,
                "metric": line.metric,
                "quantity": str(line.quantity),
                "billing_key": line.key,
            },
            key=line.key if target.invoice_id else f"{line.key}:next-invoice",
        )

    def _bill_late_catch_up(self, org: Org, closed: Period, target: _Target) -> int:
        """Late credits that reached the period before `closed` after its invoice was built."""
        previous = period_containing(org, closed.start - timedelta(seconds=1))
        unit = self._orgs.billed_plan(org, previous).price_book(org.currency).credit_overage_unit_minor
        counters = self._repo.period(org.org_id, previous.key)
        late, billed = int(counters.get("credits_late", 0)), int(counters.get("billed_credits_late", 0))
        if unit is None or late <= billed:
            return 0
        key = f"overage:{org.org_id}:{previous.key}:credits_late:{late}"  # one key per late total
        amount = unit_price_total(late - billed, unit)
        description = "Late generation credits from the previous period"
        fresh = not target.has(key)
        if fresh and amount:
            self._add(org, target, _Line("credits_late", late - billed, unit, description, previous, key))
        self._repo.set_period_fields(org.org_id, previous.key, {"billed_credits_late": late})
        return amount if fresh else 0

    def _bill_late_usage(self, org: Org, closed: Period, target: _Target) -> int:
        """Metered usage that reached the period before `closed` after its overage was billed: the overage
        it adds, once per metric and overage total, at the allowance and unit price the period was billed
        at (a plan changed since re-prices nothing already billed)."""
        previous = period_containing(org, closed.start - timedelta(seconds=1))
        counters = self._repo.period(org.org_id, previous.key)
        added = 0
        for allowance in self._usage.allowances_of(org, previous):
            metric = allowance.metric
            if allowance.unit_price_minor is None or f"billed_key_{metric}" not in counters:
                continue  # (not billed yet: its own renewal bills all of it)
            included = int(counters.get(f"billed_included_{metric}", allowance.included))
            unit = Decimal(str(counters.get(f"billed_unit_{metric}", allowance.unit_price_minor)))
            overage = max(0, allowance.used - included)
            billed = int(counters[f"billed_{metric}"]) + int(counters.get(f"billed_{metric}_late", 0))
            if overage <= billed:
                continue
            late, key = overage - billed, f"overage:{org.org_id}:{previous.key}:{metric}_late:{overage}"
            description = f"{metric_label(metric)} over allowance (late, for the period from {previous.key[:10]})"
            fresh, amount = not target.has(key), unit_price_total(late, unit)
            if fresh and amount:
                self._add(org, target, _Line(f"{metric}_late", late, unit, description, previous, key))
                added += amount
            self._repo.set_period_fields(
                org.org_id, previous.key, {f"billed_{metric}_late": overage - int(counters[f"billed_{metric}"])}
            )
        return added

    def _lines(self, org: Org, plan: Plan, period: Period) -> list[tuple[str, int, Decimal, str]]:
        book = plan.price_book(org.currency)
        counters = self._repo.period(org.org_id, period.key)
        lines: list[tuple[str, int, Decimal, str]] = []
        if book.credit_overage_unit_minor is not None:
            overage = int(counters.get("credits_overage", 0))
            lines.append(
                (
                    "credits",
                    overage,
                    book.credit_overage_unit_minor,
                    f"Generation credits over the {plan.included_credits:,} included",
                )
            )
            late = int(counters.get("credits_late", 0))
            lines.append(
                (
                    "credits_late",
                    late,
                    book.credit_overage_unit_minor,
                    "Generation credits used late in the period",
                )
            )
        prices = {
            "workflow_runs": book.workflow_run_overage_unit_minor,
            "sdk_events": book.sdk_event_overage_unit_minor,
            "media_storage_gb": book.media_storage_gb_overage_unit_minor,
        }
        for allowance in self._usage.allowances_of(org, period):
            unit = prices[allowance.metric]
            if unit is not None:
                lines.append(
                    (
                        allowance.metric,
                        allowance.overage,
                        unit,
                        f"{metric_label(allowance.metric)} over the {allowance.included:,} included",
                    )
                )
        return lines

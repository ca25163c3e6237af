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
A late line's Stripe idempotency key names the total it bills from (`...:from:<billed>`): two calls reading
different late totals (usage settling between their reads) make one line, Stripe refusing the other; a line
found on the target unrecorded (a crash before the record) counts as billed up to its total.

**A Free period is never billed**: every price here is the period's plan's (`OrgService.billed_plan`), Free's
for a period that began before the subscription (the Free time before Checkout, where a late event may land):
Free sells no overage, so its usage over the allowances is counted and shown, and no line is made for it."""

from __future__ import annotations

from dataclasses import dataclass, replace
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
from shared.usage.repository import BilledMetric, PeriodBilled, PeriodUsage
from shared.usage.service import UsageService


@dataclass(frozen=True)
class RenewalBilled:
    added_minor: int
    deferred: bool  # the renewal was no longer a draft: added to the customer's next invoice


@dataclass(frozen=True)
class _Due:
    """A metric's overage of a period as the period's plan prices it."""

    metric: str
    quantity: int
    unit: Decimal
    description: str
    included: int | None = None  # usage metrics: the allowance it is over


@dataclass(frozen=True)
class _Line:
    metric: str
    quantity: int
    unit_minor: Decimal  # Stripe computes the amount: unit_price_total(quantity, unit_minor)
    description: str
    period: Period
    key: str
    # Stripe's idempotency key when not `key`: a late line's names the total it bills from, so that two calls
    # billing from the same total concurrently (late usage arriving between their reads) make one line, the
    # other refused by Stripe (the same key, other parameters), never two overlapping ones
    once: str | None = None


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

    def late_total(self, prefix: str) -> int:
        """The highest late total a line keyed `<prefix><total>` already here was made for (0: none): a crash
        after adding it and before its record leaves it unrecorded, and late usage arriving meanwhile makes a
        new total, a new key, which must bill only what that line did not."""
        totals = (key.removeprefix(prefix) for key in self._on_invoice if key.startswith(prefix))
        return max((int(total) for total in totals if total.isdigit()), default=0)


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
        added = self._bill(org, period, target, invoice.invoice_id)
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
        target = _Target(customer_id, None, self._gateway.pending_item_keys(customer_id))
        return self._bill(org, last_period(org, ended_at), target, None)

    def _bill(self, org: Org, period: Period, target: _Target, invoice_id: str | None) -> int:
        """The period's overage, then the late usage of the period before it. Both periods' counters are read
        once (one read) and each period's record is written once (one write), after its lines were added: a
        crash between finds them on the target on the retry (`target.has`), which records them unbilled again."""
        previous = period_containing(org, period.start - timedelta(seconds=1))
        counters, before = self._usage.periods(org, period, previous)
        billed, added = self._bill_period(org, period, counters, target)
        renewal = invoice_id if invoice_id != counters.billed_invoice_id else None  # (recorded: nothing to write)
        self._usage.record_billed(org, period, replace(billed, invoice_id=renewal))
        credits_late, added_credits = self._bill_late_catch_up(org, previous, before, target)
        usage_late, added_usage = self._bill_late_usage(org, previous, before, target)
        self._usage.record_billed(org, previous, PeriodBilled(late=credits_late | usage_late))
        return added + added_credits + added_usage

    def _bill_period(
        self, org: Org, period: Period, counters: PeriodUsage, target: _Target
    ) -> tuple[PeriodBilled, int]:
        """Each metric's overage of `period` once (by its key, recorded on the period item): what to record
        and what this call added."""
        lines: dict[str, BilledMetric] = {}
        added = 0
        for due in self._lines(org, self._orgs.billed_plan(org, period), period, counters):
            key = f"overage:{org.org_id}:{period.key}:{due.metric}"
            done = counters.billed.get(due.metric)
            if done is not None and done.key == key:
                continue  # billed before (what it billed stays recorded: a repeat never overwrites it)
            amount = unit_price_total(due.quantity, due.unit)
            if due.quantity > 0 and amount and not target.has(key):  # (there already: a crash before the record)
                self._add(org, target, _Line(due.metric, due.quantity, due.unit, due.description, period, key))
                added += amount
            # the allowance and unit price it is billed at, kept with the quantity: late usage of the period is
            # billed on the same terms, whatever the plan becomes
            lines[due.metric] = BilledMetric(due.quantity, key, str(due.unit), due.included)
        return PeriodBilled(lines), added

    def owed(self, org: Org, period: Period) -> dict[str, int]:
        """What each metric's overage of the period comes to, as `bill_renewal` bills it (late credits,
        billed on a later renewal with their own keys, are not in it). Once billed: what was billed, at the
        unit price it was billed at (the plan may have changed since). For reconciliation."""
        plan = self._orgs.billed_plan(org, period)  # a Free period's overage is never owed (no price)
        [counters] = self._usage.periods(org, period)
        owed = {}
        for due in self._lines(org, plan, period, counters):
            quantity, unit = due.quantity, due.unit
            billed = counters.billed.get(due.metric)
            if billed is not None:  # late usage after it is billed on a later renewal
                quantity, unit = billed.quantity, unit if billed.unit is None else Decimal(billed.unit)
            if due.metric != "credits_late" and quantity > 0:
                owed[due.metric] = unit_price_total(quantity, unit)
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
            key=(line.once or line.key) + ("" if target.invoice_id else ":next-invoice"),
        )

    def _bill_late_catch_up(
        self, org: Org, previous: Period, counters: PeriodUsage, target: _Target
    ) -> tuple[dict[str, int], int]:
        """Late credits that reached the period before the closed one after its invoice was built: the late
        total to record (`billed_credits_late`) and what this call added."""
        unit = self._orgs.billed_plan(org, previous).price_book(org.currency).credit_overage_unit_minor
        prefix = f"overage:{org.org_id}:{previous.key}:credits_late:"  # one key per late total
        late, billed = counters.credits_late, counters.billed_late.get("credits", 0)
        billed = max(billed, target.late_total(prefix))  # (a line there, unrecorded: a crash before the record)
        if unit is None or late <= billed:
            return ({"credits": billed} if billed > counters.billed_late.get("credits", 0) else {}), 0
        key = f"{prefix}{late}"
        amount = unit_price_total(late - billed, unit)
        description = "Late generation credits from the previous period"
        fresh = not target.has(key)
        if fresh and amount:
            line = _Line("credits_late", late - billed, unit, description, previous, key, f"{prefix}from:{billed}")
            self._add(org, target, line)
        return {"credits": late}, amount if fresh else 0

    def _bill_late_usage(
        self, org: Org, previous: Period, counters: PeriodUsage, target: _Target
    ) -> tuple[dict[str, int], int]:
        """Metered usage that reached the period before the closed one after its overage was billed: the
        overage it adds, once per metric and overage total, at the allowance and unit price the period was
        billed at (a plan changed since re-prices nothing already billed). The late totals to record
        (`billed_<metric>_late`) and what this call added."""
        late_totals: dict[str, int] = {}
        added = 0
        for allowance in self._usage.allowances_of(org, previous, counters):
            metric, billed_line = allowance.metric, counters.billed.get(allowance.metric)
            if allowance.unit_price_minor is None or billed_line is None:
                continue  # (not billed yet: its own renewal bills all of it)
            included = allowance.included if billed_line.included is None else billed_line.included
            unit = Decimal(allowance.unit_price_minor if billed_line.unit is None else billed_line.unit)
            overage = max(0, allowance.used - included)
            prefix = f"overage:{org.org_id}:{previous.key}:{metric}_late:"
            billed = max(billed_line.quantity + counters.billed_late.get(metric, 0), target.late_total(prefix))
            if billed > billed_line.quantity + counters.billed_late.get(metric, 0):  # there, unrecorded: record it
                late_totals[metric] = billed - billed_line.quantity
            if overage <= billed:
                continue
            late, key = overage - billed, f"{prefix}{overage}"
            description = f"{metric_label(metric)} over allowance (late, for the period from {previous.key[:10]})"
            fresh, amount = not target.has(key), unit_price_total(late, unit)
            if fresh and amount:
                once = f"{prefix}from:{billed}"
                self._add(org, target, _Line(f"{metric}_late", late, unit, description, previous, key, once))
                added += amount
            late_totals[metric] = overage - billed_line.quantity
        return late_totals, added

    def _lines(self, org: Org, plan: Plan, period: Period, counters: PeriodUsage) -> list[_Due]:
        """Each metric's overage of the period as its plan prices it (metrics it sells no overage of: none)."""
        book = plan.price_book(org.currency)
        lines: list[_Due] = []
        unit = book.credit_overage_unit_minor
        if unit is not None:
            included = f"Generation credits over the {plan.included_credits:,} included"
            lines.append(_Due("credits", counters.credits_overage, unit, included))
            late = "Generation credits used late in the period"
            lines.append(_Due("credits_late", counters.credits_late, unit, late))
        prices = {
            "workflow_runs": book.workflow_run_overage_unit_minor,
            "sdk_events": book.sdk_event_overage_unit_minor,
            "media_storage_gb": book.media_storage_gb_overage_unit_minor,
        }
        for allowance in self._usage.allowances_of(org, period, counters):
            price = prices[allowance.metric]
            if price is not None:
                description = f"{metric_label(allowance.metric)} over the {allowance.included:,} included"
                lines.append(_Due(allowance.metric, allowance.overage, price, description, allowance.included))
        return lines

"""Overage billed through Stripe, exactly once per period.

Our choice (of meter events or invoice items): **invoice items on the renewal invoice**. When Stripe
renews a subscription it creates the next invoice as a draft and sends `invoice.created`; for about an
hour it can still take lines. For the period that just closed we add one line per metric over its
allowance: generation credits, workflow runs, SDK events and media storage. Each line carries the
idempotency key `overage:<org>:<period>:<metric>` and `billing_key` metadata. Before adding, we list
what the invoice already has, so a retried webhook (or a retry after Stripe's 24 h key window) never
bills twice. The period item records what was billed.

Late usage (settled after its period closed) is counted in that period as `credits_late`. Late
credits not billed yet go on the next renewal invoice as their own line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from shared.catalog import Plan
from shared.credits.periods import Period, period_containing
from shared.credits.repository import CreditRepository
from shared.money import unit_price_total
from shared.orgs.models import Org
from shared.orgs.repository import OrgRepository
from shared.orgs.service import OrgService
from shared.stripe_gateway import Invoice, StripeGateway
from shared.usage.service import UsageService


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

    def bill_renewal(self, org_id: str, invoice: Invoice) -> int:
        """Adds the closed period's overage to its draft renewal invoice. Returns the minor units added
        by this call (0 on a repeat). Safe to call any number of times."""
        org = self._org_repo.get_org(org_id)
        if org is None or invoice.invoice_id is None or invoice.status != "draft":
            return 0
        period = self.closed_period(org, invoice)
        plan = self._orgs.plan_of(org)
        already = self._gateway.invoice_item_keys(invoice.invoice_id)
        added, billed = 0, {}
        for metric, quantity, unit, description in self._lines(org, plan, period):
            key = f"overage:{org_id}:{period.key}:{metric}"
            billed[f"billed_{metric}"] = quantity
            amount = unit_price_total(quantity, unit)
            if quantity <= 0 or amount == 0 or key in already:
                continue
            self._gateway.add_invoice_item(
                customer_id=invoice.customer_id,
                invoice_id=invoice.invoice_id,
                amount_minor=amount,
                currency=org.currency,
                description=description,
                period=(int(period.start.timestamp()), int(period.end.timestamp())),
                metadata={
                    "org_id": org_id,
                    "period_key": period.key,
                    "metric": metric,
                    "quantity": str(quantity),
                    "billing_key": key,
                },
                key=key,
            )
            added += amount
        self._repo.set_period_fields(org_id, period.key, {**billed, "billed_invoice_id": invoice.invoice_id})
        return added + self._bill_late_catch_up(org, plan, period, invoice, already)

    def _bill_late_catch_up(self, org: Org, plan: Plan, closed: Period, invoice: Invoice, already: set[str]) -> int:
        """Late credits that reached the period before `closed` after its invoice was built."""
        unit = plan.price_book(org.currency).credit_overage_unit_minor
        previous = period_containing(org, closed.start - timedelta(seconds=1))
        counters = self._repo.period(org.org_id, previous.key)
        late, billed = int(counters.get("credits_late", 0)), int(counters.get("billed_credits_late", 0))
        if unit is None or late <= billed or invoice.invoice_id is None:
            return 0
        key = f"overage:{org.org_id}:{previous.key}:credits_late:{late}"  # one key per late total
        amount = unit_price_total(late - billed, unit)
        if key not in already and amount:
            self._gateway.add_invoice_item(
                customer_id=invoice.customer_id,
                invoice_id=invoice.invoice_id,
                amount_minor=amount,
                currency=org.currency,
                description=f"Late generation credits from the previous period: {late - billed:,}",
                period=(int(previous.start.timestamp()), int(previous.end.timestamp())),
                metadata={
                    "org_id": org.org_id,
                    "period_key": previous.key,
                    "metric": "credits_late",
                    "quantity": str(late - billed),
                    "billing_key": key,
                },
                key=key,
            )
        self._repo.set_period_fields(org.org_id, previous.key, {"billed_credits_late": late})
        return amount if key not in already else 0

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
                    f"Generation credits over the {plan.included_credits:,} included: {overage:,}",
                )
            )
            late = int(counters.get("credits_late", 0))
            lines.append(
                (
                    "credits_late",
                    late,
                    book.credit_overage_unit_minor,
                    f"Generation credits used late in the period: {late:,}",
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
                        f"{allowance.metric.replace('_', ' ')} over the {allowance.included:,} included: "
                        f"{allowance.overage:,}",
                    )
                )
        return lines

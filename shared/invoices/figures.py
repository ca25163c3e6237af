"""The invoice document's money rules, each in one function: what a Stripe invoice says was paid (how,
when), what the wallet really paid, a line's unit price, the tax, the subtotal, a client statement's
credit cost and markup. Pure: no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from shared.invoices.models import Invoice, Payment, WalletStatement
from shared.money import bps_of, unit_price_total
from shared.stripe_gateway import Invoice as StripeInvoice
from shared.stripe_gateway import InvoiceLine as StripeLine

# What an allowance's quantity counts, and its name on documents (never the metric's identifier).
METRICS: dict[str, tuple[str, str]] = {
    "credits": ("Generation credits", "credits"),
    "credits_late": ("Generation credits used late", "credits"),
    "workflow_runs": ("Workflow runs", "runs"),
    "sdk_events": ("SDK events", "events"),
    "media_storage_gb": ("Media storage", "GB"),
    "workflow_runs_late": ("Workflow runs reported late", "runs"),
    "sdk_events_late": ("SDK events reported late", "events"),
    "media_storage_gb_late": ("Media storage measured late", "GB"),
}


def metric_label(metric: str) -> str:
    return METRICS.get(metric, (metric.replace("_", " ").capitalize(), ""))[0]


def metric_unit(metric: str) -> str | None:
    return METRICS.get(metric, ("", None))[1] or None


def day_of(timestamp: int | None) -> str | None:
    """The ISO date of a Unix time (UTC)."""
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC).date().isoformat()


def inclusive_end(end_iso: str) -> str:
    """The last day of a period that ends (exclusively) at `end_iso`: a period ending at 2026-10-01T00:00Z,
    or at 14:30 that day, was served through 2026-09-30 (ending at 14:30: through 2026-10-01)."""
    end = datetime.fromisoformat(end_iso.replace("Z", "+00:00"))
    return (end - timedelta(microseconds=1)).date().isoformat()


def stripe_payments(invoice: StripeInvoice) -> list[Payment]:
    """What a Stripe invoice received and how: the part the customer's Stripe credit balance covered
    (Stripe takes it off before asking for the rest: total - amount_due), then the rest, by a wire support
    recorded (out of band) or the card. A negative invoice (a downgrade's credit) is refunded to the card
    when it is paid (README, Plan changes). An open or uncollectible invoice has received only the balance
    part (and any partial payment); none for a draft, a void invoice or an invoice of 0."""
    if invoice.status not in ("paid", "open", "uncollectible") or invoice.total_minor == 0:
        return []
    on, number = day_of(invoice.paid_at), invoice.number
    if invoice.total_minor < 0:
        refund = Payment(method="refund", amount_minor=-invoice.total_minor, on=on, reference=number)
        return [refund] if invoice.status == "paid" else []
    balance = min(max(invoice.total_minor - invoice.amount_due_minor, 0), invoice.total_minor)
    rest = invoice.total_minor - balance
    if invoice.status != "paid":
        paid = [("balance", balance), ("card", invoice.amount_paid_minor)]
    elif invoice.paid_off_stripe_minor:  # marked paid out of band: this version's `amount_paid_off_stripe`
        paid = [("balance", balance), ("wire", invoice.paid_off_stripe_minor)]
    elif invoice.amount_paid_minor:
        paid = [("balance", balance), ("card", invoice.amount_paid_minor)]
    else:  # paid with nothing charged: the credit balance covered all of it
        paid = [("balance", balance + rest)]
    return [Payment(method=method, amount_minor=amount, on=on, reference=number) for method, amount in paid if amount]


def stripe_unpaid_minor(invoice: StripeInvoice) -> int:
    """What is still owed on a Stripe invoice: an open one's and an uncollectible one's amount due less
    what was paid of it (Stripe gave up collecting the latter; the customer still owes it and can pay it)."""
    if invoice.status not in ("open", "uncollectible"):
        return 0
    return invoice.amount_due_minor - invoice.amount_paid_minor


def net_paid_minor(payments: list[Payment]) -> int:
    """What was paid for the invoice, net of what was refunded (a downgrade's credit back to the card)."""
    return sum(-p.amount_minor if p.method == "refund" else p.amount_minor for p in payments)


def wallet_paid_minor(paid_from_wallet_minor: int, deficit_minor: int) -> int:
    """What the prepaid wallet really paid of the period's spend and fees: not the part it went below
    zero for (the deficit is due, not paid)."""
    return max(paid_from_wallet_minor - deficit_minor, 0)


def unit_price_of(line: StripeLine) -> Decimal | None:
    """A Stripe line's unit price in minor units, when quantity x it is the line's amount (a proration's
    price is the full month's, not what the line charges: none is shown)."""
    if line.proration or line.unit_amount_decimal is None or line.quantity is None:
        return None
    return line.unit_amount_decimal


def subtotal_minor(total_minor: int, tax_minor: int) -> int:
    """Before tax (no taxes are charged yet: the tax is 0 and the subtotal the total)."""
    return total_minor - tax_minor


def wallet_statement_of(invoice: Invoice) -> WalletStatement | None:
    """The wallet statement a document shows: agency orgs', and an org's that left agency mode but whose
    wallet moved; never a BYO invoice's idle wallet (no block of zeros)."""
    statement = invoice.wallet_statement
    if statement is None:
        return None
    moved = statement.closing_minor != statement.opening_minor or any(
        line.section == "ad_spend" for line in invoice.lines
    )
    return statement if invoice.billing_mode == "agency" or moved else None


def markup_minor(subtotal_minor: int, markup_bps: int) -> int:
    """An agency's markup on a client statement: its basis points of the subtotal, half-even, once per
    statement."""
    return bps_of(subtotal_minor, markup_bps)


def credits_cost_minor(overage: int, unit_minor: Decimal | None) -> int:
    """What a project's credits beyond the plan cost: its overage credits at the plan's unit price (the
    Stripe overage line's), half-even; 0 where the plan sells no overage."""
    return unit_price_total(overage, unit_minor) if unit_minor is not None and overage > 0 else 0

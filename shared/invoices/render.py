"""Invoice documents: a PDF an accountant accepts (reportlab, byte-stable with `invariant=1`) and a
CSV with one row per line. CSV columns (documented in the README):

invoice_number, org_id, period_start, period_end, issued_on (ISO dates), section, description,
project_id, platform, quantity, paid_via (stripe | wallet | info), amount_minor, amount (decimal),
currency, stripe_invoice_id. The rows' amount_minor sums to the invoice total."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

from shared.invoices.models import Invoice
from shared.money import CURRENCY_EXPONENTS, format_minor

ISSUER = ("Layers, Inc.", "548 Market St, San Francisco, CA 94104, USA", "billing@layers.com")
SECTIONS = {
    "subscription": "Layers subscription (charged through Stripe)",
    "credits": "Generation credits consumed, per project",
    "ad_spend": "Ad spend and platform fee (paid from the wallet)",
    "usage": "Layers usage over allowance",
}
CSV_COLUMNS = [
    "invoice_number",
    "org_id",
    "period_start",
    "period_end",
    "issued_on",
    "section",
    "description",
    "project_id",
    "platform",
    "quantity",
    "paid_via",
    "amount_minor",
    "amount",
    "currency",
    "stripe_invoice_id",
]


def _decimal(amount_minor: int, currency: str) -> str:
    exp = CURRENCY_EXPONENTS.get(currency, 2)
    return f"{Decimal(amount_minor).scaleb(-exp):.{exp}f}"


def render_csv(invoice: Invoice) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for line in invoice.lines:
        writer.writerow(
            [
                invoice.number,
                invoice.org_id,
                invoice.period_start[:10],
                invoice.period_end[:10],
                (invoice.finalized_at or "")[:10],
                line.section,
                line.description,
                line.project_id or "",
                line.platform or "",
                "" if line.quantity is None else line.quantity,
                line.paid_via,
                line.amount_minor,
                _decimal(line.amount_minor, invoice.currency),
                invoice.currency,
                line.stripe_invoice_id or "",
            ]
        )
    return out.getvalue().encode()


def render_pdf(invoice: Invoice) -> bytes:
    from reportlab.lib.pagesizes import A4  # imported here: only the render step pays for it
    from reportlab.pdfgen.canvas import Canvas

    buffer = io.BytesIO()
    pdf = Canvas(buffer, pagesize=A4, invariant=1)
    pdf.setTitle(f"Invoice {invoice.number}")
    width, height = A4
    y = height - 50

    def text(x: float, value: str, size: int = 9, bold: bool = False) -> None:
        pdf.setFont("Helvetica-Bold" if bold else "Helvetica", size)
        pdf.drawString(x, y, value)

    def right(x: float, value: str, size: int = 9, bold: bool = False) -> None:
        pdf.setFont("Helvetica-Bold" if bold else "Helvetica", size)
        pdf.drawRightString(x, y, value)

    def down(step: float = 13) -> None:
        nonlocal y
        y -= step
        if y < 60:
            pdf.showPage()
            y = height - 50

    text(40, ISSUER[0], 16, bold=True)
    right(width - 40, "INVOICE", 16, bold=True)
    down(16)
    text(40, ISSUER[1])
    right(width - 40, f"Number {invoice.number}", bold=True)
    down()
    text(40, ISSUER[2])
    right(width - 40, f"Issued {(invoice.finalized_at or '')[:10]}")
    down()
    right(width - 40, f"Period {invoice.period_start[:10]} to {invoice.period_end[:10]}")
    down(22)
    text(40, "Bill to", bold=True)
    down()
    text(40, f"{invoice.bill_to_name} ({invoice.org_id})")
    down()
    text(40, f"Plan {invoice.plan_name}, {invoice.billing_mode} billing, currency {invoice.currency}")
    down(22)
    for section, title in SECTIONS.items():
        lines = [line for line in invoice.lines if line.section == section]
        if not lines:
            continue
        text(40, title, 10, bold=True)
        down()
        for line in lines:
            qty = "" if line.quantity is None else f"{line.quantity:,}"
            text(50, line.description[:78])
            right(430, qty)
            right(width - 40, "-" if line.paid_via == "info" else format_minor(line.amount_minor, invoice.currency))
            down()
        down(6)
    totals = invoice.totals
    if totals is not None:
        down(6)
        for label, amount, bold in (
            ("Charged through Stripe", totals.charged_through_stripe_minor, False),
            ("Paid from the ad wallet", totals.paid_from_wallet_minor, False),
            ("Total", totals.total_minor, True),
            ("Wallet deficit", totals.wallet_deficit_minor, False),
            ("Amount due", totals.amount_due_minor, True),
        ):
            text(300, label, 10, bold=bold)
            right(width - 40, format_minor(amount, invoice.currency), 10, bold=bold)
            down()
        down(10)
        paid = (
            "Paid: subscription charges by card through Stripe"
            + (
                f"; {format_minor(totals.stripe_unpaid_minor, invoice.currency)} failed and is due"
                if totals.stripe_unpaid_minor
                else ""
            )
            + ("; ad spend and fees from the prepaid ad wallet" if totals.paid_from_wallet_minor else "")
            + "."
        )
        text(40, paid, 8)
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()

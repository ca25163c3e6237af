"""Invoice documents: a PDF an accountant accepts (reportlab, byte-stable with `invariant=1`) and a
CSV with one row per line. CSV columns (documented in the README):

invoice_number, org_id, period_start, period_end, issued_on (ISO dates), section, description,
project_id, platform, quantity, paid_via (stripe | wallet | info), amount_minor, amount (decimal),
currency, stripe_invoice_id. The rows' amount_minor sums to the invoice total."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import TYPE_CHECKING

from shared.invoices.models import Invoice, InvoiceLine, Totals
from shared.money import CURRENCY_EXPONENTS, format_minor

if TYPE_CHECKING:
    from reportlab.pdfgen.canvas import Canvas

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


class _Page:
    """A cursor down the invoice's pages: text at the current line, a new page when the bottom is near."""

    def __init__(self, pdf: Canvas, width: float, height: float) -> None:
        self._pdf = pdf
        self.width = width
        self._height = height
        self._y = height - 50

    def text(self, x: float, value: str, size: int = 9, bold: bool = False) -> None:
        self._pdf.setFont("Helvetica-Bold" if bold else "Helvetica", size)
        self._pdf.drawString(x, self._y, value)

    def right(self, x: float, value: str, size: int = 9, bold: bool = False) -> None:
        """Right-aligned at `x`."""
        self._pdf.setFont("Helvetica-Bold" if bold else "Helvetica", size)
        self._pdf.drawRightString(x, self._y, value)

    def down(self, step: float = 13) -> None:
        self._y -= step
        if self._y < 60:
            self._pdf.showPage()
            self._y = self._height - 50


def render_pdf(invoice: Invoice) -> bytes:
    from reportlab.lib.pagesizes import A4  # imported here: only the render step pays for it
    from reportlab.pdfgen.canvas import Canvas

    buffer = io.BytesIO()
    pdf = Canvas(buffer, pagesize=A4, invariant=1)
    pdf.setTitle(f"Invoice {invoice.number}")
    page = _Page(pdf, *A4)
    _draw_header(page, invoice)
    _draw_sections(page, invoice)
    if invoice.totals is not None:
        _draw_totals(page, invoice.totals, invoice.currency)
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def _draw_header(page: _Page, invoice: Invoice) -> None:
    """Issuer, number, dates and whom the invoice is for."""
    edge = page.width - 40
    page.text(40, ISSUER[0], 16, bold=True)
    page.right(edge, "INVOICE", 16, bold=True)
    page.down(16)
    page.text(40, ISSUER[1])
    page.right(edge, f"Number {invoice.number}", bold=True)
    page.down()
    page.text(40, ISSUER[2])
    page.right(edge, f"Issued {(invoice.finalized_at or '')[:10]}")
    page.down()
    page.right(edge, f"Period {invoice.period_start[:10]} to {invoice.period_end[:10]}")
    page.down(22)
    page.text(40, "Bill to", bold=True)
    page.down()
    page.text(40, f"{invoice.bill_to_name} ({invoice.org_id})")
    page.down()
    page.text(40, f"Plan {invoice.plan_name}, {invoice.billing_mode} billing, currency {invoice.currency}")
    page.down(22)


def _draw_sections(page: _Page, invoice: Invoice) -> None:
    """Each section that has lines, in the order of SECTIONS, under its title."""
    for section, title in SECTIONS.items():
        lines = [line for line in invoice.lines if line.section == section]
        if not lines:
            continue
        page.text(40, title, 10, bold=True)
        page.down()
        for line in lines:
            _draw_line(page, line, invoice.currency)
        page.down(6)


def _draw_line(page: _Page, line: InvoiceLine, currency: str) -> None:
    qty = "" if line.quantity is None else f"{line.quantity:,}"
    page.text(50, line.description[:78])
    page.right(430, qty)
    page.right(page.width - 40, "-" if line.paid_via == "info" else format_minor(line.amount_minor, currency))
    page.down()


def _draw_totals(page: _Page, totals: Totals, currency: str) -> None:
    """The totals block, then how the invoice was paid."""
    page.down(6)
    for label, amount, bold in (
        ("Charged through Stripe", totals.charged_through_stripe_minor, False),
        ("Paid from the ad wallet", totals.paid_from_wallet_minor, False),
        ("Total", totals.total_minor, True),
        ("Wallet deficit", totals.wallet_deficit_minor, False),
        ("Amount due", totals.amount_due_minor, True),
    ):
        page.text(300, label, 10, bold=bold)
        page.right(page.width - 40, format_minor(amount, currency), 10, bold=bold)
        page.down()
    page.down(10)
    page.text(40, _how_paid(totals, currency), 8)


def _how_paid(totals: Totals, currency: str) -> str:
    unpaid = (
        f"; {format_minor(totals.stripe_unpaid_minor, currency)} failed and is due"
        if totals.stripe_unpaid_minor
        else ""
    )
    wallet = "; ad spend and fees from the prepaid ad wallet" if totals.paid_from_wallet_minor else ""
    return f"Paid: subscription charges by card through Stripe{unpaid}{wallet}."

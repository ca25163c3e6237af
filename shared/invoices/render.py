"""Invoice and credit-note documents: a PDF a customer and an accountant accept (reportlab, byte-stable
with `invariant=1`, embedded Unicode fonts: shared/invoices/typeset.py) and a CSV with one row per line.

The PDF: the seller (shared/invoices/seller.json) and the bill-to block (the org's billing details),
number, issue date, service period (inclusive end date), due date or paid status; sections with column
headings (description, service period, quantity, unit, unit price, amount), late charges under their
period; subtotal, tax, total, what was paid (method, date, Stripe's number), amount due and how to pay;
the wallet statement of agency orgs; the header and "Page N of M" on every page.

The CSV (`CSV_COLUMNS`, documented in the README): UTF-8 with a byte-order mark (Excel on Windows reads
UTF-8 only with it), CRLF line endings (RFC 4180), text cells that a spreadsheet would take for a
formula (`=`, `+`, `-`, `@`, tab, CR first, their full-width forms, or any after spaces: OWASP's CSV
injection guidance) prefixed with `'`. Numeric columns are ours and stay numbers: `amount_minor` sums
to the invoice total."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from shared.invoices.figures import inclusive_end, net_paid_minor, subtotal_minor, wallet_statement_of
from shared.invoices.models import CreditNote, Invoice, InvoiceLine, Payment, Statement, Totals, WalletStatement
from shared.invoices.typeset import LEADING, MARGIN, Pages, Running, draw, missing_glyphs, width, wrap
from shared.money import CURRENCY_EXPONENTS, format_minor

CSV_CONTENT_TYPE = "text/csv; charset=utf-8"
DASH, TIMES = "\u2013", "\u00d7"  # en dash, multiplication sign
SECTIONS = {
    "subscription": "Layers subscription (charged through Stripe)",
    "credits": "Generation credits consumed, per project (information: overage is charged on a Stripe line)",
    "usage": "Usage over allowance (information: charged on a Stripe line)",
    "ad_spend": "Ad spend and platform fee (paid from the ad wallet)",
    "markup": "Agency markup",
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
    "service_period_start",
    "service_period_end",
    "quantity",
    "unit",
    "unit_price_minor",
    "paid_via",
    "amount_minor",
    "amount",
    "currency",
    "stripe_invoice_id",
    "stripe_invoice_number",
    "late_for",
]
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")  # and full-width forms
_PAYMENT_LABELS = {
    "card": "Paid by card through Stripe",
    "wire": "Paid by wire transfer (recorded by Layers)",
    "wallet": "Paid from the prepaid ad wallet",
    "balance": "Paid from your Stripe credit balance",
    "refund": "Refunded to your card (downgrade credit)",
}


class Seller(BaseModel):
    """Who issues the invoices: configuration (`seller.json`), not code."""

    model_config = ConfigDict(frozen=True)

    name: str
    address_lines: list[str]
    email: str
    tax_id: str
    payment_instructions: str  # how to pay an amount due


@cache
def seller() -> Seller:
    return Seller.model_validate_json((Path(__file__).parent / "seller.json").read_text())


# ---------------------------------------------------------------------------------------------- formats
def decimal_amount(amount_minor: int, currency: str) -> str:
    exp = CURRENCY_EXPONENTS.get(currency, 2)
    return f"{Decimal(amount_minor).scaleb(-exp):.{exp}f}"


def amount_text(amount_minor: int, currency: str) -> str:
    """1234567 -> '12,345.67' (the currency is in the column heading)."""
    return format_minor(amount_minor, currency).rsplit(" ", 1)[0]


def unit_price_text(unit_minor: Decimal, currency: str) -> str:
    """A unit price in major units with as many decimals as it has: 1.8 cents -> '0.018', 4900 -> '49.00'."""
    exp = CURRENCY_EXPONENTS.get(currency, 2)
    major = (unit_minor.scaleb(-exp)).normalize()
    places = max(exp, -int(major.as_tuple().exponent))
    return f"{major:,.{places}f}"


def rate_text(bps: int) -> str:
    return f"{Decimal(bps) / 100:.2f} %"


def day(iso_instant: str | None) -> str:
    return (iso_instant or "")[:10]


def service_period(line: InvoiceLine) -> str:
    if not line.service_start or not line.service_end:
        return ""
    start, end = day(line.service_start), inclusive_end(line.service_end)
    return start if start >= end else f"{start} {DASH} {end}"


def neutralised(value: str) -> str:
    """A text cell a spreadsheet will not run: one starting like a formula (after any spaces, which some
    spreadsheets skip) gets a leading quote."""
    return f"'{value}" if value.startswith(_FORMULA_STARTS) or value.lstrip().startswith(_FORMULA_STARTS) else value


# ---------------------------------------------------------------------------------------------- CSV
@dataclass(frozen=True)
class _CsvHead:
    number: str
    org_id: str
    period_start: str
    period_end: str
    issued_on: str
    currency: str


def _csv(head: _CsvHead, lines: Iterable[InvoiceLine]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for line in lines:
        writer.writerow(_csv_row(head, line))
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def _csv_row(head: _CsvHead, line: InvoiceLine) -> list[object]:
    text = [head.number, head.org_id, line.section, line.description, line.project_id or "", line.platform or ""]
    number, org_id, section, description, project_id, platform = (neutralised(t) for t in text)
    return [
        number,
        org_id,
        head.period_start,
        head.period_end,
        head.issued_on,
        section,
        description,
        project_id,
        platform,
        day(line.service_start),
        inclusive_end(line.service_end) if line.service_end else "",
        "" if line.quantity is None else line.quantity,
        neutralised(line.unit or ""),
        "" if line.unit_price_minor is None else str(line.unit_price_minor),
        line.paid_via,
        line.amount_minor,
        decimal_amount(line.amount_minor, head.currency),
        head.currency,
        neutralised(line.stripe_invoice_id or ""),
        neutralised(line.stripe_invoice_number or ""),
        day(line.late_for),
    ]


def render_csv(invoice: Invoice) -> bytes:
    """One row per line (`CSV_COLUMNS`); the period end is the last day served (inclusive)."""
    head = _CsvHead(
        invoice.number or "",
        invoice.org_id,
        day(invoice.period_start),
        inclusive_end(invoice.period_end),
        day(invoice.finalized_at),
        invoice.currency,
    )
    return _csv(head, invoice.lines)


def render_statement_csv(statement: Statement) -> bytes:
    """A client statement's lines in the invoice CSV's columns (`invoice_number`: the invoice it is read
    from, empty while running); `amount_minor` sums to the statement's total, markup included."""
    head = _CsvHead(
        statement.invoice_number or "",
        statement.org_id,
        day(statement.period_start),
        inclusive_end(statement.period_end),
        day(statement.created_at),
        statement.currency,
    )
    return _csv(head, statement.lines)


def render_credit_note_csv(note: CreditNote) -> bytes:
    """The credit note's lines in the invoice CSV's columns: `invoice_number` is the credit note's number,
    amounts are what is credited (positive); the period columns are empty."""
    head = _CsvHead(note.number, note.org_id, "", "", day(note.created_at), note.currency)
    return _csv(head, note.lines)


# ---------------------------------------------------------------------------------------------- PDF
_COLUMNS = (  # heading, x, right-aligned
    ("Description", MARGIN, False),
    ("Service period", 243.0, False),
    ("Qty", 388.0, True),
    ("Unit", 393.0, False),
    ("Unit price", 490.0, True),
)
_DESCRIPTION_WIDTH = 196.0


def _new_pdf(title: str) -> tuple[io.BytesIO, Pages, str]:
    from reportlab.lib.pagesizes import A4  # imported here: only the render step pays for it
    from reportlab.pdfgen.canvas import Canvas

    from shared.invoices.typeset import REGULAR, as_drawn, fonts

    fonts()
    buffer = io.BytesIO()
    pdf = Canvas(buffer, pagesize=A4, invariant=1, initialFontName=REGULAR, lang="en")
    pdf.setTitle(as_drawn(title))  # the document's metadata: no control character, nothing unencodable
    pdf.setAuthor(seller().name)
    return buffer, Pages(pdf, A4, Running(title, "")), title


def render_pdf(invoice: Invoice) -> bytes:
    """The invoice as a PDF (every page headed and numbered)."""
    title = f"Invoice {invoice.number} · {invoice.bill_to_name}"
    buffer, page, _ = _new_pdf(title)
    page.running = Running(title, f"{seller().name} · Invoice {invoice.number} · {invoice.currency}")
    _draw_parties(page, invoice.bill_to_name, invoice, "INVOICE", _invoice_facts(invoice))
    for heading, lines in _groups(invoice.lines):
        _draw_table(page, heading, lines, invoice.currency)
    if invoice.totals is not None:
        _draw_totals(page, invoice.totals, invoice.currency)
        _draw_payments(page, invoice.totals, invoice.currency)
        _draw_how_to_pay(page, invoice)
    statement = wallet_statement_of(invoice)
    if statement is not None:
        _draw_wallet(page, statement, invoice.currency)
    page.finish()
    return buffer.getvalue()


def _invoice_facts(invoice: Invoice) -> list[tuple[str, str]]:
    facts = [
        ("Invoice number", invoice.number or "(draft)"),
        ("Issue date", day(invoice.finalized_at)),
        ("Service period", f"{day(invoice.period_start)} {DASH} {inclusive_end(invoice.period_end)}"),
        ("Plan", f"{invoice.plan_name} ({invoice.billing_mode} billing)"),
        ("Currency", invoice.currency),
    ]
    totals = invoice.totals
    if totals is not None and totals.amount_due_minor > 0:
        facts.append(("Amount due", format_minor(totals.amount_due_minor, invoice.currency)))
        facts.append(("Due date", totals.due_on or f"{day(invoice.finalized_at)} (on receipt)"))
    elif totals is not None:
        facts.append(("Status", "Paid in full, nothing due"))
    return facts


def _draw_parties(
    page: Pages, name: str, doc: Invoice | CreditNote | Statement, kind: str, facts: list[tuple[str, str]]
) -> None:
    """Seller (left) and the document's facts (right), then whom it is for."""
    issuer = seller()
    top = page.y
    page.text(MARGIN, issuer.name, 15, bold=True)
    page.text(page.right, kind, 15, bold=True, align="right")
    page.down(18)
    for line in [*issuer.address_lines, issuer.email, f"Tax ID {issuer.tax_id}"]:
        page.text(MARGIN, line)
        page.down()
    left_bottom = page.y
    page.y = top - 18
    for label, value in facts:
        page.text(330, label, bold=True)
        page.text(page.right, value, align="right")
        page.down()
    page.y = min(left_bottom, page.y) - 10
    _draw_bill_to(page, name, doc)


def _draw_bill_to(page: Pages, name: str, doc: Invoice | CreditNote | Statement) -> None:
    """The org's name and the billing details it gave (address, e-mail, tax id)."""
    page.text(MARGIN, "Bill to", 9, bold=True)
    page.down()
    for piece in wrap(name, 10, 330, bold=True):
        page.text(MARGIN, piece, 10, bold=True)
        page.down()
    details = doc.bill_to if isinstance(doc, Invoice) else None
    extra = (
        [*details.address_lines, details.email or "", f"Tax ID {details.tax_id}" if details.tax_id else ""]
        if details
        else []
    )
    for line in (e for e in extra if e):
        for piece in wrap(line, 8.5, 330):
            page.text(MARGIN, piece)
            page.down()
    unprintable = " (some characters above cannot be printed in these documents: the account id identifies it)"
    page.text(MARGIN, f"Account {doc.org_id}" + (unprintable if missing_glyphs(name + "".join(extra)) else ""), 7.5)
    page.down(20)


def _groups(lines: Sequence[InvoiceLine]) -> list[tuple[str, list[InvoiceLine]]]:
    """Each section that has lines, in the order of SECTIONS, then late charges per earlier period."""
    groups = [
        (title, [line for line in lines if line.section == section and line.late_for is None])
        for section, title in SECTIONS.items()
    ]
    late_periods = sorted({line.late_for for line in lines if line.late_for is not None})
    groups += [
        (
            f"Late charges for the period from {day(period)} (recorded after that invoice was issued)",
            [line for line in lines if line.late_for == period],
        )
        for period in late_periods
    ]
    return [(title, group) for title, group in groups if group]


def _draw_headings(page: Pages, currency: str, title: list[str]) -> None:
    """A table's title (its section's) and column headings."""
    for piece in title:
        page.text(MARGIN, piece, 9.5, bold=True)
        page.down()
    page.down(2)
    for heading, x, right in _COLUMNS:
        page.text(x, heading, 7.5, bold=True, align="right" if right else "left")
    page.text(page.right, f"Amount ({currency})", 7.5, bold=True, align="right")
    page.down(4)
    page.rule()
    page.down(10)


def _draw_table(page: Pages, heading: str, lines: list[InvoiceLine], currency: str) -> None:
    """A section: its title and the column headings (again, "continued", on every page it continues on),
    its lines; the title and headings on the page of the first line."""
    title = wrap(heading, 9.5, page.right - MARGIN, bold=True)
    first = _kept_height(_Cells.of(lines[0], currency), page.height) if lines else 0
    page.need(LEADING * len(title) + 16 + first)
    _draw_headings(page, currency, title)
    continued = wrap(f"{heading} (continued)", 9.5, page.right - MARGIN, bold=True)
    page.on_new_page = lambda: _draw_headings(page, currency, continued)
    for line in lines:
        _draw_line(page, line, currency)
    page.on_new_page = None
    page.down(8)


def _line_notes(line: InvoiceLine, currency: str) -> list[str]:
    """The small print under a line: the rate and base of a fee, the Stripe invoice that charged it."""
    notes = []
    if line.rate_bps is not None and line.base_minor is not None:
        notes.append(
            f"{rate_text(line.rate_bps)} of {format_minor(line.base_minor, currency)} ad spend; the fee is "
            f"rounded per platform bill, so it may differ from rate {TIMES} spend by a cent per bill"
        )
    if line.stripe_invoice_number or line.stripe_invoice_id:
        notes.append(f"Stripe invoice {line.stripe_invoice_number or line.stripe_invoice_id}")
    if line.paid_via == "info":
        notes.append("information only: any charge for it is on a Stripe line above")
    return notes


@dataclass(frozen=True)
class _Cells:
    """A line's text as laid out: the description's and the small print's rows, the quantity, the period's rows."""

    description: list[str]
    notes: list[str]
    quantity: str
    period: list[str]

    @classmethod
    def of(cls, line: InvoiceLine, currency: str) -> _Cells:
        description = wrap(line.description, 8.5, _DESCRIPTION_WIDTH, ltr=True)  # our sentence, quoting names
        notes = [piece for note in _line_notes(line, currency) for piece in wrap(note, 7, _DESCRIPTION_WIDTH + 140)]
        quantity = "" if line.quantity is None else f"{line.quantity:,}"
        return cls(description, notes, quantity, _period_cell(line, quantity))


def _kept_height(cells: _Cells, page_height: float) -> float:
    """The height a line needs on one page: all of it, unless it is long (then its first row)."""
    block = LEADING * max(len(cells.description), len(cells.period)) + 9 * len(cells.notes) + 4
    return block if block < page_height / 2 else LEADING * len(cells.period)


def _draw_line(page: Pages, line: InvoiceLine, currency: str) -> None:
    """One line: its cells on the first row, the description (and small print) below, continued on the
    next pages when it is longer than what is left of one (the column headings repeated)."""
    cells = _Cells.of(line, currency)
    description, notes, quantity, period = cells.description, cells.notes, cells.quantity, cells.period
    page.need(_kept_height(cells, page.height))
    for row, piece in enumerate(period):
        draw(page.pdf, _COLUMNS[1][1], page.y - LEADING * row, piece, 8)
    row_cells = [quantity, line.unit or "", _unit_price_cell(line, currency)]
    for (_, x, right), value in zip(_COLUMNS[2:], row_cells, strict=True):
        page.text(x, value, 8, align="right" if right else "left")
    amount = DASH if line.paid_via == "info" else amount_text(line.amount_minor, currency)
    page.text(page.right, amount, align="right")
    for n, piece in enumerate(description):
        if n:
            page.need(LEADING)
        page.text(MARGIN, piece, ltr=True)
        page.down()
    page.down(LEADING * max(len(period) - len(description), 0))
    for piece in notes:
        page.need(9)
        page.text(MARGIN + 8, piece, 7)
        page.down(9)
    page.down(3)


def _period_cell(line: InvoiceLine, quantity: str) -> list[str]:
    """The service period's rows: one, or two (start, end) when a wide quantity needs the room."""
    period = service_period(line)
    room = _COLUMNS[2][1] - _COLUMNS[1][1] - 6  # from the period's left edge to the quantity's right edge
    if DASH not in period or width(period, 8) + width(quantity, 8) <= room:
        return [period]
    start, end = period.split(f" {DASH} ")
    return [f"{start} {DASH}", end]


def _unit_price_cell(line: InvoiceLine, currency: str) -> str:
    if line.rate_bps is not None:
        return rate_text(line.rate_bps)
    return "" if line.unit_price_minor is None else unit_price_text(line.unit_price_minor, currency)


def _money_row(page: Pages, label: str, amount_minor: int, currency: str, bold: bool = False) -> None:
    page.need(LEADING)
    page.text(250, label, 9, bold=bold)
    page.text(page.right, format_minor(amount_minor, currency), 9, bold=bold, align="right")
    page.down()


def _draw_totals(page: Pages, totals: Totals, currency: str) -> None:
    """Subtotal, tax, total (and of it: through Stripe, from the wallet), paid, due: on one page."""
    optional = (totals.paid_from_wallet_minor, totals.stripe_unpaid_minor, totals.wallet_deficit_minor)
    page.need(LEADING * (6 + sum(1 for amount in optional if amount)) + 4)
    page.down(4)
    _money_row(page, "Subtotal", subtotal_minor(totals.total_minor, totals.tax_minor), currency)
    _money_row(page, "Tax (none charged: prices exclude tax)", totals.tax_minor, currency)
    _money_row(page, "Total", totals.total_minor, currency, bold=True)
    _money_row(page, "   of which charged through Stripe", totals.charged_through_stripe_minor, currency)
    if totals.paid_from_wallet_minor:
        _money_row(page, "   of which ad spend and fees (wallet)", totals.paid_from_wallet_minor, currency)
    _money_row(page, "Amount paid (net of refunds)", net_paid_minor(totals.payments), currency)
    if totals.stripe_unpaid_minor:
        _money_row(page, "Unpaid Stripe charges (open or uncollectible)", totals.stripe_unpaid_minor, currency)
    if totals.wallet_deficit_minor:
        _money_row(page, "Wallet deficit (spend past the balance)", totals.wallet_deficit_minor, currency)
    _money_row(page, "Amount due", totals.amount_due_minor, currency, bold=True)
    page.down(8)


def _draw_payments(page: Pages, totals: Totals, currency: str) -> None:
    """Every payment and refund: source, date, amount, Stripe's number."""
    if not totals.payments:
        return
    page.need(LEADING * (len(totals.payments) + 2))
    page.text(MARGIN, "Payments and refunds", 9.5, bold=True)
    page.down()
    for payment in totals.payments:
        page.need(LEADING)
        page.text(MARGIN, _payment_text(payment))
        page.text(page.right, format_minor(payment.amount_minor, currency), align="right")
        page.down()
    page.down(8)


def _payment_text(payment: Payment) -> str:
    when = f" on {payment.on}" if payment.on else ""
    reference = f" (Stripe invoice {payment.reference})" if payment.reference else ""
    return f"{_PAYMENT_LABELS[payment.method]}{when}{reference}"


def _draw_how_to_pay(page: Pages, invoice: Invoice) -> None:
    totals = invoice.totals
    if totals is None or totals.amount_due_minor <= 0:
        return
    due = format_minor(totals.amount_due_minor, invoice.currency)
    when = totals.due_on or "on receipt"
    text = [f"Amount due: {due}, due {when}. Terms: {'net, as agreed' if totals.due_on else 'due on receipt'}."]
    if totals.stripe_unpaid_minor:
        text.append(
            "Unpaid Stripe charges: pay the open Stripe invoice from the link in its e-mail, or update the card "
            "in Layers Billing (Stripe retries the saved card)."
        )
    if totals.wallet_deficit_minor:
        text.append("Wallet deficit: top up the ad wallet in Layers Billing (card, ACH or wire); it is taken first.")
    text.append(seller().payment_instructions)
    page.need(LEADING + 11 * len(wrap(text[0], 8, page.right - MARGIN)))  # the heading stays with its text
    page.text(MARGIN, "How to pay", 9.5, bold=True)
    page.down()
    for paragraph in text:
        for piece in wrap(paragraph, 8, page.right - MARGIN):
            page.need(LEADING)
            page.text(MARGIN, piece, 8)
            page.down(11)
    page.down(8)


def _draw_wallet(page: Pages, statement: WalletStatement, currency: str) -> None:
    rows = (
        ("Opening balance", statement.opening_minor, True),
        ("Top-ups", statement.topups_minor, False),
        ("Ad spend", statement.spend_minor, False),
        ("Platform fees", statement.fees_minor, False),
        ("Refunds to card", statement.refunds_minor, False),
        ("Reversals (disputes, failed payments, platform credits)", statement.reversals_minor, False),
        ("Adjustments (support, credit notes)", statement.adjustments_minor, False),
        ("Closing balance", statement.closing_minor, True),
    )
    page.need(LEADING * (len(rows) + 3))
    page.text(MARGIN, "Ad wallet statement for the period", 9.5, bold=True)
    page.down()
    page.rule()
    page.down(11)
    for label, amount, bold in rows:
        page.text(MARGIN, label, 8.5, bold=bold)
        page.text(420, format_minor(amount, currency), 8.5, bold=bold, align="right")
        page.down()
    page.down(8)


def render_credit_note_pdf(note: CreditNote) -> bytes:
    """A credit note: which invoice it corrects and why, the lines credited, where the money went."""
    title = f"Credit note {note.number} · {note.bill_to_name}"
    buffer, page, _ = _new_pdf(title)
    page.running = Running(title, f"{seller().name} · Credit note {note.number} · {note.currency}")
    facts = [
        ("Credit note number", note.number),
        ("Issue date", day(note.created_at)),
        ("Corrects invoice", note.invoice_number),
        ("Currency", note.currency),
    ]
    _draw_parties(page, note.bill_to_name, note, "CREDIT NOTE", facts)
    for piece in wrap(f"Reason: {note.reason}", 9, page.right - MARGIN):
        page.text(MARGIN, piece, 9)
        page.down()
    page.down(6)
    _draw_table(page, "Credited lines", list(note.lines), note.currency)
    page.need(LEADING * 3)  # the total and where it went, on one page
    _money_row(page, "Total credited", note.amount_minor, note.currency, bold=True)
    _money_row(page, "   re-credited to the ad wallet", note.to_wallet_minor, note.currency)
    _money_row(page, "   credited through Stripe (to the card or balance)", note.to_stripe_minor, note.currency)
    if note.stripe_credit_note_ids:
        for piece in wrap(f"Stripe credit notes: {', '.join(note.stripe_credit_note_ids)}", 7.5, page.right - MARGIN):
            page.need(LEADING)
            page.text(MARGIN, piece, 7.5)
            page.down()
    page.finish()
    return buffer.getvalue()


def render_statement_pdf(statement: Statement) -> bytes:
    """A client statement as a PDF: the invoice's layout, for one project, with the agency's markup."""
    title = f"Client statement · {statement.project_name} · {day(statement.period_start)}"
    buffer, page, _ = _new_pdf(title)
    page.running = Running(title, f"{seller().name} · Client statement · {statement.currency}")
    client = f"{statement.project_name} (client of {statement.agency_name})"
    _draw_parties(page, client, statement, "CLIENT STATEMENT", _statement_facts(statement))
    for heading, lines in _groups(statement.lines):
        _draw_table(page, heading, lines, statement.currency)
    _draw_statement_totals(page, statement)
    page.finish()
    return buffer.getvalue()


def _statement_facts(statement: Statement) -> list[tuple[str, str]]:
    source = f"Invoice {statement.invoice_number}" if statement.invoice_number else "Running (period not invoiced yet)"
    return [
        ("Project", statement.project_name),
        ("Service period", f"{day(statement.period_start)} {DASH} {inclusive_end(statement.period_end)}"),
        ("Made on", day(statement.created_at)),
        ("From", source),
        ("Currency", statement.currency),
    ]


def _draw_statement_totals(page: Pages, statement: Statement) -> None:
    currency = statement.currency
    page.need(LEADING * 7)
    page.down(4)
    _money_row(page, "Ad spend", statement.ad_spend_minor, currency)
    _money_row(page, "Platform fee", statement.platform_fee_minor, currency)
    _money_row(page, "Generation credits beyond the plan", statement.credits_cost_minor, currency)
    _money_row(page, "Subtotal", statement.subtotal_minor, currency)
    _money_row(page, f"Agency markup ({rate_text(statement.markup_bps)})", statement.markup_minor, currency)
    _money_row(page, "Total", statement.total_minor, currency, bold=True)
    page.down(8)

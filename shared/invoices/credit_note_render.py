"""Credit note documents: a PDF in the invoice's layout and a CSV with one row per credited line (UTF-8
with a BOM, CRLF, formula-like cells neutralised). The CSV's amount_minor column sums to the note's
amount."""

from __future__ import annotations

import csv
import io

from shared.invoices.models import CreditNote
from shared.invoices.render import ISSUER, _decimal, _Page
from shared.money import format_minor

CREDIT_NOTE_CSV_COLUMNS = [
    "credit_note_number",
    "invoice_number",
    "org_id",
    "issued_on",
    "reason",
    "section",
    "description",
    "project_id",
    "platform",
    "returned_to",
    "amount_minor",
    "amount",
    "currency",
]


def _cell(value: object) -> str:
    """A cell a spreadsheet shows as text (OWASP CSV injection: no leading = + - @ tab or CR)."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def render_credit_note_csv(note: CreditNote) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CREDIT_NOTE_CSV_COLUMNS)
    for line in note.lines:
        returned_to = "wallet" if line.paid_via == "wallet" else "stripe customer balance"
        row = [note.number, note.invoice_number, note.org_id, note.created_at[:10], note.reason, line.section]
        row += [line.description, line.project_id or "", line.platform or "", returned_to]
        writer.writerow(
            [_cell(v) for v in row] + [line.amount_minor, _decimal(line.amount_minor, note.currency), note.currency]
        )
    return ("\ufeff" + out.getvalue()).encode()


def render_credit_note_pdf(note: CreditNote) -> bytes:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen.canvas import Canvas

    buffer = io.BytesIO()
    pdf = Canvas(buffer, pagesize=A4, invariant=1)
    pdf.setTitle(f"Credit note {note.number}")
    page = _Page(pdf, *A4)
    edge = page.width - 40
    page.text(40, ISSUER[0], 16, bold=True)
    page.right(edge, "CREDIT NOTE", 16, bold=True)
    page.down(16)
    page.text(40, ISSUER[1])
    page.right(edge, f"Number {note.number}", bold=True)
    page.down()
    page.text(40, ISSUER[2])
    page.right(edge, f"Issued {note.created_at[:10]}")
    page.down()
    page.right(edge, f"Credits invoice {note.invoice_number}")
    page.down(22)
    page.text(40, "Credit to", bold=True)
    page.down()
    page.text(40, f"{note.bill_to_name} ({note.org_id})")
    page.down()
    page.text(40, f"Reason: {note.reason}")
    page.down(22)
    for line in note.lines:
        page.text(50, line.description[:78])
        page.right(edge, format_minor(line.amount_minor, note.currency))
        page.down()
    page.down(10)
    page.text(300, "Total credited", 10, bold=True)
    page.right(edge, format_minor(note.amount_minor, note.currency), 10, bold=True)
    page.down(16)
    if note.to_wallet_minor:
        page.text(40, f"Re-credited to the ad wallet: {format_minor(note.to_wallet_minor, note.currency)}", 8)
        page.down()
    if note.to_stripe_minor:
        shown = format_minor(note.to_stripe_minor, note.currency)
        page.text(40, f"Credited to your Stripe balance (taken off your next subscription invoice): {shown}", 8)
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()

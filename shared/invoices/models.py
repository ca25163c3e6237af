"""The invoice as stored and rendered. Amounts are integer minor units of the invoice currency."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict

Section = Literal["subscription", "credits", "ad_spend", "usage"]
PaidVia = Literal["stripe", "wallet", "info"]
# empty: the period was closed with nothing to bill (no Stripe invoice, no wallet movement, nothing due):
# recorded, never numbered, rendered or shown.
Status = Literal["draft", "finalized", "rendered", "issued", "failed", "empty"]
DocumentKind = Literal["pdf", "csv"]


class InvoiceLine(BaseModel):
    model_config = ConfigDict(frozen=True)

    section: Section
    description: str
    amount_minor: int
    paid_via: PaidVia  # info lines carry quantities; their amounts are charged on a Stripe line
    quantity: int | None = None
    project_id: str | None = None
    platform: str | None = None
    stripe_invoice_id: str | None = None


class Totals(BaseModel):
    model_config = ConfigDict(frozen=True)

    charged_through_stripe_minor: int  # what Stripe's invoices for the period charged
    stripe_unpaid_minor: int  # of that, still open (a failed charge)
    paid_from_wallet_minor: int  # ad spend + platform fees
    total_minor: int
    wallet_deficit_minor: int  # the wallet's balance below zero at close
    amount_due_minor: int  # unpaid Stripe charges + wallet deficit


class Invoice(BaseModel):
    invoice_id: str
    org_id: str
    period_key: str
    period_start: str
    period_end: str
    status: Status
    number: str | None = None
    currency: str
    bill_to_name: str
    billing_mode: str
    plan_name: str
    lines: list[InvoiceLine] = []
    totals: Totals | None = None
    stripe_invoice_ids: list[str] = []
    pdf_key: str | None = None
    csv_key: str | None = None
    created_at: str
    finalized_at: str | None = None
    issued_at: str | None = None
    reads: int = 0  # DynamoDB items read to assemble it (constant in ledger size)


@dataclass(frozen=True)
class DocumentUrl:
    """A short-lived presigned URL to download one of an invoice's documents."""

    url: str
    expires_in: int  # seconds

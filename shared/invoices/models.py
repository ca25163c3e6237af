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
    late_for: str | None = None  # the period key of an earlier, issued period this line was recorded late for


class WalletStatement(BaseModel):
    """The ad wallet over the invoice's period: every movement the period's invoice covers, by kind.
    `closing_minor` = `opening_minor` + the movements; the opening is the previous invoice's closing."""

    model_config = ConfigDict(frozen=True)

    opening_minor: int
    topups_minor: int  # money in (card, ACH, wire, auto-top-up)
    spend_minor: int  # ad spend (negative: money out)
    fees_minor: int  # platform fees (negative)
    refunds_minor: int  # back to the card (negative)
    reversals_minor: int  # top-ups taken back (disputes, failed payments), negative; bill reversals and
    # platform credits are positive
    adjustments_minor: int  # support's corrections and credit notes re-credited to the wallet
    closing_minor: int


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
    wallet_statement: WalletStatement | None = None  # agency orgs (and any org whose wallet moved)
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


CreditNoteStatus = Literal["issued"]


class CreditNote(BaseModel):
    """A correction of an issued invoice (support only): numbered in its own gapless series
    (`LBCN-<year>-<n>`), its money sent back the way it came (wallet lines re-credited to the wallet,
    Stripe-charged lines by a Stripe credit note). Lines carry positive amounts: what is credited."""

    credit_note_id: str
    org_id: str
    invoice_id: str  # the invoice it corrects
    invoice_number: str
    invoice_period_key: str
    number: str
    status: CreditNoteStatus = "issued"
    currency: str
    bill_to_name: str
    reason: str
    lines: list[InvoiceLine]
    amount_minor: int  # the sum of the lines
    to_wallet_minor: int  # of that, re-credited to the ad wallet
    to_stripe_minor: int  # of that, credited through Stripe (a Stripe credit note on the invoice that charged it)
    stripe_credit_note_ids: list[str] = []
    actor: str
    idempotency_key: str
    created_at: str
    pdf_key: str | None = None
    csv_key: str | None = None

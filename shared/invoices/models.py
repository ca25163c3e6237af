"""The invoice as stored and rendered. Amounts are integer minor units of the invoice currency."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict

Section = Literal["subscription", "credits", "ad_spend", "usage", "markup"]  # markup: client statements only
PaidVia = Literal["stripe", "wallet", "info", "agency"]  # agency: a statement's markup, the agency's own charge
# empty: the period was closed with nothing to bill (no Stripe invoice, no wallet movement, nothing due):
# recorded, never numbered, rendered or shown.
Status = Literal["draft", "finalized", "rendered", "issued", "failed", "empty"]
# What a customer sees of an invoice: numbered (finalized), its documents made (rendered), sent (issued).
# A draft is the run's work in progress; an empty period has no invoice.
CustomerStatus = Literal["finalized", "rendered", "issued"]
CUSTOMER_STATUSES: tuple[CustomerStatus, ...] = ("finalized", "rendered", "issued")
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
    unit: str | None = None  # what `quantity` counts: "credits", "runs", "events", "GB", "seats", "plan"
    # Stripe-style decimal minor units per unit (1.8 = 1.8 cents); amount = unit_price_total(quantity, it)
    unit_price_minor: Decimal | None = None
    service_start: str | None = None  # ISO instant, inclusive
    service_end: str | None = None  # ISO instant, exclusive (documents print the day before, inclusive)
    stripe_invoice_number: str | None = None  # Stripe's own number of the invoice that charged the line
    rate_bps: int | None = None  # fee lines: the platform fee rate...
    base_minor: int | None = None  # ...and the spend it applies to (the fee is rounded per bill)


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


PaymentMethod = Literal["card", "wire", "wallet", "balance", "refund"]


class Payment(BaseModel):
    """Money received (or, for `refund`, sent back) for the invoice, per source: what, how, when."""

    model_config = ConfigDict(frozen=True)

    method: PaymentMethod  # card: through Stripe; wire: recorded out of band; wallet: the prepaid ad wallet;
    # balance: the Stripe customer balance (credit) covered it; refund: a credit refunded to the card
    amount_minor: int
    on: str | None = None  # ISO date
    reference: str | None = None  # Stripe's invoice number, for card, wire, balance and refund


class BillTo(BaseModel):
    """Whom the invoice is for: the org's name and the billing details it gave (a snapshot at close)."""

    model_config = ConfigDict(frozen=True)

    name: str
    address_lines: list[str] = []
    email: str | None = None
    tax_id: str | None = None


class Totals(BaseModel):
    model_config = ConfigDict(frozen=True)

    charged_through_stripe_minor: int  # what Stripe's invoices for the period charged
    stripe_unpaid_minor: int  # of that, still open (a failed charge)
    paid_from_wallet_minor: int  # ad spend + platform fees
    total_minor: int
    wallet_deficit_minor: int  # the wallet's balance below zero at close
    amount_due_minor: int  # unpaid Stripe charges + wallet deficit
    tax_minor: int = 0  # no taxes are charged yet: documents print a 0.00 tax line, labelled so
    payments: list[Payment] = []  # what was paid, per source (method and date)
    due_on: str | None = None  # ISO date: when an unpaid Stripe charge is due (send_invoice terms)


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
    bill_to: BillTo | None = None  # the org's billing details at close (None on invoices closed before them)
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


StatementStatus = Literal["final", "running"]


class Statement(BaseModel):
    """One project's (one client's) statement for one period, for the agency to re-bill: the project's lines
    on the org's invoice for the period (its ad spend per platform and platform fee, paid from the wallet,
    and its generation credits), the cost of its credits beyond the plan (overage at the plan's unit
    price) and the agency's markup. `final`: read from the period's issued invoice; `running`: from the
    books so far (the current period, or one whose invoice is not issued yet), the same way."""

    model_config = ConfigDict(frozen=True)

    statement_id: str
    org_id: str
    agency_name: str
    # the client: one project
    project_id: str
    project_name: str
    # the period, and the invoice the lines are read from (none while running)
    period_key: str
    period_start: str
    period_end: str
    status: StatementStatus
    # the lines: the invoice's own for the project, the credits' cost, the markup
    currency: str
    lines: list[InvoiceLine]
    # the figures
    ad_spend_minor: int
    platform_fee_minor: int
    invoice_lines_minor: int  # the sum of the project's lines on the invoice (= ad spend + platform fee)
    credits_used: int
    credits_overage: int
    credits_cost_minor: int  # the overage credits at the plan's unit price, half-even
    subtotal_minor: int  # invoice lines + credits cost
    markup_bps: int
    markup_minor: int  # markup_bps of the subtotal, half-even, once
    total_minor: int
    created_at: str
    invoice_id: str | None = None  # the invoice read (final), none while running
    invoice_number: str | None = None

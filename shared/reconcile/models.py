"""What reconciliation finds and keeps. Amounts are integer minor units of the org's currency."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class DiscrepancyKind(StrEnum):
    # wallet <-> Stripe (one payment: a top-up's PaymentIntent, its charge, refunds and disputes)
    PAYMENT_NOT_CREDITED = "payment_not_credited"  # Stripe kept money the wallet never credited
    CREDIT_WITHOUT_PAYMENT = "credit_without_payment"  # the wallet credited money Stripe does not show
    CREDIT_AMOUNT_MISMATCH = "credit_amount_mismatch"
    REFUND_NOT_REFLECTED = "refund_not_reflected"  # Stripe refunded more (or less) than the wallet took
    DISPUTE_NOT_REFLECTED = "dispute_not_reflected"
    # wallet <-> itself
    BALANCE_NOT_ENTRIES = "balance_not_entries"  # sum(entries) != balance
    AVAILABLE_NOT_RULE = "available_not_rule"  # stored available != balance - held - floor
    HELD_NOT_HOLDS = "held_not_holds"  # held != the pending holds
    HOLD_PAST_EXPIRY = "hold_past_expiry"
    # credits and usage <-> Stripe
    OVERAGE_NOT_BILLED = "overage_not_billed"
    OVERAGE_AMOUNT_MISMATCH = "overage_amount_mismatch"  # billed another amount, or more than once
    # invoices <-> sources
    INVOICE_WALLET_LINES = "invoice_wallet_lines"  # wallet lines != the period's wallet aggregates
    INVOICE_STRIPE_TOTAL = "invoice_stripe_total"  # charged through Stripe != Stripe's invoices
    INVOICE_NUMBER_GAP = "invoice_number_gap"
    # platform bills <-> platform reports
    SPEND_NOT_BILLED = "spend_not_billed"  # a platform reported spend no bill covered in time
    SPEND_BILL_MISMATCH = "spend_bill_mismatch"  # billed another amount than reported
    # the run itself
    RECONCILE_FAILED = "reconcile_failed"  # the org's reconciliation raised: nothing of it was checked


# What the run corrects itself, because the rule is the one a lost Stripe webhook would have applied,
# keyed by Stripe's own ids (README "Reconciliation"): everything else waits for a person.
AUTO_CORRECTED = frozenset(
    {DiscrepancyKind.PAYMENT_NOT_CREDITED, DiscrepancyKind.REFUND_NOT_REFLECTED, DiscrepancyKind.DISPUTE_NOT_REFLECTED}
)


@dataclass(frozen=True)
class Finding:
    """One disagreement found by a check: `scope` names what was compared (a payment, a period, the
    wallet, a report), so the same disagreement found again is the same discrepancy."""

    kind: DiscrepancyKind
    org_id: str
    scope: str
    ours_minor: int
    theirs_minor: int
    causes: tuple[str, ...] = ()  # the ids behind it (payment intent, refund, invoice, bill ...)
    note: str = ""

    @property
    def key(self) -> str:
        return f"{self.kind.value}#{self.scope}"


@dataclass(frozen=True)
class Discrepancy:
    """A finding as kept: open until a run finds its scope agreeing again (or corrected it itself)."""

    kind: DiscrepancyKind
    org_id: str
    scope: str
    ours_minor: int
    theirs_minor: int
    currency: str
    causes: tuple[str, ...]
    note: str
    first_seen: str
    last_seen: str
    status: str = "open"  # open | resolved
    resolved_at: str | None = None
    resolution: str | None = None  # "agrees" (the cause was fixed, or resolved itself) | "auto_corrected"


@dataclass(frozen=True)
class OrgReport:
    """What one org's reconciliation did: every scope it checked, what it found, opened, closed."""

    org_id: str
    scopes: frozenset[str]
    findings: tuple[Finding, ...]
    opened: int = 0
    resolved: int = 0
    corrected: int = 0
    fixed: tuple[Finding, ...] = ()  # what the run corrected itself (found, and resolved at once)


@dataclass(frozen=True)
class RunSummary:
    day_from: str
    day_to: str
    orgs: int = 0
    findings: int = 0
    opened: int = 0
    resolved: int = 0
    corrected: int = 0
    failed: int = 0  # orgs whose reconciliation raised (each kept as a reconcile_failed discrepancy)
    open_total: int = 0
    stripe_reads: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    done: bool = True  # False: stopped at a checkpoint (time), the next invocation resumes


@dataclass(frozen=True)
class SpendReport:
    """What a platform says it spent for a project on a day (the latest report wins: platforms restate)."""

    org_id: str
    platform: str
    project_id: str
    day: str
    amount_minor: int
    currency: str
    report_id: str
    reported_at: str
    # The org was in agency mode when the report came: its spend is billed to the wallet. A BYO org's
    # platform bills the customer's own ad account, so its reports are kept but never expected as bills.
    agency: bool = True

"""The events this system publishes (source `layers.billing`): one schema per detail-type, checked when
an event is written to the outbox, so nothing leaves in a shape its consumers were not promised.
Every event's detail also carries `event_id` (added on delivery): the same for every delivery of it.
README "Events out" lists them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _Detail(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    org_id: str


class WalletStatusChanged(_Detail):
    """Wallet.LowBalance, Wallet.AgencySpendPaused, Wallet.AgencySpendResumed."""

    balance_minor: int
    currency: str
    status: str
    previous_status: str


class AutoTopUpDisabled(_Detail):
    """Wallet.AutoTopUpDisabled: the saved card failed every attempt; auto-top-up is off."""

    topup_id: str
    attempts: int


class RunwayAlert(_Detail):
    """Wallet.RunwayAlert: the wallet's runway fell to or below an alert stage (days) not alerted since it
    was last above it (README "Runway and its alerts"). `runway_tenths`: tenths of a day; the suggestion
    is the top-up that restores 7 days (0 and None when none is needed)."""

    stage_days: int
    runway_tenths: int
    funds_minor: int
    daily_rate_minor: int
    currency: str
    suggested_top_up_minor: int
    suggested_method: str | None


class CreditsUsageWarning(_Detail):
    """Credits.UsageWarning: a settle crossed 80 % or 100 % of the period's included credits."""

    period_key: str
    threshold_pct: int
    included: int
    used: int


class UsageAllowanceWarning(_Detail):
    """Usage.AllowanceWarning: the period's usage of an allowance (workflow runs, SDK events, media storage's
    peak in whole GB) reached 80 % or 100 % of what the plan includes (once per crossing)."""

    period_key: str
    metric: str
    threshold_pct: int
    included: int
    used: int


class CreditsOverageStarted(_Detail):
    """Credits.OverageStarted: the period's first credit beyond included and packs."""

    period_key: str
    overage: int


class ProjectBudgetCrossed(_Detail):
    """Project.BudgetWarning (80 %) / Project.BudgetReached (100 %): a bill's spend or a settle's credits
    crossed that share of a project's budget this period (`budget`: ad_spend, ad_spend:<platform>, credits;
    `limit` and `used` in minor units, or credits). The optimizer pauses that project's ads only."""

    project_id: str
    period_key: str
    budget: str
    threshold_pct: int
    limit: int
    used: int


class InvoiceIssued(_Detail):
    """Invoice.Issued: the monthly consolidated invoice is issued (PDF and CSV ready)."""

    invoice_id: str
    number: str | None
    period_key: str
    currency: str
    total_minor: int
    amount_due_minor: int


class SubscriptionStanding(_Detail):
    """Subscription.GraceStarted, Subscription.Suspended, Subscription.Restored, Subscription.Ended: what
    the org may use changed with its subscription (README "Entitlements and dunning")."""

    subscription_id: str
    status: str
    standing: str
    previous_standing: str
    plan_id: str
    grace_ends_at: str | None
    agency_spend: str  # "allowed" or "stopped"


class DiscrepancyChanged(_Detail):
    """Reconciliation.DiscrepancyFound, Reconciliation.DiscrepancyResolved: the daily reconciliation found
    our books disagreeing with Stripe, the ad platforms or themselves, or found them agreeing again
    (README "Reconciliation"). `org_id` is empty for an invoice number series."""

    kind: str
    scope: str
    ours_minor: int
    theirs_minor: int
    currency: str
    status: str


EVENTS: dict[str, type[_Detail]] = {
    "Wallet.LowBalance": WalletStatusChanged,
    "Wallet.AgencySpendPaused": WalletStatusChanged,
    "Wallet.AgencySpendResumed": WalletStatusChanged,
    "Wallet.AutoTopUpDisabled": AutoTopUpDisabled,
    "Wallet.RunwayAlert": RunwayAlert,
    "Credits.UsageWarning": CreditsUsageWarning,
    "Credits.OverageStarted": CreditsOverageStarted,
    "Project.BudgetWarning": ProjectBudgetCrossed,
    "Project.BudgetReached": ProjectBudgetCrossed,
    "Usage.AllowanceWarning": UsageAllowanceWarning,
    "Invoice.Issued": InvoiceIssued,
    "Subscription.GraceStarted": SubscriptionStanding,
    "Subscription.Suspended": SubscriptionStanding,
    "Subscription.Restored": SubscriptionStanding,
    "Subscription.Ended": SubscriptionStanding,
    "Reconciliation.DiscrepancyFound": DiscrepancyChanged,
    "Reconciliation.DiscrepancyResolved": DiscrepancyChanged,
}


def checked(detail_type: str, detail: dict[str, object]) -> dict[str, object]:
    """The detail, if it is exactly what `detail_type` promises; KeyError / ValidationError otherwise."""
    return EVENTS[detail_type].model_validate(detail).model_dump()

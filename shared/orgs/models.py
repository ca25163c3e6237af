"""Stored shapes of the org aggregate (what the repository reads and writes)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.catalog import Plan
from shared.clock import iso


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    BILLING = "billing"
    MEMBER = "member"


class BillingMode(StrEnum):
    AGENCY = "agency"
    BYO = "byo"


class ProjectStatus(StrEnum):
    ACTIVE = "active"
    ARCHIVED = "archived"


# Who may do what. Support staff (not members) may read any org and set enterprise terms.
MANAGE_MEMBERS = frozenset({Role.OWNER, Role.ADMIN})
MANAGE_PROJECTS = frozenset({Role.OWNER, Role.ADMIN})
MANAGE_BILLING = frozenset({Role.OWNER, Role.ADMIN, Role.BILLING})
MANAGE_ORG = frozenset({Role.OWNER, Role.ADMIN})
READ = frozenset(Role)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


OverageUnit = Annotated[Decimal, Field(ge=0, le=1_000_000, decimal_places=6)]


class EnterpriseTerms(_Model):
    """An org's contract (set by Layers sales through support): replaces the Enterprise catalog defaults.
    The base fee becomes the org's own Stripe price; invoices are sent (`send_invoice`, due
    `days_until_due` after issue: net 30 by default) or charged to a card (`charge_automatically`).
    Overage unit prices (minor units, decimals allowed) left out are the catalog's Enterprise prices."""

    base_minor: int = Field(ge=0, le=99_999_999)  # Stripe's largest unit_amount
    included_seats: int | None = Field(default=None, ge=1, le=1_000_000)
    max_active_projects: int | None = Field(default=None, ge=1, le=1_000_000)
    included_credits: int = Field(ge=0, le=10**9)
    platform_fee_bps: int = Field(ge=0, le=10_000)
    credit_overage_unit_minor: OverageUnit | None = None
    workflow_run_overage_unit_minor: OverageUnit | None = None
    sdk_event_overage_unit_minor: OverageUnit | None = None
    media_storage_gb_overage_unit_minor: OverageUnit | None = None
    collection: Literal["send_invoice", "charge_automatically"] = "send_invoice"
    days_until_due: int = Field(default=30, ge=1, le=365)

    def overage_prices(self) -> dict[str, Decimal]:
        """The unit prices these terms set (the rest stay the catalog's)."""
        fields = (
            "credit_overage_unit_minor",
            "workflow_run_overage_unit_minor",
            "sdk_event_overage_unit_minor",
            "media_storage_gb_overage_unit_minor",
        )
        return {name: value for name in fields if (value := getattr(self, name)) is not None}


class SubscriptionStatus(StrEnum):
    """Stripe's subscription statuses (Stripe is the source of truth)."""

    INCOMPLETE = "incomplete"
    INCOMPLETE_EXPIRED = "incomplete_expired"
    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    CANCELED = "canceled"
    UNPAID = "unpaid"
    PAUSED = "paused"


class SubscriptionState(_Model):
    """The org's Stripe subscription as last fetched from Stripe."""

    subscription_id: str
    status: SubscriptionStatus
    plan_id: str
    catalog_version: str | None = None  # of the subscription's base price (a contract's own for Enterprise)
    extra_seats: int
    current_period_start: datetime
    current_period_end: datetime
    billing_anchor: datetime
    cancel_at_period_end: bool
    # When we first saw this subscription not paying (past_due, unpaid, paused), until it pays again:
    # the grace period runs from here (shared/orgs/entitlement.py).
    dunning_since: datetime | None = None


class BillingDetails(_Model):
    """What the org wants on its invoices under its name (the "bill to" block)."""

    address_lines: list[str] = []
    email: str | None = None
    tax_id: str | None = None


class Org(_Model):
    org_id: str
    name: str
    billing_mode: BillingMode
    currency: str
    plan_id: str
    catalog_version: str
    enterprise_terms: EnterpriseTerms | None = None
    member_count: int
    owner_count: int
    active_project_count: int
    created_by: str
    created_at: datetime
    updated_at: datetime
    stripe_customer_id: str | None = None
    subscription: SubscriptionState | None = None
    # Stripe-fetch time (ms) of `subscription`; an older fetch never overwrites a newer one.
    subscription_synced_ms: int = 0
    # Bumped by every seat change: the idempotency key of the matching Stripe quantity update.
    seat_revision: int = 0
    # Agency spend (holds, top-ups) is allowed until this instant (ISO, UTC); None = no limit. Written
    # with the subscription's state and copied to the wallet, whose holds check it in their write.
    agency_until: str | None = None
    billing_details: BillingDetails | None = None  # printed on invoices (bill to)

    def agency_spend_open(self, now: datetime) -> bool:
        return self.agency_until is None or self.agency_until > iso(now)

    @property
    def has_live_subscription(self) -> bool:
        return self.subscription is not None and self.subscription.status not in (
            SubscriptionStatus.CANCELED,
            SubscriptionStatus.INCOMPLETE_EXPIRED,
        )

    def effective_plan(self, plan: Plan) -> Plan:
        """The catalog plan with this org's contract applied, if the plan is the custom one its terms are for."""
        terms = self.enterprise_terms
        if terms is None or not plan.custom:
            return plan
        book = plan.price_book(self.currency).model_copy(
            update={"base_minor": terms.base_minor, **terms.overage_prices()}
        )
        return plan.model_copy(
            update={
                "included_seats": terms.included_seats,
                "max_active_projects": terms.max_active_projects,
                "included_credits": terms.included_credits,
                "platform_fee_bps": terms.platform_fee_bps,
                "prices": {self.currency: book},
            }
        )


class Member(_Model):
    org_id: str
    user_id: str
    email: str | None = None
    role: Role
    added_by: str
    added_at: datetime


class Project(_Model):
    org_id: str
    project_id: str
    name: str
    status: ProjectStatus
    created_at: datetime
    updated_at: datetime


class Membership(_Model):
    """One of the caller's orgs, as listed for them."""

    org_id: str
    name: str
    role: Role

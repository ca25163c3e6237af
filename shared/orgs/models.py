"""Stored shapes of the org aggregate (what the repository reads and writes)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from shared.catalog import Plan


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


class EnterpriseTerms(_Model):
    """Per-org terms that replace the Enterprise catalog defaults (set by Layers sales/support)."""

    base_minor: int = Field(ge=0)
    included_seats: int | None = Field(default=None, ge=1)
    max_active_projects: int | None = Field(default=None, ge=1)
    included_credits: int = Field(ge=0)
    platform_fee_bps: int = Field(ge=0, le=10_000)


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
    extra_seats: int
    current_period_start: datetime
    current_period_end: datetime
    billing_anchor: datetime
    cancel_at_period_end: bool


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

    @property
    def has_live_subscription(self) -> bool:
        return self.subscription is not None and self.subscription.status not in (
            SubscriptionStatus.CANCELED,
            SubscriptionStatus.INCOMPLETE_EXPIRED,
        )

    def effective_plan(self, plan: Plan) -> Plan:
        """The catalog plan with this org's enterprise terms applied (if any)."""
        terms = self.enterprise_terms
        if terms is None:
            return plan
        book = plan.price_book(self.currency).model_copy(update={"base_minor": terms.base_minor})
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

"""Request and response models of the HTTP API (the OpenAPI document is generated from these)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from functions.limits import (
    MAX_ADDRESS_LINES,
    MAX_CONTRACT_BASE_MINOR,
    MAX_CREDITS,
    MAX_MINOR,
    PRORATION_DATE_MAX,
    PRORATION_DATE_MIN,
    AddressLine,
    CurrencyCode,
    Email,
    HttpUrl,
    Id,
    Name,
    TaxId,
    UnitPrice,
    UserId,
)
from shared.billing.subscriptions import ChangePreview
from shared.budgets.rules import AD_SPEND, CREDITS, left, platform_budget
from shared.budgets.service import BudgetState
from shared.catalog import LayerTemplate, Plan, PriceBook, TemplateCatalog
from shared.clock import iso
from shared.orgs.entitlement import Entitlement, Standing
from shared.orgs.models import (
    BillingDetails,
    BillingMode,
    EnterpriseTerms,
    Member,
    Membership,
    Org,
    Project,
    ProjectStatus,
    Role,
)
from shared.orgs.service import OrgView

__all__ = ["HttpUrl"]  # routes take it from here too


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Reply(BaseModel):
    model_config = ConfigDict(ser_json_timedelta="iso8601")


# ---------------------------------------------------------------- catalog
class PriceBookOut(Reply):
    base_minor: int
    extra_seat_minor: int | None
    credit_overage_unit_minor: Decimal | None = Field(description="Stripe-style unit_amount_decimal")
    workflow_run_overage_unit_minor: Decimal | None
    sdk_event_overage_unit_minor: Decimal | None
    media_storage_gb_overage_unit_minor: Decimal | None

    @classmethod
    def of(cls, book: PriceBook) -> PriceBookOut:
        return cls.model_validate(book.model_dump())


class AllowancesOut(Reply):
    workflow_runs: int
    sdk_events: int
    media_storage_gb: int


class PlanOut(Reply):
    plan_id: str
    name: str
    custom: bool
    agency_mode_allowed: bool
    included_seats: int | None = Field(description="null = unlimited")
    extra_seats_sold: bool
    max_active_projects: int | None = Field(description="null = unlimited")
    included_credits: int
    allowances: AllowancesOut
    platform_fee_bps: int | None
    prices: dict[str, PriceBookOut]

    @classmethod
    def of(cls, plan: Plan) -> PlanOut:
        return cls(
            plan_id=plan.plan_id,
            name=plan.name,
            custom=plan.custom,
            agency_mode_allowed=plan.agency_mode_allowed,
            included_seats=plan.included_seats,
            extra_seats_sold=plan.included_seats is not None and plan.seat_limit() is None,
            max_active_projects=plan.max_active_projects,
            included_credits=plan.included_credits,
            allowances=AllowancesOut(**plan.allowances.model_dump()),
            platform_fee_bps=plan.platform_fee_bps,
            prices={c: PriceBookOut.of(b) for c, b in plan.prices.items()},
        )


class PlanList(Reply):
    catalog_version: str
    plans: list[PlanOut]


class TemplateOut(Reply):
    template_id: str
    name: str
    credit_costs: dict[str, int] = Field(description="Effective credits per generation, overrides applied")
    overrides: dict[str, int]

    @classmethod
    def of(cls, catalog: TemplateCatalog, template: LayerTemplate) -> TemplateOut:
        return cls(
            template_id=template.template_id,
            name=template.name,
            credit_costs=catalog.credit_costs(template),
            overrides=template.overrides,
        )


class TemplateList(Reply):
    catalog_version: str
    default_credit_costs: dict[str, int]
    templates: list[TemplateOut]


# ---------------------------------------------------------------- orgs
class CreateOrgRequest(Request):
    name: Name
    billing_mode: BillingMode = BillingMode.BYO
    currency: CurrencyCode = "USD"
    plan_id: Id = "free"


class BillingDetailsIn(Request):
    """What the org's invoices print under its name. Every field is replaced: send them all."""

    address_lines: list[AddressLine] = Field(default=[], max_length=MAX_ADDRESS_LINES, description="Postal address")
    email: Email | None = Field(default=None, description="Where invoices go (accounts payable)")
    tax_id: TaxId | None = Field(default=None, description="VAT / GST / EIN, as the tax authority writes it")

    def details(self) -> BillingDetails:
        return BillingDetails(address_lines=self.address_lines, email=self.email, tax_id=self.tax_id)


class BillingDetailsOut(Reply):
    address_lines: list[str]
    email: str | None
    tax_id: str | None


class UpdateOrgRequest(Request):
    name: Name | None = None
    billing_mode: BillingMode | None = None
    currency: CurrencyCode | None = None
    billing_details: BillingDetailsIn | None = Field(
        default=None, description="Printed on invoices (bill to); `null` removes them (owner/admin/billing)"
    )

    @model_validator(mode="after")
    def _something(self) -> Self:
        nothing = self.name is None and self.billing_mode is None and self.currency is None
        if nothing and "billing_details" not in self.model_fields_set:
            raise ValueError("give at least one of name, billing_mode, currency, billing_details")
        return self

    def billing_details_change(self) -> BillingDetails | None:
        """The details to store (empty ones remove them); None: no change asked."""
        if "billing_details" not in self.model_fields_set:
            return None
        return self.billing_details.details() if self.billing_details else BillingDetails()


class EnterpriseTermsIn(Request):
    """Terms Layers support sets for a custom plan (bounded like every amount a request carries)."""

    base_minor: int = Field(strict=True, ge=0, le=MAX_CONTRACT_BASE_MINOR, description="Monthly base fee")
    included_seats: int | None = Field(default=None, strict=True, ge=1, le=1_000_000)
    max_active_projects: int | None = Field(default=None, strict=True, ge=1, le=1_000_000)
    included_credits: int = Field(strict=True, ge=0, le=MAX_CREDITS)
    platform_fee_bps: int = Field(strict=True, ge=0, le=10_000)
    credit_overage_unit_minor: UnitPrice | None = None
    workflow_run_overage_unit_minor: UnitPrice | None = None
    sdk_event_overage_unit_minor: UnitPrice | None = None
    media_storage_gb_overage_unit_minor: UnitPrice | None = None
    collection: Literal["send_invoice", "charge_automatically"] = Field(
        default="send_invoice", description="send_invoice: Stripe sends the invoice, due after days_until_due"
    )
    days_until_due: int = Field(default=30, strict=True, ge=1, le=365)

    def terms(self) -> EnterpriseTerms:
        return EnterpriseTerms.model_validate(self.model_dump())


class ChangePlanRequest(Request):
    plan_id: Id
    enterprise_terms: EnterpriseTermsIn | None = Field(default=None, description="Support only, custom plans")


class SeatsOut(Reply):
    used: int
    included: int | None
    limit: int | None = Field(description="null = no hard limit (unlimited, or extra seats are sold)")
    extra_seat_minor: int | None


class ProjectsOut(Reply):
    active: int
    limit: int | None


class PlanRef(Reply):
    plan_id: str
    name: str
    catalog_version: str


class OrgOut(Reply):
    org_id: str
    name: str
    billing_mode: BillingMode
    currency: str
    plan: PlanRef
    your_role: Role | None = Field(description="null for Layers support staff")
    seats: SeatsOut
    projects: ProjectsOut
    platform_fee_bps: int | None = Field(description="Applied to ad spend in agency mode only")
    billing_details: BillingDetailsOut = Field(description="Printed on invoices under the org's name")
    standing: Standing = Field(description="paid, grace (payment failed, plan kept), suspended (Free limits), free")
    grace_ends_at: str | None = Field(description="While in grace: when the Free limits start unless paid")
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, view: OrgView) -> OrgOut:
        org, plan = view.org, view.plan
        book = plan.price_book(org.currency)
        return cls(
            org_id=org.org_id,
            name=org.name,
            billing_mode=org.billing_mode,
            currency=org.currency,
            plan=PlanRef(plan_id=plan.plan_id, name=plan.name, catalog_version=org.catalog_version),
            your_role=view.role,
            seats=SeatsOut(
                used=org.member_count,
                included=plan.included_seats,
                limit=plan.seat_limit(),
                extra_seat_minor=book.extra_seat_minor,
            ),
            projects=ProjectsOut(active=org.active_project_count, limit=plan.max_active_projects),
            platform_fee_bps=plan.platform_fee_bps if org.billing_mode is BillingMode.AGENCY else None,
            billing_details=BillingDetailsOut.model_validate((org.billing_details or BillingDetails()).model_dump()),
            standing=view.entitlement.standing,
            grace_ends_at=iso(view.entitlement.grace_ends) if view.entitlement.grace_ends else None,
            created_at=iso(org.created_at),
            updated_at=iso(org.updated_at),
        )


class MembershipOut(Reply):
    org_id: str
    name: str
    role: Role

    @classmethod
    def of(cls, m: Membership) -> MembershipOut:
        return cls(org_id=m.org_id, name=m.name, role=m.role)


class MembershipPage(Reply):
    items: list[MembershipOut]
    next_cursor: str | None


# ---------------------------------------------------------------- members
class AddMemberRequest(Request):
    user_id: UserId = Field(description="The person's identity (JWT `sub`)")
    email: Email | None = None
    role: Role = Role.MEMBER


class ChangeRoleRequest(Request):
    role: Role


class MemberOut(Reply):
    user_id: str
    email: str | None
    role: Role
    added_by: str
    added_at: str

    @classmethod
    def of(cls, m: Member) -> MemberOut:
        return cls(user_id=m.user_id, email=m.email, role=m.role, added_by=m.added_by, added_at=iso(m.added_at))


class MemberPage(Reply):
    items: list[MemberOut]
    next_cursor: str | None


# ---------------------------------------------------------------- projects
class CreateProjectRequest(Request):
    name: Name


class BudgetLineOut(Reply):
    budget: str = Field(description="ad_spend | ad_spend:<platform> | credits")
    limit: int | None = Field(description="Per period: minor units of the wallet's currency, or credits; null: none")
    used: int = Field(description="Spent by bills (ad spend, without the platform fee) or used by settles (credits)")
    held: int = Field(description="Held by open wallet holds, or reserved by open credit reservations")
    committed: int = Field(description="used + held: what counts against the limit")
    left: int | None = Field(description="limit - committed, never below 0: what new holds / reservations may take")


class BudgetOut(Reply):
    project_id: str
    period_key: str
    period_start: str
    period_end: str
    ad_spend_minor: int | None = Field(description="The monthly ad-spend limit; null: none")
    platforms_minor: dict[str, int] = Field(description="Monthly ad-spend limits per platform")
    credits: int | None = Field(description="The monthly generation-credit limit; null: none")
    lines: list[BudgetLineOut] = Field(description="ad_spend, each platform with spend or a limit, credits")
    updated_at: str | None
    updated_by: str | None

    @classmethod
    def of(cls, state: BudgetState) -> BudgetOut:
        b, u = state.budget, state.usage
        limits = b.limits()
        platforms = sorted({platform_budget(p) for p in (*b.platforms_minor, *u.platform_spent, *u.platform_held)})
        names = [AD_SPEND, *platforms]
        lines = []
        for name in [*names, CREDITS]:
            limit, committed = limits.get(name), u.committed(name)
            held = committed - max(0, u.used(name))
            free = None if limit is None else left(limit, committed)
            lines.append(
                BudgetLineOut(budget=name, limit=limit, used=u.used(name), held=held, committed=committed, left=free)
            )
        return cls(
            project_id=state.project_id,
            period_key=state.period.key,
            period_start=iso(state.period.start),
            period_end=iso(state.period.end),
            ad_spend_minor=b.ad_spend_minor,
            platforms_minor=dict(b.platforms_minor),
            credits=b.credits,
            lines=lines,
            updated_at=b.updated_at or None,
            updated_by=b.updated_by or None,
        )


class BudgetRequest(Request):
    ad_spend_minor: int | None = Field(
        default=None, strict=True, ge=0, le=MAX_MINOR, description="Monthly ad-spend limit; null or absent: none"
    )
    platforms_minor: dict[Id, Annotated[int, Field(strict=True, ge=0, le=MAX_MINOR)]] = Field(
        default_factory=dict, max_length=20, description="Monthly ad-spend limits per platform (meta, tiktok ...)"
    )
    credits: int | None = Field(
        default=None, strict=True, ge=0, le=MAX_CREDITS, description="Monthly credit limit; null or absent: none"
    )


class ProjectOut(Reply):
    project_id: str
    name: str
    status: ProjectStatus
    created_at: str
    updated_at: str
    budget: BudgetOut | None = Field(default=None, description="The project's budget this period")

    @classmethod
    def of(cls, p: Project, budget: BudgetState | None = None) -> ProjectOut:
        return cls(
            project_id=p.project_id,
            name=p.name,
            status=p.status,
            created_at=iso(p.created_at),
            updated_at=iso(p.updated_at),
            budget=BudgetOut.of(budget) if budget else None,
        )


class ProjectPage(Reply):
    items: list[ProjectOut]
    next_cursor: str | None


# ---------------------------------------------------------------- subscription
class CheckoutRequest(Request):
    plan_id: Id
    success_url: HttpUrl
    cancel_url: HttpUrl


class CheckoutOut(Reply):
    checkout_session_id: str
    url: str


class PortalRequest(Request):
    return_url: HttpUrl


class PortalOut(Reply):
    url: str


class SubscriptionOut(Reply):
    org_id: str
    status: str = Field(description="Stripe's subscription status, or `none`")
    plan: PlanRef
    members: int
    included_seats: int | None
    extra_seats_billed: int
    current_period_start: str | None
    current_period_end: str | None
    billing_anniversary_day: int | None = Field(description="Day of month the period renews (UTC)")
    cancel_at_period_end: bool
    has_billing_account: bool
    standing: Standing = Field(description="paid, grace (payment failed, plan kept), suspended (Free limits), free")
    grace_ends_at: str | None = Field(description="While in grace: when the Free limits start unless paid")
    limits_plan_id: str = Field(description="The plan whose limits apply now (Free unless paid or in grace)")

    @classmethod
    def of(cls, org: Org, granted: Entitlement) -> SubscriptionOut:
        sub, plan = org.subscription, granted.subscribed
        return cls(
            org_id=org.org_id,
            status=sub.status.value if sub else "none",
            plan=PlanRef(plan_id=plan.plan_id, name=plan.name, catalog_version=org.catalog_version),
            members=org.member_count,
            included_seats=plan.included_seats,
            extra_seats_billed=sub.extra_seats if sub else 0,
            current_period_start=iso(sub.current_period_start) if sub else None,
            current_period_end=iso(sub.current_period_end) if sub else None,
            billing_anniversary_day=sub.billing_anchor.day if sub else None,
            cancel_at_period_end=sub.cancel_at_period_end if sub else False,
            has_billing_account=org.stripe_customer_id is not None,
            standing=granted.standing,
            grace_ends_at=iso(granted.grace_ends) if granted.grace_ends else None,
            limits_plan_id=granted.plan.plan_id,
        )


class PlanPreviewRequest(Request):
    plan_id: Id


class PlanChangeRequest(Request):
    plan_id: Id
    proration_date: int | None = Field(
        default=None,
        strict=True,
        ge=PRORATION_DATE_MIN,
        le=PRORATION_DATE_MAX,
        description="From the preview, to get exactly its amounts (Unix seconds, between the period's start and "
        "now: else 422 invalid_proration_date); none = now",
    )


class ProrationLineOut(Reply):
    description: str
    amount_minor: int


class PlanChangePreviewOut(Reply):
    plan_id: str
    currency: str
    proration_date: int
    lines: list[ProrationLineOut]
    net_minor: int = Field(description="> 0 charged now, < 0 refunded")
    charge_now_minor: int
    refund_minor: int

    @classmethod
    def of(cls, preview: ChangePreview) -> PlanChangePreviewOut:
        return cls(
            plan_id=preview.plan.plan_id,
            currency=preview.currency,
            proration_date=preview.proration_date,
            lines=[ProrationLineOut(description=d, amount_minor=a) for d, a in preview.lines],
            net_minor=preview.net_minor,
            charge_now_minor=preview.charge_now_minor,
            refund_minor=preview.refund_minor,
        )


class PlanChangeOut(Reply):
    subscription: SubscriptionOut
    proration: PlanChangePreviewOut

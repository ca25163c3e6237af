"""Generation credits and usage allowances: reads for members, settings for billing, adjustments
for Layers support, credit packs through Stripe Checkout."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import Router
from pydantic import BaseModel, ConfigDict, Field, field_validator

from functions.api.container import services
from functions.api.routes.common import Cursor, Limit, OptionalKey, OrgId, RequiredKey, caller_of
from functions.api.schemas import BudgetOut, CheckoutOut, HttpUrl
from functions.limits import MAX_CREDITS, Id, Reason
from shared.clock import iso

router = Router()


class ProjectCreditsOut(BaseModel):
    project_id: str
    used: int
    included_used: int
    packs_used: int
    overage: int
    reserved: int
    generations: int


class CreditsOut(BaseModel):
    org_id: str
    period_key: str
    period_start: str
    period_end: str
    included: int = Field(description="The plan's credits for this period plus support grants")
    used: int
    included_used: int
    packs_used: int
    overage: int = Field(description="Credits used beyond included and packs, billed at period end")
    reserved: int
    packs_remaining: int = Field(description="Purchased credits left; they never expire")
    available: int = Field(description="included remaining + packs remaining - reserved")
    overage_allowed: bool
    monthly_cap: int | None
    projects: list[ProjectCreditsOut]
    project_budgets: list[BudgetOut] = Field(
        default_factory=list, description="The budgets of the projects that have one, this period"
    )


class CreditEntryOut(BaseModel):
    seq: int
    kind: str
    credits: int
    delta: int = Field(description="Change to `available`")
    balance_after: int = Field(description="`available` after this entry")
    project_id: str | None
    ref: str | None = Field(description="What caused it (a workflow run, a pack payment, a support key)")
    actor: str | None
    period_key: str
    created_at: str


class CreditEntryPage(BaseModel):
    items: list[CreditEntryOut]
    next_cursor: str | None


class CapRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    monthly_cap: int | None = Field(
        strict=True, ge=1, le=MAX_CREDITS, description="Hard stop on credits per period; null removes it"
    )


class AdjustmentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    credits: int = Field(
        strict=True,
        ge=-MAX_CREDITS,
        le=MAX_CREDITS,
        description="> 0 grants this period's credits, < 0 claws them back; 0 is refused",
    )
    reason: Reason

    @field_validator("credits")
    @classmethod
    def _not_zero(cls, credits: int) -> int:
        if credits == 0:
            raise ValueError("an adjustment of 0 credits changes nothing: give a grant (> 0) or a claw-back (< 0)")
        return credits


class AdjustmentOut(BaseModel):
    org_id: str
    available: int


class PackCheckoutRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pack_id: Id
    success_url: HttpUrl
    cancel_url: HttpUrl


class AllowanceOut(BaseModel):
    metric: str
    used: int
    included: int
    overage: int
    overage_unit_price_minor: str | None = Field(description="Decimal minor units per unit; null = none sold")


class DayUsageOut(BaseModel):
    day: str = Field(description="UTC day (YYYY-MM-DD); media storage: the day's peak in GB")
    quantity: int
    project_id: str | None = None


class MetricSeriesOut(BaseModel):
    metric: str
    days: list[DayUsageOut]
    projects: list[DayUsageOut] = Field(description="Per project and day, where the events named a project")


class ProjectionOut(BaseModel):
    metric: str
    projected: int = Field(description="At the period's end at the rate so far (media storage: the peak so far)")
    overage: int
    overage_minor: int | None = Field(description="The projected overage at the plan's unit price (half-even)")


class UsageOut(BaseModel):
    org_id: str
    period_key: str
    period_start: str
    period_end: str
    allowances: list[AllowanceOut]
    series: list[MetricSeriesOut] = Field(description="This period, daily, per metric")
    last_period_key: str
    last_period_series: list[MetricSeriesOut]
    projections: list[ProjectionOut]


def _series_out(series: list[Any]) -> list[MetricSeriesOut]:
    return [
        MetricSeriesOut(
            metric=s.metric,
            days=[DayUsageOut(day=d.day, quantity=d.quantity) for d in s.days],
            projects=[DayUsageOut(day=d.day, quantity=d.quantity, project_id=d.project_id) for d in s.projects],
        )
        for s in series
    ]


def _credits_out(org_id: str, summary: Any) -> CreditsOut:
    a = summary.account
    return CreditsOut(
        org_id=org_id,
        period_key=summary.period.key,
        period_start=iso(summary.period.start),
        period_end=iso(summary.period.end),
        included=a.included,
        used=a.used,
        included_used=a.included_used,
        packs_used=a.packs_used,
        overage=a.overage,
        reserved=a.reserved,
        packs_remaining=a.packs,
        available=a.available,
        overage_allowed=a.overage_allowed,
        monthly_cap=a.cap,
        projects=[
            ProjectCreditsOut(
                project_id=p["project_id"],
                **{
                    k: int(p.get(k, 0))
                    for k in ("used", "included_used", "packs_used", "overage", "reserved", "generations")
                },
            )
            for p in summary.projects
        ],
        project_budgets=[BudgetOut.of(b) for b in summary.budgets],
    )


@router.get("/v1/orgs/<org_id>/credits", tags=["credits"], summary="This period's credits, in total and per project")
def get_credits(org_id: OrgId) -> CreditsOut:
    return _credits_out(org_id, services().credits.summary(caller_of(router), org_id))


@router.get("/v1/orgs/<org_id>/credits/events", tags=["credits"], summary="The credit ledger, newest first")
def credit_events(org_id: OrgId, cursor: Cursor = None, limit: Limit = 50) -> CreditEntryPage:
    page = services().credits.entries(caller_of(router), org_id, cursor, limit)
    return CreditEntryPage(
        items=[
            CreditEntryOut(
                seq=e.seq,
                kind=e.kind,
                credits=e.fields["credits"],
                delta=e.amount,
                balance_after=e.balance_after,
                project_id=e.fields.get("project_id"),
                ref=e.fields.get("ref"),
                actor=e.fields.get("actor"),
                period_key=e.fields["period_key"],
                created_at=e.created_at,
            )
            for e in page.items
        ],
        next_cursor=page.next_cursor,
    )


@router.put("/v1/orgs/<org_id>/credits/cap", tags=["credits"], summary="Set or remove the monthly credit cap")
def set_cap(org_id: OrgId, body: CapRequest) -> CreditsOut:
    caller = caller_of(router)
    services().credits.set_cap(caller, org_id, body.monthly_cap)
    return _credits_out(org_id, services().credits.summary(caller, org_id))


@router.post(
    "/v1/orgs/<org_id>/credits/adjustments",
    tags=["credits"],
    status_code=201,
    summary="Support: grant or claw back credits (Idempotency-Key required)",
)
def adjust(org_id: OrgId, body: AdjustmentRequest, idempotency_key: RequiredKey) -> AdjustmentOut:
    available = services().credits.adjust(
        caller_of(router), org_id, credits=body.credits, reason=body.reason, idempotency_key=idempotency_key
    )
    return AdjustmentOut(org_id=org_id, available=available)


@router.post(
    "/v1/orgs/<org_id>/credits/packs/checkout",
    tags=["credits"],
    status_code=201,
    summary="Buy a credit pack: a Stripe Checkout URL",
)
def buy_pack(org_id: OrgId, body: PackCheckoutRequest, idempotency_key: OptionalKey = None) -> CheckoutOut:
    attempt = idempotency_key or str(router.current_event.raw_event["requestContext"]["requestId"])
    session_id, url = services().subscriptions.start_pack_checkout(
        caller_of(router),
        org_id,
        pack_id=body.pack_id,
        success_url=body.success_url,
        cancel_url=body.cancel_url,
        attempt=attempt,
    )
    return CheckoutOut(checkout_session_id=session_id, url=url)


@router.get(
    "/v1/orgs/<org_id>/usage",
    tags=["credits"],
    summary="Usage allowances this period, daily series of this period and the last, projections",
)
def get_usage(org_id: OrgId) -> UsageOut:
    report = services().usage.report(caller_of(router), org_id)
    return UsageOut(
        org_id=org_id,
        period_key=report.period.key,
        period_start=iso(report.period.start),
        period_end=iso(report.period.end),
        allowances=[
            AllowanceOut(
                metric=a.metric,
                used=a.used,
                included=a.included,
                overage=a.overage,
                overage_unit_price_minor=a.unit_price_minor,
            )
            for a in report.allowances
        ],
        series=_series_out(report.current),
        last_period_key=report.last_period.key,
        last_period_series=_series_out(report.last),
        projections=[
            ProjectionOut(metric=p.metric, projected=p.projected, overage=p.overage, overage_minor=p.overage_minor)
            for p in report.projections
        ],
    )

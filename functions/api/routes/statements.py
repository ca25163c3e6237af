"""Per-client statements: a project's costs for a period (ad spend per platform, platform fee, generation
credits and their cost) with the agency's markup, for re-billing its client; PDF and CSV like invoices."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from pydantic import BaseModel, ConfigDict, Field

from functions.api.container import services
from functions.api.routes.common import Limit, OrgId, PathId, caller_of
from functions.api.routes.invoices import DocumentLink, InvoiceLineOut
from shared.invoices.models import Statement, StatementStatus
from shared.invoices.statements import MAX_MARKUP_BPS, StatementSettings

router = Router()
ProjectId = PathId
StatementId = Annotated[str, Path(pattern=r"^stmt_[0-9TZ]{1,40}$")]
StatementCursor = Annotated[
    str | None, Query(pattern=r"^stmt_[0-9TZ]{1,40}$", description="The next_cursor of the page before")
]


class StatementSettingsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    markup_bps: int = Field(
        strict=True, ge=0, le=MAX_MARKUP_BPS, description="The agency's markup in basis points (250 = 2.5 %)"
    )


class StatementSettingsOut(BaseModel):
    project_id: str
    markup_bps: int
    updated_at: str | None
    updated_by: str | None
    from_period_key: str | None = Field(
        description="The first period this markup is in effect for (a change applies from the current period "
        "on; earlier periods' statements keep theirs); null: since the start"
    )

    @classmethod
    def of(cls, settings: StatementSettings) -> StatementSettingsOut:
        return cls.model_validate(asdict(settings))


class StatementOut(BaseModel):
    statement_id: str
    org_id: str
    project_id: str
    project_name: str
    period_start: str
    period_end: str
    status: StatementStatus = Field(description="final: read from the issued invoice; running: the books so far")
    invoice_id: str | None
    invoice_number: str | None
    currency: str
    lines: list[InvoiceLineOut]
    ad_spend_minor: int
    platform_fee_minor: int
    invoice_lines_minor: int = Field(description="The project's lines on the org's invoice: ad spend + platform fee")
    credits_used: int
    credits_overage: int
    credits_cost_minor: int = Field(description="The overage credits at the plan's unit price, half-even")
    subtotal_minor: int
    markup_bps: int
    markup_minor: int = Field(description="markup_bps of the subtotal, half-even, once")
    total_minor: int

    @classmethod
    def of(cls, s: Statement) -> StatementOut:
        fields = s.model_dump(exclude={"lines", "agency_name", "period_key", "created_at"})
        return cls(**fields, lines=[InvoiceLineOut.of(line) for line in s.lines])


class StatementPeriodOut(BaseModel):
    statement_id: str
    period_start: str
    period_end: str


class StatementPage(BaseModel):
    items: list[StatementPeriodOut]
    next_cursor: str | None


_BASE = "/v1/orgs/<org_id>/projects/<project_id>"


@router.get(f"{_BASE}/statement-settings", tags=["statements"], summary="The agency's markup on the project")
def statement_settings(org_id: OrgId, project_id: ProjectId) -> StatementSettingsOut:
    return StatementSettingsOut.of(services().statements.settings(caller_of(router), org_id, project_id))


@router.put(f"{_BASE}/statement-settings", tags=["statements"], summary="Set the agency's markup on the project")
def set_statement_settings(
    org_id: OrgId, project_id: ProjectId, body: StatementSettingsRequest
) -> StatementSettingsOut:
    settings = services().statements.configure(caller_of(router), org_id, project_id, body.markup_bps)
    return StatementSettingsOut.of(settings)


@router.get(
    f"{_BASE}/statements", tags=["statements"], summary="The project's statements, one per period, newest first"
)
def list_statements(
    org_id: OrgId, project_id: ProjectId, cursor: StatementCursor = None, limit: Limit = 12
) -> StatementPage:
    page = services().statements.periods(caller_of(router), org_id, project_id, cursor, limit)
    items = [
        StatementPeriodOut(statement_id=p.statement_id, period_start=p.period_start, period_end=p.period_end)
        for p in page.items
    ]
    return StatementPage(items=items, next_cursor=page.next_cursor)


@router.get(f"{_BASE}/statements/<statement_id>", tags=["statements"], summary="One client statement")
def get_statement(org_id: OrgId, project_id: ProjectId, statement_id: StatementId) -> StatementOut:
    return StatementOut.of(services().statements.get(caller_of(router), org_id, project_id, statement_id))


@router.get(f"{_BASE}/statements/<statement_id>/pdf", tags=["statements"], summary="Download the statement's PDF")
def statement_pdf(org_id: OrgId, project_id: ProjectId, statement_id: StatementId) -> DocumentLink:
    link = services().statements.download(caller_of(router), org_id, project_id, statement_id, "pdf")
    return DocumentLink(url=link.url, expires_in=link.expires_in)


@router.get(f"{_BASE}/statements/<statement_id>/csv", tags=["statements"], summary="Download the statement's CSV")
def statement_csv(org_id: OrgId, project_id: ProjectId, statement_id: StatementId) -> DocumentLink:
    link = services().statements.download(caller_of(router), org_id, project_id, statement_id, "csv")
    return DocumentLink(url=link.url, expires_in=link.expires_in)

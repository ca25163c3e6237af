"""Per-client statements: for any period (ended or current) and project, what that client's work cost -
its ad spend per platform and platform fee, its generation credits and their cost - with the agency's
markup, for the agency to re-bill its client. Made with the invoice's lines and renderer:

- a period whose invoice is issued (or rendered / finalized): the project's lines of that invoice, as
  stored (`final`) - so the statement's invoice lines are exactly the invoice's;
- otherwise: the same lines assembled from the books now (`running`; InvoiceService.project_lines).

Totals: invoice lines (ad spend + platform fee; the credits line is information) + the credits' cost
(the project's overage credits at the plan's unit price, half-even) = subtotal; markup = the project's
`markup_bps` in effect for the period, of the subtotal, half-even, once; total = subtotal + markup.
Documents are rendered on request and stored under `statements/` in the documents bucket (named by
their content: a changed running statement is a new object), downloaded through a presigned URL.

The settings are versioned, append-only: a change is a new version in effect from the current period
on; a period's statement uses the last version in effect from that period or before, so a closed (or
invoiced) period keeps the markup it had, whatever is changed later.

  PK=ORG#<org_id>  SK=PROJSTMT#<project_id>#V#<from period_key>#<made at>#<id>
                   markup_bps, from_period_key, updated_at, updated_by (put once, never changed)
  PK=ORG#<org_id>  SK=PROJSTMT#<project_id>   the settings kept before versions: in effect until the first"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from boto3.dynamodb.conditions import Key

from shared import keys
from shared.auth import Caller
from shared.clock import Clock, iso
from shared.credits.periods import Period, period_containing
from shared.credits.repository import CreditRepository
from shared.dynamo import dynamo_errors, plain
from shared.errors import NotFoundError
from shared.ids import new_id
from shared.invoices.figures import credits_cost_minor, markup_minor
from shared.invoices.models import CUSTOMER_STATUSES, DocumentKind, DocumentUrl, InvoiceLine, Statement
from shared.invoices.render import CSV_CONTENT_TYPE, rate_text, render_statement_csv, render_statement_pdf
from shared.invoices.repository import DocumentStore, InvoiceRepository
from shared.invoices.service import InvoiceService, invoice_id_of
from shared.orgs.models import MANAGE_BILLING, READ, Org, Project
from shared.orgs.repository import OrgRepository
from shared.orgs.service import OrgService
from shared.pagination import Page

MAX_MARKUP_BPS = 100_000  # 1,000 %
_SECOND = timedelta(seconds=1)
_STATEMENT_ID = re.compile(r"^stmt_(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$")


def statement_id_of(period: Period) -> str:
    return "stmt_" + invoice_id_of(period).removeprefix("inv_")


def period_start_of(statement_id: str) -> datetime | None:
    match = _STATEMENT_ID.match(statement_id)
    if match is None:
        return None
    try:
        return datetime.strptime("".join(match.groups()), "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None


@dataclass(frozen=True)
class StatementSettings:
    project_id: str
    markup_bps: int
    updated_at: str | None = None
    updated_by: str | None = None
    from_period_key: str | None = None  # the first period it is in effect for (None: since the start)


@dataclass(frozen=True)
class StatementPeriod:
    statement_id: str
    period_start: str
    period_end: str


class StatementSettingsRepository:
    def __init__(self, table: Any):
        self._table = table

    def get(self, org_id: str, project_id: str, period_key: str) -> StatementSettings:
        """The settings in effect for the period: the last version made from it or before (no markup when
        none, nor settings kept before versions)."""
        prefix = keys.statement_versions_prefix(project_id)
        with dynamo_errors():
            got = self._table.query(
                KeyConditionExpression=Key("PK").eq(keys.org_pk(org_id))
                & Key("SK").between(prefix, f"{prefix}{period_key}#~"),
                ScanIndexForward=False,
                Limit=1,
                ConsistentRead=True,
            )["Items"]
        if got:
            return _settings(project_id, plain(got[0]))
        with dynamo_errors():
            legacy = self._table.get_item(Key=keys.key(org_id, keys.statement_settings_sk(project_id))).get("Item")
        return _settings(project_id, plain(legacy)) if legacy else StatementSettings(project_id, 0)

    def put(self, org_id: str, settings: StatementSettings) -> None:
        """A new version, in effect from `settings.from_period_key` on (never overwrites one)."""
        assert settings.from_period_key and settings.updated_at
        sk = keys.statement_version_sk(settings.project_id, settings.from_period_key, settings.updated_at, new_id("sv"))
        item: dict[str, object] = {**keys.key(org_id, sk), "type": "statement_settings"}
        item |= {k: v for k, v in asdict(settings).items() if k != "project_id" and v is not None}
        with dynamo_errors():
            self._table.put_item(Item=item, ConditionExpression="attribute_not_exists(PK)")


def _settings(project_id: str, item: dict[str, Any]) -> StatementSettings:
    return StatementSettings(
        project_id,
        int(item["markup_bps"]),
        item.get("updated_at"),
        item.get("updated_by"),
        item.get("from_period_key"),
    )


@dataclass(frozen=True)
class StatementDeps:
    invoices: InvoiceService
    invoice_repo: InvoiceRepository
    credits: CreditRepository
    settings: StatementSettingsRepository
    documents: DocumentStore


class StatementService:
    """Reads only, besides the markup setting and the rendered documents: no money moves here."""

    def __init__(self, orgs: OrgService, org_repo: OrgRepository, deps: StatementDeps, clock: Clock):
        self._orgs, self._org_repo, self._deps, self._clock = orgs, org_repo, deps, clock

    def _project(self, caller: Caller, org_id: str, project_id: str, roles: frozenset[Any]) -> tuple[Org, Project]:
        """404 for an org the caller is not in and for a project the org does not have; 403 for a role."""
        org = self._orgs.access(caller, org_id, roles, support=True).org
        project = self._org_repo.get_project(org_id, project_id)
        if project is None:
            raise NotFoundError(f"Project {project_id} was not found.", code="project_not_found")
        return org, project

    def settings(self, caller: Caller, org_id: str, project_id: str) -> StatementSettings:
        """The settings in effect for the current period."""
        org, _ = self._project(caller, org_id, project_id, READ)
        return self._deps.settings.get(org_id, project_id, period_containing(org, self._clock.now()).key)

    def configure(self, caller: Caller, org_id: str, project_id: str, markup_bps: int) -> StatementSettings:
        """The agency's markup on the project's statements (owner, admin, billing; support too), in effect
        from the current period on: earlier periods' statements keep theirs."""
        org, _ = self._project(caller, org_id, project_id, MANAGE_BILLING)
        now = self._clock.now()
        period = period_containing(org, now).key
        settings = StatementSettings(project_id, markup_bps, iso(now), caller.user_id, period)
        self._deps.settings.put(org_id, settings)
        return settings

    def periods(
        self, caller: Caller, org_id: str, project_id: str, cursor: str | None, limit: int
    ) -> Page[StatementPeriod]:
        """The project's statements, one per period from the org's first to the current, newest first;
        `cursor`: the last statement id of the page before."""
        org, _ = self._project(caller, org_id, project_id, READ)
        first = period_containing(org, _first_instant(org))
        at = period_containing(org, self._clock.now())
        before = period_start_of(cursor) if cursor else None
        found: list[StatementPeriod] = []
        while at.start >= first.start and len(found) <= limit:
            if before is None or at.start < before:
                found.append(StatementPeriod(statement_id_of(at), iso(at.start), iso(at.end)))
            at = period_containing(org, at.start - _SECOND)
        more = len(found) > limit
        return Page(found[:limit], found[limit - 1].statement_id if more else None)

    def get(self, caller: Caller, org_id: str, project_id: str, statement_id: str) -> Statement:
        """The statement; 404 (statement_not_found) for an id that names no period of the org up to now."""
        org, project = self._project(caller, org_id, project_id, READ)
        period = self._period(org, statement_id)
        stored = self._deps.invoice_repo.get(org_id, period.key)
        if stored is not None and stored.status in CUSTOMER_STATUSES:
            lines = [line for line in stored.lines if line.project_id == project_id]
            return self._statement(org, project, period, lines, stored.invoice_id, stored.number)
        lines = self._deps.invoices.project_lines(org, period, project_id)
        return self._statement(org, project, period, lines, None, None)

    def download(
        self, caller: Caller, org_id: str, project_id: str, statement_id: str, kind: DocumentKind
    ) -> DocumentUrl:
        statement = self.get(caller, org_id, project_id, statement_id)
        body = render_statement_pdf(statement) if kind == "pdf" else render_statement_csv(statement)
        digest = hashlib.sha256(body).hexdigest()[:32]
        key = f"statements/{org_id}/{project_id}/{statement.period_key}/{digest}.{kind}"
        self._deps.documents.put(key, body, "application/pdf" if kind == "pdf" else CSV_CONTENT_TYPE)
        name = f"statement-{project_id}-{statement.period_start[:10]}.{kind}"
        return DocumentUrl(url=self._deps.documents.url(key, name), expires_in=900)

    def _period(self, org: Org, statement_id: str) -> Period:
        start = period_start_of(statement_id)
        missing = NotFoundError(f"Statement {statement_id} was not found.", code="statement_not_found")
        if start is None or start > self._clock.now():
            raise missing
        period = period_containing(org, start)
        if period.start != start or period.start < period_containing(org, _first_instant(org)).start:
            raise missing
        return period

    def _statement(
        self,
        org: Org,
        project: Project,
        period: Period,
        lines: list[InvoiceLine],
        invoice_id: str | None,
        number: str | None,
    ) -> Statement:
        plan = self._orgs.subscribed_plan(org)
        unit = plan.prices[org.currency].credit_overage_unit_minor if org.currency in plan.prices else None
        rows = [
            r
            for r in self._deps.credits.project_periods(org.org_id, period.key)
            if r["project_id"] == project.project_id
        ]
        used, overage = (int(rows[0].get("used", 0)), int(rows[0].get("overage", 0))) if rows else (0, 0)
        cost = credits_cost_minor(overage, unit)
        extra = [_credits_cost_line(project.project_id, overage, unit, cost, period)] if cost else []
        spend = sum(line.amount_minor for line in lines if line.section == "ad_spend" and line.rate_bps is None)
        fees = sum(line.amount_minor for line in lines if line.section == "ad_spend" and line.rate_bps is not None)
        on_invoice = sum(line.amount_minor for line in lines)
        markup_bps = self._deps.settings.get(org.org_id, project.project_id, period.key).markup_bps
        subtotal = on_invoice + cost
        markup = markup_minor(subtotal, markup_bps)
        marked = [_markup_line(project.project_id, markup_bps, subtotal, markup, period)] if markup_bps else []
        return Statement(
            statement_id=statement_id_of(period),
            org_id=org.org_id,
            agency_name=org.name,
            project_id=project.project_id,
            project_name=project.name,
            period_key=period.key,
            period_start=iso(period.start),
            period_end=iso(period.end),
            status="final" if number else "running",
            invoice_id=invoice_id,
            invoice_number=number,
            currency=org.currency,
            lines=[*lines, *extra, *marked],
            ad_spend_minor=spend,
            platform_fee_minor=fees,
            invoice_lines_minor=on_invoice,
            credits_used=used,
            credits_overage=overage,
            credits_cost_minor=cost,
            subtotal_minor=subtotal,
            markup_bps=markup_bps,
            markup_minor=markup,
            total_minor=subtotal + markup,
            created_at=iso(self._clock.now()),
        )


def _credits_cost_line(project_id: str, overage: int, unit: Decimal | None, cost: int, period: Period) -> InvoiceLine:
    return InvoiceLine(
        section="credits",
        paid_via="stripe",
        description="Generation credits beyond the plan (its share of the overage Stripe charged)",
        amount_minor=cost,
        quantity=overage,
        unit="credits",
        unit_price_minor=unit,
        project_id=project_id,
        service_start=iso(period.start),
        service_end=iso(period.end),
    )


def _markup_line(project_id: str, markup_bps: int, subtotal: int, markup: int, period: Period) -> InvoiceLine:
    return InvoiceLine(
        section="markup",
        paid_via="agency",
        description=f"Agency markup: {rate_text(markup_bps)} of the subtotal (rounded half-even)",
        amount_minor=markup,
        rate_bps=markup_bps,
        base_minor=subtotal,
        project_id=project_id,
        service_start=iso(period.start),
        service_end=iso(period.end),
    )


def _first_instant(org: Org) -> datetime:
    """When the org's first period began (its subscription's anchor, or its creation on Free)."""
    return org.subscription.billing_anchor if org.subscription else org.created_at

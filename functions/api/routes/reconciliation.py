"""Support: an org's reconciliation discrepancies (what the daily run found disagreeing, and whether it
agrees again)."""

from __future__ import annotations

from functools import cache
from typing import Annotated, Literal

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import BaseModel

from functions.api.container import services
from functions.api.routes.common import Cursor, Limit, OrgId, caller_of
from shared.dynamo import dynamodb_resource
from shared.orgs.repository import OrgRepository
from shared.reconcile.models import Discrepancy
from shared.reconcile.repository import ReconcileRepository
from shared.reconcile.support import ReconcileDesk
from shared.settings import ApiSettings

router = Router()
Status = Annotated[Literal["open", "resolved"] | None, Query(description="open or resolved; default both")]


@cache
def desk() -> ReconcileDesk:
    table = dynamodb_resource().Table(ApiSettings.from_env().table_name)
    return ReconcileDesk(services().orgs, OrgRepository(table), ReconcileRepository(table))


class DiscrepancyOut(BaseModel):
    kind: str
    scope: str
    ours_minor: int
    theirs_minor: int
    currency: str
    causes: list[str]
    note: str
    first_seen: str
    last_seen: str
    status: str
    resolved_at: str | None
    resolution: str | None

    @classmethod
    def of(cls, d: Discrepancy) -> DiscrepancyOut:
        return cls(
            kind=d.kind.value,
            scope=d.scope,
            ours_minor=d.ours_minor,
            theirs_minor=d.theirs_minor,
            currency=d.currency,
            causes=list(d.causes),
            note=d.note,
            first_seen=d.first_seen,
            last_seen=d.last_seen,
            status=d.status,
            resolved_at=d.resolved_at,
            resolution=d.resolution,
        )


class DiscrepancyPage(BaseModel):
    items: list[DiscrepancyOut]
    next_cursor: str | None


@router.get(
    "/v1/orgs/<org_id>/discrepancies",
    tags=["reconciliation"],
    summary="Support: what the daily reconciliation found disagreeing for the org, open and resolved",
)
def list_discrepancies(
    org_id: OrgId, status: Status = None, cursor: Cursor = None, limit: Limit = 50
) -> DiscrepancyPage:
    page = desk().discrepancies(caller_of(router), org_id, status, cursor, limit)
    return DiscrepancyPage(items=[DiscrepancyOut.of(d) for d in page.items], next_cursor=page.next_cursor)

"""Orgs and their plan."""

from __future__ import annotations

from aws_lambda_powertools.event_handler.api_gateway import Router

from functions.api.container import org_service, plan_requests
from functions.api.routes.common import Cursor, Limit, OrgId, caller_of
from functions.api.schemas import (
    ChangePlanRequest,
    CreateOrgRequest,
    MembershipOut,
    MembershipPage,
    OrgOut,
    UpdateOrgRequest,
)

router = Router()


@router.post("/v1/orgs", tags=["orgs"], status_code=201, summary="Create an org; the caller becomes its owner")
def create_org(body: CreateOrgRequest) -> OrgOut:
    view = org_service().create_org(
        caller_of(router),
        name=body.name,
        billing_mode=body.billing_mode,
        currency=body.currency,
        plan_id=body.plan_id,
    )
    return OrgOut.of(view)


@router.get("/v1/orgs", tags=["orgs"], summary="The orgs the caller belongs to")
def list_orgs(cursor: Cursor = None, limit: Limit = 50) -> MembershipPage:
    page = org_service().list_my_orgs(caller_of(router), cursor, limit)
    return MembershipPage(items=[MembershipOut.of(m) for m in page.items], next_cursor=page.next_cursor)


@router.get("/v1/orgs/<org_id>", tags=["orgs"], summary="An org with its plan, seats and projects")
def get_org(org_id: OrgId) -> OrgOut:
    return OrgOut.of(org_service().get_org(caller_of(router), org_id))


@router.patch(
    "/v1/orgs/<org_id>",
    tags=["orgs"],
    summary="Rename; billing mode, currency, billing details",
)
def update_org(org_id: OrgId, body: UpdateOrgRequest) -> OrgOut:
    view = org_service().update_org(
        caller_of(router),
        org_id,
        name=body.name,
        billing_mode=body.billing_mode,
        currency=body.currency,
        billing_details=body.billing_details_change(),
    )
    return OrgOut.of(view)


@router.put(
    "/v1/orgs/<org_id>/plan",
    tags=["orgs"],
    summary="Free (cancel at period end), or an Enterprise contract (support); paid plans start at Checkout",
)
def change_plan(org_id: OrgId, body: ChangePlanRequest) -> OrgOut:
    terms = body.enterprise_terms.terms() if body.enterprise_terms else None
    view = plan_requests().set_plan(caller_of(router), org_id, plan_id=body.plan_id, terms=terms)
    return OrgOut.of(view)

"""Members: the org's seats."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Response, Router
from aws_lambda_powertools.event_handler.openapi.params import Path

from functions.api.container import org_service
from functions.api.routes.common import Cursor, Limit, OrgId, caller_of
from functions.api.schemas import AddMemberRequest, ChangeRoleRequest, MemberOut, MemberPage
from functions.limits import USER_ID_PATTERN

router = Router()
UserIdPath = Annotated[str, Path(pattern=USER_ID_PATTERN)]


@router.get("/v1/orgs/<org_id>/members", tags=["members"], summary="Members (seats)")
def list_members(org_id: OrgId, cursor: Cursor = None, limit: Limit = 50) -> MemberPage:
    page = org_service().list_members(caller_of(router), org_id, cursor, limit)
    return MemberPage(items=[MemberOut.of(m) for m in page.items], next_cursor=page.next_cursor)


@router.post("/v1/orgs/<org_id>/members", tags=["members"], status_code=201, summary="Add a member (a seat)")
def add_member(org_id: OrgId, body: AddMemberRequest) -> MemberOut:
    member = org_service().add_member(caller_of(router), org_id, user_id=body.user_id, email=body.email, role=body.role)
    return MemberOut.of(member)


@router.patch("/v1/orgs/<org_id>/members/<user_id>", tags=["members"], summary="Change a member's role")
def change_role(org_id: OrgId, user_id: UserIdPath, body: ChangeRoleRequest) -> MemberOut:
    return MemberOut.of(org_service().change_role(caller_of(router), org_id, user_id, body.role))


@router.delete("/v1/orgs/<org_id>/members/<user_id>", tags=["members"], status_code=204, summary="Remove a member")
def remove_member(org_id: OrgId, user_id: UserIdPath) -> Response[None]:
    org_service().remove_member(caller_of(router), org_id, user_id)
    return Response(status_code=204)

"""Projects: active ones count against the plan's limit."""

from __future__ import annotations

from aws_lambda_powertools.event_handler.api_gateway import Router

from functions.api.container import org_service
from functions.api.routes.common import Cursor, Limit, OrgId, PathId, caller_of
from functions.api.schemas import CreateProjectRequest, ProjectOut, ProjectPage
from shared.orgs.models import ProjectStatus

router = Router()
ProjectId = PathId


@router.get("/v1/orgs/<org_id>/projects", tags=["projects"], summary="Projects, active and archived")
def list_projects(org_id: OrgId, cursor: Cursor = None, limit: Limit = 50) -> ProjectPage:
    page = org_service().list_projects(caller_of(router), org_id, cursor, limit)
    return ProjectPage(items=[ProjectOut.of(p) for p in page.items], next_cursor=page.next_cursor)


@router.post("/v1/orgs/<org_id>/projects", tags=["projects"], status_code=201, summary="Create a project")
def create_project(org_id: OrgId, body: CreateProjectRequest) -> ProjectOut:
    return ProjectOut.of(org_service().create_project(caller_of(router), org_id, name=body.name))


@router.post("/v1/orgs/<org_id>/projects/<project_id>/archive", tags=["projects"], summary="Archive a project")
def archive_project(org_id: OrgId, project_id: ProjectId) -> ProjectOut:
    return ProjectOut.of(
        org_service().set_project_status(caller_of(router), org_id, project_id, ProjectStatus.ARCHIVED)
    )


@router.post("/v1/orgs/<org_id>/projects/<project_id>/reactivate", tags=["projects"], summary="Reactivate a project")
def reactivate_project(org_id: OrgId, project_id: ProjectId) -> ProjectOut:
    return ProjectOut.of(org_service().set_project_status(caller_of(router), org_id, project_id, ProjectStatus.ACTIVE))

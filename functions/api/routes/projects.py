"""Projects: active ones count against the plan's limit; each may have a monthly budget."""

from __future__ import annotations

from aws_lambda_powertools.event_handler.api_gateway import Router

from functions.api.container import org_service, services
from functions.api.routes.common import Cursor, Limit, OrgId, PathId, caller_of
from functions.api.schemas import BudgetOut, BudgetRequest, CreateProjectRequest, ProjectOut, ProjectPage
from shared.budgets.service import BudgetLimits
from shared.orgs.models import Project, ProjectStatus

router = Router()
ProjectId = PathId


@router.get("/v1/orgs/<org_id>/projects", tags=["projects"], summary="Projects, active and archived")
def list_projects(org_id: OrgId, cursor: Cursor = None, limit: Limit = 50) -> ProjectPage:
    caller = caller_of(router)
    page = org_service().list_projects(caller, org_id, cursor, limit)
    budgets = services().budgets.views(caller, org_id, [p.project_id for p in page.items])
    return ProjectPage(
        items=[ProjectOut.of(p, b) for p, b in zip(page.items, budgets, strict=True)], next_cursor=page.next_cursor
    )


def _with_budget(project: Project) -> ProjectOut:
    return ProjectOut.of(project, services().budgets.get(caller_of(router), project.org_id, project.project_id))


@router.post("/v1/orgs/<org_id>/projects", tags=["projects"], status_code=201, summary="Create a project")
def create_project(org_id: OrgId, body: CreateProjectRequest) -> ProjectOut:
    return _with_budget(org_service().create_project(caller_of(router), org_id, name=body.name))


@router.post("/v1/orgs/<org_id>/projects/<project_id>/archive", tags=["projects"], summary="Archive a project")
def archive_project(org_id: OrgId, project_id: ProjectId) -> ProjectOut:
    return _with_budget(org_service().set_project_status(caller_of(router), org_id, project_id, ProjectStatus.ARCHIVED))


@router.post("/v1/orgs/<org_id>/projects/<project_id>/reactivate", tags=["projects"], summary="Reactivate a project")
def reactivate_project(org_id: OrgId, project_id: ProjectId) -> ProjectOut:
    return _with_budget(org_service().set_project_status(caller_of(router), org_id, project_id, ProjectStatus.ACTIVE))


@router.get(
    "/v1/orgs/<org_id>/projects/<project_id>/budget",
    tags=["projects"],
    summary="The project's monthly budget and what is committed against it this period",
)
def get_budget(org_id: OrgId, project_id: ProjectId) -> BudgetOut:
    return BudgetOut.of(services().budgets.get(caller_of(router), org_id, project_id))


@router.put(
    "/v1/orgs/<org_id>/projects/<project_id>/budget",
    tags=["projects"],
    summary="Set the project's monthly ad-spend (per platform optional) and credit budget (owner, admin, billing)",
)
def put_budget(org_id: OrgId, project_id: ProjectId, body: BudgetRequest) -> BudgetOut:
    limits = BudgetLimits(body.ad_spend_minor, dict(body.platforms_minor), body.credits)
    return BudgetOut.of(services().budgets.put(caller_of(router), org_id, project_id, limits))

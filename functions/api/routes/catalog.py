"""Plans (public) and layer templates (any signed-in person)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from functions.api.routes.common import PathId, caller_of
from functions.api.schemas import PlanList, PlanOut, TemplateList, TemplateOut
from shared.catalog import plan_catalog, template_catalog

router = Router()


@router.get("/v1/plans", tags=["catalog"], summary="The plan catalog (public)")
def list_plans(currency: Annotated[str | None, Query(pattern=r"^[A-Z]{3}$")] = None) -> PlanList:
    catalog = plan_catalog()
    plans = [PlanOut.of(p) for p in catalog.plans if p.public]
    if currency is not None:
        plans = [p.model_copy(update={"prices": {c: b for c, b in p.prices.items() if c == currency}}) for p in plans]
    return PlanList(catalog_version=catalog.catalog_version, plans=plans)


@router.get("/v1/templates", tags=["catalog"], summary="Layer templates and their credit costs")
def list_templates() -> TemplateList:
    caller_of(router)
    catalog = template_catalog()
    return TemplateList(
        catalog_version=catalog.catalog_version,
        default_credit_costs=catalog.default_credit_costs,
        templates=[TemplateOut.of(catalog, t) for t in catalog.templates],
    )


@router.get("/v1/templates/<template_id>", tags=["catalog"], summary="One layer template")
def get_template(template_id: PathId) -> TemplateOut:
    caller_of(router)
    catalog = template_catalog()
    return TemplateOut.of(catalog, catalog.get(template_id))

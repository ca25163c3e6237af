"""HTTP API function: every people-facing route (API Gateway HTTP API, payload 2.0, JWT authorizer).

Thin by design: routes parse and authorize, call one service method and shape the reply; domain
errors become HTTP errors in functions/http.py, in one place."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer, SecurityScheme
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.api.routes import (
    catalog,
    credit_notes,
    credits,
    invoices,
    members,
    orgs,
    projects,
    reconciliation,
    statements,
    subscription,
    wallet,
)
from functions.http import new_resolver
from shared.deadline import within_lambda_time
from shared.observability import logger, metrics, tracer

app = new_resolver()
for module in (
    catalog,
    orgs,
    members,
    projects,
    subscription,
    credits,
    wallet,
    invoices,
    credit_notes,
    statements,
    reconciliation,
):
    app.include_router(module.router)
# What the document cannot see in the routes: no authorizer (template.yaml), and Stripe calls (402 / 503).
app.public_operations = {("GET", "/v1/plans")}
app.stripe_operations = {
    ("PUT", "/v1/orgs/{org_id}/plan"),  # Free: a cancellation at period end; Enterprise: the contract's subscription
    ("POST", "/v1/orgs/{org_id}/subscription/checkout"),
    ("POST", "/v1/orgs/{org_id}/subscription/preview"),
    ("PUT", "/v1/orgs/{org_id}/subscription"),
    ("POST", "/v1/orgs/{org_id}/billing-portal"),
    ("POST", "/v1/orgs/{org_id}/credits/packs/checkout"),
    ("POST", "/v1/orgs/{org_id}/wallet/top-ups"),
    ("PUT", "/v1/orgs/{org_id}/wallet/settings"),  # auto-top-up looks up the saved card
    ("POST", "/v1/orgs/{org_id}/wallet/refunds"),
    ("POST", "/v1/orgs/{org_id}/invoices/{invoice_id}/credit-notes"),  # Stripe-charged lines: the customer balance
}

_TITLE, _VERSION = "Layers Billing API", "1.0.0"
_SECURITY: dict[str, SecurityScheme] = {"bearer": HTTPBearer(bearerFormat="JWT")}
app.enable_swagger(
    path="/swagger", title=_TITLE, version=_VERSION, security_schemes=_SECURITY, security=[{"bearer": []}]
)


@app.get("/openapi.json", include_in_schema=False)
def openapi_document() -> Response[Any]:
    document = app.get_openapi_json_schema(
        title=_TITLE, version=_VERSION, security_schemes=_SECURITY, security=[{"bearer": []}]
    )
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=document)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
@within_lambda_time
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    metrics.add_metric(name="ApiRequests", unit=MetricUnit.Count, value=1)
    return app.resolve(event, context)

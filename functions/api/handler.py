"""HTTP API function: every people-facing route (API Gateway HTTP API, payload 2.0, JWT authorizer).

Thin by design: routes parse and authorize, call one service method and shape the reply; domain
errors become HTTP errors here, in one place."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer, SecurityScheme
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.api.routes import catalog, members, orgs, projects
from shared.errors import (
    ConflictError,
    DomainError,
    ForbiddenError,
    InvalidRequestError,
    NotFoundError,
    ThrottledError,
    UnauthenticatedError,
)
from shared.observability import logger, metrics, tracer

app = APIGatewayHttpResolver(enable_validation=True)
for module in (catalog, orgs, members, projects):
    app.include_router(module.router)

_SECURITY: dict[str, SecurityScheme] = {"bearer": HTTPBearer(bearerFormat="JWT")}
app.enable_swagger(
    path="/swagger",
    title="Layers Billing API",
    version="1.0.0",
    security_schemes=_SECURITY,
    security=[{"bearer": []}],
)

# The one mapping from domain errors to HTTP status codes (most specific class first).
_STATUS: list[tuple[type[DomainError], HTTPStatus]] = [
    (UnauthenticatedError, HTTPStatus.UNAUTHORIZED),
    (ForbiddenError, HTTPStatus.FORBIDDEN),
    (NotFoundError, HTTPStatus.NOT_FOUND),
    (InvalidRequestError, HTTPStatus.UNPROCESSABLE_ENTITY),
    (ConflictError, HTTPStatus.CONFLICT),
    (ThrottledError, HTTPStatus.TOO_MANY_REQUESTS),
]


def error_response(status: HTTPStatus, code: str, message: str, details: Any = None) -> Response[Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body={"error": body})


@app.exception_handler(DomainError)
def _domain_error(exc: DomainError) -> Response[Any]:
    status = next((s for cls, s in _STATUS if isinstance(exc, cls)), HTTPStatus.BAD_REQUEST)
    logger.info("request refused", extra={"code": exc.code, "status": int(status)})
    return error_response(status, exc.code, exc.message, exc.details)


@app.exception_handler(RequestValidationError)
def _invalid_request(exc: RequestValidationError) -> Response[Any]:
    problems = [
        {"loc": [str(p) for p in err.get("loc", ())], "type": err.get("type"), "msg": err.get("msg")}
        for err in exc.errors()
    ]
    summary = "; ".join(f"{'.'.join(p['loc'])}: {p['msg']}" for p in problems)
    return error_response(HTTPStatus.UNPROCESSABLE_ENTITY, "validation_error", f"Invalid request: {summary}", problems)


@app.not_found
def _no_route(_: Exception) -> Response[Any]:
    return error_response(HTTPStatus.NOT_FOUND, "route_not_found", "There is no such route.")


@app.get("/openapi.json", include_in_schema=False)
def openapi_document() -> Response[Any]:
    return Response(
        status_code=200,
        content_type=content_types.APPLICATION_JSON,
        body=app.get_openapi_json_schema(
            title="Layers Billing API", version="1.0.0", security_schemes=_SECURITY, security=[{"bearer": []}]
        ),
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    metrics.add_metric(name="ApiRequests", unit=MetricUnit.Count, value=1)
    return app.resolve(event, context)

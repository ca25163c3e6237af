"""The HTTP layer every function shares: a Powertools resolver whose domain errors map to HTTP
status codes in this one place, with one error body: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from shared.errors import (
    ConflictError,
    DomainError,
    ForbiddenError,
    InvalidRequestError,
    NotFoundError,
    PaymentDeclinedError,
    ThrottledError,
    UnauthenticatedError,
    UpstreamError,
    WebhookSignatureError,
)
from shared.observability import logger

# Bounds of every amount a request may carry: far past any real one, far inside DynamoDB's 38 digits (a
# number past them is a 500 in the SDK, not a refusal). Integers are strict: JSON `true` is not 1.
MAX_MINOR = 10**12  # 10,000,000,000.00 in a two-decimal currency
MAX_CREDITS = 10**9

# Most specific class first.
_STATUS: list[tuple[type[DomainError], HTTPStatus]] = [
    (UnauthenticatedError, HTTPStatus.UNAUTHORIZED),
    (ForbiddenError, HTTPStatus.FORBIDDEN),
    (NotFoundError, HTTPStatus.NOT_FOUND),
    (InvalidRequestError, HTTPStatus.UNPROCESSABLE_ENTITY),
    (ConflictError, HTTPStatus.CONFLICT),
    (ThrottledError, HTTPStatus.TOO_MANY_REQUESTS),
    (PaymentDeclinedError, HTTPStatus.PAYMENT_REQUIRED),
    (UpstreamError, HTTPStatus.SERVICE_UNAVAILABLE),
    (WebhookSignatureError, HTTPStatus.BAD_REQUEST),
]


def error_response(status: HTTPStatus, code: str, message: str, details: Any = None) -> Response[Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body={"error": body})


def new_resolver() -> APIGatewayHttpResolver:
    app = APIGatewayHttpResolver(enable_validation=True)

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
        return error_response(
            HTTPStatus.UNPROCESSABLE_ENTITY, "validation_error", f"Invalid request: {summary}", problems
        )

    @app.exception_handler(UnicodeDecodeError)
    def _undecodable(_: UnicodeDecodeError) -> Response[Any]:
        # Powertools decodes the body as UTF-8 before anything else: UTF-16 or stray bytes end here
        return error_response(
            HTTPStatus.BAD_REQUEST, "invalid_body", "The request body is not UTF-8 text (JSON is sent as UTF-8)."
        )

    @app.not_found
    def _no_route(_: Exception) -> Response[Any]:
        return error_response(HTTPStatus.NOT_FOUND, "route_not_found", "There is no such route.")

    return app


def service_of(app_or_router: Any) -> str:
    """The calling service on an IAM-authorized (SigV4) route: the role name of the caller.
    UnauthenticatedError when the request did not come through the IAM authorizer."""
    context: dict[str, Any] = app_or_router.current_event.raw_event.get("requestContext") or {}
    iam = (context.get("authorizer") or {}).get("iam") or {}
    arn = str(iam.get("userArn") or "")
    if not arn:
        raise UnauthenticatedError("This route is for Layers services (IAM-signed requests) only.")
    role = arn.split(":assumed-role/", 1)[-1].split("/", 1)[0]
    return f"service:{role}"

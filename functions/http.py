"""The HTTP layer every function shares: a Powertools resolver whose domain errors map to HTTP
status codes in this one place, with one error body: {"error": {"code", "message", "details"}}.

One body decoder for every route that takes a body (and the webhook): it runs before any handler code.
A body sent as anything but `application/json` (or with no content type) is a 415
`unsupported_media_type`, one that is not UTF-8 a 400 `invalid_body`, one that is not JSON a 422
`validation_error`. Routes that take no body never read one. Every code is in functions/error_codes.py."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.middlewares.openapi_validation import OpenAPIRequestValidationMiddleware
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.models import OpenAPI, PathItem

from functions.limits import MAX_CREDITS, MAX_MINOR
from functions.openapi import complete_document
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
    UsageBusyError,
    WebhookSignatureError,
)
from shared.observability import logger

__all__ = ["MAX_CREDITS", "MAX_MINOR", "error_response", "json_only", "new_resolver", "service_of"]

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
    (UsageBusyError, HTTPStatus.SERVICE_UNAVAILABLE),
    (WebhookSignatureError, HTTPStatus.BAD_REQUEST),
]


def status_of(exc: DomainError) -> HTTPStatus:
    return next((s for cls, s in _STATUS if isinstance(exc, cls)), HTTPStatus.BAD_REQUEST)


def error_response(
    status: HTTPStatus, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> Response[Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return Response(
        status_code=status, content_type=content_types.APPLICATION_JSON, body={"error": body}, headers=headers
    )


def check_media_type(headers: dict[str, str]) -> None:
    """RequestUnsupportedContentType (415) unless the body is sent as JSON in UTF-8 (or untyped)."""
    media = (headers.get("content-type") or "").strip()
    mime, _, rest = media.partition(";")
    params = dict(p.strip().lower().split("=", 1) for p in rest.split(";") if "=" in p)
    charset = params.get("charset", "utf-8").strip('"')
    if mime.strip().lower() not in ("", content_types.APPLICATION_JSON) or charset not in ("utf-8", "utf8"):
        problem = {"type": "unsupported_content_type", "loc": ("body",), "msg": f"not JSON in UTF-8: {media}"}
        raise RequestUnsupportedContentType("Unsupported content type", errors=[problem])


MAX_PROBLEMS = 20  # validation problems named in one answer


class _JsonBodies(OpenAPIRequestValidationMiddleware):
    """Powertools' request validation with one body decoder: JSON only (it would parse forms and
    multipart bodies too, and answer other types in its own shape)."""

    def _get_body(self, app: Any) -> Any:
        check_media_type(app.current_event.headers)
        try:
            return self._parse_json_data(app)  # UnicodeDecodeError (400) or json_invalid (422)
        except (RecursionError, ValueError) as exc:  # nested past the parser's depth; an int of 4,300+ digits
            if isinstance(exc, UnicodeDecodeError):
                raise
            raise UnreadableBody from exc


class UnreadableBody(Exception):
    """JSON that Python's parser refuses past its own limits (depth, digits of one integer)."""


def json_only(app: Any, next_middleware: NextMiddleware) -> Response[Any]:
    """Route middleware for a route that reads its raw body itself (the webhook): the same checks first."""
    check_media_type(app.current_event.headers)
    _ = app.current_event.decoded_body  # UnicodeDecodeError -> 400 invalid_body
    return next_middleware(app)


class ApiResolver(APIGatewayHttpResolver):
    """The resolver with JSON bodies only, and an OpenAPI document that declares every error."""

    def __init__(self) -> None:
        super().__init__(enable_validation=True)
        self._request_validation_middleware = _JsonBodies()
        self.public_operations: set[tuple[str, str]] = set()  # (METHOD, path): no authorizer
        self.stripe_operations: set[tuple[str, str]] = set()  # may answer 402 / 503 from Stripe
        self.busy_operations: set[tuple[str, str]] = set()  # may answer 503 after retrying concurrent writes

    def get_openapi_schema(self, **kwargs: Any) -> OpenAPI:
        document = super().get_openapi_schema(**kwargs).model_dump(by_alias=True, exclude_none=True, mode="json")
        complete_document(
            document, public=self.public_operations, stripe=self.stripe_operations, busy=self.busy_operations
        )
        completed = OpenAPI.model_validate(document)
        completed.paths = {path: PathItem.model_validate(item) for path, item in document["paths"].items()}
        return completed


def new_resolver() -> ApiResolver:
    app = ApiResolver()

    @app.exception_handler(DomainError)
    def _domain_error(exc: DomainError) -> Response[Any]:
        status = status_of(exc)
        logger.info("request refused", extra={"code": exc.code, "status": int(status)})
        retry = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, UsageBusyError) else None
        return error_response(status, exc.code, exc.message, exc.details, retry)

    @app.exception_handler(RequestValidationError)
    def _invalid_request(exc: RequestValidationError) -> Response[Any]:
        errors = exc.errors()
        problems = [
            {"loc": [str(p) for p in err.get("loc", ())], "type": err.get("type"), "msg": err.get("msg")}
            for err in errors[:MAX_PROBLEMS]  # an answer never outgrows its request (Lambda returns 6 MB at most)
        ]
        summary = "; ".join(f"{'.'.join(p['loc'])[:200]}: {p['msg']}" for p in problems)
        if len(errors) > MAX_PROBLEMS:
            summary += f"; and {len(errors) - MAX_PROBLEMS} more"
        return error_response(
            HTTPStatus.UNPROCESSABLE_ENTITY, "validation_error", f"Invalid request: {summary}", problems
        )

    @app.exception_handler(RequestUnsupportedContentType)
    def _wrong_media_type(_: RequestUnsupportedContentType) -> Response[Any]:
        return error_response(
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Send the body as JSON in UTF-8 (Content-Type: application/json).",
        )

    @app.exception_handler(UnreadableBody)
    def _unreadable(_: UnreadableBody) -> Response[Any]:
        return error_response(
            HTTPStatus.BAD_REQUEST,
            "invalid_body",
            "The body is JSON nested too deep or with a number too long.",
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

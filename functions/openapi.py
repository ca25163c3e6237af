"""The OpenAPI document, completed: every operation declares every error status it can answer, each
with the error body and the codes of that status (from the registry, functions/error_codes.py).

Powertools generates the document from the routes with only 2xx and a 422 in its own shape; this adds
the rest by rule, from what each operation is: 401 unless public, 400/415 with a body, 403/404 when it
names an org (404 for any path id), 409 for writes, 402/503 where it calls Stripe, 503 where it may run
out of retries against concurrent requests (`busy`), 422 and 429 always (API Gateway throttles every
route). Responses without a body (204) declare none."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from functions.error_codes import STRIPE_CODE_PATTERN, codes_for

_REF = "#/components/schemas/"
GATEWAY_MESSAGE = "GatewayMessage"  # API Gateway's own refusals (authorizer, throttling): {"message": ...}
_GATEWAY_STATUSES = (401, 429)
_POWERTOOLS_SCHEMAS = ("HTTPValidationError", "ValidationError", "ResponseValidationError")


def error_statuses(
    method: str, path: str, operation: dict[str, Any], *, public: bool, stripe: bool, busy: bool = False
) -> set[int]:
    """The error statuses an operation can answer, by what it is."""
    statuses = {422, 429}
    if not public:
        statuses.add(401)
    if "requestBody" in operation:
        statuses |= {400, 415}
    if "{" in path:
        statuses.add(404)
    if "{org_id}" in path:
        statuses.add(403)
    if method != "get":
        statuses.add(409)
    if stripe:
        statuses |= {402, 503}
    if busy:
        statuses.add(503)
    return statuses


def error_schema(status: int) -> dict[str, Any]:
    codes: dict[str, Any] = {"type": "string", "enum": codes_for(status)}
    if status == HTTPStatus.UNPROCESSABLE_ENTITY:
        codes = {"anyOf": [codes, {"type": "string", "pattern": STRIPE_CODE_PATTERN}]}
    body = {
        "type": "object",
        "required": ["code", "message"],
        "properties": {
            "code": codes,
            "message": {"type": "string"},
            "details": {"anyOf": [{"type": "object"}, {"type": "array"}]},
        },
    }
    return {"type": "object", "required": ["error"], "properties": {"error": body}, "title": f"Error{status}"}


def _response(status: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"$ref": f"{_REF}Error{status}"}
    if status in _GATEWAY_STATUSES:
        schema = {"anyOf": [schema, {"$ref": f"{_REF}{GATEWAY_MESSAGE}"}]}
    codes = ", ".join(f"`{c}`" for c in codes_for(status))
    description = f"{HTTPStatus(status).phrase}: {codes}"
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _complete_operation(
    method: str, path: str, operation: dict[str, Any], *, public: bool, stripe: bool, busy: bool
) -> set[int]:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    if "204" in responses:
        responses["204"].pop("content", None)
    statuses = error_statuses(method, path, operation, public=public, stripe=stripe, busy=busy)
    for code in sorted(statuses):
        responses[str(code)] = _response(code)
    if public:
        operation["security"] = []
    return statuses


def complete_document(
    document: dict[str, Any],
    *,
    public: set[tuple[str, str]],
    stripe: set[tuple[str, str]],
    busy: set[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """`document` (a dumped OpenAPI document) with every operation's errors declared, in place."""
    used: set[int] = set()
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            key = (method.upper(), path)
            flags = {"public": key in public, "stripe": key in stripe, "busy": key in (busy or set())}
            used |= _complete_operation(method, path, operation, **flags)
    schemas: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    for name in _POWERTOOLS_SCHEMAS:
        schemas.pop(name, None)
    for status in sorted(used):
        schemas[f"Error{status}"] = error_schema(status)
    schemas[GATEWAY_MESSAGE] = {
        "type": "object",
        "required": ["message"],
        "properties": {"message": {"type": "string"}},
        "description": "API Gateway's own refusal (its authorizer, its throttling)",
    }
    return document

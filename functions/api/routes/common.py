"""What every route shares: the caller from the authorizer's claims, list parameters."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Header, Path, Query

from functions.limits import CURSOR_PATTERN, ID_PATTERN, KEY_PATTERN
from shared.auth import Caller

Cursor = Annotated[
    str | None, Query(description="Opaque cursor from the previous page's next_cursor", pattern=CURSOR_PATTERN)
]
Limit = Annotated[int, Query(ge=1, le=100, description="Page size")]
OrgId = Annotated[str, Path(pattern=ID_PATTERN)]
PathId = Annotated[str, Path(pattern=ID_PATTERN)]
RequiredKey = Annotated[
    str, Header(alias="idempotency-key", pattern=KEY_PATTERN, description="Client key; a retry returns the same")
]
OptionalKey = Annotated[
    str | None,
    Header(alias="idempotency-key", pattern=KEY_PATTERN, description="Client key; a retry returns the same"),
]


def caller_of(router: Router) -> Caller:
    """The person behind the request; UnauthenticatedError (401) without JWT claims."""
    context: dict[str, Any] = router.current_event.raw_event.get("requestContext") or {}
    claims = ((context.get("authorizer") or {}).get("jwt") or {}).get("claims")
    return Caller.from_claims(claims)

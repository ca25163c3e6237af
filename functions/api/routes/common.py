"""What every route shares: the caller from the authorizer's claims, list parameters."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from shared.auth import Caller

Cursor = Annotated[str | None, Query(description="Opaque cursor from the previous page's next_cursor", max_length=512)]
Limit = Annotated[int, Query(ge=1, le=100, description="Page size")]
OrgId = Annotated[str, Path(max_length=64)]


def caller_of(router: Router) -> Caller:
    """The person behind the request; UnauthenticatedError (401) without JWT claims."""
    context: dict[str, Any] = router.current_event.raw_event.get("requestContext") or {}
    claims = ((context.get("authorizer") or {}).get("jwt") or {}).get("claims")
    return Caller.from_claims(claims)

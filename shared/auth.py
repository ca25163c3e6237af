"""Who is calling: people carry a JWT (claims from the API Gateway JWT authorizer); Layers support
staff carry the `support` group. Org membership and roles are ours, stored per org."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.errors import UnauthenticatedError

SUPPORT_GROUP = "support"
_GROUP_CLAIMS = ("cognito:groups", "groups")


def _groups(raw: Any) -> frozenset[str]:
    # API Gateway HTTP API flattens array claims to the string "[a b c]"; accept real lists too.
    if isinstance(raw, list):
        return frozenset(str(g) for g in raw)
    if isinstance(raw, str):
        return frozenset(raw.strip("[]").replace(",", " ").split())
    return frozenset()


@dataclass(frozen=True)
class Caller:
    user_id: str
    email: str | None
    groups: frozenset[str]

    @property
    def is_support(self) -> bool:
        return SUPPORT_GROUP in self.groups

    @classmethod
    def from_claims(cls, claims: dict[str, Any] | None) -> Caller:
        """Raises UnauthenticatedError when the authorizer passed no usable identity."""
        sub = (claims or {}).get("sub")
        if not isinstance(sub, str) or not sub:
            raise UnauthenticatedError("A valid bearer token is required.")
        groups: frozenset[str] = frozenset()
        for name in _GROUP_CLAIMS:
            groups |= _groups((claims or {}).get(name))
        email = (claims or {}).get("email")
        return cls(user_id=sub, email=email if isinstance(email, str) else None, groups=groups)

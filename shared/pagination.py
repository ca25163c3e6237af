"""Opaque cursors for list endpoints.

A cursor carries DynamoDB's LastEvaluatedKey *without* the partition key: the partition always comes
from the caller's own scope (org, user), so a cursor can never reach into another tenant's data."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from shared.errors import InvalidRequestError

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode_cursor(last_key: dict[str, Any] | None, partition_attr: str) -> str | None:
    if not last_key:
        return None
    rest = {k: v for k, v in last_key.items() if k != partition_attr}
    raw = json.dumps(rest, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(
    cursor: str | None, partition_attr: str, partition_value: str, *, fields: frozenset[str] = frozenset({"SK"})
) -> dict[str, Any] | None:
    """The ExclusiveStartKey for `cursor`, scoped to `partition_value`: exactly the key `fields` this list
    returns (anything else never reaches DynamoDB). Raises InvalidRequestError."""
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = json.loads(raw)
    except (binascii.Error, ValueError):
        key = None
    if not isinstance(key, dict) or set(key) != fields or not all(isinstance(v, str) and v for v in key.values()):
        raise InvalidRequestError("The cursor is not one this API returned.", code="invalid_cursor")
    return {**key, partition_attr: partition_value}

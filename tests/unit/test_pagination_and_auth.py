"""Cursors stay inside the caller's partition; claims parse as API Gateway passes them."""

from __future__ import annotations

import pytest

from shared.auth import Caller
from shared.errors import InvalidRequestError, UnauthenticatedError
from shared.pagination import decode_cursor, encode_cursor


def test_cursor_round_trip_drops_and_restores_the_partition() -> None:
    cursor = encode_cursor({"PK": "ORG#a", "SK": "MEMBER#u1"}, "PK")
    assert cursor is not None and "ORG" not in cursor
    assert decode_cursor(cursor, "PK", "ORG#b") == {"PK": "ORG#b", "SK": "MEMBER#u1"}
    assert encode_cursor(None, "PK") is None
    assert decode_cursor(None, "PK", "ORG#a") is None


@pytest.mark.parametrize("bad", ["not-a-cursor", "", "e30", "WzFd", "!!!"])
def test_bad_cursors_are_refused(bad: str) -> None:
    with pytest.raises(InvalidRequestError) as err:
        decode_cursor(bad, "PK", "ORG#a")
    assert err.value.code == "invalid_cursor"


def test_groups_claim_flattened_by_api_gateway_is_understood() -> None:
    caller = Caller.from_claims({"sub": "u1", "cognito:groups": "[support marketing]"})
    assert caller.is_support and caller.groups == {"support", "marketing"}
    assert Caller.from_claims({"sub": "u1", "groups": ["support"]}).is_support
    assert not Caller.from_claims({"sub": "u1"}).is_support


@pytest.mark.parametrize("claims", [None, {}, {"sub": ""}, {"sub": 5}])
def test_no_identity_is_unauthenticated(claims: dict[str, object] | None) -> None:
    with pytest.raises(UnauthenticatedError):
        Caller.from_claims(claims)

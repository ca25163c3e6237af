"""Many orgs read in batches (issue 17): BatchGetItem of 100 keys, unprocessed keys asked again."""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import ThrottledError
from shared.orgs import repository as org_repository
from shared.orgs.repository import OrgRepository


def _org_item(org_id: str) -> dict[str, Any]:
    return {
        "PK": f"ORG#{org_id}",
        "SK": "ORG",
        "org_id": org_id,
        "name": org_id,
        "billing_mode": "byo",
        "currency": "USD",
        "plan_id": "free",
        "catalog_version": "2026-11-01",
        "member_count": 1,
        "owner_count": 1,
        "active_project_count": 0,
        "created_by": "u",
        "created_at": "2026-11-01T00:00:00.000Z",
        "updated_at": "2026-11-01T00:00:00.000Z",
    }


class _Client:
    def __init__(self, existing: set[str], unprocessed_rounds: int) -> None:
        self.existing, self.rounds, self.calls = existing, unprocessed_rounds, []

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        ((table, request),) = RequestItems.items()
        keys = request["Keys"]
        assert len(keys) <= 100 and request["ConsistentRead"] is True
        self.calls.append(len(keys))
        if self.rounds:  # DynamoDB may leave part of a batch for later
            self.rounds -= 1
            done, left = keys[: len(keys) // 2], keys[len(keys) // 2 :]
        else:
            done, left = keys, []
        found = [_org_item(k["PK"][4:]) for k in done if k["PK"][4:] in self.existing]
        unprocessed = {table: {"Keys": left, "ConsistentRead": True}} if left else {}  # as DynamoDB returns it
        return {"Responses": {table: found}, "UnprocessedKeys": unprocessed}


class _Table:
    name = "billing"

    def __init__(self, client: _Client) -> None:
        self.meta = type("Meta", (), {"client": client})()


def test_orgs_are_read_100_at_a_time_and_unprocessed_keys_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(org_repository.time, "sleep", lambda _: None)
    ids = [f"org_{i:04d}" for i in range(250)]
    client = _Client(existing=set(ids[::2]), unprocessed_rounds=3)
    found = OrgRepository(_Table(client)).get_orgs(ids + ids[:10])  # repeated ids are read once
    assert set(found) == set(ids)
    assert {org_id for org_id, org in found.items() if org is not None} == set(ids[::2])
    assert all(org.org_id == org_id for org_id, org in found.items() if org is not None)
    assert sum(client.calls) == 250 + 50 + 25 + 13  # three rounds left half of a batch for later


def test_keys_left_unprocessed_every_time_are_a_throttle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(org_repository.time, "sleep", lambda _: None)
    client = _Client(existing=set(), unprocessed_rounds=10**6)
    with pytest.raises(ThrottledError):
        OrgRepository(_Table(client)).get_orgs(["org_a", "org_b"])

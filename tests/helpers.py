"""Small test helpers: an HTTP client for the local API that mints dev tokens per person, and
a reader of an org's stored items (to prove that refused requests wrote nothing)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import requests
from boto3.dynamodb.conditions import Key


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]

    @property
    def code(self) -> str | None:
        return (self.body or {}).get("error", {}).get("code") if isinstance(self.body, dict) else None


class ApiClient:
    def __init__(self, base_url: str):
        self.base_url = base_url
        self._session = requests.Session()

    def call(
        self,
        method: str,
        path: str,
        *,
        as_user: str | None = None,
        groups: tuple[str, ...] = (),
        json: Any = None,
        params: dict[str, Any] | None = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        from tests.local import devtokens

        hdrs = dict(headers or {})
        if token is None and as_user is not None:
            token = devtokens.mint(as_user, groups=groups, email=f"{as_user}@example.com")
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        resp = self._session.request(method, self.base_url + path, json=json, params=params, headers=hdrs, timeout=30)
        body: Any = None
        if resp.content:
            try:
                body = resp.json()
            except ValueError:
                body = resp.text
        return Reply(resp.status_code, body, dict(resp.headers))


def new_user(label: str = "user") -> str:
    return f"{label}_{uuid.uuid4().hex[:10]}"


def org_items(table: Any, org_id: str) -> list[dict[str, Any]]:
    """Every stored item of an org's partition, for before/after comparisons."""
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"KeyConditionExpression": Key("PK").eq(f"ORG#{org_id}"), "ConsistentRead": True}
    while True:
        resp = table.query(**kwargs)
        items += resp["Items"]
        if "LastEvaluatedKey" not in resp:
            return items
        kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


def user_org_count(table: Any, user_id: str) -> int:
    resp = table.query(IndexName="GSI1", KeyConditionExpression=Key("GSI1PK").eq(f"USER#{user_id}"))
    return len(resp["Items"])

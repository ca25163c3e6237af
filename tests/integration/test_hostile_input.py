"""Hostile input on every route that takes a body (issue 19): a body that is not UTF-8, one sent as
another content type, integers past their bounds, booleans for integers, far dates, NUL bytes, zero
where it means nothing, crafted cursors. Each is refused with its code, before any handler code, and
nothing is written.

Classes that need a kind of field (an integer, a date, text) run on every route that has one; the body
decoder's classes (not UTF-8, wrong content type) on every route with a body, the webhook included."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from tests.helpers import ApiClient, new_user, org_items, user_org_count
from tests.local import devtokens
from tests.paid import paid_org_over_http

pytestmark = pytest.mark.integration

ENGINE = devtokens.service_token("hostile-input-test")
URLS = {"success_url": "https://app.layers.test/ok", "cancel_url": "https://app.layers.test/cancel"}
TODAY = datetime.now(UTC).date().isoformat()
NOW = datetime.now(UTC).replace(microsecond=0).isoformat()
FAR_INSTANT, FAR_DAY, FAR_UNIX = "9999-12-31T23:59:59Z", "9999-12-31", 253_402_300_799


@dataclass
class Org:
    org_id: str
    owner: str
    project_id: str
    member: str
    run_id: str
    hold_id: str


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # {org_id}, {user_id}, {run_id}, {hold_id} filled from the org
    body: Callable[[Org], dict[str, Any]]  # a valid body
    caller: str = "owner"  # owner | support | service | stripe
    key: bool = False  # sends an Idempotency-Key
    number: str | None = None  # a strict, bounded integer field (dotted path)
    text: str | None = None  # a string field
    date: tuple[str, Any] | None = None  # a date or time field and a far value for it
    zero: str | None = None  # an amount or quantity where 0 means nothing

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def _hold(o: Org) -> dict[str, Any]:
    return {"org_id": o.org_id, "hold_id": new_user("h"), "project_id": o.project_id, "platform": "meta"} | {
        "amount_minor": 100
    }


def _bill(o: Org) -> dict[str, Any]:
    fields = {"org_id": o.org_id, "platform": "meta", "bill_id": new_user("b"), "project_id": o.project_id}
    return fields | {"amount_minor": 1234, "currency": "USD", "billed_on": TODAY}


TERMS = {"base_minor": 99_900, "included_credits": 50_000, "platform_fee_bps": 200}
ROUTES: list[Route] = [
    Route("POST", "/v1/orgs", lambda o: {"name": "Hostile"}, text="name"),
    Route("PATCH", "/v1/orgs/{org_id}", lambda o: {"name": "Renamed"}, text="name"),
    Route(
        "PUT",
        "/v1/orgs/{org_id}/plan",
        lambda o: {"plan_id": "enterprise", "enterprise_terms": dict(TERMS)},
        caller="support",
        number="enterprise_terms.base_minor",
        text="plan_id",
    ),
    Route("POST", "/v1/orgs/{org_id}/members", lambda o: {"user_id": new_user(), "role": "member"}, text="user_id"),
    Route("PATCH", "/v1/orgs/{org_id}/members/{user_id}", lambda o: {"role": "billing"}, text="role"),
    Route("POST", "/v1/orgs/{org_id}/projects", lambda o: {"name": "P2"}, text="name"),
    Route("POST", "/v1/orgs/{org_id}/subscription/checkout", lambda o: {"plan_id": "scale", **URLS}, text="cancel_url"),
    Route("POST", "/v1/orgs/{org_id}/subscription/preview", lambda o: {"plan_id": "scale"}, text="plan_id"),
    Route(
        "PUT",
        "/v1/orgs/{org_id}/subscription",
        lambda o: {"plan_id": "scale", "proration_date": int(datetime.now(UTC).timestamp())},
        number="proration_date",
        text="plan_id",
        date=("proration_date", FAR_UNIX),
    ),
    Route(
        "POST",
        "/v1/orgs/{org_id}/billing-portal",
        lambda o: {"return_url": "https://app.layers.test"},
        text="return_url",
    ),
    Route(
        "PUT",
        "/v1/orgs/{org_id}/credits/cap",
        lambda o: {"monthly_cap": 5000},
        number="monthly_cap",
        zero="monthly_cap",
    ),
    Route(
        "POST",
        "/v1/orgs/{org_id}/credits/adjustments",
        lambda o: {"credits": 250, "reason": "goodwill"},
        caller="support",
        key=True,
        number="credits",
        text="reason",
        zero="credits",
    ),
    Route(
        "POST", "/v1/orgs/{org_id}/credits/packs/checkout", lambda o: {"pack_id": "pack_1000", **URLS}, text="pack_id"
    ),
    Route(
        "PUT",
        "/v1/orgs/{org_id}/wallet/settings",
        lambda o: {"low_threshold_minor": 5000},
        number="low_threshold_minor",
    ),
    Route(
        "POST",
        "/v1/orgs/{org_id}/wallet/top-ups",
        lambda o: {"amount_minor": 5000, "method": "ach", "payment_method_id": "pm_bank"},
        key=True,
        number="amount_minor",
        text="payment_method_id",
        zero="amount_minor",
    ),
    Route(
        "POST",
        "/v1/orgs/{org_id}/wallet/refunds",
        lambda o: {"amount_minor": 1000, "reason": "withdrawal"},
        caller="support",
        key=True,
        number="amount_minor",
        text="reason",
        zero="amount_minor",
    ),
    Route(
        "POST",
        "/v1/internal/credits/reservations",
        lambda o: (
            {"org_id": o.org_id, "project_id": o.project_id, "template_id": "ad-copy"}
            | {"generation_type": "caption_copy", "quantity": 1, "workflow_run_id": new_user("run")}
        ),
        caller="service",
        number="quantity",
        text="project_id",
        zero="quantity",
    ),
    Route(
        "POST",
        "/v1/internal/credits/reservations/{run_id}/settle",
        lambda o: {"org_id": o.org_id, "quantity": 1, "occurred_at": NOW},
        caller="service",
        number="quantity",
        text="org_id",
        date=("occurred_at", FAR_INSTANT),
    ),
    Route(
        "POST",
        "/v1/internal/credits/reservations/{run_id}/release",
        lambda o: {"org_id": o.org_id},
        caller="service",
        text="org_id",
    ),
    Route(
        "POST",
        "/v1/internal/usage/sdk-events",
        lambda o: {"batch_id": new_user("b"), "events": [{"org_id": o.org_id, "occurred_at": NOW, "count": 3}]},
        caller="service",
        number="events.0.count",
        text="events.0.org_id",
        date=("events.0.occurred_at", FAR_INSTANT),
        zero="events.0.count",
    ),
    Route(
        "POST",
        "/v1/internal/usage/events",
        lambda o: {
            "events": [
                {
                    "metric": "sdk_events",
                    "org_id": o.org_id,
                    "project_id": o.project_id,
                    "occurred_at": NOW,
                    "quantity": 3,
                    "event_id": new_user("ev"),
                }
            ]
        },
        caller="service",
        number="events.0.quantity",
        text="events.0.event_id",
        date=("events.0.occurred_at", FAR_INSTANT),
        zero="events.0.quantity",
    ),
    Route(
        "POST",
        "/v1/internal/usage/storage-snapshots",
        lambda o: {"org_id": o.org_id, "taken_at": NOW, "total_bytes": 10**9},
        caller="service",
        number="total_bytes",
        text="org_id",
        date=("taken_at", FAR_INSTANT),
    ),
    Route(
        "POST",
        "/v1/internal/wallet/holds",
        _hold,
        caller="service",
        number="amount_minor",
        text="hold_id",
        zero="amount_minor",
    ),
    Route(
        "POST",
        "/v1/internal/wallet/holds/{hold_id}/release",
        lambda o: {"org_id": o.org_id},
        caller="service",
        text="org_id",
    ),
    Route(
        "POST",
        "/v1/internal/wallet/bills",
        _bill,
        caller="service",
        number="amount_minor",
        text="bill_id",
        date=("billed_on", FAR_DAY),
    ),
    Route("POST", "/webhooks/stripe", lambda o: {"id": "evt_1", "type": "ping"}, caller="stripe"),
]


def _with(body: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """`body` with the field at `dotted` (a.b.0.c) set to `value`."""
    body = json.loads(json.dumps(body))
    *parents, last = dotted.split(".")
    node: Any = body
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[int(last) if isinstance(node, list) else last] = value
    return body


@pytest.fixture(scope="module")
def org(api: ApiClient, stack: Any, table: Any) -> Org:
    owner = new_user("owner")
    org_id = paid_org_over_http(api, stack, table, owner, name="Hostile", plan_id="pro", billing_mode="agency")
    project = api.call("POST", f"/v1/orgs/{org_id}/projects", as_user=owner, json={"name": "P"}).body["project_id"]
    member = new_user("member")
    assert api.call("POST", f"/v1/orgs/{org_id}/members", as_user=owner, json={"user_id": member}).status == 201
    run = {"org_id": org_id, "project_id": project, "template_id": "ad-copy", "generation_type": "caption_copy"}
    run_id = new_user("run")
    reply = api.call(
        "POST", "/v1/internal/credits/reservations", token=ENGINE, json=run | {"quantity": 1, "workflow_run_id": run_id}
    )
    assert reply.status == 201, reply.body
    stack.flush_outbox()  # what the setup wrote is sent (marked) before any before/after comparison
    stack.stripe.wait_for_deliveries()  # the seat sync's webhooks
    stack.flush_outbox()
    return Org(org_id, owner, project, member, run_id, new_user("hold"))


def _headers(route: Route, org: Org, content_type: str = "application/json") -> dict[str, str]:
    tokens = {
        "owner": devtokens.mint(org.owner),
        "support": devtokens.mint(new_user("staff"), groups=["support"]),
        "service": ENGINE,
    }
    headers = {"Content-Type": content_type, "Stripe-Signature": "t=1,v1=00"}
    if route.caller in tokens:
        headers["Authorization"] = f"Bearer {tokens[route.caller]}"
    if route.key:
        headers["Idempotency-Key"] = new_user("key")
    return headers


def _send(api: ApiClient, route: Route, org: Org, data: bytes, content_type: str = "application/json") -> Any:
    path = route.path.format(org_id=org.org_id, user_id=org.member, run_id=org.run_id, hold_id=org.hold_id)
    return requests.request(
        route.method, api.base_url + path, data=data, headers=_headers(route, org, content_type), timeout=30
    )


def _state(table: Any, org: Org) -> tuple[Any, ...]:
    return sorted(org_items(table, org.org_id), key=lambda i: i["SK"]), user_org_count(table, org.owner)


def _refused(
    api: ApiClient, table: Any, org: Org, route: Route, data: bytes, expected: tuple[int, str], **kw: Any
) -> None:
    before = _state(table, org)
    reply = _send(api, route, org, data, **kw)
    assert (reply.status_code, reply.json()["error"]["code"]) == expected, (str(route), reply.text)
    assert reply.json()["error"]["message"]
    assert _state(table, org) == before, f"{route} wrote something"


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


ALL = pytest.mark.parametrize("route", ROUTES, ids=str)


def _having(attr: str) -> Any:
    return pytest.mark.parametrize("route", [r for r in ROUTES if getattr(r, attr)], ids=str)


@ALL
@pytest.mark.parametrize("data", [b'{"name": "\xff\xfe"}', '{"name": "x"}'.encode("utf-16")], ids=["stray", "utf16"])
def test_a_body_that_is_not_utf8_is_400_invalid_body(
    api: ApiClient, table: Any, org: Org, route: Route, data: bytes
) -> None:
    _refused(api, table, org, route, data, (400, "invalid_body"))


@ALL
@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
def test_a_body_of_another_content_type_is_415(
    api: ApiClient, table: Any, org: Org, route: Route, content_type: str
) -> None:
    _refused(api, table, org, route, _json(route.body(org)), (415, "unsupported_media_type"), content_type=content_type)


@_having("number")
@pytest.mark.parametrize("value", [10**39, 2**63, True, 1.5, "12"], ids=["1e39", "2^63", "true", "float", "string"])
def test_an_integer_out_of_bounds_or_not_an_integer_is_422(
    api: ApiClient, table: Any, org: Org, route: Route, value: Any
) -> None:
    assert route.number is not None
    _refused(api, table, org, route, _json(_with(route.body(org), route.number, value)), (422, "validation_error"))


@_having("text")
@pytest.mark.parametrize(
    "value",
    ["a\u0000b", "bell\u0007", "x" * 5000, 10**39, True],
    ids=["nul", "control", "long", "huge-int", "true"],
)
def test_text_with_control_characters_too_long_or_not_text_is_422(
    api: ApiClient, table: Any, org: Org, route: Route, value: Any
) -> None:
    assert route.text is not None
    _refused(api, table, org, route, _json(_with(route.body(org), route.text, value)), (422, "validation_error"))


@_having("date")
def test_a_far_date_is_422(api: ApiClient, table: Any, org: Org, route: Route) -> None:
    assert route.date is not None
    field, far = route.date
    _refused(api, table, org, route, _json(_with(route.body(org), field, far)), (422, "validation_error"))


@_having("zero")
def test_zero_where_it_means_nothing_is_422(api: ApiClient, table: Any, org: Org, route: Route) -> None:
    assert route.zero is not None
    _refused(api, table, org, route, _json(_with(route.body(org), route.zero, 0)), (422, "validation_error"))


def _cursor(key: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


LISTS = [
    "/v1/orgs",
    "/v1/orgs/{org_id}/members",
    "/v1/orgs/{org_id}/projects",
    "/v1/orgs/{org_id}/credits/events",
    "/v1/orgs/{org_id}/wallet/transactions",
    "/v1/orgs/{org_id}/invoices",
]
CURSORS = {
    "wallet-account": _cursor({"SK": "WALLET"}),
    "extra-key": _cursor({"SK": "MEMBER#x", "PK": "ORG#other"}),
    "another-kind-of-item": _cursor({"SK": "OUTBOX#x"}),
    "not-a-string": _cursor({"SK": 5}),
    "seen-not-a-number": _cursor({"SK": "ENTRY#1", "seen": "x"}),
    "membership-elsewhere": _cursor({"GSI1SK": "ORG#x", "PK": "WALLET", "SK": "WALLET"}),
    "not-json": base64.urlsafe_b64encode(b"\xff\x00").decode().rstrip("="),
    "not-base64": "!!!",
    "padding": "e30=",
}


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize("cursor", list(CURSORS), ids=list(CURSORS))
def test_a_crafted_cursor_is_422_invalid_cursor(api: ApiClient, table: Any, org: Org, path: str, cursor: str) -> None:
    before = _state(table, org)
    reply = api.call("GET", path.format(org_id=org.org_id), as_user=org.owner, params={"cursor": CURSORS[cursor]})
    assert reply.status == 422, (path, cursor, reply.body)
    assert reply.code in ("invalid_cursor", "validation_error"), reply.body
    assert _state(table, org) == before

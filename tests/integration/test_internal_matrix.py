"""Every service-to-service route (`/v1/internal/...`, IAM-authorized in AWS; a service dev token
locally): success; invalid body (422, nothing written); no or a person's token (403 from API
Gateway's IAM authorizer); an unknown org (404). Enumerated from the function's own OpenAPI."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.helpers import ApiClient, new_user, org_items
from tests.local import devtokens
from tests.paid import paid_org_over_http

pytestmark = pytest.mark.integration
ENGINE = devtokens.service_token("workflow-engine")
# Dates a few days back from the real now (the metering window is 35 days: fixed dates would age out of it)
DAY_BEFORE = (datetime.now(UTC) - timedelta(days=3)).date().isoformat()


def _recent() -> str:
    """An instant of the org's life for its usage (made just now: usage dated before it is refused)."""
    return datetime.now(UTC).isoformat()


_runs = itertools.count()


@dataclass
class World:
    org_id: str
    project_id: str
    owner: str
    run_id: str  # a run with an open reservation
    hold_id: str = ""  # an open wallet hold (agency orgs)
    bill_id: str = ""  # a recorded Meta bill


def _world(api: ApiClient, stack: Any, table: Any) -> World:
    owner = new_user()
    org_id = paid_org_over_http(api, stack, table, owner, name="Int", plan_id="pro", billing_mode="agency")
    project = api.call("POST", f"/v1/orgs/{org_id}/projects", as_user=owner, json={"name": "P"}).body["project_id"]
    run_id = f"run-{new_user()}"
    reply = api.call("POST", "/v1/internal/credits/reservations", token=ENGINE, json=_reserve(org_id, project, run_id))
    assert reply.status == 201, reply.body
    # Fund the wallet through the service itself (a credited top-up), then hold part of it.
    _fund(org_id)
    hold_id = f"hold-{new_user()}"
    hold = api.call(
        "POST",
        "/v1/internal/wallet/holds",
        token=ENGINE,
        json={"org_id": org_id, "hold_id": hold_id, "project_id": project, "platform": "meta", "amount_minor": 500},
    )
    assert hold.status == 201, hold.body
    bill_id = f"bill-{new_user()}"
    bill = {
        "org_id": org_id,
        "platform": "meta",
        "bill_id": bill_id,
        "project_id": project,
        "amount_minor": 2_000,
        "currency": "USD",
        "billed_on": DAY_BEFORE,
    }
    assert api.call("POST", "/v1/internal/wallet/bills", token=ENGINE, json=bill).status == 200
    # What the subscription and the changes above caused is done before a test compares stored state.
    stack.flush_outbox()
    stack.stripe.wait_for_deliveries()
    stack.flush_outbox()
    return World(org_id, project, owner, run_id, hold_id, bill_id)


def _fund(org_id: str) -> None:
    from functions.internal.handler import services

    services().wallet.topup_succeeded(
        org_id=org_id, topup_id=f"tu-{org_id}", payment_intent_id=f"pi-{org_id}", charge_id=None, amount_minor=100_000
    )


def _reserve(org_id: str, project_id: str, run_id: str) -> dict[str, Any]:
    return {
        "org_id": org_id,
        "project_id": project_id,
        "template_id": "ad-copy",
        "generation_type": "caption_copy",
        "quantity": 1,
        "workflow_run_id": run_id,
    }


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    ok_status: int
    body: Callable[[World], dict[str, Any]]
    bad: Callable[[World], dict[str, Any]]


def _path(case: Case, world: World) -> str:
    path = case.path.replace("{workflow_run_id}", world.run_id).replace("{hold_id}", world.hold_id)
    return path.replace("{platform}", "meta").replace("{bill_id}", world.bill_id)


CASES = [
    Case(
        "POST",
        "/v1/internal/credits/reservations",
        201,
        lambda w: _reserve(w.org_id, w.project_id, f"run-{next(_runs)}-{new_user()}"),
        lambda w: {**_reserve(w.org_id, w.project_id, "run-bad"), "quantity": 0},
    ),
    Case(
        "POST",
        "/v1/internal/credits/reservations/{workflow_run_id}/settle",
        200,
        lambda w: {"org_id": w.org_id, "quantity": 1},
        lambda w: {"org_id": w.org_id, "quantity": -1},
    ),
    Case(
        "POST",
        "/v1/internal/credits/reservations/{workflow_run_id}/release",
        200,
        lambda w: {"org_id": w.org_id},
        lambda w: {"org_id": w.org_id, "extra": True},
    ),
    Case(
        "POST",
        "/v1/internal/usage/sdk-events",
        200,
        lambda w: {
            "batch_id": f"b-{new_user()}",
            "events": [{"org_id": w.org_id, "occurred_at": _recent()}],
        },
        lambda w: {"batch_id": "b-bad", "events": []},
    ),
    Case(
        "POST",
        "/v1/internal/usage/events",
        200,
        lambda w: {
            "events": [
                {
                    "metric": "workflow_runs",
                    "org_id": w.org_id,
                    "project_id": w.project_id,
                    "occurred_at": _recent(),
                    "quantity": 1,
                    "event_id": f"ev-{new_user()}",
                }
            ]
        },
        lambda w: {"events": [{"metric": "media_storage_gb", "org_id": w.org_id, "event_id": "e"}]},
    ),
    Case(
        "POST",
        "/v1/internal/usage/storage-snapshots",
        200,
        lambda w: {"org_id": w.org_id, "taken_at": _recent(), "total_bytes": 5 * 10**9},
        lambda w: {"org_id": w.org_id, "taken_at": "yesterday", "total_bytes": -1},
    ),
    Case(
        "POST",
        "/v1/internal/wallet/bills",
        200,
        lambda w: {
            "org_id": w.org_id,
            "platform": "meta",
            "bill_id": f"bill-{new_user()}",
            "project_id": w.project_id,
            "amount_minor": 1234,
            "currency": "USD",
            "billed_on": DAY_BEFORE,
        },
        lambda w: {
            "org_id": w.org_id,
            "platform": "meta",
            "bill_id": "x",
            "project_id": w.project_id,
            "amount_minor": -1_000_000_000_000,
            "currency": "usd",
            "billed_on": "someday",
        },
    ),
    Case(
        "POST",
        "/v1/internal/wallet/bills/{platform}/{bill_id}/reversal",
        200,
        lambda w: {"org_id": w.org_id, "reason": "the platform corrected its report"},
        lambda w: {"org_id": w.org_id, "reason": ""},
    ),
    Case(
        "POST",
        "/v1/internal/wallet/spend-reports",
        200,
        lambda w: {
            "org_id": w.org_id,
            "platform": "meta",
            "project_id": w.project_id,
            "day": DAY_BEFORE,
            "amount_minor": 1234,
            "currency": "USD",
            "report_id": f"rpt-{new_user()}",
        },
        lambda w: {
            "org_id": w.org_id,
            "platform": "meta",
            "project_id": w.project_id,
            "day": "someday",
            "amount_minor": -1,
            "currency": "usd",
            "report_id": "r",
        },
    ),
    Case(
        "POST",
        "/v1/internal/wallet/holds",
        201,
        lambda w: {
            "org_id": w.org_id,
            "hold_id": f"h-{new_user()}",
            "project_id": w.project_id,
            "platform": "tiktok",
            "amount_minor": 100,
        },
        lambda w: {
            "org_id": w.org_id,
            "hold_id": "h",
            "project_id": w.project_id,
            "platform": "tiktok",
            "amount_minor": 0,
        },
    ),
    Case(
        "POST",
        "/v1/internal/wallet/holds/{hold_id}/release",
        200,
        lambda w: {"org_id": w.org_id},
        lambda w: {"org_id": w.org_id, "amount_minor": 5},
    ),
]
IDS = [c.path for c in CASES]


@pytest.fixture
def world(api: ApiClient, stack: Any, table: Any) -> World:
    return _world(api, stack, table)


def test_every_internal_route_is_covered(stack: Any) -> None:
    from functions.internal.handler import app

    document = app.get_openapi_schema()
    routes = {
        (m.upper(), p)
        for p, ops in document.paths.items()
        for m in ("get", "post", "put", "patch", "delete")
        if getattr(ops, m) is not None
    }
    assert routes == {(c.method, c.path) for c in CASES}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_success(api: ApiClient, world: World, case: Case) -> None:
    reply = api.call(case.method, _path(case, world), token=ENGINE, json=case.body(world))
    assert reply.status == case.ok_status, reply.body


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_invalid_body_is_422_and_writes_nothing(api: ApiClient, world: World, table: Any, case: Case) -> None:
    before = org_items(table, world.org_id)
    reply = api.call(case.method, _path(case, world), token=ENGINE, json=case.bad(world))
    assert (reply.status, reply.code) == (422, "validation_error"), reply.body
    assert org_items(table, world.org_id) == before


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("who", ["nobody", "a person", "a forged service token"])
def test_only_services_get_in(api: ApiClient, world: World, table: Any, case: Case, who: str) -> None:
    tokens = {
        "nobody": None,
        "a person": devtokens.mint(world.owner),
        "a forged service token": devtokens.mint("service:x", groups=["service"], key=devtokens.generate_key()),
    }
    before = org_items(table, world.org_id)
    reply = api.call(case.method, _path(case, world), token=tokens[who], json=case.body(world))
    assert reply.status == 403, reply.body  # API Gateway's IAM authorizer refuses unsigned requests
    assert org_items(table, world.org_id) == before


@pytest.mark.parametrize(
    "case", [c for c in CASES if "usage/" not in c.path or "storage" in c.path], ids=lambda c: c.path
)
def test_an_unknown_org_is_404(api: ApiClient, world: World, case: Case) -> None:
    body = {**case.body(world), "org_id": "org_doesnotexist"}
    reply = api.call(case.method, _path(case, world), token=ENGINE, json=body)
    assert (reply.status, reply.code) == (404, "org_not_found"), reply.body


def test_sdk_events_of_unknown_orgs_are_reported_and_not_counted(api: ApiClient, world: World, table: Any) -> None:
    # A batch mixes many orgs; one unknown org must not drop the others' events.
    body = {
        "batch_id": f"b-{new_user()}",
        "events": [
            {"org_id": "org_doesnotexist", "occurred_at": _recent(), "count": 5},
            {"org_id": world.org_id, "occurred_at": _recent(), "count": 7},
        ],
    }
    reply = api.call("POST", "/v1/internal/usage/sdk-events", token=ENGINE, json=body)
    assert reply.status == 200
    assert (reply.body["unknown_orgs"], reply.body["events"], reply.body["groups"]) == (["org_doesnotexist"], 12, 1)


@pytest.mark.parametrize(
    "when",
    ["2026-12-06T16:00:00", "2999-01-01T00:00:00Z", "1970-01-01T00:00:00Z"],
    ids=["naive", "far future", "before 2000"],
)
@pytest.mark.parametrize("route", ["settle", "sdk-events", "storage-snapshots"])
def test_a_usage_instant_without_offset_or_ahead_of_now_is_422(
    api: ApiClient, world: World, table: Any, when: str, route: str
) -> None:
    path, body = {
        "settle": (
            f"/v1/internal/credits/reservations/{world.run_id}/settle",
            {"org_id": world.org_id, "occurred_at": when},
        ),
        "sdk-events": (
            "/v1/internal/usage/sdk-events",
            {"batch_id": f"b-{new_user()}", "events": [{"org_id": world.org_id, "occurred_at": when, "count": 1}]},
        ),
        "storage-snapshots": (
            "/v1/internal/usage/storage-snapshots",
            {"org_id": world.org_id, "taken_at": when, "total_bytes": 1},
        ),
    }[route]
    before = org_items(table, world.org_id)
    reply = api.call("POST", path, token=ENGINE, json=body)
    assert (reply.status, reply.code) == (422, "validation_error"), reply.body
    assert org_items(table, world.org_id) == before

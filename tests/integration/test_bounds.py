"""Amounts a request may carry are bounded and strictly integers: `true` is not 1, and a number past
DynamoDB's 38 digits is a 422 (it used to be a 500), with nothing written."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import ApiClient, new_user, org_items
from tests.local import devtokens
from tests.paid import paid_org_over_http

pytestmark = pytest.mark.integration

ENGINE = devtokens.service_token("bounds-test")
HUGE = 10**39


def _org(api: ApiClient, stack: Any, table: Any) -> tuple[str, str, str]:
    owner = new_user()
    org_id = paid_org_over_http(api, stack, table, owner, name="Bounds", plan_id="pro", billing_mode="agency")
    project = api.call("POST", f"/v1/orgs/{org_id}/projects", as_user=owner, json={"name": "P"}).body["project_id"]
    # what the subscription caused is done before the test compares stored state
    stack.flush_outbox()
    stack.stripe.wait_for_deliveries()
    stack.flush_outbox()
    return owner, org_id, project


def _requests(
    owner: str, org_id: str, project: str, value: Any
) -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """(method, path, json, call options) of every route with an amount, that amount set to `value`."""
    person = {"as_user": owner}
    support = {"as_user": new_user(), "groups": ("support",), "headers": {"Idempotency-Key": new_user()}}
    service = {"token": ENGINE}
    bill = {"org_id": org_id, "platform": "meta", "bill_id": new_user(), "project_id": project, "currency": "USD"}
    return [
        ("PUT", f"/v1/orgs/{org_id}/wallet/settings", {"low_threshold_minor": value}, person),
        ("PUT", f"/v1/orgs/{org_id}/credits/cap", {"monthly_cap": value}, person),
        ("POST", f"/v1/orgs/{org_id}/credits/adjustments", {"credits": value, "reason": "goodwill"}, support),
        ("POST", f"/v1/orgs/{org_id}/wallet/refunds", {"amount_minor": value, "reason": "closing"}, support),
        (
            "POST",
            f"/v1/orgs/{org_id}/wallet/top-ups",
            {"amount_minor": value, "method": "card"},
            {**person, "headers": {"Idempotency-Key": new_user()}},
        ),
        (
            "POST",
            "/v1/internal/wallet/holds",
            {"org_id": org_id, "hold_id": new_user(), "project_id": project, "platform": "meta", "amount_minor": value},
            service,
        ),
        ("POST", "/v1/internal/wallet/bills", {**bill, "amount_minor": value, "billed_on": "2026-11-20"}, service),
        (
            "POST",
            "/v1/internal/usage/storage-snapshots",
            {"org_id": org_id, "taken_at": "2026-11-20T10:00:00Z", "total_bytes": value},
            service,
        ),
    ]


@pytest.mark.parametrize("value", [True, HUGE, -(10**39)], ids=["true", "10**39", "-10**39"])
def test_an_amount_that_is_not_a_bounded_integer_is_422_and_writes_nothing(
    api: ApiClient, stack: Any, table: Any, value: Any
) -> None:
    owner, org_id, project = _org(api, stack, table)
    before = org_items(table, org_id)
    for method, path, body, options in _requests(owner, org_id, project, value):
        reply = api.call(method, path, json=body, **options)
        assert (reply.status, reply.code) == (422, "validation_error"), (path, reply.body)
    assert org_items(table, org_id) == before


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/webhooks/stripe", b"\xff\xfe"),
        ("/webhooks/stripe", '{"id": "evt_1"}'.encode("utf-16")),
        ("/v1/orgs", '{"name": "Utf16"}'.encode("utf-16")),
    ],
    ids=["webhook, 2 stray bytes", "webhook, UTF-16", "JSON route, UTF-16"],
)
def test_a_body_that_is_not_utf8_is_a_400_not_a_500(api: ApiClient, path: str, body: bytes) -> None:
    import requests

    from tests.local import devtokens

    headers = {"Content-Type": "application/json", "Stripe-Signature": "t=1,v1=00"}
    if path.startswith("/v1/"):
        headers["Authorization"] = f"Bearer {devtokens.mint(new_user())}"
    reply = requests.post(f"{api.base_url}{path}", data=body, headers=headers, timeout=30)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["code"] == "invalid_body"

"""Hostile input found by an outside review of issue 19: each refused with its code, nothing written,
no answer larger than the request deserves."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from tests.helpers import ApiClient, new_user, org_items
from tests.local import devtokens
from tests.paid import paid_org_over_http

pytestmark = pytest.mark.integration


def _raw(api: ApiClient, method: str, path: str, body: str | bytes, user: str, **headers: str) -> Any:
    hdrs = {"Content-Type": "application/json", "Authorization": f"Bearer {devtokens.mint(user)}", **headers}
    return requests.request(method, api.base_url + path, data=body, headers=hdrs, timeout=120)


def test_a_webhook_signature_that_is_not_ascii_is_a_400(api: ApiClient) -> None:
    reply = requests.post(
        api.base_url + "/webhooks/stripe",
        data=b"{}",
        headers={"Content-Type": "application/json", "Stripe-Signature": "t=1,v1=\u00e9".encode()},
        timeout=30,
    )
    assert (reply.status_code, reply.json()["error"]["code"]) == (400, "invalid_signature")


@pytest.mark.parametrize(
    "body",
    ['{"name": ' + "1" * 5000 + "}", "[" * 100_000 + "]" * 100_000, '{"a":' * 5000 + "1" + "}" * 5000],
    ids=["5,000-digit integer", "nested 100,000 deep", "objects nested 5,000 deep"],
)
def test_json_past_the_parsers_limits_is_a_400_and_writes_nothing(api: ApiClient, table: Any, body: str) -> None:
    owner = new_user()
    org_id = api.call("POST", "/v1/orgs", as_user=owner, json={"name": "Deep"}).body["org_id"]
    before = org_items(table, org_id)
    reply = _raw(api, "PATCH", f"/v1/orgs/{org_id}", body, owner)
    assert (reply.status_code, reply.json()["error"]["code"]) == (400, "invalid_body"), reply.text[:300]
    assert org_items(table, org_id) == before


def test_a_refusal_names_the_first_problems_not_all_of_them(api: ApiClient) -> None:
    owner = new_user()
    org_id = api.call("POST", "/v1/orgs", as_user=owner, json={"name": "Keys"}).body["org_id"]
    body = json.dumps({"name": "n", **{f"k{i}": i for i in range(50_000)}})
    reply = _raw(api, "PATCH", f"/v1/orgs/{org_id}", body, owner)
    assert reply.status_code == 422
    assert len(reply.json()["error"]["details"]) == 20 and "more" in reply.json()["error"]["message"]
    assert len(reply.content) < 20_000 < len(body)


@pytest.mark.parametrize(
    "name", ["\u200b\u200b", "\ufeff", "Acme\u202e", "\u200dAcme", " \u2060 "], ids=["zwsp", "bom", "rlo", "zwj", "wj"]
)
def test_invisible_or_direction_characters_are_refused_in_names(api: ApiClient, name: str) -> None:
    reply = api.call("POST", "/v1/orgs", as_user=new_user(), json={"name": name})
    assert (reply.status, reply.code) == (422, "validation_error"), reply.body


@pytest.mark.parametrize("user_id", [".", ".."])
def test_a_member_id_a_path_would_normalise_is_refused(api: ApiClient, stack: Any, table: Any, user_id: str) -> None:
    owner = new_user()
    org_id = paid_org_over_http(api, stack, table, owner, name="Dots", billing_mode="byo")
    reply = api.call("POST", f"/v1/orgs/{org_id}/members", as_user=owner, json={"user_id": user_id})
    assert (reply.status, reply.code) == (422, "validation_error")


def test_an_idempotency_key_reused_for_another_request_is_a_409(api: ApiClient, stack: Any, table: Any) -> None:
    owner = new_user()
    org_id = paid_org_over_http(api, stack, table, owner, name="Keys again")
    path = f"/v1/orgs/{org_id}/wallet/top-ups"
    first = api.call(
        "POST", path, as_user=owner, json={"amount_minor": 5_000, "method": "card"}, headers={"Idempotency-Key": "k-1"}
    )
    assert first.status == 202, first.body
    stack.stripe.wait_for_deliveries()
    for body in ({"amount_minor": 9_000, "method": "card"}, {"amount_minor": 5_000, "method": "wire"}):
        again = api.call("POST", path, as_user=owner, json=body, headers={"Idempotency-Key": "k-1"})
        assert (again.status, again.code) == (409, "idempotency_key_reused"), again.body
    same = api.call(
        "POST", path, as_user=owner, json={"amount_minor": 5_000, "method": "card"}, headers={"Idempotency-Key": "k-1"}
    )
    assert (same.status, same.body["topup_id"]) == (202, first.body["topup_id"])
    other = api.call("POST", "/v1/orgs", as_user=owner, json={"name": "Checkout keys"}).body["org_id"]
    urls = {"success_url": "https://a.test/ok", "cancel_url": "https://a.test/no"}
    checkout = f"/v1/orgs/{other}/subscription/checkout"
    assert (
        api.call(
            "POST", checkout, as_user=owner, json={"plan_id": "pro", **urls}, headers={"Idempotency-Key": "c-1"}
        ).status
        == 201
    )
    clash = api.call(
        "POST", checkout, as_user=owner, json={"plan_id": "scale", **urls}, headers={"Idempotency-Key": "c-1"}
    )
    assert (clash.status, clash.code) == (409, "idempotency_key_reused"), clash.body

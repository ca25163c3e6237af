"""The Stripe gateway against the emulator: idempotency keys from our ids, retries of transient
failures (with the same key, so nothing happens twice), Stripe errors as domain errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.errors import InvalidRequestError, UpstreamError, WebhookSignatureError
from shared.stripe_gateway import StripeGateway
from tests.helpers import new_user
from tests.integration.test_stripe_webhooks import sign

pytestmark = pytest.mark.integration


@pytest.fixture
def gateway(stack: Any) -> StripeGateway:
    return StripeGateway("sk_test_local", "whsec_local", api_base=stack.env["STRIPE_API_BASE"], max_retries=3)


def _customers_of(gateway: StripeGateway, org_id: str) -> list[Any]:
    found = gateway._client.v1.customers.list(params={"limit": 100}).data
    return [c for c in found if c.metadata.to_dict().get("org_id") == org_id]


def test_a_retried_create_returns_the_first_result(gateway: StripeGateway) -> None:
    org_id = new_user("org")
    first = gateway.create_customer(org_id=org_id, name="A", email=None)
    assert gateway.create_customer(org_id=org_id, name="A", email=None) == first
    assert len(_customers_of(gateway, org_id)) == 1


@pytest.mark.parametrize(("status", "after_execute"), [(500, False), (429, False), (500, True)])
def test_transient_failures_are_retried_and_act_once(
    gateway: StripeGateway, stack: Any, status: int, after_execute: bool
) -> None:
    # Given Stripe fails twice (or executes, then the reply is lost)
    stack.stripe.fail_next(2 if not after_execute else 1, status=status, after_execute=after_execute)
    org_id = new_user("org")
    # When we create the org's customer, Then the SDK retries with our key and one customer exists
    customer = gateway.create_customer(org_id=org_id, name="B", email="b@example.com")
    assert [c.id for c in _customers_of(gateway, org_id)] == [customer]


def test_persistent_failure_is_an_upstream_error(gateway: StripeGateway, stack: Any) -> None:
    stack.stripe.fail_next(10, status=503)
    try:
        with pytest.raises(UpstreamError):
            gateway.create_customer(org_id=new_user("org"), name="C", email=None)
    finally:
        stack.stripe._server.faults.clear()  # type: ignore[union-attr]


def test_unreachable_stripe_is_an_upstream_error() -> None:
    gateway = StripeGateway("sk_test_local", "whsec_local", api_base="http://127.0.0.1:9", max_retries=0)
    with pytest.raises(UpstreamError):
        gateway.create_customer(org_id=new_user("org"), name="D", email=None)


def test_stripe_errors_become_domain_errors(gateway: StripeGateway) -> None:
    with pytest.raises(InvalidRequestError) as err:
        gateway.refund(charge_id="ch_missing", amount_minor=100, metadata={}, key=new_user("refund"))
    assert err.value.code == "stripe_resource_missing"


def test_prices_are_found_by_lookup_key_and_created_once(stack: Any) -> None:
    key = f"layers:test:{new_user('plan')}:USD:base"

    def fresh() -> StripeGateway:  # no per-instance cache: every call asks Stripe
        return StripeGateway("sk_test_local", "whsec_local", api_base=stack.env["STRIPE_API_BASE"])

    first = fresh().price_id(key, product_name="P", unit_amount_minor=1234, currency="USD", metadata={})
    assert fresh().price_id(key, product_name="P", unit_amount_minor=1234, currency="USD", metadata={}) == first


def test_webhook_signatures_are_verified(gateway: StripeGateway) -> None:
    payload = json.dumps(
        {"id": "evt_1", "object": "event", "type": "invoice.paid", "created": 1, "data": {"object": {"id": "in_1"}}}
    )
    event = gateway.parse_webhook(payload, sign(payload))
    assert (event.event_id, event.type, event.object["id"]) == ("evt_1", "invoice.paid", "in_1")
    with pytest.raises(WebhookSignatureError):
        gateway.parse_webhook(payload.replace("in_1", "in_2"), sign(payload))

"""The Stripe gateway against the emulator: idempotency keys from our ids, retries of transient
failures (with the same key, so nothing happens twice), Stripe errors as domain errors."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from shared.deadline import ANSWER_RESERVE_S, MIN_ATTEMPT_S, deadline_in, within_lambda_time
from shared.errors import InvalidRequestError, StripeTimeoutError, UpstreamError, WebhookSignatureError
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
    # (targeted: background work of earlier tests on this worker's stack must not take the faults)
    count = 2 if not after_execute else 1
    stack.stripe.fail_next(count, status=status, after_execute=after_execute, method="POST", path="/v1/customers")
    org_id = new_user("org")
    # When we create the org's customer, Then the SDK retries with our key and one customer exists
    customer = gateway.create_customer(org_id=org_id, name="B", email="b@example.com")
    assert [c.id for c in _customers_of(gateway, org_id)] == [customer]


def test_persistent_failure_is_an_upstream_error(gateway: StripeGateway, stack: Any) -> None:
    stack.stripe.fail_next(10, status=503, method="POST", path="/v1/customers")
    try:
        with pytest.raises(UpstreamError):
            gateway.create_customer(org_id=new_user("org"), name="C", email=None)
    finally:
        stack.stripe.clear_faults()


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


# ---------------------------------------------------------------------------------------------- deadlines
def _timed(call: Any) -> tuple[Any, float]:
    started = time.monotonic()
    try:
        return call(), time.monotonic() - started
    except Exception as exc:  # handed back to the test
        return exc, time.monotonic() - started


def test_a_reply_trickled_past_the_deadline_ends_the_call_at_the_deadline(gateway: StripeGateway, stack: Any) -> None:
    # Given Stripe creates the customer, then sends its reply one byte per 0.2 s (a ~1 kB body: minutes;
    # every read succeeds well inside the read timeout)
    stack.stripe.trickle_next(5, seconds_per_byte=0.2)
    org_id = new_user("org")
    try:
        # When the call has 4 s left
        with deadline_in(4.0):
            outcome, took = _timed(lambda: gateway.create_customer(org_id=org_id, name="T", email=None))
    finally:
        stack.stripe._server.trickles.clear()  # type: ignore[union-attr]
    # Then it gives up at the deadline, saying so, with a retry the SDK never started
    assert isinstance(outcome, StripeTimeoutError), outcome
    assert outcome.code == "stripe_timeout"
    assert took < 4.0 + 1.0
    # And a retry (same key) finds the customer Stripe made: one customer
    assert gateway.create_customer(org_id=org_id, name="T", email=None) == _customers_of(gateway, org_id)[0].id


def test_without_a_request_deadline_a_call_still_ends_inside_its_budget(
    gateway: StripeGateway, stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shared.stripe_gateway.CALL_BUDGET_S", 3.0)
    stack.stripe.trickle_next(5, seconds_per_byte=0.2)
    try:
        outcome, took = _timed(lambda: gateway.create_customer(org_id=new_user("org"), name="U", email=None))
    finally:
        stack.stripe._server.trickles.clear()  # type: ignore[union-attr]
    assert isinstance(outcome, StripeTimeoutError), outcome
    assert took < 3.0 + 1.0


def test_a_call_that_cannot_finish_is_never_sent(gateway: StripeGateway) -> None:
    org_id = new_user("org")
    with deadline_in(MIN_ATTEMPT_S - 0.2), pytest.raises(StripeTimeoutError):
        gateway.create_customer(org_id=org_id, name="V", email=None)
    assert _customers_of(gateway, org_id) == []


class _Context:
    def __init__(self, remaining_s: float) -> None:
        self._ends = time.monotonic() + remaining_s

    def get_remaining_time_in_millis(self) -> int:
        return int((self._ends - time.monotonic()) * 1000)


def test_a_handler_s_calls_share_the_lambda_s_remaining_time(gateway: StripeGateway) -> None:
    # Given a request that makes one call, then waits, then makes another, in a Lambda with 5.5 s left
    first, second = new_user("org"), new_user("org")
    made: list[str] = []

    @within_lambda_time
    def handler(event: Any, context: Any) -> None:
        made.append(gateway.create_customer(org_id=first, name="W", email=None))
        time.sleep(5.5 - ANSWER_RESERVE_S - MIN_ATTEMPT_S + 0.2)  # less than MIN_ATTEMPT_S left
        made.append(gateway.create_customer(org_id=second, name="W", email=None))

    # When it runs, Then the second call is refused: it could not end before the function answers
    with pytest.raises(StripeTimeoutError):
        handler({}, _Context(5.5))
    assert len(made) == 1 and _customers_of(gateway, second) == []

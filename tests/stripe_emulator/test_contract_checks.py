"""The emulator speaks the pinned API version (tests/contract): it refuses requests the version refuses, with
Stripe's errors, records what it checked, and (strict, as in every test) fails loudly on an object of its own
that the version would not send."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import stripe

from tests.local.stripe_emulator import StripeEmulator


@pytest.fixture
def on_purpose(emulator: StripeEmulator) -> Iterator[None]:
    """Violations this test makes on purpose are taken out of the record (which every test asserts empty)."""
    seen = len(emulator.contract.violations)
    yield
    del emulator.contract.violations[seen:]


def _refusal(call: object) -> stripe.InvalidRequestError:
    with pytest.raises(stripe.InvalidRequestError) as refused:
        call()  # type: ignore[operator]
    return refused.value


def test_requests_outside_the_version_are_refused_with_stripes_errors(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    mark = emulator.contract.mark()
    bad_enum = _refusal(lambda: client.v1.prices.list(params={"type": "sometimes"}))  # type: ignore[typeddict-item]
    assert (bad_enum.http_status, bad_enum.code, bad_enum.param) == (400, "parameter_invalid_string", "type")
    assert "'sometimes' is not one of ['one_time', 'recurring']" in str(bad_enum.user_message)
    bad_integer = _refusal(lambda: client.v1.customers.list(params={"limit": "ten"}))  # type: ignore[typeddict-item]
    assert (bad_integer.code, bad_integer.param) == ("parameter_invalid_integer", "limit")
    emptied = _refusal(lambda: client.v1.customers.create(params={"email": ""}))
    assert (emptied.code, emptied.param) == ("parameter_invalid_empty", "email")
    removed = _refusal(
        lambda: client.v1.payment_intents.create(
            params={"amount": 5000, "currency": "usd", "payment_method_types": ["card"]}  # type: ignore[typeddict-unknown-key]
        )
    )
    assert (removed.code, removed.param) == ("payment_method_types_no_longer_supported", "payment_method_types")
    no_route = _refusal(lambda: client.raw_request("get", "/v1/invoices/upcoming"))
    assert no_route.http_status == 404 and "Unrecognized request URL" in str(no_route.user_message)

    checked = emulator.contract.requests_since(mark)
    assert [(c.method, c.path) for c in checked] == [
        ("GET", "/v1/prices"),
        ("GET", "/v1/customers"),
        ("POST", "/v1/customers"),
        ("POST", "/v1/payment_intents"),
        ("GET", "/v1/invoices/upcoming"),
    ]
    assert all(c.problems for c in checked)
    assert checked[0].problems == ("type: 'sometimes' is not one of ['one_time', 'recurring']",)


def test_a_request_within_the_version_is_recorded_without_problems(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    mark = emulator.contract.mark()
    client.v1.customers.create(params={"name": "Ok", "metadata": {"org_id": "org_1"}, "expand": ["test_clock"]})
    [checked] = emulator.contract.requests_since(mark)
    assert (checked.method, checked.path, checked.problems) == ("POST", "/v1/customers", ())
    assert checked.params["metadata"] == {"org_id": "org_1"}


def test_a_response_outside_the_version_is_a_500_naming_the_problem(
    client: stripe.StripeClient, emulator: StripeEmulator, on_purpose: None
) -> None:
    product = client.v1.products.create(params={"name": "Drifted"})
    with emulator.store.lock:
        emulator.store.objects[product.id]["colour"] = "red"  # no such field
    with pytest.raises(stripe.APIError) as failed:
        client.v1.products.retrieve(product.id)
    assert failed.value.http_status == 500
    assert "the response to GET /v1/products/" in str(failed.value.user_message)
    assert "product.colour: not in this version" in str(failed.value.user_message)
    assert "product.colour: not in this version" in emulator.contract.violations[-1]  # recorded too


def test_an_event_outside_the_version_fails_its_request_and_is_recorded(
    client: stripe.StripeClient, emulator: StripeEmulator, on_purpose: None
) -> None:
    customer = client.v1.customers.create(params={"name": "Drifted"})
    with emulator.store.lock:
        emulator.store.objects[customer.id]["balance"] = "ten"  # an integer
    with pytest.raises(stripe.APIError) as failed:
        client.v1.customers.update(customer.id, params={"name": "Renamed"})
    assert failed.value.http_status == 500
    assert "event customer.updated (evt_" in str(failed.value.user_message)
    assert [e for e in emulator.events("customer.updated") if e["data"]["object"]["id"] == customer.id] == []
    violations = emulator.contract.violations[-1:]
    assert violations and "event.data.object.balance: expected integer, got 'ten'" in violations[0]

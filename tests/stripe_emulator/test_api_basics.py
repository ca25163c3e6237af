"""Protocol conventions: form encoding, expand, pagination, errors, auth, idempotency, headers."""

from __future__ import annotations

import json
import urllib.request

import pytest
import stripe

from tests.local.stripe_emulator import StripeEmulator
from tests.local.stripe_emulator.forms import parse_form
from tests.local.stripe_emulator.money import add_interval, prorate
from tests.stripe_emulator.helpers import monthly_price, ts


def test_form_parsing_builds_nested_dicts_and_lists() -> None:
    body = (
        "items[0][price]=p1&items[0][quantity]=2&items[1][price]=p2&metadata[plan]=pro&"
        "expand[]=a&expand[]=b&lookup_keys[0]=k1&lookup_keys[1]=k2&metadata[gone]="
    )
    assert parse_form(body) == {
        "items": [{"price": "p1", "quantity": "2"}, {"price": "p2"}],
        "metadata": {"plan": "pro", "gone": ""},
        "expand": ["a", "b"],
        "lookup_keys": ["k1", "k2"],
    }


def test_month_periods_keep_the_anchor_day_clamped_to_month_end() -> None:
    anchor = ts(2025, 1, 31, 12, 0)
    assert add_interval(anchor, "month", 1) == ts(2025, 2, 28, 12, 0)
    assert add_interval(anchor, "month", 2) == ts(2025, 3, 31, 12, 0)
    assert add_interval(anchor, "month", 3) == ts(2025, 4, 30, 12, 0)
    assert add_interval(ts(2024, 1, 31), "month", 1) == ts(2024, 2, 29)


def test_proration_rounds_half_even() -> None:
    from decimal import Decimal

    # 997 x 1 x 15/30 = 498.5 -> 498 (even); 999 x 15/30 = 499.5 -> 500 (even)
    assert prorate(Decimal(997), 1, 15, 30) == 498
    assert prorate(Decimal(999), 1, 15, 30) == 500
    assert prorate(Decimal(2000), 1, 20, 30) == 1333


def test_create_retrieve_update_with_metadata_and_expand(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(params={"email": "a@example.com", "name": "A", "metadata": {"k": "v"}})
    assert customer.id.startswith("cus_")
    assert customer.object == "customer"
    assert customer.livemode is False
    assert customer.metadata.to_dict() == {"k": "v"}
    updated = client.v1.customers.update(customer.id, params={"metadata": {"k": "", "other": "x"}, "name": "B"})
    assert updated.metadata.to_dict() == {"other": "x"}
    assert updated.name == "B"

    price = monthly_price(client, "Pro", 2000)
    expanded = client.v1.prices.retrieve(price.id, params={"expand": ["product"]})
    assert expanded.product.object == "product"
    assert expanded.product.name == "Pro"
    assert client.v1.prices.retrieve(price.id).product == expanded.product.id

    listed = client.v1.prices.list(params={"lookup_keys": ["nope"], "expand": ["data.product"]})
    assert listed.data == []
    with_key = monthly_price(client, "Keyed", 500, lookup_key="keyed_monthly")
    found = client.v1.prices.list(params={"lookup_keys": ["keyed_monthly"], "active": True, "expand": ["data.product"]})
    assert [p.id for p in found.data] == [with_key.id]
    assert found.data[0].product.name == "Keyed"


def test_lookup_key_transfer(client: stripe.StripeClient) -> None:
    old = monthly_price(client, "Basic", 1000, lookup_key="basic_monthly_t")
    with pytest.raises(stripe.InvalidRequestError) as err:
        monthly_price(client, "Basic", 1100, lookup_key="basic_monthly_t")
    assert err.value.param == "lookup_key"
    new = monthly_price(client, "Basic", 1100, lookup_key="basic_monthly_t", transfer_lookup_key=True)
    assert client.v1.prices.retrieve(old.id).lookup_key is None
    assert client.v1.prices.retrieve(new.id).lookup_key == "basic_monthly_t"


def test_list_pagination_newest_first(client: stripe.StripeClient) -> None:
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": ts(2025, 1, 1)})
    ids = [client.v1.customers.create(params={"test_clock": clock.id, "name": f"c{i}"}).id for i in range(5)]
    page1 = client.v1.customers.list(params={"test_clock": clock.id, "limit": 2})
    assert page1.object == "list"
    assert page1.url == "/v1/customers"
    assert [c.id for c in page1.data] == [ids[4], ids[3]]
    assert page1.has_more is True
    page2 = client.v1.customers.list(params={"test_clock": clock.id, "limit": 2, "starting_after": ids[3]})
    assert [c.id for c in page2.data] == [ids[2], ids[1]]
    page3 = client.v1.customers.list(params={"test_clock": clock.id, "limit": 2, "starting_after": ids[1]})
    assert [c.id for c in page3.data] == [ids[0]]
    assert page3.has_more is False
    back = client.v1.customers.list(params={"test_clock": clock.id, "limit": 2, "ending_before": ids[1]})
    assert [c.id for c in back.data] == [ids[3], ids[2]]
    assert back.has_more is True
    everything = [
        c.id for c in client.v1.customers.list(params={"test_clock": clock.id, "limit": 2}).auto_paging_iter()
    ]
    assert everything == list(reversed(ids))


def test_errors_map_to_sdk_exceptions(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.customers.retrieve("cus_doesnotexist")
    assert missing.value.http_status == 404
    assert missing.value.code == "resource_missing"
    assert missing.value.param == "id"
    assert "No such customer: 'cus_doesnotexist'" in str(missing.value.user_message)

    with pytest.raises(stripe.InvalidRequestError) as unknown:
        client.v1.customers.create(params={"emial": "typo@example.com"})  # type: ignore[typeddict-unknown-key]
    assert unknown.value.http_status == 400
    assert unknown.value.code == "parameter_unknown"
    assert unknown.value.param == "emial"

    price = monthly_price(client, "Nested", 100)
    customer = client.v1.customers.create()
    with pytest.raises(stripe.InvalidRequestError) as nested:
        client.v1.subscriptions.create(
            params={"customer": customer.id, "items": [{"price": price.id, "colour": "red"}]}  # type: ignore[typeddict-unknown-key]
        )
    assert nested.value.param == "items[0][colour]"

    with pytest.raises(stripe.InvalidRequestError) as required:
        client.v1.prices.create(params={"unit_amount": 100, "product": price.product})  # type: ignore[typeddict-item]
    assert required.value.code == "parameter_missing"
    assert required.value.param == "currency"

    with pytest.raises(stripe.InvalidRequestError) as expand:
        client.v1.customers.retrieve(customer.id, params={"expand": ["nonsense"]})
    assert "cannot be expanded" in str(expand.value.user_message)


def test_auth_is_required(emulator: StripeEmulator) -> None:
    bad = stripe.StripeClient("sk_test_wrong", base_addresses={"api": emulator.base_url}, max_network_retries=0)
    with pytest.raises(stripe.AuthenticationError) as err:
        bad.v1.customers.list()
    assert err.value.http_status == 401
    request = urllib.request.Request(f"{emulator.base_url}/v1/customers")
    with pytest.raises(urllib.error.HTTPError) as raw:
        urllib.request.urlopen(request)
    assert raw.value.code == 401
    assert json.loads(raw.value.read())["error"]["type"] == "invalid_request_error"


def test_idempotency_replays_and_refuses_other_params(client: stripe.StripeClient) -> None:
    first = client.v1.customers.create(params={"email": "idem@example.com"}, options={"idempotency_key": "key-1"})
    again = client.v1.customers.create(params={"email": "idem@example.com"}, options={"idempotency_key": "key-1"})
    assert again.id == first.id
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert again.last_response.request_id == first.last_response.request_id
    assert "Idempotent-Replayed" not in first.last_response.headers
    assert first.last_response.request_id.startswith("req_")
    with pytest.raises(stripe.IdempotencyError) as err:
        client.v1.customers.create(params={"email": "other@example.com"}, options={"idempotency_key": "key-1"})
    assert err.value.http_status == 400
    assert err.value.error.type == "idempotency_error"
    # The same key on another API key is independent.
    assert len(client.v1.customers.list(params={"email": "idem@example.com"}).data) == 1


def test_stripe_version_header_is_accepted(emulator: StripeEmulator) -> None:
    versioned = stripe.StripeClient(
        "sk_test_local", base_addresses={"api": emulator.base_url}, stripe_version="2025-03-31.basil"
    )
    customer = versioned.v1.customers.create()
    assert customer.last_response.headers["Stripe-Version"] == "2025-03-31.basil"

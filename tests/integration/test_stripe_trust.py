"""Webhooks are trusted only after re-reading Stripe: a payload's amounts never move money, payments we
did not ask for move nothing, refunds made in Stripe's dashboard reach the wallet once, and whatever a
signed body holds, the answer is a 2xx or a 4xx, never a 5xx."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.helpers import ApiClient, new_user, org_items
from tests.integration.stripe_kit import StripeKit
from tests.integration.test_stripe_webhooks import post, sign

pytestmark = pytest.mark.integration


@pytest.fixture
def kit(stack: Any, table: Any) -> StripeKit:
    return StripeKit(stack, table)


def _funded(api: ApiClient, kit: StripeKit, amount: int = 20_000) -> tuple[str, str, str, dict[str, Any]]:
    """An agency org with a saved card and one card top-up credited: (owner, org, customer, top-up)."""
    owner = new_user()
    created = api.call("POST", "/v1/orgs", as_user=owner, json={"name": "Trust"})  # on Free
    assert created.status == 201, created.body
    org_id = created.body["org_id"]
    _, customer = kit.subscribe(api, owner, org_id, "pro")
    switched = api.call("PATCH", f"/v1/orgs/{org_id}", as_user=owner, json={"billing_mode": "agency"})
    assert switched.status == 200, switched.body
    reply = api.call(
        "POST",
        f"/v1/orgs/{org_id}/wallet/top-ups",
        as_user=owner,
        headers={"Idempotency-Key": new_user()},
        json={"amount_minor": amount, "method": "card"},
    )
    assert reply.status == 202, reply.body
    kit.emulator.wait_for_deliveries()
    kit.stack.flush_outbox()
    assert _balance(api, owner, org_id) == amount
    return owner, org_id, customer, dict(reply.body)


def _balance(api: ApiClient, owner: str, org_id: str) -> int:
    return int(api.call("GET", f"/v1/orgs/{org_id}/wallet", as_user=owner).body["balance_minor"])


def _event(kit: StripeKit, type_: str, object_id: str) -> dict[str, Any]:
    return next(
        e for e in reversed(kit.emulator.events()) if e["type"] == type_ and e["data"]["object"]["id"] == object_id
    )


def _deliver(api: ApiClient, event: dict[str, Any]) -> Any:
    """The event as a new delivery (its own id: the dedupe layer does not shield what we test)."""
    payload = json.dumps({**event, "id": f"evt_{new_user()}"})
    return post(api, payload, sign(payload))


def _ledger(table: Any, org_id: str) -> list[Any]:
    return sorted(i["SK"] for i in org_items(table, org_id) if i["SK"].startswith(("WLEDGER#", "IDEM#")))


def test_a_payload_with_other_amounts_credits_what_stripe_says_once(api: ApiClient, kit: StripeKit, table: Any) -> None:
    # Given a card top-up of 20,000 credited
    owner, org_id, _, topup = _funded(api, kit)
    succeeded = _event(kit, "payment_intent.succeeded", topup["payment_intent_id"])
    before = _ledger(table, org_id)
    # When signed deliveries claim it received a negative amount, and a much larger one
    for received in (-5_000, 9_999_999):
        tampered = json.loads(json.dumps(succeeded))
        tampered["data"]["object"]["amount_received"] = received
        reply = _deliver(api, tampered)
        # Then Stripe's own object is read: already credited, nothing moves
        assert (reply.status_code, reply.json()["outcome"]) == (200, "wallet_already_credited")
    assert _balance(api, owner, org_id) == 20_000
    assert _ledger(table, org_id) == before


@pytest.mark.parametrize("forgery", ["unknown_topup", "other_customer", "other_currency"])
def test_a_payment_we_did_not_ask_for_moves_nothing(api: ApiClient, kit: StripeKit, table: Any, forgery: str) -> None:
    # Given an org with a credited top-up, and a payment made in Stripe that names it in its metadata
    owner, org_id, customer, topup = _funded(api, kit)
    metadata = {"org_id": org_id, "kind": "wallet_topup", "topup_id": topup["topup_id"], "method": "card"}
    params: dict[str, Any] = {"amount": 50_000, "currency": "usd", "customer": customer}
    if forgery == "unknown_topup":
        metadata["topup_id"] = "tu_never_created"
    elif forgery == "other_customer":
        params["customer"] = kit.client.v1.customers.create().id
    else:
        params["currency"] = "eur"
    params |= {"payment_method": "pm_card_visa", "confirm": True, "metadata": metadata}
    intent = kit.client.v1.payment_intents.create(params=params)  # type: ignore[arg-type]
    kit.emulator.wait_for_deliveries()
    kit.stack.flush_outbox()
    before = _ledger(table, org_id)
    # When its payment_intent.succeeded is delivered (again), Then nothing moves
    reply = _deliver(api, _event(kit, "payment_intent.succeeded", intent.id))
    assert (reply.status_code, reply.json()["outcome"]) == (200, "not_ours")
    assert _balance(api, owner, org_id) == 20_000
    assert _ledger(table, org_id) == before


def test_an_event_about_an_object_stripe_does_not_have_is_acknowledged(api: ApiClient, kit: StripeKit) -> None:
    topup = _funded(api, kit)[3]
    event = json.loads(json.dumps(_event(kit, "payment_intent.succeeded", topup["payment_intent_id"])))
    event["data"]["object"]["id"] = "pi_never_made"
    reply = _deliver(api, event)
    assert (reply.status_code, reply.json()["outcome"]) == (200, "object_missing")


def test_a_dashboard_refund_of_a_card_top_up_is_taken_from_the_wallet_once(
    api: ApiClient, kit: StripeKit, table: Any
) -> None:
    # Given a card top-up of 20,000 in the wallet
    owner, org_id, _, topup = _funded(api, kit)
    charge = kit.client.v1.payment_intents.retrieve(topup["payment_intent_id"]).latest_charge
    # When 6,000 of it is refunded in Stripe's dashboard (no metadata of ours)
    refund = kit.client.v1.refunds.create(params={"charge": str(charge), "amount": 6_000})
    kit.emulator.wait_for_deliveries()
    kit.stack.flush_outbox()
    # Then the wallet gives it up: one refund line, caused by the refund
    assert _balance(api, owner, org_id) == 14_000
    lines = api.call("GET", f"/v1/orgs/{org_id}/wallet/transactions", as_user=owner).body["items"]
    refunds = [line for line in lines if line["kind"] == "refund"]
    assert [(r["amount_minor"], r["ref"]) for r in refunds] == [(-6_000, f"charge:{charge}")]
    # And every redelivery, of either event, changes nothing
    before = _ledger(table, org_id)
    for type_, object_id in (("charge.refunded", str(charge)), ("refund.created", refund.id)):
        for _ in range(2):
            assert _deliver(api, _event(kit, type_, object_id)).status_code == 200
    assert _ledger(table, org_id) == before and _balance(api, owner, org_id) == 14_000
    # And support can refund only what is left of the payment
    support = {"amount_minor": 14_001, "reason": "close"}
    over = api.call(
        "POST",
        f"/v1/orgs/{org_id}/wallet/refunds",
        as_user=new_user(),
        groups=("support",),
        headers={"Idempotency-Key": "r1"},
        json=support,
    )
    assert (over.status, over.code) == (422, "refund_exceeds_refundable")


@pytest.mark.parametrize(
    "body",
    [
        "[]",
        '{"id": "evt_1", "type": "payment_intent.succeeded", "created": 1}',
        '{"id": "evt_2", "type": "payment_intent.succeeded", "created": 1, "data": {"object": []}}',
        '{"id": "evt_3", "type": "payment_intent.succeeded", "created": 1, "data": {"object": {"id": "pi_1"}}}',
        '{"id": "evt_4", "type": "charge.refunded", "created": 1, "data": {"object": {"object": "charge"}}}',
        "not json",
    ],
)
def test_a_signed_body_that_is_not_a_stripe_event_is_a_400(api: ApiClient, body: str) -> None:
    reply = post(api, body, sign(body))
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["code"] == "malformed_event"


def _event_types() -> list[str]:
    import typing

    from stripe._event import Event

    return list(typing.get_args(typing.get_type_hints(Event)["type"]))


def _fixture_for(fixtures: dict[str, Any], event_type: str) -> dict[str, Any] | None:
    """Stripe's example object of an event's resource: the longest prefix of its type that names one."""
    parts = event_type.split(".")
    for n in range(len(parts) - 1, 0, -1):
        for name in (".".join(parts[:n]), ".".join(parts[:n]).replace("_", ".", 1)):
            if name in fixtures:
                return dict(fixtures[name])
    return None


def test_every_event_type_stripe_can_send_gets_a_2xx_or_a_4xx(api: ApiClient) -> None:
    from pathlib import Path

    fixtures = json.loads(
        (Path(__file__).parents[2] / "tests" / "local" / "stripe_emulator" / "fixtures3.json").read_text()
    )["resources"]
    types = _event_types()
    assert len(types) > 200  # the SDK's own list
    answered: dict[int, list[str]] = {}
    for event_type in types:
        obj = _fixture_for(fixtures, event_type)
        if obj is None:
            continue
        payload = json.dumps(
            {
                "id": f"evt_{new_user()}",
                "object": "event",
                "type": event_type,
                "created": 1,
                "api_version": "2026-10-28.endive",
                "livemode": False,
                "pending_webhooks": 1,
                "request": {"id": None, "idempotency_key": None},
                "data": {"object": obj},
            }
        )
        status = post(api, payload, sign(payload)).status_code
        answered.setdefault(status, []).append(event_type)
    assert sum(len(v) for v in answered.values()) > 240
    assert all(status < 500 for status in answered), {s: t[:5] for s, t in answered.items() if s >= 500}

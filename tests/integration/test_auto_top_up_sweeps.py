"""Interrupted auto-top-ups, as the sweeper finds them: resumed only while still wanted, with exactly
the parameters the claim recorded, one org's trouble never stopping the others, and a credit that
landed first never overwritten."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.auth import Caller
from tests.helpers import ApiClient, new_user
from tests.integration.test_wallet import NOW, _auto_top_up_org, _auto_top_ups, _bill, _intents, _stalled, _sweep
from tests.integration.wallet_kit import WalletKit, wallet_kit, wallet_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def kit(stack: Any) -> WalletKit:
    return wallet_kit(stack, NOW)


def _customer(kit: WalletKit, org_id: str) -> str:
    return kit.org_repo.require_org(org_id).stripe_customer_id or ""


@pytest.mark.parametrize("change", ["auto_off", "byo", "topped_up"])
def test_a_claim_no_longer_wanted_is_ended_without_a_charge(
    kit: WalletKit, stack: Any, table: Any, api: ApiClient, change: str
) -> None:
    # Given an auto-top-up stalled by an outage
    org_id, project, owner = _auto_top_up_org(kit, stack, table, api)
    topup = _stalled(kit, stack, org_id, project, f"unwanted-{change}")
    # When, before the sweeper comes, the owner turns it off / the org leaves agency mode / money arrives
    if change == "auto_off":
        off = wallet_settings(low_threshold_minor=0, floor_minor=0, enabled=False)
        kit.wallet.configure(Caller(owner, None, frozenset()), org_id, off)
    elif change == "byo":
        assert api.call("PATCH", f"/v1/orgs/{org_id}", as_user=owner, json={"billing_mode": "byo"}).status == 200
    else:
        kit.wallet.topup_succeeded(
            org_id=org_id,
            topup_id=f"tu-{new_user()}",
            payment_intent_id=f"pi-{new_user()}",
            charge_id=None,
            amount_minor=50_000,
        )
    _sweep(kit, timedelta(minutes=3))
    # Then nothing is charged, and the claim is ended (not left to jam the next auto-top-up)
    assert _intents(kit, org_id, topup["topup_id"]) == []
    stored = kit.repo.get(org_id)
    assert stored is not None and not stored.auto.in_flight
    [ended] = _auto_top_ups(table, org_id)
    assert ended["status"] == "canceled" and "GSI2PK" not in ended


def test_a_resumed_claim_charges_the_currency_it_was_made_in(
    kit: WalletKit, stack: Any, table: Any, api: ApiClient
) -> None:
    org_id, project, owner = _auto_top_up_org(kit, stack, table, api)
    topup = _stalled(kit, stack, org_id, project, "currency-1")
    assert topup["currency"] == "USD"
    # (the API refuses to change the currency of an org with money: this is a wallet from before that rule)
    assert api.call("PATCH", f"/v1/orgs/{org_id}", as_user=owner, json={"currency": "EUR"}).code == "currency_locked"
    table.update_item(
        Key={"PK": f"ORG#{org_id}", "SK": "ORG"},
        UpdateExpression="SET currency = :eur",
        ExpressionAttributeValues={":eur": "EUR"},
    )
    _sweep(kit, timedelta(minutes=3))
    made = _intents(kit, org_id, topup["topup_id"])
    assert [(i.amount, i.currency) for i in made] == [(30_000, "usd")]


def test_a_card_replaced_after_a_declined_attempt_is_charged_by_the_next_attempt(
    kit: WalletKit, stack: Any, table: Any, api: ApiClient
) -> None:
    # Given a declining default card: attempt 1 is declined
    org_id, project, _ = _auto_top_up_org(kit, stack, table, api)
    customer, client = _customer(kit, org_id), kit.gateway._client.v1
    good = client.customers.retrieve(customer).invoice_settings.default_payment_method
    declining = client.payment_methods.attach("pm_card_chargeDeclined", params={"customer": customer}).id
    client.customers.update(customer, params={"invoice_settings": {"default_payment_method": declining}})
    _bill(kit, org_id, project, 20_000, "replaced-1")
    [topup] = _auto_top_ups(table, org_id)
    assert (topup["attempts"], "payment_method" not in topup) == (1, True)  # the next looks the card up again
    # When the owner puts the good card back and the sweeper makes the next attempt an hour later
    client.customers.update(customer, params={"invoice_settings": {"default_payment_method": good}})
    assert _sweep(kit, timedelta(hours=1, minutes=3)) >= 1
    stack.stripe.wait_for_deliveries()
    # Then the good card is charged (its own key), the wallet credited and auto-top-up stays on
    [topup] = _auto_top_ups(table, org_id)
    assert topup["payment_method"] == good and topup["attempts"] == 2 and "GSI2PK" not in topup
    made = _intents(kit, org_id, topup["topup_id"])
    assert sorted(i.status for i in made) == ["requires_payment_method", "succeeded"]
    stack.flush_outbox()
    [topup] = _auto_top_ups(table, org_id)
    stored = kit.repo.get(org_id)
    assert topup["status"] == "succeeded" and stored is not None
    assert stored.auto.enabled is True and not stored.auto.in_flight
    assert stored.account.balance == 50_000 - 20_000 - 1_000 + 30_000


def test_an_org_whose_stripe_customer_is_gone_neither_fails_its_bill_nor_the_sweep(
    kit: WalletKit, stack: Any, table: Any, api: ApiClient
) -> None:
    org_id, project, _ = _auto_top_up_org(kit, stack, table, api)
    table.update_item(
        Key={"PK": f"ORG#{org_id}", "SK": "ORG"},
        UpdateExpression="SET stripe_customer_id = :c",
        ExpressionAttributeValues={":c": f"cus_gone_{new_user()}"},
    )
    recorded = _bill(kit, org_id, project, 20_000, "gone-1")  # no error after the bill was committed
    assert recorded.amount_minor == 20_000
    [topup] = _auto_top_ups(table, org_id)
    assert topup["status"] == "failed"  # nothing to charge: auto-top-up is turned off and the owner told
    _sweep(kit, timedelta(minutes=3))  # and the sweep runs on


def test_ending_a_claim_never_overwrites_a_credit_that_landed_first(
    kit: WalletKit, stack: Any, table: Any, api: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a day-old stalled claim, whose charge's payment_intent.succeeded arrives just as the sweeper reads it
    org_id, project, _ = _auto_top_up_org(kit, stack, table, api)
    topup = _stalled(kit, stack, org_id, project, "late-1")
    read = kit.repo.get

    def get_then_credit(oid: str) -> Any:
        stored = read(oid)
        if oid == org_id and not raced:
            raced.append(oid)
            kit.wallet.topup_succeeded(
                org_id=org_id,
                topup_id=topup["topup_id"],
                payment_intent_id="pi_late",
                charge_id="ch_late",
                amount_minor=30_000,
            )
        return stored

    raced: list[str] = []
    monkeypatch.setattr(kit.repo, "get", get_then_credit)
    _sweep(kit, timedelta(hours=23, minutes=30))
    monkeypatch.undo()
    # Then the top-up stays credited (and refundable), auto-top-up stays on
    [after] = _auto_top_ups(table, org_id)
    assert raced and after["status"] == "succeeded" and after["charge_id"] == "ch_late"
    assert any(t.topup_id == topup["topup_id"] for t in kit.wallet._refunds._refundable(org_id))
    stored = kit.repo.get(org_id)
    assert stored is not None and stored.auto.enabled is True


def test_an_attempt_that_fails_after_it_was_made_counts_once_and_the_last_frees_the_slot(
    kit: WalletKit, stack: Any, table: Any, api: ApiClient
) -> None:
    import json

    from tests.integration.test_stripe_webhooks import post, sign

    # Given an auto-top-up org whose card payments are confirmed later by the network
    kit.clock.at = datetime.now(UTC)  # (the webhook function runs on the real clock: so does this test)
    org_id, project, _ = _auto_top_up_org(kit, stack, table, api)
    customer, client = _customer(kit, org_id), kit.gateway._client.v1
    slow = client.payment_methods.attach("pm_card_processing", params={"customer": customer}).id
    client.customers.update(customer, params={"invoice_settings": {"default_payment_method": slow}})
    _bill(kit, org_id, project, 20_000, "async-1")
    for attempt in (1, 2, 3):
        [topup] = _auto_top_ups(table, org_id)
        assert (topup["attempts"], "GSI2PK" in topup) == (attempt, False)  # made, and waiting for Stripe
        # When Stripe later reports the payment failed (and the report arrives twice, as a new event too)
        intent = client.payment_intents.retrieve(topup["payment_intent_id"])
        assert intent.status == "processing"
        requests_post = f"{stack.env['STRIPE_API_BASE']}/_emulator/payment_intents/{intent.id}/settle"
        import requests

        assert requests.post(requests_post, data={"outcome": "failed"}, timeout=30, headers=_auth()).status_code == 200
        stack.stripe.wait_for_deliveries()
        failed = next(
            e
            for e in reversed(stack.stripe.events())
            if e["type"] == "payment_intent.payment_failed" and e["data"]["object"]["id"] == intent.id
        )
        again = json.dumps({**failed, "id": f"evt_again_{attempt}"})
        assert post(api, again, sign(again)).json()["outcome"] == "noted"  # counted once
        stored = kit.repo.get(org_id)
        assert stored is not None
        if attempt < 3:
            # Then it counts as a failed attempt: the next is scheduled (no intent), not jammed
            [topup] = _auto_top_ups(table, org_id)
            assert (topup["attempts"], topup["GSI2PK"].rsplit("#", 1)[0], "payment_intent_id" in topup) == (
                attempt,
                "AUTO#INFLIGHT",
                False,
            )
            assert stored.auto.enabled and stored.auto.in_flight == topup["topup_id"]
            assert _sweep(kit, timedelta(hours=1 if attempt == 1 else 6, minutes=3)) >= 1
    # And the last one frees the slot and turns auto-top-up off
    stored = kit.repo.get(org_id)
    assert stored is not None and not stored.auto.in_flight and stored.auto.enabled is False
    [topup] = _auto_top_ups(table, org_id)
    assert topup["status"] == "failed" and "GSI2PK" not in topup


def _auth() -> dict[str, str]:
    from tests.integration.stripe_kit import API_KEY

    return {"Authorization": f"Bearer {API_KEY}"}


def test_an_attempt_that_failed_before_its_lost_reply_was_replayed_is_counted(
    kit: WalletKit, stack: Any, table: Any, api: ApiClient
) -> None:
    import requests

    # Given card payments confirmed later, and Stripe's replies to the charge lost (the charge is made)
    kit.clock.at = datetime.now(UTC)
    org_id, project, _ = _auto_top_up_org(kit, stack, table, api)
    customer, client = _customer(kit, org_id), kit.gateway._client.v1
    slow = client.payment_methods.attach("pm_card_processing", params={"customer": customer}).id
    client.customers.update(customer, params={"invoice_settings": {"default_payment_method": slow}})
    stack.stripe.fail_next(20, status=503, after_execute=True, method="POST", path="/v1/payment_intents")
    try:
        _bill(kit, org_id, project, 20_000, "lost-reply")
    finally:
        stack.stripe.clear_faults()
    [topup] = _auto_top_ups(table, org_id)
    assert "payment_intent_id" not in topup  # interrupted: the sweeper resumes it
    # When the payment fails (its webhook finds no intent of ours yet), then the sweeper replays the attempt
    [intent] = _intents(kit, org_id, topup["topup_id"])
    settle = f"{stack.env['STRIPE_API_BASE']}/_emulator/payment_intents/{intent.id}/settle"
    assert requests.post(settle, data={"outcome": "failed"}, timeout=30, headers=_auth()).status_code == 200
    stack.stripe.wait_for_deliveries()
    assert _sweep(kit, timedelta(minutes=3)) >= 1
    # Then the failure counts: the next attempt is scheduled (not a claim jammed on a failed intent)
    [topup] = _auto_top_ups(table, org_id)
    listed = topup.get("GSI2PK", "").rsplit("#", 1)[0]
    assert (topup["attempts"], listed, "payment_intent_id" in topup) == (1, "AUTO#INFLIGHT", False)
    assert _sweep(kit, timedelta(hours=1, minutes=3)) >= 1
    [topup] = _auto_top_ups(table, org_id)
    assert topup["attempts"] == 2 and topup["payment_intent_id"] != intent.id

"""The agency wallet on DynamoDB Local and the Stripe emulator: holds under contention, bills with the
platform fee, top-ups credited once, auto-top-up once at a time, pause and resume, BYO refusal."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import requests

from shared.auth import Caller
from shared.deadline import deadline_in
from shared.wallet.service import Bill, InsufficientWalletFundsError, WalletNotAvailableError
from tests.helpers import ApiClient, capture_events, drain, dynamo_calls, new_user, org_items
from tests.integration.test_stripe_webhooks import sign
from tests.integration.wallet_kit import (
    WalletKit,
    agency_org,
    fund,
    ledger_lines,
    raw_item,
    wallet_kit,
    wallet_settings,
)
from tests.local import devtokens
from tests.paid import paid_org_over_http, stripe_subscription

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
ENGINE = devtokens.service_token("ad-optimizer")


@pytest.fixture
def kit(stack: Any) -> WalletKit:
    return wallet_kit(stack, NOW)


def _entries(kit: WalletKit, org_id: str) -> list[dict[str, Any]]:
    return ledger_lines(kit.repo._table, org_id)


def _bill(kit: WalletKit, org_id: str, project: str, amount: int, bill_id: str, platform: str = "meta") -> Any:
    return kit.wallet.record_bill(
        Bill(
            org_id=org_id,
            platform=platform,
            bill_id=bill_id,
            project_id=project,
            amount_minor=amount,
            currency="USD",
            billed_on=date(2026, 11, 20),
            hold_id=None,
            actor="test",
        )
    )


def _card_agency_org(api: ApiClient, stack: Any, table: Any, owner: str, name: str) -> str:
    """An org created on Free, subscribed to Pro through Checkout on a test clock (a saved card), then
    switched to agency mode."""
    from tests.integration.stripe_kit import StripeKit

    created = api.call("POST", "/v1/orgs", as_user=owner, json={"name": name})
    assert created.status == 201, created.body
    org_id = str(created.body["org_id"])
    StripeKit(stack, table).subscribe(api, owner, org_id, "pro")  # a saved card
    switched = api.call("PATCH", f"/v1/orgs/{org_id}", as_user=owner, json={"billing_mode": "agency"})
    assert switched.status == 200, switched.body
    return org_id


def _auto_top_up_org(kit: WalletKit, stack: Any, table: Any, api: ApiClient) -> tuple[str, str, str]:
    """A subscribed agency org (saved card) with 50,000 in its wallet and auto-top-up of 30,000 below 40,000."""
    owner = new_user()
    org_id = _card_agency_org(api, stack, table, owner, "Auto")
    project = api.call("POST", f"/v1/orgs/{org_id}/projects", as_user=owner, json={"name": "P"}).body["project_id"]
    fund(kit, org_id, 50_000, new_user())
    settings = wallet_settings(enabled=True, threshold_minor=40_000, amount_minor=30_000, daily_cap_minor=90_000)
    kit.wallet.configure(Caller(owner, None, frozenset()), org_id, settings)
    return org_id, project, owner


def test_1000_concurrent_holds_for_a_wallet_that_covers_500(kit: WalletKit, stack: Any) -> None:
    # Given a wallet of 60,000 with a floor of 10,000: room for exactly 500 holds of 100
    org_id, project, owner = agency_org(kit)
    fund(kit, org_id, 60_000, new_user())
    kit.wallet.configure(owner, org_id, wallet_settings(low_threshold_minor=0, floor_minor=10_000))
    local = threading.local()

    def hold(i: int) -> str:
        if not hasattr(local, "kit"):
            local.kit = wallet_kit(stack, NOW)
        try:
            local.kit.wallet.hold(org_id=org_id, hold_id=f"h{i}", project_id=project, platform="meta", amount_minor=100)
        except InsufficientWalletFundsError:
            return "refused"
        return "granted"

    with ThreadPoolExecutor(max_workers=32) as pool:
        outcomes = list(pool.map(hold, range(1000)))
    assert outcomes.count("granted") == 500 and outcomes.count("refused") == 500
    stored = kit.repo.get(org_id)
    assert stored is not None
    assert (stored.account.balance, stored.account.held, stored.stored_available) == (60_000, 50_000, 0)
    assert stored.account.balance - stored.account.held >= stored.account.floor  # never below the floor


def test_bills_debit_spend_and_fee_once_with_half_even_rounding(kit: WalletKit) -> None:
    org_id, project, _ = agency_org(kit, "pro")  # platform fee 500 bps
    fund(kit, org_id, 100_000, new_user())
    # 12,345 x 5% = 617.25 -> 617; 10 x 5% = 0.5 -> 0 (half-even); 30 x 5% = 1.5 -> 2; 50 x 5% = 2.5 -> 2
    for amount, fee, bill_id in ((12_345, 617, "b1"), (10, 0, "b2"), (30, 2, "b3"), (50, 2, "b4")):
        for _ in range(10):  # the same bill delivered ten times debits once
            result = _bill(kit, org_id, project, amount, bill_id)
            assert (result.amount_minor, result.fee_minor) == (amount, fee)
    entries = _entries(kit, org_id)
    assert [(e["kind"], int(e["amount"])) for e in entries] == [
        ("topup", 100_000),
        ("ad_spend", -12_345),
        ("platform_fee", -617),
        ("ad_spend", -10),
        ("ad_spend", -30),
        ("platform_fee", -2),
        ("ad_spend", -50),
        ("platform_fee", -2),
    ]
    stored = kit.repo.get(org_id)
    assert stored is not None and stored.account.balance == 100_000 - 12_435 - 621
    assert sum(int(e["amount"]) for e in entries) == stored.account.balance
    assert [int(e["balance_after"]) for e in entries][-1] == stored.account.balance


def test_a_bill_is_recorded_below_zero_pauses_and_a_top_up_resumes(kit: WalletKit, stack: Any) -> None:
    org_id, project, owner = agency_org(kit)
    queue = capture_events(stack, {"detail-type": [{"prefix": "Wallet."}]})
    fund(kit, org_id, 10_000, new_user())
    kit.wallet.configure(owner, org_id, wallet_settings(low_threshold_minor=5_000, floor_minor=0))
    _bill(kit, org_id, project, 6_000, "low")  # 10,000 - 6,000 - 300 fee = 3,700: low
    _bill(kit, org_id, project, 5_000, "over")  # -1,550: recorded anyway, paused
    stored = kit.repo.get(org_id)
    assert stored is not None and (stored.account.balance, stored.account.status.value) == (-1_550, "paused")
    with pytest.raises(InsufficientWalletFundsError) as refused:
        kit.wallet.hold(org_id=org_id, hold_id="h", project_id=project, platform="tiktok", amount_minor=1)
    assert refused.value.code == "wallet_paused"
    fund(kit, org_id, 2_000, new_user())  # 450: not restored yet
    fund(kit, org_id, 10_000, new_user())  # 10,450: resumed
    kinds = [e["detail-type"] for e in drain(stack, queue) if e["detail"].get("org_id") == org_id]
    assert kinds == ["Wallet.LowBalance", "Wallet.AgencySpendPaused", "Wallet.AgencySpendResumed"]


def test_byo_orgs_have_no_wallet(kit: WalletKit, api: ApiClient, stack: Any, table: Any) -> None:
    owner = new_user()
    org_id = paid_org_over_http(api, stack, table, owner, name="BYO", plan_id="pro", billing_mode="byo")
    reply = api.call("GET", f"/v1/orgs/{org_id}/wallet", as_user=owner)
    assert (reply.status, reply.code) == (409, "wallet_not_available")
    with pytest.raises(WalletNotAvailableError):
        _bill(kit, org_id, "p", 100, "byo-bill")


def test_the_same_payment_webhook_ten_times_credits_once(api: ApiClient, stack: Any, table: Any) -> None:
    owner = new_user()
    org_id = _card_agency_org(api, stack, table, owner, "Cards")
    reply = api.call(
        "POST",
        f"/v1/orgs/{org_id}/wallet/top-ups",
        as_user=owner,
        json={"amount_minor": 25_000, "method": "card"},
        headers={"Idempotency-Key": "t1"},
    )
    assert (reply.status, reply.body["status"]) == (202, "processing")
    again = api.call(
        "POST",
        f"/v1/orgs/{org_id}/wallet/top-ups",
        as_user=owner,
        json={"amount_minor": 25_000, "method": "card"},
        headers={"Idempotency-Key": "t1"},
    )
    assert again.body["topup_id"] == reply.body["topup_id"]
    stack.stripe.wait_for_deliveries()
    succeeded = next(
        e
        for e in reversed(stack.stripe.events())
        if e["type"] == "payment_intent.succeeded" and e["data"]["object"]["id"] == reply.body["payment_intent_id"]
    )
    payload = json.dumps(succeeded)
    for _ in range(10):
        assert (
            requests.post(
                f"{api.base_url}/webhooks/stripe", data=payload, timeout=30, headers={"Stripe-Signature": sign(payload)}
            ).status_code
            == 200
        )
    wallet = api.call("GET", f"/v1/orgs/{org_id}/wallet", as_user=owner).body
    assert wallet["balance_minor"] == 25_000
    ledger = api.call("GET", f"/v1/orgs/{org_id}/wallet/transactions", as_user=owner).body["items"]
    assert [(e["kind"], e["amount_minor"]) for e in ledger] == [("topup", 25_000)]


def test_a_top_up_that_failed_to_reach_stripe_is_retried_once(api: ApiClient, stack: Any, table: Any) -> None:
    owner = new_user()
    org_id = _card_agency_org(api, stack, table, owner, "Retry")
    body, key = {"amount_minor": 12_000, "method": "card"}, {"Idempotency-Key": "flaky"}
    stack.stripe.fail_next(100, status=503)  # past the SDK's own retries (and whatever else runs meanwhile)
    try:
        failed = api.call("POST", f"/v1/orgs/{org_id}/wallet/top-ups", as_user=owner, json=body, headers=key)
    finally:
        stack.stripe.clear_faults()
    assert (failed.status, failed.code) == (503, "stripe_unavailable")
    for _ in range(3):  # the client retries with the same key: charged and credited once
        retried = api.call("POST", f"/v1/orgs/{org_id}/wallet/top-ups", as_user=owner, json=body, headers=key)
        assert retried.status == 202 and retried.body["status"] in ("processing", "succeeded")
    stack.stripe.wait_for_deliveries()
    assert api.call("GET", f"/v1/orgs/{org_id}/wallet", as_user=owner).body["balance_minor"] == 12_000


def test_auto_top_up_never_runs_twice_at_once(kit: WalletKit, stack: Any, table: Any, api: ApiClient) -> None:
    org_id, project, _ = _auto_top_up_org(kit, stack, table, api)
    local = threading.local()

    def bill(i: int) -> None:
        if not hasattr(local, "kit"):
            local.kit = wallet_kit(stack, NOW)
        _bill(local.kit, org_id, project, 1_000, f"par-{i}")

    with ThreadPoolExecutor(max_workers=16) as pool:  # 20 bills race below the threshold
        list(pool.map(bill, range(20)))
    autos = [i for i in org_items(table, org_id) if i["SK"].startswith("TOPUP#") and i["method"] == "auto_card"]
    assert len(autos) == 1
    stack.stripe.wait_for_deliveries()
    stored = kit.repo.get(org_id)
    assert stored is not None
    # 50,000 - 20 x (1,000 + 50 fee) + one auto top-up of 30,000
    assert stored.account.balance == 50_000 - 21_000 + 30_000
    assert not stored.auto.in_flight


def test_a_bill_draws_on_its_hold_and_a_release_frees_the_rest(kit: WalletKit) -> None:
    org_id, project, _ = agency_org(kit)
    fund(kit, org_id, 10_000, new_user())
    kit.wallet.hold(org_id=org_id, hold_id="launch", project_id=project, platform="google_ads", amount_minor=4_000)
    kit.wallet.hold(org_id=org_id, hold_id="scale", project_id=project, platform="google_ads", amount_minor=3_000)
    kit.wallet.record_bill(
        Bill(
            org_id=org_id,
            platform="google_ads",
            bill_id="g1",
            project_id=project,
            amount_minor=3_500,
            currency="USD",
            billed_on=date(2026, 11, 20),
            hold_id="launch",
            actor="t",
        )
    )
    # the bill took 3,500 of the launch hold: 500 of it stays held, open, until released
    stored = kit.repo.get(org_id)
    assert stored is not None and (stored.account.held, stored.stored_available) == (3_500, 2_825)
    kit.wallet.release_hold(org_id=org_id, hold_id="scale")
    kit.wallet.release_hold(org_id=org_id, hold_id="launch")
    stored = kit.repo.get(org_id)
    assert stored is not None
    assert (stored.account.balance, stored.account.held, stored.stored_available) == (6_325, 0, 6_325)
    launch = raw_item(kit, org_id, "HOLD#launch")
    assert launch is not None and (launch["status"], launch["remaining_minor"], launch["drawn_minor"]) == (
        "voided",
        500,
        3_500,
    )
    assert raw_item(kit, org_id, "HOLD#scale")["status"] == "voided"  # type: ignore[index]


def test_a_bill_whose_hold_ends_while_it_is_written_still_debits_once(
    kit: WalletKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a pending hold that is voided just after the bill read it
    org_id, project, _ = agency_org(kit)
    fund(kit, org_id, 10_000, new_user())
    kit.wallet.hold(org_id=org_id, hold_id="h", project_id=project, platform="meta", amount_minor=4_000)
    read = kit.org_repo.org_and_items  # the bill's one read: the org, the wallet, the budget and the hold
    raced: list[str] = []

    def snapshot(org: str, more: Any) -> Any:
        got = read(org, more)
        if not raced:
            raced.append("h")
            kit.wallet.release_hold(org_id=org, hold_id="h")
        return got

    monkeypatch.setattr(kit.org_repo, "org_and_items", snapshot)
    result = kit.wallet.record_bill(
        Bill(
            org_id=org_id,
            platform="meta",
            bill_id="m1",
            project_id=project,
            amount_minor=1_000,
            currency="USD",
            billed_on=date(2026, 11, 20),
            hold_id="h",
            actor="t",
        )
    )
    monkeypatch.undo()

    assert raced and (result.replayed, result.fee_minor) == (False, 50)
    stored = kit.repo.get(org_id)
    assert stored is not None and (stored.account.balance, stored.account.held) == (8_950, 0)
    assert raw_item(kit, org_id, "HOLD#h")["status"] == "voided"  # type: ignore[index]
    assert [int(e["amount"]) for e in _entries(kit, org_id)] == [10_000, -1_000, -50]


def test_a_replayed_bill_reports_the_fee_it_was_charged(kit: WalletKit) -> None:
    org_id, project, _ = agency_org(kit, "pro")  # platform fee 500 bps
    fund(kit, org_id, 100_000, new_user())
    assert _bill(kit, org_id, project, 1_000, "b1").fee_minor == 50
    _switch_plan(kit, org_id, "scale")
    replay = _bill(kit, org_id, project, 1_000, "b1")
    assert (replay.replayed, replay.fee_minor) == (True, 50)
    assert _bill(kit, org_id, project, 1_000, "b2").fee_minor == 30  # scale: 300 bps


def _switch_plan(kit: WalletKit, org_id: str, plan_id: str) -> None:
    """The org's subscription changed to `plan_id` in Stripe (same subscription, new base price), as the
    webhook mirrors it."""
    sub = kit.org_repo.require_org(org_id).subscription
    assert sub is not None
    changed = stripe_subscription(org_id, plan_id, start=sub.current_period_start, subscription_id=sub.subscription_id)
    applied = kit.mirror.apply(org_id, changed, kit.mirror.now_ms())
    assert applied is not None and applied.plan_id == plan_id, applied


def _auto_top_ups(table: Any, org_id: str) -> list[dict[str, Any]]:
    return [i for i in org_items(table, org_id) if i["SK"].startswith("TOPUP#") and i.get("method") == "auto_card"]


def _sweep(kit: WalletKit, after: timedelta) -> int:
    kit.clock.at += after
    return kit.wallet.resume_stalled_auto_top_ups()


def _intents(kit: WalletKit, org_id: str, topup_id: str) -> list[Any]:
    """The PaymentIntents Stripe holds for one top-up."""
    customer = kit.org_repo.require_org(org_id).stripe_customer_id
    found = kit.gateway._client.v1.payment_intents.list(params={"customer": customer, "limit": 100}).data
    return [i for i in found if i.metadata.to_dict().get("topup_id") == topup_id]


def _stalled(kit: WalletKit, stack: Any, org_id: str, project: str, bill_id: str) -> dict[str, Any]:
    """A bill whose auto-top-up is cut off by a Stripe outage before any charge is sent."""
    stack.stripe.fail_next(100, status=503)
    try:
        _bill(kit, org_id, project, 20_000, bill_id)
    finally:
        stack.stripe.clear_faults()
    [topup] = _auto_top_ups(kit.repo._table, org_id)
    assert "payment_intent_id" not in topup and topup.get("GSI2PK", "").startswith("AUTO#INFLIGHT#")
    return topup


def test_a_stripe_outage_during_an_auto_top_up_is_resumed_by_the_sweeper(
    kit: WalletKit, stack: Any, table: Any, api: ApiClient
) -> None:
    # Given an agency org with auto-top-up and a saved card, and Stripe failing past the SDK's retries
    org_id, project, _ = _auto_top_up_org(kit, stack, table, api)
    stack.stripe.fail_next(100, status=503)
    try:
        # When a bill takes the balance below the threshold, Then the bill is recorded all the same
        recorded = _bill(kit, org_id, project, 20_000, "outage-1")
        # And a sweep while Stripe is still down (and the claim old enough) changes nothing
        _sweep(kit, timedelta(minutes=3))
    finally:
        stack.stripe.clear_faults()
    assert recorded.amount_minor == 20_000 and not recorded.replayed
    stored = kit.repo.get(org_id)
    assert stored is not None and stored.auto.enabled is True  # an outage is not the card's fault
    [topup] = _auto_top_ups(table, org_id)
    assert stored.auto.in_flight == topup["topup_id"] and "payment_intent_id" not in topup
    # When Stripe is back and the sweeper runs, Then the top-up is charged and credited, once
    assert _sweep(kit, timedelta(minutes=5)) >= 1
    stack.stripe.wait_for_deliveries()
    _sweep(kit, timedelta(minutes=5))  # a later sweep finds nothing of it to charge again
    assert len(_intents(kit, org_id, topup["topup_id"])) == 1
    stored = kit.repo.get(org_id)
    assert stored is not None and not stored.auto.in_flight
    assert stored.account.balance == 50_000 - 21_000 + 30_000
    [topup] = _auto_top_ups(table, org_id)
    assert topup["status"] == "succeeded" and "GSI2PK" not in topup


def test_an_auto_top_up_cut_off_after_stripe_charged_is_recorded_not_charged_again(
    kit: WalletKit, stack: Any, table: Any, api: ApiClient
) -> None:
    # Given the charge's reply trickles in past the request's deadline, and Stripe's webhook is not delivered
    org_id, project, _ = _auto_top_up_org(kit, stack, table, api)
    customer = kit.org_repo.require_org(org_id).stripe_customer_id
    webhooks = stack.stripe.webhook_url
    stack.stripe.set_webhook_endpoint(None)
    try:
        kit.gateway.default_card(customer or "")  # warm: the first call of the bill is not the slow one
        stack.stripe._server.trickles.extend([0.0, 0.2])  # type: ignore[union-attr] # card lookup, then the charge
        with deadline_in(5.0):
            _bill(kit, org_id, project, 20_000, "cut-1")
        stack.stripe._server.trickles.clear()  # type: ignore[union-attr]
        [topup] = _auto_top_ups(table, org_id)
        assert "payment_intent_id" not in topup  # the function "timed out" before writing it down
        # When the sweeper resumes it, Then it finds the payment Stripe made (same key): one payment, recorded
        assert _sweep(kit, timedelta(minutes=3)) >= 1
    finally:
        stack.stripe._server.trickles.clear()  # type: ignore[union-attr]
        stack.stripe.set_webhook_endpoint(webhooks)
    made = [i.id for i in _intents(kit, org_id, topup["topup_id"])]
    [topup] = _auto_top_ups(table, org_id)
    assert made == [topup["payment_intent_id"]] and "GSI2PK" not in topup


def test_a_card_declined_on_every_attempt_turns_auto_top_up_off(
    kit: WalletKit, stack: Any, table: Any, api: ApiClient
) -> None:
    # Given an auto-top-up org whose saved card declines
    org_id, project, _ = _auto_top_up_org(kit, stack, table, api)
    customer = kit.org_repo.require_org(org_id).stripe_customer_id or ""
    client = kit.gateway._client.v1
    declining = client.payment_methods.attach("pm_card_chargeDeclined", params={"customer": customer}).id
    client.customers.update(customer, params={"invoice_settings": {"default_payment_method": declining}})
    queue = capture_events(stack, {"detail-type": ["Wallet.AutoTopUpDisabled"]})
    # When a bill takes the balance below the threshold, Then one attempt is made, and declined
    _bill(kit, org_id, project, 20_000, "declined-1")
    [topup] = _auto_top_ups(table, org_id)
    assert (topup["status"], topup["attempts"], topup["GSI2PK"].rsplit("#", 1)[0]) == ("processing", 1, "AUTO#INFLIGHT")
    assert len(_intents(kit, org_id, topup["topup_id"])) == 1
    # And the next is not made before its time (no loop against the same card), but an hour later
    # (other tests' claims on this worker's stack may be due too: this org's state is what is checked)
    _sweep(kit, timedelta(minutes=30))
    assert len(_intents(kit, org_id, topup["topup_id"])) == 1
    assert _sweep(kit, timedelta(minutes=33)) >= 1
    [topup] = _auto_top_ups(table, org_id)
    assert (topup["attempts"], len(_intents(kit, org_id, topup["topup_id"]))) == (2, 2)
    stored = kit.repo.get(org_id)
    assert stored is not None and stored.auto.enabled and stored.auto.in_flight == topup["topup_id"]
    # And the third six hours after that, Then auto-top-up is turned off and the owner told, once
    # (other tests' claims on this worker's stack may be due too: this org's state is what is checked)
    _sweep(kit, timedelta(hours=5))
    assert len(_intents(kit, org_id, topup["topup_id"])) == 2
    assert _sweep(kit, timedelta(hours=1, minutes=3)) >= 1
    # (other tests' claims on this worker's stack may be due too: this org's state is what is checked)
    _sweep(kit, timedelta(hours=7))
    stored = kit.repo.get(org_id)
    assert stored is not None and stored.auto.enabled is False
    assert not stored.auto.in_flight
    [topup] = _auto_top_ups(table, org_id)
    assert topup["status"] == "failed" and "GSI2PK" not in topup
    assert len(_intents(kit, org_id, topup["topup_id"])) == 3  # one PaymentIntent per attempt, own keys
    told = [e["detail"] for e in drain(stack, queue) if e["detail"].get("org_id") == org_id]
    assert [{k: v for k, v in d.items() if k != "event_id"} for d in told] == [
        {"org_id": org_id, "topup_id": topup["topup_id"], "attempts": 3}
    ]
    assert told[0]["event_id"]  # stable: consumers dedupe on it


def test_an_auto_top_up_interrupted_for_a_day_is_ended_not_resumed(
    kit: WalletKit, stack: Any, table: Any, api: ApiClient
) -> None:
    # Given an auto-top-up interrupted by a Stripe outage
    org_id, project, _ = _auto_top_up_org(kit, stack, table, api)
    _stalled(kit, stack, org_id, project, "day-1")
    # When the sweeper first sees it a day later (Stripe has forgotten the keys: a resumed attempt could
    # charge twice), Then it is ended, nothing charged; auto-top-up stays on (the card never failed), so
    # the next bill below the threshold starts a fresh one
    _sweep(kit, timedelta(hours=24))
    stored = kit.repo.get(org_id)
    assert stored is not None and stored.auto.enabled is True
    assert not stored.auto.in_flight
    [topup] = _auto_top_ups(table, org_id)
    assert topup["status"] == "canceled" and "payment_intent_id" not in topup
    _bill(kit, org_id, project, 1_000, "day-2")
    assert len(_auto_top_ups(table, org_id)) == 2


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_the_ledger_pages_through_every_line_once_even_inside_an_entry(
    kit: WalletKit, api: ApiClient, limit: int
) -> None:
    # Given a top-up and bills whose spend and fee lines share one entry (and one bill with no fee)
    org_id, project, owner = agency_org(kit)
    fund(kit, org_id, 50_000, new_user())
    for amount, bill_id in ((1_000, "p1"), (10, "p2"), (3_000, "p3")):
        _bill(kit, org_id, project, amount, bill_id)
    # When the API lists them `limit` at a time, following the cursor
    seen, cursor = [], None
    for _ in range(20):
        query = f"?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        page = api.call("GET", f"/v1/orgs/{org_id}/wallet/transactions{query}", as_user=owner.user_id)
        assert page.status == 200 and len(page.body["items"]) <= limit
        seen += [(e["seq"], e["kind"], e["amount_minor"]) for e in page.body["items"]]
        cursor = page.body["next_cursor"]
        if cursor is None:
            break
    # Then every line comes once, newest first, exactly as stored
    stored = [(i + 1, e["kind"], int(e["amount"])) for i, e in enumerate(_entries(kit, org_id))]
    assert seen == stored[::-1] and len(stored) == 6  # topup, 2 x (spend, fee), spend (0 fee)
    # And only fee lines when filtered by kind, however the entries split them
    fees = api.call("GET", f"/v1/orgs/{org_id}/wallet/transactions?kind=platform_fee&limit=1", as_user=owner.user_id)
    assert [e["amount_minor"] for e in fees.body["items"]] == [-150]


def test_a_bill_is_checked_against_the_wallets_currency_not_the_orgs(kit: WalletKit, table: Any) -> None:
    from dataclasses import replace

    from shared.errors import InvalidRequestError

    # Given a USD wallet whose org says EUR (written before currencies were locked)
    org_id, project, _ = agency_org(kit)
    fund(kit, org_id, 10_000, new_user())
    table.update_item(
        Key={"PK": f"ORG#{org_id}", "SK": "ORG"},
        UpdateExpression="SET currency = :eur",
        ExpressionAttributeValues={":eur": "EUR"},
    )
    euro = Bill(org_id, "meta", "eur-bill", project, 4_000, "EUR", date(2026, 11, 20), None, "t")
    # When a EUR bill arrives, Then it is refused (never booked as dollars), and nothing moves
    with pytest.raises(InvalidRequestError) as refused:
        kit.wallet.record_bill(euro)
    assert refused.value.code == "currency_mismatch" and "USD" in refused.value.message
    stored = kit.repo.get(org_id)
    assert stored is not None and stored.account.balance == 10_000
    # And a bill in the wallet's own currency is still recorded
    assert not kit.wallet.record_bill(replace(euro, bill_id="usd-bill", currency="USD")).replayed


def test_a_hold_and_a_bill_read_what_they_need_in_one_round_trip_before_their_write(kit: WalletKit) -> None:
    # Given a funded agency org with a hold
    org_id, project, _ = agency_org(kit)
    fund(kit, org_id, 10_000, new_user())
    with dynamo_calls(kit.repo._table) as sent:
        kit.wallet.hold(org_id=org_id, hold_id="h1", project_id=project, platform="meta", amount_minor=4_000)
        # (the hold read the org and the project in one round trip, then the budget, and wrote)
        held_with = [op for op, _ in sent]
        assert held_with[:3] == ["BatchGetItem", "GetItem", "TransactWriteItems"], held_with
        sent.clear()
        # When a bill that draws on the hold is recorded
        bill = Bill(org_id, "meta", "b1", project, 1_500, "USD", date(2026, 11, 20), "h1", "t")
        assert kit.wallet.record_bill(bill).fee_minor > 0
    calls = [op for op, _ in sent]
    # Then the org, the wallet, the project's budget and the hold were read in one snapshot before the write,
    # and after it the runway watch read its state, the open holds and the unbilled spend (the hold spends)
    assert calls == ["TransactGetItems", "TransactWriteItems", "GetItem", "Query", "Query"], calls
    held = raw_item(kit, org_id, "HOLD#h1")
    assert held is not None and (held["remaining_minor"], held["drawn_minor"]) == (2_500, 1_500)

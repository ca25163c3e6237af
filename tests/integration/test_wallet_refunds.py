"""Support refunds as an accountant checks them: never to a payment already taken back by a dispute, never
money that running holds reserve, never a refund the ledger records but Stripe refused, and never more
card payments than one transaction can write."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from shared.auth import Caller
from shared.errors import InvalidRequestError
from tests.helpers import new_user
from tests.integration.test_wallet import NOW
from tests.integration.wallet_kit import WalletKit, agency_org, ledger_lines, wallet_kit

pytestmark = pytest.mark.integration

SUPPORT = Caller("support-agent", None, frozenset({"support"}))


@pytest.fixture
def kit(stack: Any) -> WalletKit:
    return wallet_kit(stack, NOW)


def _paid(kit: WalletKit, org_id: str, name: str, amount: int) -> None:
    """A card top-up credited, an hour after the one before (refunds go newest first)."""
    kit.clock.at += timedelta(hours=1)
    assert kit.wallet.topup_succeeded(
        org_id=org_id, topup_id=f"tu-{name}", payment_intent_id=f"pi-{name}", charge_id=name, amount_minor=amount
    )


def _refunds(table: Any, org_id: str) -> list[tuple[int, str]]:
    return [
        (int(line["amount"]), str(line.get("ref"))) for line in ledger_lines(table, org_id) if line["kind"] == "refund"
    ]


def test_a_refund_never_goes_back_to_a_payment_a_dispute_took_back(kit: WalletKit, table: Any) -> None:
    # Given two card payments of 100.00, the newer one charged back by a dispute
    org_id, _, _ = agency_org(kit)
    older, newer = f"ch_{new_user()}", f"ch_{new_user()}"
    _paid(kit, org_id, older, 10_000)
    _paid(kit, org_id, newer, 10_000)
    assert kit.wallet.dispute(charge_id=newer, dispute_id=f"dp_{new_user()}", amount_minor=10_000)
    # When support refunds what is left (Stripe does not know these test charges: it refuses)
    kit.wallet.refund(SUPPORT, org_id, amount_minor=10_000, reason="closing", idempotency_key=new_user())
    # Then the refund went to the older payment, never to the disputed one
    assert _refunds(table, org_id)[0] == (-10_000, f"charge:{older}")
    assert all(ref != f"charge:{newer}" for _, ref in _refunds(table, org_id))


def test_a_refund_stripe_refuses_is_given_back_once(kit: WalletKit, table: Any) -> None:
    # Given a payment whose charge Stripe will refuse to refund
    org_id, _, _ = agency_org(kit)
    charge = f"ch_{new_user()}"
    _paid(kit, org_id, charge, 10_000)
    key = new_user()
    # When support refunds it, twice (a retry with the same key)
    for _ in range(2):
        result = kit.wallet.refund(SUPPORT, org_id, amount_minor=4_000, reason="closing", idempotency_key=key)
        assert (result.amount_minor, result.allocations) == (0, [])
    # Then the ledger took it and gave it back, once: the balance is whole, and it is refundable again
    assert _refunds(table, org_id) == [(-4_000, f"charge:{charge}"), (4_000, f"charge:{charge}")]
    stored = kit.repo.get(org_id)
    assert stored is not None and stored.account.balance == 10_000
    topup = kit.repo.topup(org_id, f"tu-{charge}")
    assert topup is not None and topup.refundable_minor == 10_000


def test_money_running_holds_reserve_is_not_refunded(kit: WalletKit) -> None:
    org_id, project, _ = agency_org(kit)
    _paid(kit, org_id, f"ch_{new_user()}", 10_000)
    kit.wallet.hold(org_id=org_id, hold_id="h", project_id=project, platform="meta", amount_minor=7_000)
    with pytest.raises(InvalidRequestError) as refused:
        kit.wallet.refund(SUPPORT, org_id, amount_minor=3_001, reason="closing", idempotency_key=new_user())
    assert refused.value.code == "refund_exceeds_refundable"


def test_a_refund_to_more_payments_than_one_transaction_takes_is_refused_clearly(kit: WalletKit, table: Any) -> None:
    # Given 120 small auto-top-ups
    org_id, _, _ = agency_org(kit)
    for n in range(120):
        kit.wallet.topup_succeeded(
            org_id=org_id, topup_id=f"tu-{n}", payment_intent_id=f"pi-{n}", charge_id=f"ch-{n}", amount_minor=100
        )
    before = ledger_lines(table, org_id)
    # When support refunds all of it at once, Then it is refused with what one request can refund
    with pytest.raises(InvalidRequestError) as refused:
        kit.wallet.refund(SUPPORT, org_id, amount_minor=12_000, reason="closing", idempotency_key=new_user())
    assert (refused.value.code, refused.value.details) == ("refund_too_many_payments", {"max_amount_minor": 9_000})
    assert ledger_lines(table, org_id) == before


def _two_ach_top_ups(kit: WalletKit, org_id: str, owner: Caller) -> list[Any]:
    """Two ACH top-ups of 5,000 on their way (the debits stay `processing`)."""
    return [
        kit.wallet.top_up(
            owner,
            org_id,
            amount_minor=5_000,
            method="ach",
            idempotency_key=new_user(),
            return_url=None,
            payment_method="pm_usBankAccount_processing",
        )
        for _ in range(2)
    ]


def test_a_bank_top_up_reported_failed_then_paid_takes_nothing_else_off_pending(kit: WalletKit, stack: Any) -> None:
    # Given two ACH top-ups on their way
    org_id, _, owner = agency_org(kit)
    started = _two_ach_top_ups(kit, org_id, owner)
    stored = kit.repo.get(org_id)
    assert stored is not None and stored.account.pending == 10_000
    # When Stripe reports the first failed, and then (a late correction) paid after all
    first = started[0]
    kit.wallet.topup_failed(org_id=org_id, topup_id=first.topup_id, payment_intent_id=str(first.payment_intent_id))
    kit.wallet.topup_succeeded(
        org_id=org_id,
        topup_id=first.topup_id,
        payment_intent_id=str(first.payment_intent_id),
        charge_id=None,
        amount_minor=5_000,
    )
    # Then the money is credited and the other top-up is still on its way
    stored = kit.repo.get(org_id)
    assert stored is not None and (stored.account.balance, stored.account.pending) == (5_000, 5_000)


def test_a_ledger_filter_that_matches_nothing_reads_few_pages(kit: WalletKit) -> None:
    # Given a wallet with 300 ledger entries, none of them an adjustment
    org_id, _, owner = agency_org(kit)
    for n in range(300):
        kit.wallet.topup_succeeded(
            org_id=org_id, topup_id=f"tu-{n}", payment_intent_id=f"pi-{n}", charge_id=None, amount_minor=100
        )
    queries: list[int] = []

    def count(**_: Any) -> None:
        queries.append(1)

    client = kit.repo._table.meta.client
    client.meta.events.register("before-send.dynamodb.Query", count)
    try:
        # When a member asks for one adjustment
        page = kit.wallet.transactions(owner, org_id, {"kind": "adjustment"}, None, 1)
    finally:
        client.meta.events.unregister("before-send.dynamodb.Query", count)
    # Then the answer is empty, read in pages of many entries, not two at a time
    assert page.items == [] and page.next_cursor is None
    assert len(queries) <= 3


def test_a_failure_racing_the_credit_of_the_same_bank_top_up_takes_pending_down_once(
    kit: WalletKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two ACH top-ups on their way
    org_id, _, owner = agency_org(kit)
    started = _two_ach_top_ups(kit, org_id, owner)
    first = started[0]
    read, raced = kit.repo.topup, []

    def topup(org: str, topup_id: str) -> Any:
        found = read(org, topup_id)
        if topup_id == first.topup_id and not raced:  # the credit lands while the failure is being written
            raced.append(1)
            kit.wallet.topup_succeeded(
                org_id=org,
                topup_id=topup_id,
                payment_intent_id=str(first.payment_intent_id),
                charge_id=None,
                amount_minor=5_000,
            )
        return found

    monkeypatch.setattr(kit.repo, "topup", topup)
    # When Stripe's failure report of the first is handled while its credit lands
    kit.wallet.topup_failed(org_id=org_id, topup_id=first.topup_id, payment_intent_id=str(first.payment_intent_id))
    monkeypatch.undo()
    # Then the credit stands, the other top-up is still on its way, and the first is not marked failed
    stored = kit.repo.get(org_id)
    assert raced and stored is not None and (stored.account.balance, stored.account.pending) == (5_000, 5_000)
    record = kit.repo.topup(org_id, first.topup_id)
    assert record is not None and record.status == "succeeded"

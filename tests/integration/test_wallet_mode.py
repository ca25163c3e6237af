"""The wallet and the org's billing mode. The wallet keeps a copy of the mode, so a hold checks it without
a third transaction item: the copy follows every mode change, also when one races the wallet's first
write. An org that leaves agency mode gets no new agency spend, but what is already in motion (late
bills, holds, top-ups on their way, the month's invoice) still settles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.errors import InvalidRequestError
from shared.orgs.models import BillingMode
from shared.wallet.service import Bill, WalletNotAvailableError
from tests.helpers import new_user
from tests.integration.wallet_kit import WalletKit, agency_org, fund, raw_item, wallet_kit, wallet_settings
from tests.paid import set_status

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def kit(stack: Any) -> WalletKit:
    return wallet_kit(stack, NOW)


def _hold(kit: WalletKit, org_id: str, project: str, hold_id: str) -> dict[str, Any]:
    return kit.wallet.hold(org_id=org_id, hold_id=hold_id, project_id=project, platform="meta", amount_minor=100)


def _wallet_item(kit: WalletKit, org_id: str) -> dict[str, Any]:
    item = raw_item(kit, org_id, "WALLET")
    assert item is not None
    return item


def test_a_funded_wallet_follows_the_org_out_of_agency_mode_and_back(kit: WalletKit) -> None:
    org_id, project, owner = agency_org(kit)
    fund(kit, org_id, 10_000, new_user())
    _hold(kit, org_id, project, "before")

    kit.orgs.update_org(owner, org_id, name=None, billing_mode=BillingMode.BYO, currency=None)
    assert _wallet_item(kit, org_id)["billing_mode"] == "byo"
    held = _wallet_item(kit, org_id)["held"]
    with pytest.raises(WalletNotAvailableError):
        _hold(kit, org_id, project, "while-byo")
    assert _wallet_item(kit, org_id)["held"] == held
    assert raw_item(kit, org_id, "HOLD#while-byo") is None

    kit.orgs.update_org(owner, org_id, name=None, billing_mode=BillingMode.AGENCY, currency=None)
    assert _hold(kit, org_id, project, "after").status == "pending"
    assert _wallet_item(kit, org_id)["held"] == held + 100


def test_an_ended_subscription_that_drops_agency_mode_closes_the_wallet_to_holds(kit: WalletKit) -> None:
    org_id, project, _ = agency_org(kit)
    fund(kit, org_id, 10_000, new_user())
    read = kit.org_repo.require_org(org_id)
    ended = kit.org_repo.apply_subscription(
        org_id, {"plan_id": "free", "billing_mode": "byo"}, fetched_ms=kit.mirror.now_ms(), read=read
    )
    assert ended is not None and ended.billing_mode is BillingMode.BYO
    assert _wallet_item(kit, org_id)["billing_mode"] == "byo"
    with pytest.raises(WalletNotAvailableError):
        _hold(kit, org_id, project, "h")


def test_a_mode_change_that_races_the_wallets_first_write_reads_again(
    kit: WalletKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an agency org with no wallet yet, whose first top-up lands just after the mode change read it
    org_id, project, owner = agency_org(kit)
    table = kit.org_repo._table
    read = table.get_item
    raced: list[str] = []

    def get_item(**kwargs: Any) -> Any:
        got = read(**kwargs)
        if kwargs["Key"]["SK"] == "WALLET" and not raced:
            raced.append("funded")
            fund(kit, org_id, 10_000, new_user())
        return got

    monkeypatch.setattr(table, "get_item", get_item)
    kit.orgs.update_org(owner, org_id, name=None, billing_mode=BillingMode.BYO, currency=None)
    monkeypatch.undo()

    assert raced == ["funded"]
    assert _wallet_item(kit, org_id)["billing_mode"] == "byo"
    with pytest.raises(WalletNotAvailableError):
        _hold(kit, org_id, project, "h")


def test_a_first_top_up_that_races_a_switch_to_byo_copies_the_new_mode(
    kit: WalletKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the org leaves agency mode after the top-up read it but before the wallet's first write
    org_id, project, owner = agency_org(kit)
    load = kit.repo.get
    loads: list[str] = []

    def get(org: str) -> Any:
        stored = load(org)
        if not loads:
            kit.orgs.update_org(owner, org_id, name=None, billing_mode=BillingMode.BYO, currency=None)
        loads.append(org)
        return stored

    monkeypatch.setattr(kit.repo, "get", get)
    fund(kit, org_id, 10_000, new_user())  # the money arrived: it is credited either way
    monkeypatch.undo()

    assert len(loads) == 2  # the first write failed on the mode and was read again
    wallet = _wallet_item(kit, org_id)
    assert (wallet["balance"], wallet["billing_mode"]) == (10_000, "byo")
    with pytest.raises(WalletNotAvailableError):
        _hold(kit, org_id, project, "h")


def _bill(kit: WalletKit, org_id: str, project: str, bill_id: str) -> dict[str, Any]:
    return kit.wallet.record_bill(
        Bill(
            org_id=org_id,
            platform="meta",
            bill_id=bill_id,
            project_id=project,
            amount_minor=1_000,
            currency="USD",
            billed_on=NOW.date(),
            hold_id=None,
            actor="engine",
        )
    )


def test_money_in_motion_settles_after_the_org_leaves_agency_mode(kit: WalletKit) -> None:
    # Given an agency org with a funded wallet, a pending hold and an ACH top-up on its way
    org_id, project, owner = agency_org(kit)
    fund(kit, org_id, 10_000, "first")
    _hold(kit, org_id, project, "running")
    kit.orgs.update_org(owner, org_id, name=None, billing_mode=BillingMode.BYO, currency=None)

    # No new agency spend, top-ups or settings...
    with pytest.raises(WalletNotAvailableError):
        _hold(kit, org_id, project, "new")
    with pytest.raises(WalletNotAvailableError):
        kit.wallet.top_up(owner, org_id, amount_minor=5_000, method="card", idempotency_key="k", return_url=None)
    with pytest.raises(WalletNotAvailableError):
        kit.wallet.configure(owner, org_id, wallet_settings(low_threshold_minor=0, floor_minor=0))
    # ...but what was already spent or paid still settles: the late bill with its fee, the hold's
    # release, the money that arrives, and the owner still sees the wallet
    assert _bill(kit, org_id, project, "late").fee_minor == 50
    assert kit.wallet.release_hold(org_id=org_id, hold_id="running").status == "voided"
    assert kit.wallet.topup_succeeded(
        org_id=org_id, topup_id="tu-ach", payment_intent_id="pi-ach", charge_id=None, amount_minor=2_000
    )
    view = kit.wallet.view(owner, org_id)
    assert (view.account.balance, view.account.held) == (10_000 - 1_050 + 2_000, 0)


def test_a_hold_that_expires_after_the_switch_is_released(kit: WalletKit) -> None:
    org_id, project, owner = agency_org(kit)
    fund(kit, org_id, 10_000, new_user())
    _hold(kit, org_id, project, "stale")
    kit.orgs.update_org(owner, org_id, name=None, billing_mode=BillingMode.BYO, currency=None)
    kit.clock.at = NOW + timedelta(hours=25)
    # What the sweeper does for each hold due (expire_holds: the sweeper's scan is table-wide)
    kit.wallet.release_hold(org_id=org_id, hold_id="stale", expired=True)
    assert raw_item(kit, org_id, "HOLD#stale")["status"] == "expired"  # type: ignore[index]
    assert _wallet_item(kit, org_id)["held"] == 0


def test_the_invoice_of_the_period_the_org_left_agency_mode_shows_its_spend(kit: WalletKit) -> None:
    from functions.api.container import services
    from shared.credits.periods import period_containing

    org_id, project, owner = agency_org(kit)
    fund(kit, org_id, 10_000, new_user())
    _bill(kit, org_id, project, "before-switch")
    kit.orgs.update_org(owner, org_id, name=None, billing_mode=BillingMode.BYO, currency=None)

    org = kit.org_repo.require_org(org_id)
    made = services().invoices.assemble(org, period_containing(org, NOW))
    lines, totals = made.lines, made.totals
    assert [(line.section, line.amount_minor) for line in lines if line.paid_via == "wallet"] == [
        ("ad_spend", 1_000),
        ("ad_spend", 50),
    ]
    assert totals.paid_from_wallet_minor == 1_050


def test_an_org_that_never_had_a_wallet_gets_409_in_byo_mode(kit: WalletKit) -> None:
    org_id, project, owner = agency_org(kit)
    kit.orgs.update_org(owner, org_id, name=None, billing_mode=BillingMode.BYO, currency=None)
    with pytest.raises(WalletNotAvailableError):
        _bill(kit, org_id, project, "b")
    with pytest.raises(WalletNotAvailableError):
        kit.wallet.view(owner, org_id)


def test_late_bills_after_the_subscription_ended_keep_the_agency_plans_fee(kit: WalletKit) -> None:
    # Given a Pro agency org (500 bps) whose subscription ends: it moves to Free (no fee) and BYO
    org_id, project, _ = agency_org(kit, "pro")
    fund(kit, org_id, 10_000, new_user())
    org = set_status(kit.mirror, kit.org_repo.require_org(org_id), "canceled")  # as the webhook mirrors it
    assert (org.plan_id, org.billing_mode) == ("free", BillingMode.BYO)

    # A bill for spend made while it was an agency org still carries the Pro fee
    assert _bill(kit, org_id, project, "late").fee_minor == 50
    assert _wallet_item(kit, org_id)["balance"] == 10_000 - 1_050


def test_a_wallet_that_late_bills_took_below_zero_can_be_settled_and_is_invoiced(kit: WalletKit) -> None:
    from functions.api.container import services
    from shared.credits.periods import period_containing

    org_id, project, owner = agency_org(kit)
    fund(kit, org_id, 500, new_user())
    kit.orgs.update_org(owner, org_id, name=None, billing_mode=BillingMode.BYO, currency=None)
    _bill(kit, org_id, project, "late")  # 1,050 from 500: owes 550
    org = kit.org_repo.require_org(org_id)
    totals = services().invoices.assemble(org, period_containing(org, NOW + timedelta(days=40))).totals
    assert (totals.wallet_deficit_minor, totals.amount_due_minor) == (550, 550)

    # A top-up out of agency mode settles the deficit, and no more
    with pytest.raises(InvalidRequestError) as too_much:
        kit.wallet.top_up(owner, org_id, amount_minor=551, method="card", idempotency_key="k1", return_url=None)
    assert too_much.value.code == "amount_exceeds_deficit"
    started = kit.wallet.top_up(owner, org_id, amount_minor=550, method="card", idempotency_key="k2", return_url=None)
    assert started.amount_minor == 550
    # ...counting the top-ups on their way; a retry of one returns it
    with pytest.raises(InvalidRequestError):
        kit.wallet.top_up(owner, org_id, amount_minor=550, method="card", idempotency_key="k3", return_url=None)
    again = kit.wallet.top_up(owner, org_id, amount_minor=550, method="card", idempotency_key="k2", return_url=None)
    assert again.topup_id == started.topup_id
    # Once it is paid, a retry still returns it, though nothing is owed any more
    kit.wallet.topup_succeeded(
        org_id=org_id, topup_id=started.topup_id, payment_intent_id="pi_k2", charge_id=None, amount_minor=550
    )
    assert _wallet_item(kit, org_id)["balance"] == 0
    paid = kit.wallet.top_up(owner, org_id, amount_minor=550, method="card", idempotency_key="k2", return_url=None)
    assert (paid.topup_id, paid.status) == (started.topup_id, "succeeded")
    with pytest.raises(WalletNotAvailableError):
        kit.wallet.top_up(owner, org_id, amount_minor=1, method="card", idempotency_key="k4", return_url=None)


def test_a_wallet_that_left_agency_mode_without_a_kept_rate_bills_the_plans_fee(kit: WalletKit) -> None:
    org_id, project, owner = agency_org(kit, "pro")  # 500 bps
    fund(kit, org_id, 10_000, new_user())
    kit.orgs.update_org(owner, org_id, name=None, billing_mode=BillingMode.BYO, currency=None)
    kit.repo._table.update_item(Key={"PK": f"ORG#{org_id}", "SK": "WALLET"}, UpdateExpression="REMOVE agency_fee_bps")
    assert _bill(kit, org_id, project, "late").fee_minor == 50


def test_wallet_settings_racing_a_switch_to_byo_are_refused(kit: WalletKit, monkeypatch: pytest.MonkeyPatch) -> None:
    org_id, _, owner = agency_org(kit)
    fund(kit, org_id, 10_000, new_user())
    load = kit.repo.get
    switched: list[str] = []

    def get(org: str) -> Any:
        if not switched:  # the org leaves agency mode after configure read it
            switched.append(org)
            kit.orgs.update_org(owner, org_id, name=None, billing_mode=BillingMode.BYO, currency=None)
        return load(org)

    monkeypatch.setattr(kit.repo, "get", get)
    with pytest.raises(WalletNotAvailableError):
        kit.wallet.configure(owner, org_id, wallet_settings(low_threshold_minor=20_000, floor_minor=0))
    monkeypatch.undo()
    assert _wallet_item(kit, org_id)["low_threshold"] != 20_000


def test_a_wallet_from_before_the_mode_copy_gets_it_on_its_first_hold(kit: WalletKit) -> None:
    org_id, project, _ = agency_org(kit)
    fund(kit, org_id, 10_000, new_user())
    kit.repo._table.update_item(Key={"PK": f"ORG#{org_id}", "SK": "WALLET"}, UpdateExpression="REMOVE billing_mode")
    assert _hold(kit, org_id, project, "h").status == "pending"
    assert _wallet_item(kit, org_id)["billing_mode"] == "agency"


def test_holds_racing_on_a_wallet_from_before_the_mode_copy_all_pass(
    kit: WalletKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a racing hold copies the mode between this hold's refusal and its own attempt to copy it
    org_id, project, _ = agency_org(kit)
    fund(kit, org_id, 10_000, new_user())
    kit.repo._table.update_item(Key={"PK": f"ORG#{org_id}", "SK": "WALLET"}, UpdateExpression="REMOVE billing_mode")
    copy = kit.repo.copy_mode
    raced: list[bool] = []

    def copy_mode(org: str, mode: str) -> bool:
        raced.append(copy(org, mode))  # the other hold's copy
        return copy(org, mode)  # this one's: nothing left to do

    monkeypatch.setattr(kit.repo, "copy_mode", copy_mode)
    assert _hold(kit, org_id, project, "h").status == "pending"
    assert raced == [True] and _wallet_item(kit, org_id)["held"] == 100


def test_a_mode_change_waits_out_a_wallet_transaction_in_flight(
    kit: WalletKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.errors import ConcurrentUpdateError

    org_id, _, owner = agency_org(kit)
    fund(kit, org_id, 10_000, new_user())
    client = kit.org_repo._client
    write = client.transact_write_items
    conflicts: list[int] = []

    def transact_write_items(**kwargs: Any) -> Any:
        if len(conflicts) < 2:  # the first two attempts meet a hold's transaction on the wallet
            conflicts.append(1)
            raise ConcurrentUpdateError("in flight")
        return write(**kwargs)

    monkeypatch.setattr(client, "transact_write_items", transact_write_items)
    kit.orgs.update_org(owner, org_id, name=None, billing_mode=BillingMode.BYO, currency=None)
    monkeypatch.undo()
    assert len(conflicts) == 2 and _wallet_item(kit, org_id)["billing_mode"] == "byo"

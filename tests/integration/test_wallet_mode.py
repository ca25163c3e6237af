"""The wallet keeps a copy of the org's billing mode, so a hold checks it without a third transaction item.
These tests hold the copy to the org's mode: on every mode change, and when a change races the wallet's
first write."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from shared.orgs.models import BillingMode
from shared.wallet.service import WalletNotAvailableError
from tests.helpers import new_user
from tests.integration.wallet_kit import WalletKit, agency_org, fund, wallet_kit

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def kit(stack: Any) -> WalletKit:
    return wallet_kit(stack, NOW)


def _hold(kit: WalletKit, org_id: str, project: str, hold_id: str) -> dict[str, Any]:
    return kit.wallet.hold(org_id=org_id, hold_id=hold_id, project_id=project, platform="meta", amount_minor=100)


def _wallet_item(kit: WalletKit, org_id: str) -> dict[str, Any]:
    item = kit.repo.item(org_id, "WALLET")
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
    assert kit.repo.item(org_id, "HOLD#while-byo") is None

    kit.orgs.update_org(owner, org_id, name=None, billing_mode=BillingMode.AGENCY, currency=None)
    assert _hold(kit, org_id, project, "after")["status"] == "pending"
    assert _wallet_item(kit, org_id)["held"] == held + 100


def test_an_ended_subscription_that_drops_agency_mode_closes_the_wallet_to_holds(kit: WalletKit) -> None:
    org_id, project, _ = agency_org(kit)
    fund(kit, org_id, 10_000, new_user())
    kit.org_repo.apply_subscription(org_id, {"plan_id": "free", "billing_mode": "byo"}, fetched_ms=1)
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


def test_a_first_top_up_that_races_a_switch_to_byo_writes_no_wallet(
    kit: WalletKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the org leaves agency mode after the top-up read it but before the wallet's first write
    org_id, _, owner = agency_org(kit)
    load = kit.repo.get

    def get(org: str) -> Any:
        stored = load(org)
        kit.orgs.update_org(owner, org_id, name=None, billing_mode=BillingMode.BYO, currency=None)
        return stored

    monkeypatch.setattr(kit.repo, "get", get)
    with pytest.raises(WalletNotAvailableError):
        fund(kit, org_id, 10_000, new_user())
    assert kit.repo.item(org_id, "WALLET") is None

"""A bill id names one bill (issue 21, outside review): resent with the same content it is answered as
recorded; resent with other content (amount, project, day, hold, sign) it is 409 idempotency_key_reused and
nothing changes, on the service, the internal route and the EventBridge spend ingest."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from shared.errors import ConflictError
from shared.wallet.service import Bill, BillReusedError
from tests.helpers import ApiClient, new_user, org_items
from tests.integration.wallet_kit import WalletKit, agency_org, fund, wallet_kit
from tests.local import devtokens

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 20, 17, 3, 44, tzinfo=UTC)
ENGINE = devtokens.service_token("ad-optimizer")


@pytest.fixture
def kit(stack: Any) -> WalletKit:
    return wallet_kit(stack, NOW)


def _bill(kit: WalletKit, bill: Bill) -> Any:
    return kit.wallet.record_bill(bill)


def test_a_bill_id_resent_with_other_content_is_409_and_changes_nothing(kit: WalletKit) -> None:
    # Given a bill of 1,000 drawn on a hold, and a platform credit of 300, each recorded once
    org_id, project, owner = agency_org(kit)
    other = kit.orgs.create_project(owner, org_id, name="Other client").project_id
    fund(kit, org_id, 100_000, new_user())
    kit.wallet.hold(org_id=org_id, hold_id="h", project_id=project, platform="meta", amount_minor=5_000)
    kit.wallet.hold(org_id=org_id, hold_id="h2", project_id=project, platform="meta", amount_minor=5_000)
    bill = Bill(org_id, "meta", "b1", project, 1_000, "USD", date(2026, 11, 20), "h", "test:spend-feed")
    credit = Bill(org_id, "meta", "c1", project, -300, "USD", date(2026, 11, 19), None, "test:spend-feed")
    first, credited = _bill(kit, bill), _bill(kit, credit)
    before = org_items(kit.repo._table, org_id)
    # When the same ids come again with other content
    others = [
        Bill(org_id, "meta", "b1", project, 1_500, "USD", bill.billed_on, "h", "t"),  # another amount
        Bill(org_id, "meta", "b1", other, 1_000, "USD", bill.billed_on, "h", "t"),  # another project
        Bill(org_id, "meta", "b1", project, 1_000, "USD", date(2026, 10, 31), "h", "t"),  # another day (period)
        Bill(org_id, "meta", "b1", project, 1_000, "USD", bill.billed_on, "h2", "t"),  # another hold
        Bill(org_id, "meta", "b1", project, 1_000, "USD", bill.billed_on, None, "t"),  # no hold
        Bill(org_id, "meta", "b1", project, -1_000, "USD", bill.billed_on, None, "t"),  # a credit now
        Bill(org_id, "meta", "c1", project, -400, "USD", credit.billed_on, None, "t"),  # another credit
        Bill(org_id, "meta", "c1", project, 300, "USD", credit.billed_on, None, "t"),  # a bill now
    ]
    for reused in others:
        with pytest.raises(BillReusedError) as refused:
            _bill(kit, reused)
        # Then each is refused as a reused key, and nothing changed
        assert isinstance(refused.value, ConflictError) and refused.value.code == "idempotency_key_reused"
    assert org_items(kit.repo._table, org_id) == before
    # And a true replay is answered with the bill as recorded
    assert _bill(kit, bill) == replace(first, replayed=True)
    assert _bill(kit, credit) == replace(credited, replayed=True)
    # while the same bill id on another platform is another bill
    assert not _bill(kit, Bill(org_id, "tiktok", "b1", project, 1_500, "USD", bill.billed_on, None, "t")).replayed


def test_the_internal_route_answers_409_for_a_bill_id_reused(api: ApiClient, kit: WalletKit) -> None:
    org_id, project, _ = agency_org(kit)
    fund(kit, org_id, 100_000, new_user())
    bill = {
        "org_id": org_id,
        "platform": "meta",
        "bill_id": f"bill-{new_user()}",
        "project_id": project,
        "amount_minor": 2_000,
        "currency": "USD",
        "billed_on": "2026-11-19",
    }
    assert api.call("POST", "/v1/internal/wallet/bills", token=ENGINE, json=bill).status == 200
    before = org_items(kit.repo._table, org_id)
    reused = api.call("POST", "/v1/internal/wallet/bills", token=ENGINE, json={**bill, "amount_minor": 2_001})
    assert (reused.status, reused.code) == (409, "idempotency_key_reused"), reused.body
    assert org_items(kit.repo._table, org_id) == before
    again = api.call("POST", "/v1/internal/wallet/bills", token=ENGINE, json=bill)
    assert (again.status, again.body["replayed"], again.body["amount_minor"]) == (200, True, 2_000)


def test_the_spend_ingest_refuses_a_reused_bill_id_for_good(kit: WalletKit) -> None:
    from functions.spend_ingest import handler

    org_id, project, _ = agency_org(kit)
    fund(kit, org_id, 100_000, new_user())
    event = json.loads(
        (Path(__file__).resolve().parents[2] / "events/SpendIngestFunction/bill_recorded.json").read_text()
    )
    detail = {**event["detail"], "org_id": org_id, "project_id": project, "billed_on": date.today().isoformat()}
    first = handler.lambda_handler({**event, "detail": detail}, _Context())
    assert first["replayed"] is False
    before = org_items(kit.repo._table, org_id)
    # A bill id resent with another amount: answered (EventBridge does not retry), logged, nothing changed
    refused = handler.lambda_handler({**event, "detail": {**detail, "amount_minor": 1}}, _Context())
    assert refused["refused"] == "idempotency_key_reused" and refused["bill_id"] == detail["bill_id"]
    assert org_items(kit.repo._table, org_id) == before
    assert handler.lambda_handler({**event, "detail": detail}, _Context())["replayed"] is True


class _Context:
    function_name = "spend-ingest"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:spend-ingest"
    aws_request_id = "req"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 20_000

"""The budget routes over HTTP (the local API): who may read and set a project's budget, bad input and
unknown orgs / projects refused with nothing written, budget state in the project, wallet and credit views;
the optimizer's holds with their expiry and the budget's refusal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.auth import Caller
from shared.orgs.models import Role
from tests.helpers import ApiClient, new_user, org_items
from tests.integration.wallet_kit import WalletKit, agency_org, fund, wallet_kit
from tests.local import devtokens

pytestmark = pytest.mark.integration
ENGINE = devtokens.service_token("ad-optimizer")


@pytest.fixture
def kit(stack: Any) -> WalletKit:
    return wallet_kit(stack, datetime.now(UTC))


def _member(kit: WalletKit, owner: Caller, org_id: str, role: Role) -> str:
    user = new_user(role.value)
    kit.orgs.add_member(owner, org_id, user_id=user, email=None, role=role)
    return user


def _budget_items(table: Any, org_id: str) -> list[dict[str, Any]]:
    return [i for i in org_items(table, org_id) if str(i["SK"]).startswith("BUDGET")]


def test_members_read_billing_and_support_set_a_budget(api: ApiClient, kit: WalletKit, table: Any) -> None:
    org_id, project, owner = agency_org(kit)
    member, billing = _member(kit, owner, org_id, Role.MEMBER), _member(kit, owner, org_id, Role.BILLING)
    path = f"/v1/orgs/{org_id}/projects/{project}/budget"
    empty = api.call("GET", path, as_user=member)
    assert empty.status == 200, empty.body
    assert (empty.body["ad_spend_minor"], empty.body["credits"], empty.body["updated_by"]) == (None, None, None)
    refused = api.call("PUT", path, as_user=member, json={"ad_spend_minor": 1})
    assert (refused.status, refused.code) == (403, "forbidden") and _budget_items(table, org_id) == []

    body = {"ad_spend_minor": 100_000, "platforms_minor": {"tiktok": 30_000}, "credits": 2_000}
    set_ = api.call("PUT", path, as_user=billing, json=body)
    assert set_.status == 200, set_.body
    lines = {line["budget"]: line for line in set_.body["lines"]}
    assert set(lines) == {"ad_spend", "ad_spend:tiktok", "credits"}
    assert (lines["ad_spend"]["limit"], lines["ad_spend"]["left"], lines["credits"]["left"]) == (
        100_000,
        100_000,
        2_000,
    )
    assert set_.body["updated_by"] == billing

    staff = new_user("staff")
    by_support = api.call("PUT", path, as_user=staff, groups=("support",), json={"credits": 500})
    assert by_support.status == 200, by_support.body
    assert (by_support.body["ad_spend_minor"], by_support.body["credits"]) == (None, 500)  # PUT replaces

    # the budget shows on the project list, the wallet and the credits
    projects = api.call("GET", f"/v1/orgs/{org_id}/projects", as_user=member).body["items"]
    assert [p["budget"]["credits"] for p in projects if p["project_id"] == project] == [500]
    wallet = api.call("GET", f"/v1/orgs/{org_id}/wallet", as_user=member).body
    assert [b["project_id"] for b in wallet["project_budgets"]] == [project]
    credits = api.call("GET", f"/v1/orgs/{org_id}/credits", as_user=member).body
    assert [(b["project_id"], b["credits"]) for b in credits["project_budgets"]] == [(project, 500)]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"ad_spend_minor": -1}, "validation_error"),
        ({"ad_spend_minor": "100"}, "validation_error"),  # strict integers
        ({"credits": 1.5}, "validation_error"),
        ({"ad_spend_minor": 10**13}, "validation_error"),
        ({"platforms_minor": {"myspace": 100}}, "unknown_platform"),
        ({"platforms_minor": {"meta": -5}}, "validation_error"),
        ({"monthly": 100}, "validation_error"),  # unknown field
    ],
)
def test_bad_budgets_are_422_and_write_nothing(
    api: ApiClient, kit: WalletKit, table: Any, body: dict[str, Any], code: str
) -> None:
    org_id, project, owner = agency_org(kit)
    reply = api.call("PUT", f"/v1/orgs/{org_id}/projects/{project}/budget", as_user=owner.user_id, json=body)
    assert (reply.status, reply.code) == (422, code), reply.body
    assert reply.body["error"]["message"]
    assert _budget_items(table, org_id) == []


def test_unknown_orgs_and_projects_are_404(api: ApiClient, kit: WalletKit, table: Any) -> None:
    org_id, project, owner = agency_org(kit)
    other_org, _, _ = agency_org(kit)
    for method, json in (("GET", None), ("PUT", {"credits": 10})):
        unknown_project = api.call(
            method, f"/v1/orgs/{org_id}/projects/prj_nope/budget", as_user=owner.user_id, json=json
        )
        assert (unknown_project.status, unknown_project.code) == (404, "project_not_found")
        unknown_org = api.call(method, f"/v1/orgs/org_nope/projects/{project}/budget", as_user=owner.user_id, json=json)
        assert (unknown_org.status, unknown_org.code) == (404, "org_not_found")
        not_mine = api.call(method, f"/v1/orgs/{other_org}/projects/{project}/budget", as_user=owner.user_id, json=json)
        assert (not_mine.status, not_mine.code) == (404, "org_not_found")
    assert _budget_items(table, org_id) == [] and _budget_items(table, other_org) == []


def test_the_optimizers_holds_choose_their_expiry_and_meet_the_budget(api: ApiClient, kit: WalletKit) -> None:
    org_id, project, owner = agency_org(kit)
    fund(kit, org_id, 100_000, new_user())
    assert (
        api.call(
            "PUT", f"/v1/orgs/{org_id}/projects/{project}/budget", as_user=owner.user_id, json={"ad_spend_minor": 1_000}
        ).status
        == 200
    )
    hold = {"org_id": org_id, "project_id": project, "platform": "meta"}
    ends = (datetime.now(UTC) + timedelta(days=5)).replace(microsecond=0)
    made = api.call(
        "POST",
        "/v1/internal/wallet/holds",
        token=ENGINE,
        json=hold | {"hold_id": "campaign", "amount_minor": 800, "expires_at": ends.isoformat()},
    )
    assert made.status == 201, made.body
    assert (made.body["remaining_minor"], made.body["expires_at"]) == (800, ends.isoformat().replace("+00:00", ".000Z"))
    over = api.call(
        "POST", "/v1/internal/wallet/holds", token=ENGINE, json=hold | {"hold_id": "more", "amount_minor": 300}
    )
    assert (over.status, over.code) == (409, "project_budget_exceeded"), over.body
    assert (over.body["error"]["details"]["budget"], over.body["error"]["details"]["left"]) == ("ad_spend", 200)
    past = api.call(
        "POST",
        "/v1/internal/wallet/holds",
        token=ENGINE,
        json=hold | {"hold_id": "past", "amount_minor": 1, "expires_at": "2020-01-01T00:00:00Z"},
    )
    assert (past.status, past.code) == (422, "hold_expiry_past")
    naive = api.call(
        "POST",
        "/v1/internal/wallet/holds",
        token=ENGINE,
        json=hold | {"hold_id": "naive", "amount_minor": 1, "expires_at": "2030-01-01T00:00:00"},
    )
    assert naive.status == 422
    bill = {"org_id": org_id, "platform": "meta", "project_id": project, "currency": "USD", "hold_id": "campaign"}
    today = datetime.now(UTC).date().isoformat()
    billed = api.call(
        "POST",
        "/v1/internal/wallet/bills",
        token=ENGINE,
        json=bill | {"bill_id": "d1", "amount_minor": 500, "billed_on": today},
    )
    assert billed.status == 200, billed.body
    released = api.call("POST", "/v1/internal/wallet/holds/campaign/release", token=ENGINE, json={"org_id": org_id})
    assert released.status == 200, released.body
    assert (released.body["status"], released.body["remaining_minor"], released.body["drawn_minor"]) == (
        "voided",
        300,
        500,
    )

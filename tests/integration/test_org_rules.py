"""Plan limits, seats, roles and billing mode, end to end through the local API and DynamoDB Local."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import boto3
import pytest
import time_machine

from shared.auth import Caller
from shared.catalog import plan_catalog
from shared.clock import SystemClock
from shared.errors import PlanLimitError
from shared.orgs.models import Role
from shared.orgs.repository import OrgRepository
from shared.orgs.service import SETTLE_WINDOW, OrgService
from tests.helpers import ApiClient, new_user, org_items, user_org_count
from tests.paid import mirror_subscription, paid_org_over_http

pytestmark = pytest.mark.integration


def _org(api: ApiClient, owner: str) -> str:
    """An org on Free (BYO), as every org starts."""
    reply = api.call("POST", "/v1/orgs", as_user=owner, json={"name": "Acme"})
    assert reply.status == 201, reply.body
    return str(reply.body["org_id"])


def _paid_org(api: ApiClient, stack: Any, table: Any, owner: str, plan_id: str, billing_mode: str = "byo") -> str:
    """An org on `plan_id` the way production makes one: created on Free, subscribed through Checkout; then
    what the subscription caused (outbox, webhooks) done, so a test sees stored state settle."""
    org_id = paid_org_over_http(api, stack, table, owner, plan_id=plan_id, billing_mode=billing_mode)
    stack.flush_outbox()
    stack.stripe.wait_for_deliveries()
    stack.flush_outbox()
    return org_id


def _org_item(table: Any, org_id: str) -> dict[str, Any]:
    return next(i for i in org_items(table, org_id) if i["SK"] == "ORG")


def test_project_limit_is_refused_with_a_clear_code_and_archive_frees_a_slot(
    api: ApiClient, stack: Any, table: Any
) -> None:
    # Given a Pro org (3 active projects) with 3 projects
    owner = new_user()
    org_id = _paid_org(api, stack, table, owner, "pro")
    ids = [
        api.call("POST", f"/v1/orgs/{org_id}/projects", as_user=owner, json={"name": f"P{i}"}).body["project_id"]
        for i in range(3)
    ]
    # When a fourth is created
    refused = api.call("POST", f"/v1/orgs/{org_id}/projects", as_user=owner, json={"name": "P4"})
    # Then it is refused, naming the limit, and nothing is written
    assert refused.status == 409
    assert refused.code == "plan_limit_reached"
    assert "Pro plan allows 3 active project(s)" in refused.body["error"]["message"]
    assert refused.body["error"]["details"] == {"limit": "projects", "max": 3, "current": 3}
    assert _org_item(table, org_id)["active_project_count"] == 3
    assert len([i for i in org_items(table, org_id) if i["SK"].startswith("PROJECT#")]) == 3
    # Archiving frees a slot; reactivating past the limit is refused again
    assert api.call("POST", f"/v1/orgs/{org_id}/projects/{ids[0]}/archive", as_user=owner).body["status"] == "archived"
    assert api.call("POST", f"/v1/orgs/{org_id}/projects", as_user=owner, json={"name": "P4"}).status == 201
    again = api.call("POST", f"/v1/orgs/{org_id}/projects/{ids[0]}/reactivate", as_user=owner)
    assert (again.status, again.code) == (409, "plan_limit_reached")
    listed = api.call("GET", f"/v1/orgs/{org_id}/projects", as_user=owner).body["items"]
    assert sorted(p["status"] for p in listed) == ["active", "active", "active", "archived"]


def test_concurrent_project_creation_never_exceeds_the_limit(api: ApiClient, stack: Any, table: Any) -> None:
    # Twelve Lambda instances at once (each its own service and boto3 session) against one Pro org.
    owner = new_user()
    org_id = _paid_org(api, stack, table, owner, "pro")
    caller = Caller(user_id=owner, email=None, groups=frozenset())

    def create(i: int) -> str:
        service = OrgService(
            OrgRepository(boto3.Session().resource("dynamodb").Table(table.name)), plan_catalog(), SystemClock()
        )
        try:
            service.create_project(caller, org_id, name=f"P{i}")
        except PlanLimitError as exc:
            return exc.code
        return "created"

    with ThreadPoolExecutor(max_workers=12) as pool:
        outcomes = list(pool.map(create, range(12)))
    assert outcomes.count("created") == 3
    assert outcomes.count("plan_limit_reached") == 9
    assert _org_item(table, org_id)["active_project_count"] == 3
    assert len([i for i in org_items(table, org_id) if i["SK"].startswith("PROJECT#")]) == 3


def test_concurrent_seat_changes_each_commit_with_their_own_seat_revision_and_task(
    api: ApiClient, stack: Any, table: Any
) -> None:
    # Eight Lambda instances add a member each to one Pro org (extra seats sold: no limit) at once.
    owner = new_user()
    org_id = _paid_org(api, stack, table, owner, "pro")
    caller = Caller(user_id=owner, email=None, groups=frozenset())

    def add(i: int) -> str:
        service = OrgService(
            OrgRepository(boto3.Session().resource("dynamodb").Table(table.name)), plan_catalog(), SystemClock()
        )
        service.add_member(caller, org_id, user_id=f"u{i}-{new_user()}", email=None, role=Role.MEMBER)
        return "added"

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(add, range(8)))
    # Then every one commits (one that lost the race read the revision again), each moving the seat
    # revision on once and writing the seat sync task for its own revision
    assert outcomes == ["added"] * 8
    item = _org_item(table, org_id)
    assert (item["member_count"], item["seat_revision"]) == (9, 8)
    tasks = [i for i in org_items(table, org_id) if str(i["SK"]).startswith("OUTBOX#") and i["kind"] == "task"]
    assert sorted(json.loads(t["body"])["seat_revision"] for t in tasks) == list(range(1, 9))


def test_seats_are_refused_past_the_plan_unless_extra_seats_are_sold(api: ApiClient, stack: Any, table: Any) -> None:
    owner = new_user()
    starter = _paid_org(api, stack, table, owner, "starter")
    refused = api.call("POST", f"/v1/orgs/{starter}/members", as_user=owner, json={"user_id": new_user()})
    assert (refused.status, refused.code) == (409, "seat_limit_reached")
    assert "Starter plan includes 1 seat(s)" in refused.body["error"]["message"]
    assert _org_item(table, starter)["member_count"] == 1

    pro = _paid_org(api, stack, table, owner, "pro")  # 3 included, extra seats sold
    for _ in range(4):
        assert api.call("POST", f"/v1/orgs/{pro}/members", as_user=owner, json={"user_id": new_user()}).status == 201
    org = api.call("GET", f"/v1/orgs/{pro}", as_user=owner).body
    assert org["seats"] == {"used": 5, "included": 3, "limit": None, "extra_seat_minor": 1500}


def test_the_last_owner_cannot_be_removed_or_demoted(api: ApiClient, stack: Any, table: Any) -> None:
    owner, second = new_user(), new_user()
    org_id = _paid_org(api, stack, table, owner, "pro")
    for method, path, body in (
        ("DELETE", f"/v1/orgs/{org_id}/members/{owner}", None),
        ("PATCH", f"/v1/orgs/{org_id}/members/{owner}", {"role": "admin"}),
    ):
        reply = api.call(method, path, as_user=owner, json=body)
        assert (reply.status, reply.code) == (409, "last_owner")
    # With a second owner, the first may leave.
    assert (
        api.call("POST", f"/v1/orgs/{org_id}/members", as_user=owner, json={"user_id": second, "role": "owner"}).status
        == 201
    )
    assert api.call("DELETE", f"/v1/orgs/{org_id}/members/{owner}", as_user=owner).status == 204
    item = _org_item(table, org_id)
    assert (item["member_count"], item["owner_count"]) == (1, 1)
    assert api.call("GET", f"/v1/orgs/{org_id}", as_user=owner).status == 404


def test_only_owners_grant_the_owner_role(api: ApiClient, stack: Any, table: Any) -> None:
    owner, admin = new_user(), new_user()
    org_id = _paid_org(api, stack, table, owner, "pro")
    api.call("POST", f"/v1/orgs/{org_id}/members", as_user=owner, json={"user_id": admin, "role": "admin"})
    reply = api.call("POST", f"/v1/orgs/{org_id}/members", as_user=admin, json={"user_id": new_user(), "role": "owner"})
    assert (reply.status, reply.code) == (403, "forbidden")
    reply = api.call("DELETE", f"/v1/orgs/{org_id}/members/{owner}", as_user=admin)
    assert reply.status == 403


def test_agency_mode_needs_a_plan_that_allows_it(api: ApiClient, stack: Any, table: Any) -> None:
    owner = new_user()
    # Orgs start on Free, which has no agency mode; nor can one start on a paid plan (Checkout first)
    refused = api.call("POST", "/v1/orgs", as_user=owner, json={"name": "A", "billing_mode": "agency"})
    assert (refused.status, refused.code) == (409, "agency_mode_not_allowed")
    assert "Pro plan or above" in refused.body["error"]["message"]
    paid = api.call(
        "POST", "/v1/orgs", as_user=owner, json={"name": "A", "billing_mode": "agency", "plan_id": "starter"}
    )
    assert (paid.status, paid.code) == (409, "subscription_required")
    assert user_org_count(table, owner) == 0  # nothing created

    org_id = _paid_org(api, stack, table, owner, "starter")
    before = _org_item(table, org_id)
    switched = api.call("PATCH", f"/v1/orgs/{org_id}", as_user=owner, json={"billing_mode": "agency"})
    assert (switched.status, switched.code) == (409, "agency_mode_not_allowed")
    assert "Pro plan or above" in switched.body["error"]["message"]
    assert _org_item(table, org_id) == before

    # The plan is the subscription's: an upgrade goes through it (PUT /plan points there)
    via_plan = api.call("PUT", f"/v1/orgs/{org_id}/plan", as_user=owner, json={"plan_id": "pro"})
    assert (via_plan.status, via_plan.code) == (409, "use_subscription")
    upgraded = api.call("PUT", f"/v1/orgs/{org_id}/subscription", as_user=owner, json={"plan_id": "pro"})
    assert upgraded.status == 200, upgraded.body
    agency = api.call("PATCH", f"/v1/orgs/{org_id}", as_user=owner, json={"billing_mode": "agency"})
    assert agency.status == 200, agency.body
    assert (agency.body["billing_mode"], agency.body["platform_fee_bps"]) == ("agency", 500)
    # Downgrading an agency org to a plan without agency mode is refused too.
    down = api.call("PUT", f"/v1/orgs/{org_id}/subscription", as_user=owner, json={"plan_id": "starter"})
    assert (down.status, down.code) == (409, "agency_mode_not_allowed")


def test_downgrade_is_refused_while_the_org_uses_more_than_the_new_plan_allows(
    api: ApiClient, stack: Any, table: Any
) -> None:
    owner = new_user()
    org_id = _paid_org(api, stack, table, owner, "pro")
    for i in range(2):
        api.call("POST", f"/v1/orgs/{org_id}/projects", as_user=owner, json={"name": f"P{i}"})
    before = _org_item(table, org_id)
    reply = api.call("PUT", f"/v1/orgs/{org_id}/subscription", as_user=owner, json={"plan_id": "starter"})
    assert (reply.status, reply.code) == (409, "plan_limit_reached")
    assert reply.body["error"]["details"] == {"limit": "projects", "max": 1, "current": 2}
    assert _org_item(table, org_id) == before


def test_enterprise_terms_are_set_by_support_only(api: ApiClient) -> None:
    # (a contract starts its own Stripe subscription: the org has none yet)
    owner = new_user()
    org_id = _org(api, owner)
    terms = {"base_minor": 250_000, "included_credits": 80_000, "platform_fee_bps": 150}
    refused = api.call(
        "PUT",
        f"/v1/orgs/{org_id}/plan",
        as_user=owner,
        json={"plan_id": "enterprise", "enterprise_terms": terms},
    )
    assert (refused.status, refused.code) == (403, "plan_requires_sales")
    done = api.call(
        "PUT",
        f"/v1/orgs/{org_id}/plan",
        as_user=new_user("staff"),
        groups=("support",),
        json={"plan_id": "enterprise", "enterprise_terms": terms},
    )
    assert done.status == 200, done.body
    assert done.body["plan"]["plan_id"] == "enterprise"
    org = api.call("GET", f"/v1/orgs/{org_id}", as_user=owner).body
    assert org["seats"]["limit"] is None and org["your_role"] == "owner"


def test_unsupported_currency_is_refused(api: ApiClient) -> None:
    reply = api.call("POST", "/v1/orgs", as_user=new_user(), json={"name": "Yen", "currency": "JPY"})
    assert (reply.status, reply.code) == (422, "unsupported_currency")


def test_lists_paginate_with_an_opaque_cursor(api: ApiClient, stack: Any, table: Any) -> None:
    owner = new_user()
    org_id = _paid_org(api, stack, table, owner, "scale")
    added = {new_user() for _ in range(4)}
    for user in added:
        api.call("POST", f"/v1/orgs/{org_id}/members", as_user=owner, json={"user_id": user})
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = api.call(
            "GET",
            f"/v1/orgs/{org_id}/members",
            as_user=owner,
            params={"limit": 2, **({"cursor": cursor} if cursor else {})},
        ).body
        seen += [m["user_id"] for m in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(added | {owner})
    assert pages >= 3
    # A cursor from one org's list cannot be replayed against the caller's org list to reach elsewhere.
    first = api.call("GET", f"/v1/orgs/{org_id}/members", as_user=owner, params={"limit": 1}).body["next_cursor"]
    other_owner = new_user()
    other = _org(api, other_owner)
    reply = api.call("GET", f"/v1/orgs/{other}/projects", as_user=other_owner, params={"cursor": first})
    assert (reply.status, reply.code) == (422, "invalid_cursor")


def test_my_orgs_lists_every_org_the_caller_belongs_to(api: ApiClient) -> None:
    owner = new_user()
    ids = {_org(api, owner) for _ in range(3)}
    listed = api.call("GET", "/v1/orgs", as_user=owner).body["items"]
    assert {o["org_id"] for o in listed} == ids
    assert {o["role"] for o in listed} == {"owner"}


def _crafted(key: dict[str, str]) -> str:
    import base64
    import json

    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("/v1/orgs/{org}/members", {"SK": "MEMBER#x", "extra": "y"}),
        ("/v1/orgs/{org}/projects", {"SK": "PROJECT#x", "GSI1PK": "USER#x"}),
        ("/v1/orgs/{org}/invoices", {"SK": "INVOICE#x", "foo": "bar"}),
        ("/v1/orgs", {"foo": "bar"}),
        ("/v1/orgs", {"GSI1SK": "ORG#x", "PK": "ORG#x", "SK": ""}),
        ("/v1/orgs/{org}/credits/events", {"SK": "CLEDGER#000000000001", "seen": "\u00b2"}),
        ("/v1/orgs/{org}/credits/events", {"SK": "CLEDGER#000000000001", "seen": "9" * 40}),
        ("/v1/orgs/{org}/wallet/transactions", {"SK": "WALLET", "seen": "0"}),
    ],
)
def test_a_crafted_cursor_is_422_on_every_list(
    api: ApiClient, stack: Any, table: Any, path: str, key: dict[str, str]
) -> None:
    owner = new_user()
    org_id = paid_org_over_http(api, stack, table, owner, name="Cursors", plan_id="pro", billing_mode="agency")
    reply = api.call("GET", path.replace("{org}", org_id), as_user=owner, params={"cursor": _crafted(key)})
    assert (reply.status, reply.code) == (422, "invalid_cursor"), reply.body


@pytest.mark.parametrize("money", ["none", "wallet", "stripe customer", "subscription"])
def test_the_currency_is_locked_once_money_exists_in_it(api: ApiClient, stack: Any, table: Any, money: str) -> None:
    from tests.integration.stripe_kit import StripeKit
    from tests.integration.test_wallet import NOW
    from tests.integration.wallet_kit import fund, wallet_kit

    owner = new_user()
    org_id = api.call("POST", "/v1/orgs", as_user=owner, json={"name": "Money"}).body["org_id"]
    if money == "wallet":
        # A wallet is an agency org's, and agency mode needs a paid plan: a subscription as the webhook
        # mirrors it (no Stripe customer), agency mode, then money in the wallet.
        kit = wallet_kit(stack, NOW)
        mirror_subscription(kit.mirror, org_id, "pro", start=NOW)
        switched = api.call("PATCH", f"/v1/orgs/{org_id}", as_user=owner, json={"billing_mode": "agency"})
        assert switched.status == 200, switched.body
        fund(kit, org_id, 1_000, new_user())
    elif money == "stripe customer":
        StripeKit(stack, table).customer_on_clock(org_id)
    elif money == "subscription":
        StripeKit(stack, table).subscribe(api, owner, org_id, "pro")
    stack.flush_outbox()
    stack.stripe.wait_for_deliveries()
    stack.flush_outbox()
    before = org_items(table, org_id)
    reply = api.call("PATCH", f"/v1/orgs/{org_id}", as_user=owner, json={"currency": "EUR"})
    if money == "none":
        assert (reply.status, reply.body["currency"]) == (200, "EUR")
        return
    assert (reply.status, reply.code) == (409, "currency_locked"), reply.body
    assert "USD" in reply.body["error"]["message"]
    assert org_items(table, org_id) == before


def test_billing_details_are_set_by_billing_roles_and_go_on_the_next_invoice(
    api: ApiClient, stack: Any, table: Any
) -> None:
    from functions.api.container import services
    from shared.credits.periods import period_containing

    owner, billing, member, stranger = (new_user(r) for r in ("owner", "billing", "member", "stranger"))
    org_id = _paid_org(api, stack, table, owner, "pro")
    for user, role in ((billing, "billing"), (member, "member")):
        added = api.call("POST", f"/v1/orgs/{org_id}/members", as_user=owner, json={"user_id": user, "role": role})
        assert added.status == 201, added.body
    details = {
        "address_lines": ["Kurfürstendamm 21", "10719 Berlin", "東京都渋谷区神宮前1-2-3"],
        "email": "ap+invoices@northwind.example",
        "tax_id": "DE 123 456 789",
    }
    # Given a billing member, when they set the details, then the org shows them
    reply = api.call("PATCH", f"/v1/orgs/{org_id}", as_user=billing, json={"billing_details": details})
    assert reply.status == 200, reply.body
    assert reply.body["billing_details"] == details
    assert api.call("GET", f"/v1/orgs/{org_id}", as_user=member).body["billing_details"] == details
    # A plain member may not; a stranger and an unknown org are 404
    refused = api.call("PATCH", f"/v1/orgs/{org_id}", as_user=member, json={"billing_details": details})
    assert (refused.status, refused.code) == (403, "forbidden")
    for who, org in ((stranger, org_id), (owner, "org_doesnotexist")):
        missing = api.call("PATCH", f"/v1/orgs/{org}", as_user=who, json={"billing_details": details})
        assert (missing.status, missing.code) == (404, "org_not_found")
    # Bad input is a 422 naming the field, and nothing changes
    for bad in (
        {"address_lines": ["line"] * 7},
        {"address_lines": ["=cmd|' /C calc'!A0\x07"]},
        {"tax_id": "x" * 41},
        {"email": "not-an-email"},
        {"address_lines": ["\u202eevil"]},
        {"vat": "DE1"},
    ):
        bad_reply = api.call("PATCH", f"/v1/orgs/{org_id}", as_user=owner, json={"billing_details": bad})
        assert (bad_reply.status, bad_reply.code) == (422, "validation_error"), (bad, bad_reply.body)
    assert api.call("GET", f"/v1/orgs/{org_id}", as_user=owner).body["billing_details"] == details
    # The next invoice snapshots them under the org's name
    invoices = services().invoices
    org = services().orgs._repo.require_org(org_id)
    period = period_containing(org, org.subscription.billing_anchor if org.subscription else org.created_at)
    with time_machine.travel(period.end + SETTLE_WINDOW + timedelta(minutes=1), tick=True):
        invoices.close(org_id, period.key)
    draft = invoices._repo.get(org_id, period.key)
    assert draft is not None and draft.bill_to is not None
    assert (draft.bill_to.name, draft.bill_to.address_lines, draft.bill_to.tax_id) == (
        "Acme",
        details["address_lines"],
        "DE 123 456 789",
    )
    # null removes them
    cleared = api.call("PATCH", f"/v1/orgs/{org_id}", as_user=owner, json={"billing_details": None})
    assert cleared.status == 200 and cleared.body["billing_details"] == {
        "address_lines": [],
        "email": None,
        "tax_id": None,
    }

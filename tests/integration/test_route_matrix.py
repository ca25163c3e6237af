"""Every route, five ways: success; invalid body or parameters (422); no or bad token (401);
another org's id (404); insufficient role (403). Refusals must write nothing.

`test_every_route_is_covered` enumerates the routes of the generated OpenAPI document and fails
when one lacks its cases, so a new route cannot ship without them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.helpers import ApiClient, invoice_steps, new_user, org_items, user_org_count
from tests.integration.world import World, build_world
from tests.local import devtokens

pytestmark = pytest.mark.integration

TOO_LONG = "x" * 200
STMT = {"statement_id": "stmt_x"}
STMT_SETTINGS = "/v1/orgs/{org_id}/projects/{project_id}/statement-settings"
URLS = {"success_url": "https://app.layers.test/ok", "cancel_url": "https://app.layers.test/cancel"}


@dataclass(frozen=True)
class Case:
    method: str
    path: str  # as in the OpenAPI document
    ok_status: int = 200
    ok_body: dict[str, Any] | None = None
    # How to make the request invalid: a body, query parameters or path overrides.
    bad_body: dict[str, Any] | None = None
    bad_params: dict[str, Any] | None = None
    bad_path: dict[str, str] = field(default_factory=dict)
    forbidden_role: str | None = None  # a member role that must get 403; None = every member may
    public: bool = False  # no token needed (API Gateway route without authorizer)
    no_input_reason: str | None = None  # why there is nothing to make invalid
    bad_code: str = "validation_error"
    needs_subscription: bool = False  # success needs a live Stripe subscription
    ok_as: str = "owner"  # who succeeds: a role, or "support" (Layers staff)
    headers: dict[str, str] = field(default_factory=dict)  # sent on every call of the case
    needs_wallet_money: bool = False  # success needs a card top-up credited to the wallet
    needs_invoice: bool = False  # success needs the org's invoice for its current period, issued
    on_free_org: bool = False  # success needs an org without a subscription: org B, as its owner
    needs_credit_note: bool = False  # success needs a credit note against the org's issued invoice
    needs_bill: bool = False  # success needs a recorded platform bill ({platform}/{bill_id}: meta/matrix-bill)


CASES: list[Case] = [
    Case("GET", "/v1/plans", public=True, bad_params={"currency": "usd!"}),
    Case("GET", "/v1/templates", no_input_reason="takes no body or parameters"),
    Case("GET", "/v1/templates/{template_id}", bad_path={"template_id": TOO_LONG}),
    Case("POST", "/v1/orgs", 201, ok_body={"name": "New Org"}, bad_body={"name": "", "currency": "dollars"}),
    Case("GET", "/v1/orgs", bad_params={"limit": 0}),
    Case("GET", "/v1/orgs/{org_id}", bad_path={"org_id": TOO_LONG}),
    Case("PATCH", "/v1/orgs/{org_id}", ok_body={"name": "Renamed"}, bad_body={}, forbidden_role="member"),
    Case(
        "PUT",
        "/v1/orgs/{org_id}/plan",
        ok_body={"plan_id": "free"},
        bad_body={"plan": "scale"},
        forbidden_role="member",
    ),
    Case("GET", "/v1/orgs/{org_id}/members", bad_params={"limit": 101}),
    Case(
        "POST",
        "/v1/orgs/{org_id}/members",
        201,
        ok_body={"user_id": "new_person", "role": "member"},
        bad_body={"user_id": "has spaces", "role": "boss"},
        forbidden_role="billing",
    ),
    Case(
        "PATCH",
        "/v1/orgs/{org_id}/members/{user_id}",
        ok_body={"role": "billing"},
        bad_body={"role": "king"},
        forbidden_role="member",
    ),
    Case(
        "DELETE",
        "/v1/orgs/{org_id}/members/{user_id}",
        204,
        bad_path={"user_id": TOO_LONG},
        forbidden_role="billing",
    ),
    Case("GET", "/v1/orgs/{org_id}/projects", bad_params={"cursor": "not-a-cursor"}, bad_code="invalid_cursor"),
    Case(
        "POST",
        "/v1/orgs/{org_id}/projects",
        201,
        ok_body={"name": "Spring"},
        bad_body={"name": ""},
        forbidden_role="member",
    ),
    Case(
        "POST",
        "/v1/orgs/{org_id}/projects/{project_id}/archive",
        bad_path={"project_id": TOO_LONG},
        forbidden_role="billing",
    ),
    Case(
        "POST",
        "/v1/orgs/{org_id}/projects/{project_id}/reactivate",
        bad_path={"project_id": TOO_LONG},
        forbidden_role="member",
    ),
    Case("GET", "/v1/orgs/{org_id}/projects/{project_id}/budget", bad_path={"project_id": TOO_LONG}),
    Case(
        "PUT",
        "/v1/orgs/{org_id}/projects/{project_id}/budget",
        ok_body={"ad_spend_minor": 50_000, "platforms_minor": {"meta": 20_000}, "credits": 1_000},
        bad_body={"ad_spend_minor": -1, "credits": "many"},
        forbidden_role="member",
    ),
    Case("GET", "/v1/orgs/{org_id}/subscription", bad_path={"org_id": TOO_LONG}),
    Case(
        "POST",
        "/v1/orgs/{org_id}/subscription/checkout",
        201,
        ok_body={"plan_id": "scale", **URLS},
        bad_body={"plan_id": "scale", "success_url": "not a url"},
        forbidden_role="member",
        on_free_org=True,
    ),
    Case(
        "POST",
        "/v1/orgs/{org_id}/subscription/preview",
        ok_body={"plan_id": "scale"},
        bad_body={"plan_id": "scale", "proration_date": "tomorrow"},
        forbidden_role="member",
        needs_subscription=True,
    ),
    Case(
        "PUT",
        "/v1/orgs/{org_id}/subscription",
        ok_body={"plan_id": "scale"},
        bad_body={"plan": "scale"},
        forbidden_role="member",
        needs_subscription=True,
    ),
    Case(
        "POST",
        "/v1/orgs/{org_id}/billing-portal",
        ok_body={"return_url": "https://app.layers.test/billing"},
        bad_body={"return_url": "ftp://nope"},
        forbidden_role="member",
        needs_subscription=True,
    ),
    Case("GET", "/v1/orgs/{org_id}/credits", bad_path={"org_id": TOO_LONG}),
    Case("GET", "/v1/orgs/{org_id}/credits/events", bad_params={"limit": "many"}),
    Case(
        "PUT",
        "/v1/orgs/{org_id}/credits/cap",
        ok_body={"monthly_cap": 5000},
        bad_body={"monthly_cap": 0},
        forbidden_role="member",
    ),
    Case(
        "POST",
        "/v1/orgs/{org_id}/credits/adjustments",
        201,
        ok_body={"credits": 250, "reason": "goodwill"},
        bad_body={"credits": "lots", "reason": ""},
        forbidden_role="owner",
        ok_as="support",
        headers={"Idempotency-Key": "matrix-adjustment"},
    ),
    Case(
        "POST",
        "/v1/orgs/{org_id}/credits/packs/checkout",
        201,
        ok_body={"pack_id": "pack_1000", **URLS},
        bad_body={"pack_id": "pack_1000", "success_url": "nope", "cancel_url": "nope"},
        forbidden_role="member",
    ),
    Case("GET", "/v1/orgs/{org_id}/usage", bad_path={"org_id": TOO_LONG}),
    Case("GET", "/v1/orgs/{org_id}/wallet", bad_path={"org_id": TOO_LONG}),
    Case("GET", "/v1/orgs/{org_id}/wallet/transactions", bad_params={"platform": "myspace"}),
    Case(
        "PUT",
        "/v1/orgs/{org_id}/wallet/settings",
        ok_body={"low_threshold_minor": 5000},
        bad_body={"low_threshold_minor": -1},
        forbidden_role="member",
    ),
    Case(
        "POST",
        "/v1/orgs/{org_id}/wallet/top-ups",
        202,
        ok_body={"amount_minor": 5000, "method": "card"},
        bad_body={"amount_minor": 1, "method": "cash"},
        forbidden_role="member",
        headers={"Idempotency-Key": "matrix-topup"},
    ),
    Case(
        "POST",
        "/v1/orgs/{org_id}/wallet/refunds",
        201,
        ok_body={"amount_minor": 1000, "reason": "withdrawal"},
        bad_body={"amount_minor": 0, "reason": ""},
        forbidden_role="owner",
        ok_as="support",
        headers={"Idempotency-Key": "matrix-refund"},
        needs_wallet_money=True,
    ),
    Case(
        "POST",
        "/v1/orgs/{org_id}/wallet/bills/{platform}/{bill_id}/reversal",
        ok_body={"reason": "billed twice by the platform"},
        bad_body={"reason": ""},
        forbidden_role="owner",
        ok_as="support",
        needs_bill=True,
    ),
    Case("GET", "/v1/orgs/{org_id}/invoices", bad_params={"limit": 500}),
    Case(
        "GET",
        "/v1/orgs/{org_id}/discrepancies",
        bad_params={"status": "closed"},
        forbidden_role="owner",
        ok_as="support",
    ),
    Case(
        "GET", "/v1/orgs/{org_id}/invoices/{invoice_id}", bad_path={"invoice_id": "not-an-invoice"}, needs_invoice=True
    ),
    Case("GET", "/v1/orgs/{org_id}/invoices/{invoice_id}/pdf", bad_path={"invoice_id": "x"}, needs_invoice=True),
    Case("GET", "/v1/orgs/{org_id}/invoices/{invoice_id}/csv", bad_path={"invoice_id": "x"}, needs_invoice=True),
    Case(
        "POST",
        "/v1/orgs/{org_id}/invoices/{invoice_id}/credit-notes",
        201,
        ok_body={"reason": "Goodwill credit", "amount_minor": 100},
        bad_body={"reason": "Goodwill credit", "amount_minor": 100, "lines": [{"line": 0}]},
        forbidden_role="owner",
        ok_as="support",
        headers={"Idempotency-Key": "matrix-credit-note"},
        needs_invoice=True,
    ),
    Case("GET", "/v1/orgs/{org_id}/credit-notes", bad_params={"limit": 0}),
    Case("GET", STMT_SETTINGS, bad_path={"project_id": TOO_LONG}),
    Case("PUT", STMT_SETTINGS, ok_body={"markup_bps": 250}, bad_body={"markup_bps": -1}, forbidden_role="member"),
    Case("GET", "/v1/orgs/{org_id}/projects/{project_id}/statements", bad_params={"limit": 0}),
    *(
        Case("GET", f"/v1/orgs/{{org_id}}/projects/{{project_id}}/statements/{{statement_id}}{document}", bad_path=STMT)
        for document in ("", "/pdf", "/csv")
    ),
    Case(
        "GET",
        "/v1/orgs/{org_id}/credit-notes/{credit_note_id}/pdf",
        bad_path={"credit_note_id": "cn_x"},
        needs_credit_note=True,
    ),
    Case(
        "GET",
        "/v1/orgs/{org_id}/credit-notes/{credit_note_id}/csv",
        bad_path={"credit_note_id": "cn_x"},
        needs_credit_note=True,
    ),
]
IDS = [f"{c.method} {c.path}" for c in CASES]


@pytest.fixture
def world(api: ApiClient, stack: Any, table: Any) -> World:
    """A fresh world for tests that change it."""
    return build_world(api, stack, table)


@pytest.fixture(scope="module")
def refusal_world(api: ApiClient, stack: Any, table: Any) -> World:
    """One world for the refusal tests: each of them proves it changed nothing (so the outbox has done
    the tasks its member changes wrote first: done, they are marked sent)."""
    world = build_world(api, stack, table)
    stack.flush_outbox()  # the seat syncs done (Stripe updated), then the webhooks they caused delivered
    stack.stripe.wait_for_deliveries()
    stack.flush_outbox()
    return world


def _path(case: Case, world: World, org_id: str | None = None, *, invalid: bool = False) -> str:
    project = world.archived_project_id if case.path.endswith("/reactivate") else world.project_id
    values = {
        "org_id": org_id or world.org_id,
        "user_id": world.user("spare"),
        "project_id": project,
        "template_id": "social-content",
        "invoice_id": world.invoice_id or "inv_20261101T000000Z",
        "credit_note_id": world.credit_note_id or f"cn_{'0' * 24}",
        "platform": "meta",
        "bill_id": "matrix-bill",
        "statement_id": _current_statement(world.org_id) if "{statement_id}" in case.path else "",
    }
    return case.path.format(**(values | case.bad_path if invalid else values))


def _current_statement(org_id: str) -> str:
    """The statement id of the org's current period (the statements of any org name periods alike)."""
    from datetime import UTC, datetime

    from functions.api.container import services
    from shared.credits.periods import period_containing
    from shared.invoices.statements import statement_id_of

    return statement_id_of(period_containing(services().orgs._repo.require_org(org_id), datetime.now(UTC)))


def _snapshot(table: Any, world: World) -> tuple[Any, ...]:
    return (
        sorted(org_items(table, world.org_id), key=lambda i: i["SK"]),
        sorted(org_items(table, world.other_org_id), key=lambda i: i["SK"]),
        {role: user_org_count(table, user) for role, user in world.people.items()},
    )


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_success(api: ApiClient, world: World, case: Case, stack: Any, table: Any) -> None:
    if case.needs_invoice or case.needs_credit_note:
        world.invoice_id = _issue_current_invoice(world.org_id)
    if case.needs_credit_note:
        world.credit_note_id = _credit_note(world)
    if case.needs_bill:
        _record_bill(world)
    if case.needs_wallet_money:
        topup = api.call(
            "POST",
            f"/v1/orgs/{world.org_id}/wallet/top-ups",
            as_user=world.user("owner"),
            json={"amount_minor": 20_000, "method": "card"},
            headers={"Idempotency-Key": "fund"},
        )
        assert topup.status == 202, topup.body
        stack.stripe.wait_for_deliveries()
    user, groups = (new_user("staff"), ("support",)) if case.ok_as == "support" else (world.user(case.ok_as), ())
    org_id = None
    if case.on_free_org:
        user, org_id = world.user("stranger"), world.other_org_id
    reply = api.call(
        case.method, _path(case, world, org_id), as_user=user, groups=groups, json=case.ok_body, headers=case.headers
    )
    assert reply.status == case.ok_status, reply.body


@pytest.mark.parametrize("case", [c for c in CASES if c.no_input_reason is None], ids=lambda c: f"{c.method} {c.path}")
def test_invalid_input_is_422_and_writes_nothing(api: ApiClient, refusal_world: World, table: Any, case: Case) -> None:
    before = _snapshot(table, refusal_world)
    reply = api.call(
        case.method,
        _path(case, refusal_world, invalid=True),
        as_user=refusal_world.user("owner"),
        json=case.bad_body if case.bad_body is not None else case.ok_body,
        params=case.bad_params,
        headers=case.headers,
    )
    assert reply.status == 422, reply.body
    assert reply.code == case.bad_code
    assert reply.body["error"]["message"], "422 must say what was wrong"
    if case.bad_code == "validation_error":
        assert reply.body["error"]["details"][0]["loc"], "and where"
    assert _snapshot(table, refusal_world) == before


@pytest.mark.parametrize("case", [c for c in CASES if not c.public], ids=lambda c: f"{c.method} {c.path}")
@pytest.mark.parametrize("token", ["none", "garbage", "wrong-key", "expired", "wrong-audience", "wrong-issuer"])
def test_without_a_valid_token_is_401(api: ApiClient, refusal_world: World, table: Any, case: Case, token: str) -> None:
    user = refusal_world.user("owner")
    tokens = {
        "none": None,
        "garbage": "not.a.jwt",
        "wrong-key": devtokens.mint(user, key=devtokens.generate_key()),
        "expired": devtokens.mint(user, now=1_700_000_000),
        "wrong-audience": devtokens.mint(user, audience="someone-else"),
        "wrong-issuer": devtokens.mint(user, issuer="https://evil.example/"),
    }
    before = _snapshot(table, refusal_world)
    reply = api.call(
        case.method, _path(case, refusal_world), token=tokens[token], json=case.ok_body, headers=case.headers
    )
    assert reply.status == 401, reply.body
    assert _snapshot(table, refusal_world) == before


@pytest.mark.parametrize("case", [c for c in CASES if "{org_id}" in c.path], ids=lambda c: f"{c.method} {c.path}")
def test_another_orgs_id_is_404_and_writes_nothing(
    api: ApiClient, refusal_world: World, table: Any, case: Case
) -> None:
    before = _snapshot(table, refusal_world)
    # The stranger owns org B and is not a member of org A; an unknown org looks the same.
    for org_id in (refusal_world.org_id, "org_doesnotexist"):
        reply = api.call(
            case.method,
            _path(case, refusal_world, org_id),
            as_user=refusal_world.user("stranger"),
            json=case.ok_body,
            headers=case.headers,
        )
        assert reply.status == 404, reply.body
        assert reply.code == "org_not_found"
        assert reply.body["error"]["message"] == f"Org {org_id} was not found."
    assert _snapshot(table, refusal_world) == before


@pytest.mark.parametrize("case", [c for c in CASES if c.forbidden_role], ids=lambda c: f"{c.method} {c.path}")
def test_insufficient_role_is_403_and_writes_nothing(
    api: ApiClient, refusal_world: World, table: Any, case: Case
) -> None:
    assert case.forbidden_role is not None
    before = _snapshot(table, refusal_world)
    reply = api.call(
        case.method,
        _path(case, refusal_world),
        as_user=refusal_world.user(case.forbidden_role),
        json=case.ok_body,
        headers=case.headers,
    )
    assert reply.status == 403, reply.body
    assert reply.code == "forbidden"
    assert _snapshot(table, refusal_world) == before


def _credit_note(world: World) -> str:
    from functions.api.container import services
    from shared.auth import Caller
    from shared.invoices.credit_notes import CreditNoteRequest

    support = Caller("matrix-staff", None, frozenset({"support"}))
    request = CreditNoteRequest(reason="Matrix credit", amount_minor=50)
    note, _ = services().credit_notes.issue(support, world.org_id, world.invoice_id, request, "matrix-note")
    return note.credit_note_id


def _record_bill(world: World) -> None:
    from datetime import UTC, datetime

    from functions.internal.handler import services
    from shared.wallet.service import Bill

    today = datetime.now(UTC).date()
    bill = Bill(world.org_id, "meta", "matrix-bill", world.project_id, 1_000, "USD", today, None, "test")
    services().wallet.record_bill(bill)


def _issue_current_invoice(org_id: str) -> str:
    from datetime import UTC, datetime

    from functions.api.container import services
    from shared.credits.periods import period_containing

    invoices = services().invoices
    org = services().orgs._repo.get_org(org_id)
    assert org is not None
    period_key = period_containing(org, datetime.now(UTC)).key
    invoice_steps(org_id, period_key)
    invoice = invoices._repo.get(org_id, period_key)
    assert invoice is not None and invoice.status == "issued"
    return invoice.invoice_id


def test_every_route_is_covered(api: ApiClient) -> None:
    document = api.call("GET", "/openapi.json").body
    routes = {(method.upper(), path) for path, ops in document["paths"].items() for method in ops}
    covered = {(c.method, c.path) for c in CASES}
    assert routes == covered, f"routes without cases: {routes - covered}; cases without routes: {covered - routes}"
    for case in CASES:
        if "{org_id}" not in case.path:
            # Not org-scoped: the 404 cross-org case does not apply, by construction of the path.
            assert "/orgs/{" not in case.path

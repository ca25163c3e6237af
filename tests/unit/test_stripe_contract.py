"""The Stripe API contract (tests/contract): derived from the pinned SDKs, and the validator on top of it.

Pure: the derivation reads the installed `stripe` Python package and `node_modules/stripe` (installed by
`npm ci`, which `make unit` runs first); nothing here uses the network.
"""

from __future__ import annotations

import copy
import json
import re
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from stripe._encode import _api_encode

from tests.contract import derive
from tests.contract.validate import Contract, object_problems, request_problems
from tests.local.stripe_emulator.forms import parse_form

FIXTURES: dict[str, dict[str, Any]] = json.loads(
    (Path(__file__).parents[1] / "local" / "stripe_emulator" / "fixtures3.json").read_text()
)["resources"]
REFERENCE = Path("/work/shared/stripe/sdk-derived-spec-2026-10-28.endive.json")  # optional oracle, machine-local
VERSION = "2026-10-28.endive"


# ---- the derivation ---------------------------------------------------------------------------------------


def test_the_committed_contract_is_what_the_installed_packages_give() -> None:
    fresh = derive.dumps(derive.derive()).splitlines()
    committed = derive.CONTRACT_PATH.read_text().splitlines()
    changed = sorted({line.split('": ', 1)[0].strip() for line in set(fresh) ^ set(committed)})  # one per entry
    assert fresh == committed, f"stale contract, run `python -m tests.contract.derive`; changed: {changed[:20]}"


def test_the_contract_is_for_the_pinned_versions() -> None:
    info = Contract.default().document["info"]
    assert info["version"] == VERSION
    assert info["x-sdk"] == "stripe-python 16.1.0"
    assert info["x-required-from"] == "stripe-node 23.1.0"


def test_without_the_npm_types_the_derivation_fails_and_says_how_to_fix_it(tmp_path: Path) -> None:
    with pytest.raises(derive.ContractError, match=r"npm package 'stripe' not found .*npm ci"):
        derive.derive(tmp_path / "node_modules" / "stripe")


def test_npm_types_of_another_api_version_are_refused(tmp_path: Path) -> None:
    (tmp_path / "cjs").mkdir()
    (tmp_path / "cjs" / "apiVersion.js").write_text("exports.ApiVersion = '2026-11-18.endive';\n")
    with pytest.raises(derive.ContractError, match=f"is for API 2026-11-18.endive, the Python SDK for {VERSION}"):
        derive.derive(tmp_path)


def test_required_and_nullable_come_from_the_typescript_declarations() -> None:
    invoice = Contract.default().schemas["invoice"]
    # `account_name: string | null;` required and nullable; `auto_advance?: boolean;` optional, not nullable
    assert "account_name" in invoice["required"] and invoice["properties"]["account_name"]["nullable"]
    assert "auto_advance" not in invoice["required"] and "nullable" not in invoice["properties"]["auto_advance"]
    # a multi-line map type: `available: {` ... `} | null;`
    cash = Contract.default().schemas["cash_balance"]
    assert "available" in cash["required"] and cash["properties"]["available"]["nullable"]
    # a shared TypeScript type (`Address` in shared.d.ts) followed from the field that uses it
    assert "x-required-from" in Contract.default().schemas["invoice.CustomerAddress"]


def test_the_version_renamed_and_removed_what_our_code_must_not_use() -> None:
    schemas = Contract.default().schemas
    paths = Contract.default().document["paths"]
    pi_create = paths["/v1/payment_intents"]["post"]["requestBody"]["content"]["application/x-www-form-urlencoded"]
    assert "allowed_payment_method_types" in pi_create["schema"]["properties"]
    assert "payment_method_types" not in pi_create["schema"]["properties"]
    assert "subscription" not in schemas["invoice"]["properties"]
    assert "current_period_start" not in schemas["subscription"]["properties"]
    assert "current_period_start" in schemas["subscription_item"]["properties"]
    assert "/v1/invoices/upcoming" not in paths


@pytest.mark.skipif(not REFERENCE.exists(), reason="the reference derivation is only on the build machine")
def test_agrees_with_the_reference_derivation() -> None:
    reference = json.loads(REFERENCE.read_text())
    ours = Contract.default().document
    assert reference["info"]["version"] == ours["info"]["version"]
    operations = {(p, m) for p, methods in ours["paths"].items() for m in methods}
    expected = {(p, m) for p, methods in reference["paths"].items() for m in methods}
    assert operations - expected == {("/v1/quotes/{quote}/pdf", "get")}  # _request_stream, on files.stripe.com
    assert expected <= operations
    assert set(ours["components"]["schemas"]) == set(reference["components"]["schemas"])
    for name, schema in reference["components"]["schemas"].items():
        fields = {key.rstrip("_") for key in schema["properties"]}  # the reference kept Python's `in_`, `is_`
        assert set(ours["components"]["schemas"][name]["properties"]) == fields, name


# ---- Stripe's example objects -----------------------------------------------------------------------------

TRANSFER_DESTINATION_STUB = ("charges_enabled", "details_submitted", "email", "payouts_enabled", "type")
CUSTOMER_STUB = ("balance", "invoice_settings", "metadata")


def _missing(prefix: str, *fields: str) -> list[str]:
    return [f"{prefix}.{name}: required field missing" for name in fields]


# fixtures3.json is not all of this version: it predates fields 2026-10-28.endive requires, keeps two it removed
# (`invoice.subscription`, a plan's `aggregate_usage`), has three object types this SDK does not know, and
# expands some fields to `{"id": "obj_123", "object": ...}` stubs. Each deviation is listed, not tolerated.
FIXTURE_DEVIATIONS: dict[str, list[str]] = {
    "account": _missing("account.business_profile", "specified_commercial_transactions_act_url"),
    "payment_source": _missing("account.business_profile", "specified_commercial_transactions_act_url"),
    "account_session": _missing(
        "account_session.components",
        "payment_method_settings",
        "reporting_chart",
        "terminal_hardware_orders",
        "terminal_hardware_shop",
    ),
    "billing_portal.configuration": _missing("billing_portal.configuration.features", "subscription_pause")
    + _missing("billing_portal.configuration.features.subscription_cancel.cancellation_reason", "feedback_options"),
    "billing_portal.session": _missing("billing_portal.session.flow", "customer_update", "subscription_pause"),
    "charge": _missing("charge.payment_method_details.card", "electronic_commerce_indicator")
    + _missing("charge.transfer_data.destination", *TRANSFER_DESTINATION_STUB),
    "checkout.session": _missing("checkout.session", "allowed_payment_method_types"),
    "confirmation_token": _missing("confirmation_token", "metadata"),
    "customer_session": _missing("customer_session.components", "active_entitlements", "customer_portal"),
    "dispute": _missing("dispute", "intended_submission_method")
    + _missing("dispute.evidence_details", "submission_method"),
    "event": ["event.data.object.aggregate_usage: not in this version"],
    "invoice": ["invoice.subscription: not in this version"],
    "issuing.settlement": ["issuing.settlement: 'issuing.settlement' is not an object type of this version"],
    "payment_intent": _missing("payment_intent", "allowed_payment_method_types", "payment_record")
    + _missing("payment_intent.transfer_data.destination", *TRANSFER_DESTINATION_STUB),
    "payment_link": _missing(
        "payment_link.subscription_data.invoice_settings", "account_tax_ids", "custom_fields", "description", "footer"
    )
    + _missing("payment_link.transfer_data.destination", *TRANSFER_DESTINATION_STUB),
    "product": _missing("product", "tax_details"),
    "quote": _missing("quote.transfer_data.destination", *TRANSFER_DESTINATION_STUB),
    "setup_intent": _missing("setup_intent", "allowed_payment_method_types"),
    "subscription": _missing("subscription.cancellation_details", "feedback_option")
    + _missing("subscription.items.data[0]", "current_trial")
    + _missing("subscription.pending_update", "cancel_at_period_end")
    + _missing("subscription.transfer_data.destination", *TRANSFER_DESTINATION_STUB)
    + _missing("subscription.trial_settings.end_behavior", "billing_cycle_anchor"),
    "subscription_item": _missing("subscription_item", "current_trial"),
    "subscription_schedule": _missing("subscription_schedule", "pause_schedules")
    + _missing("subscription_schedule.default_settings.transfer_data.destination", *TRANSFER_DESTINATION_STUB)
    + _missing("subscription_schedule.phases[0].transfer_data.destination", *TRANSFER_DESTINATION_STUB),
    "tax.calculation_line_item": _missing("tax.calculation_line_item", "performance_location"),
    "tax_code": _missing("tax_code", "requirements"),
    "billing.credit_balance_summary": _missing("billing.credit_balance_summary.customer", *CUSTOMER_STUB),
    "billing.credit_grant": _missing("billing.credit_grant.customer", *CUSTOMER_STUB),
    "sigma.sigma_api_query": ["sigma.sigma_api_query: 'sigma.sigma_api_query' is not an object type of this version"],
    "radar.payment_evaluation": _missing(
        "radar.payment_evaluation.signals", "early_fraud_warning", "fraudulent_dispute"
    ),
    "reserve.hold": _missing("reserve.hold", "destination"),
    "reserve.plan": _missing("reserve.plan", "destination"),
    "reserve.release": _missing("reserve.release", "destination"),
    "terminal.refund": ["terminal.refund: 'terminal.refund' is not an object type of this version"],
}


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_stripe_example_objects(name: str) -> None:
    assert object_problems(FIXTURES[name]) == FIXTURE_DEVIATIONS.get(name, [])


def test_most_example_objects_are_of_this_version() -> None:
    assert set(FIXTURE_DEVIATIONS) <= set(FIXTURES)
    assert len(FIXTURES) - len(FIXTURE_DEVIATIONS) == 145  # of 176


# ---- objects ----------------------------------------------------------------------------------------------


def _invoice(**changes: Any) -> dict[str, Any]:
    """Stripe's example invoice, minus the `subscription` this version removed, with `changes`."""
    invoice = copy.deepcopy(FIXTURES["invoice"])
    del invoice["subscription"]
    invoice.update(changes)
    return invoice


def test_a_current_invoice_is_clean() -> None:
    assert object_problems(_invoice()) == []
    assert object_problems({"id": "in_1", "object": "invoice", "deleted": True}) == []


def test_fields_this_version_does_not_have() -> None:
    assert object_problems(_invoice(subscription="sub_1")) == ["invoice.subscription: not in this version"]
    line = {**_invoice()["lines"]["data"][0], "price": {"id": "price_1"}}
    lines = {**_invoice()["lines"], "data": [line]}
    assert object_problems(_invoice(lines=lines)) == ["invoice.lines.data[0].price: not in this version"]
    subscription = {**FIXTURES["subscription"], "current_period_start": 1}
    new = set(object_problems(subscription)) - set(object_problems(FIXTURES["subscription"]))
    assert new == {"subscription.current_period_start: not in this version"}


def test_types_nulls_and_required_fields() -> None:
    invoice = _invoice(amount_due="1000", attempted=None, currency=None)
    del invoice["amount_remaining"]
    assert object_problems(invoice) == [
        "invoice.amount_remaining: required field missing",
        "invoice.amount_due: expected integer, got '1000'",
        "invoice.attempted: null, but the field is not nullable",
        "invoice.currency: null, but the field is not nullable",
    ]


def test_enums_closed_and_open() -> None:
    event = {**FIXTURES["event"], "data": {"object": _invoice()}, "type": "invoice.exploded"}
    assert object_problems(event) == [f"event.type: 'invoice.exploded' is not one of {_first_event_types()}"]
    assert object_problems(_invoice(status="archived")) == []  # open: Stripe may add values within a version
    assert object_problems(_invoice(status="archived"), strict_enums=True) == [
        "invoice.status: 'archived' is not one of ['draft', 'open', 'paid', 'uncollectible', 'void']"
    ]


def _first_event_types() -> str:
    values = Contract.default().schemas["event"]["properties"]["type"]["enum"]
    return "[" + ", ".join(repr(v) for v in values[:12]) + ", ...]"


def test_expandable_fields_take_an_id_or_the_right_object() -> None:
    customer = copy.deepcopy(FIXTURES["customer"])
    assert object_problems(_invoice(customer=customer)) == []
    assert object_problems(_invoice(customer={**customer, "subscription": "sub_1"})) == [
        "invoice.customer.subscription: not in this version"
    ]
    assert object_problems(_invoice(customer=FIXTURES["price"])) == [
        "invoice.customer: object 'price' where customer is expected"
    ]


def test_events_lists_and_unknown_objects_are_followed() -> None:
    event = {**FIXTURES["event"], "type": "invoice.paid", "data": {"object": _invoice(subscription="sub_1")}}
    assert object_problems(event) == ["event.data.object.subscription: not in this version"]
    listing = {"object": "list", "data": [_invoice(), _invoice(subscription=None)], "has_more": False, "url": "/"}
    assert object_problems(listing) == ["list.data[1].subscription: not in this version"]
    assert object_problems({"object": "upcoming_invoice"}) == [
        "upcoming_invoice: 'upcoming_invoice' is not an object type of this version"
    ]


def test_the_emulators_guard_flags_what_the_contract_flags_each_object_checked_once() -> None:
    """The emulator's guard remembers each object's problems (by its repr): asked again, about the same object
    alone, in a list, in another list or at another index, or about one that differs in a value, a type or its
    keys' order, it flags exactly what `object_problems` does (the same problems, in the same order)."""
    from tests.local.stripe_emulator.contract import ContractGuard

    guard = ContractGuard(strict=True)
    bad = _invoice(subscription="sub_1", amount_due="1000", attempted=None)
    reordered = dict(reversed(list(bad.items())))
    floats = _invoice(amount_due=1000.0)
    bools = _invoice(amount_due=True)
    tupled = _invoice(account_tax_ids=("txi_1",))
    objects = [*FIXTURES.values(), _invoice(), bad, reordered, floats, bools, tupled]
    event = {**FIXTURES["event"], "type": "invoice.paid", "data": {"object": bad}}
    bodies = [
        *objects,
        event,
        {"object": "list", "data": [_invoice(), bad, event, reordered], "has_more": False, "url": "/"},
        {"object": "search_result", "data": [bad, _invoice(), "in_1", None], "has_more": False, "url": "/"},
        {"object": "list", "data": "in_1"},
        {"object": "upcoming_invoice"},
    ]
    for _ in range(2):  # the second time every object is remembered
        for body in [*bodies, *reversed(bodies)]:
            assert guard._object_problems(body) == object_problems(body), body.get("object")
    assert object_problems(bad) != object_problems(reordered) and object_problems(bools) != object_problems(floats)
    assert object_problems(tupled) == ["invoice.account_tax_ids: expected an array, got ('txi_1',)"]
    assert 0 < len(guard._checked) <= len(objects) + 2
    error = guard.response_error("GET", "/v1/invoices", {"object": "list", "data": [_invoice(), bad]})
    assert error is not None and "list.data[1].subscription: not in this version" in error.message
    assert guard.violations == [error.message]


@given(st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=20))
def test_any_field_the_schema_lacks_is_reported(key: str) -> None:
    assume(key not in Contract.default().schemas["invoice"]["properties"])
    assert object_problems(_invoice(**{key: None})) == [f"invoice.{key}: not in this version"]


# ---- requests ---------------------------------------------------------------------------------------------


def _form(params: Mapping[str, Any]) -> dict[str, Any]:
    """What the emulator receives: the SDK's form encoding, decoded (every leaf a string)."""
    return parse_form(urlencode(list(_api_encode(params))))


def test_renamed_and_removed_parameters() -> None:
    create = {"amount": 2000, "currency": "usd", "metadata": {"org": "o1"}}
    assert request_problems("POST", "/v1/payment_intents", _form({**create, "payment_method_types": ["card"]})) == [
        "payment_method_types: unknown parameter"
    ]
    allowed = {**create, "allowed_payment_method_types": ["card"], "expand": ["latest_charge"]}
    assert request_problems("POST", "/v1/payment_intents", _form(allowed)) == []
    item = {"customer": "cus_1", "quantity": 2}
    assert request_problems("POST", "/v1/invoiceitems", _form({**item, "price": "price_1"})) == [
        "price: unknown parameter"
    ]
    assert request_problems("POST", "/v1/invoiceitems", _form({**item, "pricing": {"price": "price_1"}})) == []


def test_nested_keys_enums_types_and_required_parameters() -> None:
    params = {
        "items": [{"price": "price_1", "colour": "red"}, {"price": "price_2", "quantity": "two"}],
        "proration_behavior": "sometimes",
        "cancel_at_period_end": "yes",
    }
    assert request_problems("POST", "/v1/subscriptions", _form(params)) == [
        "items[0][colour]: unknown parameter",
        "items[1][quantity]: expected integer, got 'two'",
        "proration_behavior: 'sometimes' is not one of ['always_invoice', 'create_prorations', 'none']",
        "cancel_at_period_end: expected boolean, got 'yes'",
    ]
    assert request_problems("POST", "/v1/payment_intents", {"currency": "usd"}) == [
        "amount: required parameter missing"
    ]
    assert request_problems("GET", "/v1/invoices", {"status": "bogus", "created": {"gte": "5"}, "limit": "3"}) == [
        "status: 'bogus' is not one of ['draft', 'open', 'paid', 'uncollectible', 'void']"
    ]
    assert request_problems("GET", "/v1/invoices", {"status": "bogus"}, strict_enums=False) == []


def test_empty_strings_only_where_the_sdk_allows_them() -> None:
    update = {"metadata": "", "default_tax_rates": "", "description": ""}
    assert request_problems("POST", "/v1/subscriptions/sub_1", update) == []  # all three emptyable here
    assert request_problems("POST", "/v1/customers", {"email": "", "metadata": {"k": ""}}) == [
        "email: empty string, but this parameter cannot be emptied"
    ]
    # `Literal['']|str`: any string, or "" to unset (not an enum of one empty value)
    named = {"amount": "100", "currency": "usd", "payment_method_data": {"type": "customer_balance"}}
    for name in ("Jenny Rosen", ""):
        named["payment_method_data"]["billing_details"] = {"name": name}  # type: ignore[index]
        assert request_problems("POST", "/v1/payment_intents", named) == []


def test_paths_are_matched_to_templates() -> None:
    contract = Contract.default()

    def template(method: str, path: str) -> str | None:
        route = contract.route(method, path)
        return route.template if route else None

    assert template("POST", "/v1/payment_intents/pi_123/confirm") == "/v1/payment_intents/{intent}/confirm"
    assert template("GET", "/v1/invoices/search") == "/v1/invoices/search"  # not an invoice called "search"
    assert template("GET", "/v1/payment_methods/pm_card_visa") == "/v1/payment_methods/{payment_method}"
    assert template("POST", "/v1/coupons/25OFF") == "/v1/coupons/{coupon}"  # coupons take custom ids
    assert template("GET", "/v1/country_specs/US") == "/v1/country_specs/{country}"
    assert template("GET", "/v1/invoices/upcoming") is None
    assert request_problems("GET", "/v1/invoices/upcoming", {"customer": "cus_1"}) == [
        f"GET /v1/invoices/upcoming: no such endpoint in API version {VERSION}"
    ]
    assert request_problems("PUT", "/v1/invoices/in_1", {}) == [
        f"PUT /v1/invoices/in_1: no such endpoint in API version {VERSION}"
    ]
    assert request_problems("POST", "/v1/invoices/create_preview", {"customer": "cus_1"}) == []


def test_a_path_finds_the_route_a_scan_of_every_route_finds() -> None:
    """`route` looks only at the routes of the request's method and number of segments: for every template's
    concrete paths (ids, custom ids, words, a segment more or less, a trailing `/`) it finds what the first
    matching route of the whole ordered list is (None alike)."""
    contract = Contract.default()

    def scanned(method: str, path: str) -> Any:
        for route in contract._routes:
            match = route.pattern.match(path)
            if route.method == method.upper() and match and contract._ids_plausible(route, match):
                return route
        return None

    tried = 0
    for template, methods in contract.document["paths"].items():
        for fill in ("cus_123", "in_1", "25OFF", "upcoming", "search", "US"):
            path = re.sub(r"\{[^}]+\}", fill, template)
            for concrete in (path, path + "/", path + "/x_1", path.rsplit("/", 1)[0], path.replace("/v1/", "/v1//")):
                for method in (*methods, "get", "delete", "put"):
                    assert contract.route(method, concrete) is scanned(method, concrete), (method, concrete)
                    tried += 1
    assert tried > 5000


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_integers_arrive_as_strings(amount: int) -> None:
    assert request_problems("POST", "/v1/payment_intents", {"amount": str(amount), "currency": "usd"}) == []


@given(st.text(min_size=1, max_size=8).filter(lambda text: re.fullmatch("-?[0-9]+", text) is None))
def test_anything_else_is_not_an_integer(junk: str) -> None:
    shown = repr(junk)  # a long value (non-BMP characters repr to 10 characters each) is cut at 60, with "..."
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    assert request_problems("POST", "/v1/payment_intents", {"amount": junk, "currency": "usd"}) == [
        f"amount: expected integer, got {shown}"
    ]


@given(st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=20))
def test_any_parameter_the_sdk_lacks_is_reported(key: str) -> None:
    body = _body("/v1/invoiceitems", "post")
    assume(key not in body["properties"] and key not in body["properties"]["pricing"]["properties"])
    assert request_problems("POST", "/v1/invoiceitems", {key: "x", "pricing": {key: "y"}}) == [
        f"{key}: unknown parameter",
        f"pricing[{key}]: unknown parameter",
    ]


# Any request the SDK's own types allow, form-encoded by the SDK and decoded by the emulator, is accepted.
_KEY = st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=8)


def _values(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    if "anyOf" in schema:
        return st.one_of([_values(branch) for branch in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "object" and "properties" in schema:
        properties = schema["properties"]
        required = {key: _values(properties[key]) for key in schema["required"]}
        optional = {key: _values(value) for key, value in properties.items() if key not in required}
        return st.fixed_dictionaries(required, optional=optional).filter(bool)  # {} is not sent at all
    if kind == "object":
        return st.dictionaries(
            _KEY, _values(schema.get("additionalProperties") or {"type": "string"}), min_size=1, max_size=2
        )
    if kind == "array":
        return st.lists(_values(schema["items"]), min_size=1, max_size=2)
    scalars: dict[str, st.SearchStrategy[Any]] = {
        "integer": st.integers(-(10**9), 10**9),
        "number": st.floats(-1e6, 1e6, allow_nan=False),
        "boolean": st.booleans(),
        "string": st.decimals(-1000, 1000, places=3).map(str)
        if schema.get("format") == "decimal"
        else st.text(string.printable, min_size=1, max_size=10),
    }
    return scalars[str(kind)]


def _body(path: str, method: str) -> dict[str, Any]:
    operation = Contract.default().document["paths"][path][method]
    if "requestBody" in operation:
        schema: dict[str, Any] = operation["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
        return schema
    return Contract._request_schema(operation)


@pytest.mark.parametrize(
    ("method", "template", "concrete"),
    [
        ("post", "/v1/payment_intents", "/v1/payment_intents"),
        ("post", "/v1/invoiceitems", "/v1/invoiceitems"),
        ("post", "/v1/subscriptions/{subscription_exposed_id}", "/v1/subscriptions/sub_1"),
        ("post", "/v1/invoices/create_preview", "/v1/invoices/create_preview"),
        ("get", "/v1/invoices", "/v1/invoices"),
    ],
)
def test_whatever_the_sdk_types_allow_is_accepted(method: str, template: str, concrete: str) -> None:
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(_values(_body(template, method)))
    def check(params: dict[str, Any]) -> None:
        assert request_problems(method.upper(), concrete, _form(params)) == []

    check()

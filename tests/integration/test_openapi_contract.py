"""The served OpenAPI document declares every status each operation can answer, with the error body
and the registry's codes for it; no-body responses declare none (issue 19). `make fuzz` holds the
running API to it; these hold the document to the rules."""

from __future__ import annotations

from typing import Any

import pytest

from functions.error_codes import codes_for
from tests.helpers import ApiClient

pytestmark = pytest.mark.integration
METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def document(api: ApiClient) -> dict[str, Any]:
    reply = api.call("GET", "/openapi.json")
    assert reply.status == 200
    return dict(reply.body)


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m, p, op) for p, item in document["paths"].items() for m, op in item.items() if m in METHODS]


def test_every_operation_declares_its_error_statuses(document: dict[str, Any]) -> None:
    for method, path, op in _operations(document):
        declared = set(op["responses"])
        expected = {"422", "429"} | ({"400", "415"} if "requestBody" in op else set())
        expected |= {"401"} if path != "/v1/plans" else set()
        expected |= {"403", "404"} if "{org_id}" in path else set()
        expected |= {"409"} if method != "get" else set()
        assert expected <= declared, (method, path, expected - declared)
        assert any(s.startswith("2") for s in declared), (method, path)


def test_error_responses_carry_the_error_body_with_the_registrys_codes(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas, "Powertools' own 422 shape is never answered"
    for method, path, op in _operations(document):
        for status, response in op["responses"].items():
            if status.startswith("2"):
                continue
            schema = response["content"]["application/json"]["schema"]
            refs = [s["$ref"] for s in schema.get("anyOf", [schema])]
            assert f"#/components/schemas/Error{status}" in refs, (method, path, status)
    for status in ("400", "401", "403", "404", "409", "415", "422", "429"):
        code = schemas[f"Error{status}"]["properties"]["error"]["properties"]["code"]
        enum = code["anyOf"][0]["enum"] if "anyOf" in code else code["enum"]
        assert enum == codes_for(int(status))
    assert schemas["Error415"]["properties"]["error"]["properties"]["code"]["enum"] == ["unsupported_media_type"]


def test_a_204_declares_no_body_and_public_routes_no_security(document: dict[str, Any]) -> None:
    delete = document["paths"]["/v1/orgs/{org_id}/members/{user_id}"]["delete"]["responses"]
    assert "204" in delete and "content" not in delete["204"]
    assert document["paths"]["/v1/plans"]["get"]["security"] == []


def test_stripe_routes_declare_402_and_503(document: dict[str, Any]) -> None:
    for path in ("/v1/orgs/{org_id}/wallet/top-ups", "/v1/orgs/{org_id}/subscription/checkout"):
        assert {"402", "503"} <= set(document["paths"][path]["post"]["responses"])

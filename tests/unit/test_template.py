"""template.yaml keeps the shape every function and table must have."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.local.cfn import load_template

REPO = Path(__file__).parents[2]
TEMPLATE = load_template()
RESOURCES: dict[str, dict[str, Any]] = TEMPLATE["Resources"]


def _of_type(type_: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in RESOURCES.items() if v["Type"] == type_}


def test_globals_arm64_python312_tracing_and_powertools() -> None:
    fn = TEMPLATE["Globals"]["Function"]
    assert (fn["Runtime"], fn["Architectures"], fn["Tracing"]) == ("python3.12", ["arm64"], "Active")
    env = fn["Environment"]["Variables"]
    assert env["POWERTOOLS_SERVICE_NAME"] and env["POWERTOOLS_LOG_LEVEL"] == {"Ref": "LogLevel"}


@pytest.mark.parametrize("name", sorted(_of_type("AWS::DynamoDB::Table")))
def test_tables_are_on_demand_with_point_in_time_recovery(name: str) -> None:
    props = RESOURCES[name]["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


@pytest.mark.parametrize("name", sorted(_of_type("AWS::Serverless::Function")))
def test_every_function_has_its_log_group_and_a_handler_that_exists(name: str) -> None:
    props = RESOURCES[name]["Properties"]
    group = props["LoggingConfig"]["LogGroup"]["Ref"]
    assert RESOURCES[group]["Type"] == "AWS::Logs::LogGroup"
    assert RESOURCES[group]["Properties"]["RetentionInDays"] > 0
    module = props["Handler"].rsplit(".", 1)[0]
    assert (REPO / f"{module}.py").is_file()
    assert props["Policies"], "least-privilege policies per function"


def test_http_api_has_a_jwt_authorizer_by_default() -> None:
    auth = _of_type("AWS::Serverless::HttpApi")["HttpApi"]["Properties"]["Auth"]
    jwt = auth["Authorizers"][auth["DefaultAuthorizer"]]["JwtConfiguration"]
    assert jwt["issuer"] == {"Ref": "JwtIssuer"} and jwt["audience"] == [{"Ref": "JwtAudience"}]

"""The local stack itself: tables from the template, env wiring, and the local HTTP API + JWT authorizer."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import jwt
import pytest
import requests

from tests.local import cfn, devtokens, dynamodb_local, echo_handler
from tests.local.api import LocalHttpApi, flatten_claim
from tests.local.cfn import FunctionSpec, Route
from tests.local.stack import MOTO_SERVICES, LocalStack, start_local_stack


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with start_local_stack() as s:
        yield s


# ------------------------------------------------------------------------------------ template / tables


def test_short_tags_become_long_form(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        "A: !Ref X\nB: !GetAtt Res.Arn\nC: !Sub ${AWS::StackName}-x\nD: !If [Cond, !Ref Y, !Join [',', [a, b]]]\n"
        "E: !Equals [!Select [0, [p]], p]\n"
    )
    assert cfn.load_template(path) == {
        "A": {"Ref": "X"},
        "B": {"Fn::GetAtt": ["Res", "Arn"]},
        "C": {"Fn::Sub": "${AWS::StackName}-x"},
        "D": {"Fn::If": ["Cond", {"Ref": "Y"}, {"Fn::Join": [",", ["a", "b"]]}]},
        "E": {"Fn::Equals": [{"Fn::Select": [0, ["p"]]}, "p"]},
    }


def test_tables_match_the_template(stack: LocalStack) -> None:
    ddb = stack.client("dynamodb")
    tables = {k: v["Properties"] for k, v in stack.template["Resources"].items() if v["Type"] == "AWS::DynamoDB::Table"}
    assert tables, "the template defines no table"
    for name, props in tables.items():
        desc = ddb.describe_table(TableName=name)["Table"]
        assert desc["KeySchema"] == props["KeySchema"]
        assert sorted(desc["AttributeDefinitions"], key=str) == sorted(props["AttributeDefinitions"], key=str)
        assert desc["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        got = {g["IndexName"]: (g["KeySchema"], g["Projection"]) for g in desc.get("GlobalSecondaryIndexes", [])}
        want = {g["IndexName"]: (g["KeySchema"], g["Projection"]) for g in props.get("GlobalSecondaryIndexes", [])}
        assert got == want
        ttl = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        if "TimeToLiveSpecification" in props:
            assert ttl["TimeToLiveStatus"] == "ENABLED"
            assert ttl["AttributeName"] == props["TimeToLiveSpecification"]["AttributeName"]


def test_tables_come_only_from_the_template_passed(stack: LocalStack) -> None:
    ddb = stack.client("dynamodb")
    before = set(ddb.list_tables()["TableNames"])
    assert cfn.create_tables(ddb, {"Resources": {}}) == []  # nothing hard-coded anywhere
    assert set(ddb.list_tables()["TableNames"]) == before

    template = copy.deepcopy(stack.template)
    template["Resources"]["ExtraTable"] = {
        "Type": "AWS::DynamoDB::Table",
        "Properties": {
            "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
        },
    }
    names = cfn.create_tables(ddb, template)
    assert "ExtraTable" in names and before <= set(names)
    assert cfn.create_tables(ddb, template) == names  # idempotent
    assert ddb.describe_table(TableName="ExtraTable")["Table"]["KeySchema"] == [
        {"AttributeName": "id", "KeyType": "HASH"}
    ]


def test_function_specs_from_the_template(stack: LocalStack) -> None:
    api = stack.functions["ApiFunction"]
    assert api.handler == "functions/api/handler.lambda_handler"
    assert api.environment["TABLE_NAME"] == "BillingTable"  # !Ref BillingTable
    assert api.environment["POWERTOOLS_LOG_LEVEL"] == "INFO"  # !Ref LogLevel -> its Default
    assert Route("ANY", "/v1/{proxy+}", True) in api.routes
    assert Route("GET", "/v1/plans", False) in api.routes
    layer = stack.resource_names["DependenciesLayer"]
    assert layer == "arn:aws:lambda:us-east-1:123456789012:layer:layers-billing-local-dependencies:1"
    assert all(spec.layers == (layer,) for spec in stack.functions.values())  # Globals: Layers


def test_env_points_boto3_at_the_local_stack(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in stack.env.items():
        monkeypatch.setenv(key, value)
    clients = {"s3": "S3", "events": "EVENTBRIDGE", "sns": "SNS", "secretsmanager": "SECRETS_MANAGER"}
    clients |= {"stepfunctions": "SFN", "scheduler": "SCHEDULER"}
    assert set(clients.values()) == set(MOTO_SERVICES)
    for service, suffix in clients.items():
        client: Any = boto3.client(service)  # type: ignore[call-overload]
        assert client.meta.endpoint_url == stack.env[f"AWS_ENDPOINT_URL_{suffix}"] == stack.moto_endpoint
    assert boto3.client("dynamodb").meta.endpoint_url == stack.dynamodb_endpoint
    names = stack.resource_names
    secret = boto3.client("secretsmanager").get_secret_value(SecretId=names["StripeSecret"])
    assert json.loads(secret["SecretString"])["api_key"] == "sk_test_local"
    assert names["DocumentsBucket"] in [b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]]
    assert boto3.client("events").describe_event_bus(Name=names["EventBus"])["Name"] == names["EventBus"]
    boto3.client("sns").get_topic_attributes(TopicArn=names["NotificationsTopic"])
    assert "TABLE_NAME" in stack.env


def _fake_java(path: Path, version: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho 'openjdk version \"{version}\" 2025-04-15' >&2\n")
    path.chmod(0o755)
    return path


def test_finds_an_apt_installed_java_the_path_lacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    jvm = tmp_path / "jvm"
    _fake_java(jvm / "java-11-openjdk-arm64" / "bin" / "java", "11.0.2")
    java17 = _fake_java(jvm / "java-17-openjdk-arm64" / "bin" / "java", "17.0.15")
    old = _fake_java(tmp_path / "path" / "java", "1.8.0_392")
    monkeypatch.setattr(dynamodb_local, "JVM_DIRS", jvm)
    monkeypatch.setenv("PATH", str(old.parent))  # only a Java 8 on the PATH
    monkeypatch.delenv("JAVA_HOME", raising=False)
    java, tried = dynamodb_local.find_java()
    assert java == str(java17)
    assert tried == [f"{old} (version 8)"]
    home17 = _fake_java(tmp_path / "home" / "bin" / "java", "17.0.1")
    monkeypatch.setenv("JAVA_HOME", str(home17.parents[1]))
    assert dynamodb_local.find_java()[0] == str(home17)  # JAVA_HOME first


def test_without_java_17_it_fails_saying_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No moto fallback for DynamoDB: moto's server is not exact under concurrent transactions."""
    monkeypatch.setattr(dynamodb_local, "JVM_DIRS", tmp_path / "no-jvm")
    monkeypatch.setenv("PATH", str(_fake_java(tmp_path / "path" / "java", "11.0.2").parent))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(RuntimeError, match="openjdk-17-jdk-headless") as raised:
        dynamodb_local.start_dynamodb_local()
    assert "version 11" in str(raised.value) and "do not fall back to moto" in str(raised.value)
    assert dynamodb_local.main(["--find-java"]) == 1


def test_without_a_working_javac_dynamodb_local_runs_without_its_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    java17 = _fake_java(tmp_path / "jre" / "bin" / "java", "17.0.15")
    monkeypatch.setenv("JAVA_HOME", str(java17.parents[1]))
    assert dynamodb_local.main(["--find-javac"]) == 1  # a JRE only: `make` installs a JDK
    assert dynamodb_local.parse_cache_agent(str(java17)) is None
    javac = java17.with_name("javac")
    javac.write_text("#!/bin/sh\necho 'package jdk.internal.org.objectweb.asm does not exist' >&2\nexit 1\n")
    javac.chmod(0o755)
    assert dynamodb_local.main(["--find-javac"]) == 0
    assert capsys.readouterr().out.strip() == str(javac)
    assert dynamodb_local.parse_cache_agent(str(java17)) is None  # it does not compile there: as shipped
    monkeypatch.setenv(dynamodb_local.AGENT_ENV, "0")
    monkeypatch.delenv("JAVA_HOME")
    assert dynamodb_local.parse_cache_agent(str(dynamodb_local.find_java()[0])) is None  # turned off


def test_readiness_wait_names_what_it_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = f"http://127.0.0.1:{dynamodb_local.free_port()}"  # nothing listens there
    started = time.monotonic()
    with pytest.raises(RuntimeError) as raised:
        dynamodb_local._wait_ready(endpoint, None, what="DynamoDB Local (test)", timeout_s=1.0)
    assert time.monotonic() - started < 5
    message = str(raised.value)
    assert endpoint in message and "DynamoDB Local (test)" in message and str(dynamodb_local.LOG_PATH) in message
    assert "last error: EndpointConnectionError" in message and dynamodb_local.READY_TIMEOUT_ENV in message
    monkeypatch.setenv(dynamodb_local.READY_TIMEOUT_ENV, "240")
    assert dynamodb_local.ready_timeout_s() == 240.0
    monkeypatch.delenv(dynamodb_local.READY_TIMEOUT_ENV)
    assert dynamodb_local.ready_timeout_s() == dynamodb_local.DEFAULT_READY_TIMEOUT_S >= 120


def test_readiness_wait_backs_off_until_the_engine_answers(stack: LocalStack) -> None:
    assert dynamodb_local._wait_ready(stack.dynamodb_endpoint, None, timeout_s=30) < 5


# ------------------------------------------------------------------------------------------ dev tokens


def test_dev_key_is_persisted(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    first = devtokens.load_or_create_key(path)
    assert devtokens.load_or_create_key(path).private_numbers() == first.private_numbers()


def test_service_token() -> None:
    claims = jwt.decode(
        devtokens.service_token("scheduler"),
        devtokens.public_key(),
        algorithms=["RS256"],
        audience=devtokens.AUDIENCE,
    )
    assert claims["sub"] == "service:scheduler" and claims[devtokens.GROUPS_CLAIM] == ["service"]
    assert jwt.get_unverified_header(devtokens.service_token("x"))["kid"] == "local-dev"


def test_flatten_claim() -> None:
    assert flatten_claim(["a", "b"]) == "[a b]"
    assert flatten_claim(1700000000) == "1700000000"
    assert flatten_claim(True) == "true"


# ------------------------------------------------------------------------------------------- local API

KEY = devtokens.generate_key()
ECHO = "tests/local/echo_handler.lambda_handler"
MEMBER = "/v1/orgs/{org_id}/members/{user_id}"


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    spec = FunctionSpec(
        "EchoFunction",
        ECHO,
        {},
        (
            Route("ANY", "/v1/{proxy+}", True),
            Route("GET", "/v1/plans", False),
            Route("GET", MEMBER, True),
            Route("GET", "/public/{proxy+}", False),
        ),
    )
    api = LocalHttpApi({"EchoFunction": spec}, devtokens.ISSUER, devtokens.AUDIENCE, KEY.public_key())
    url = api.start()
    yield url
    api.stop()


def token(**kwargs: Any) -> str:
    return devtokens.mint("user_1", key=kwargs.pop("key", KEY), **kwargs)


def test_valid_token_reaches_handler_with_payload_v2_event(base_url: str) -> None:
    response = requests.get(
        f"{base_url}/v1/orgs/o%201?a=1&a=2&b=",
        headers={"Authorization": f"Bearer {token(groups=['support', 'admin'], email='u@x.io')}", "X-Thing": "v"},
        cookies={"c1": "v1"},
        timeout=5,
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-function"] == "EchoFunction"
    assert response.headers["set-cookie"] == "a=1; Path=/, b=2"  # two Set-Cookie headers, joined by requests
    event = response.json()
    assert event["version"] == "2.0"
    assert event["routeKey"] == event["requestContext"]["routeKey"] == "ANY /v1/{proxy+}"
    assert event["rawPath"] == "/v1/orgs/o%201"
    assert event["rawQueryString"] == "a=1&a=2&b="
    assert event["queryStringParameters"] == {"a": "1,2", "b": ""}
    assert event["pathParameters"] == {"proxy": "orgs/o 1"}
    assert event["cookies"] == ["c1=v1"]
    assert event["headers"]["x-thing"] == "v" and "cookie" not in event["headers"]
    assert "body" not in event and event["isBase64Encoded"] is False
    ctx = event["requestContext"]
    assert ctx["http"]["method"] == "GET" and ctx["http"]["path"] == "/v1/orgs/o%201"
    assert ctx["stage"] == "$default" and isinstance(ctx["timeEpoch"], int)
    claims = ctx["authorizer"]["jwt"]["claims"]
    assert claims["sub"] == "user_1" and claims["email"] == "u@x.io"
    assert claims["cognito:groups"] == "[support admin]"
    assert claims["exp"].isdigit()
    assert ctx["authorizer"]["jwt"]["scopes"] is None


def test_bare_token_and_bodies(base_url: str) -> None:
    text = requests.post(f"{base_url}/v1/x", data="héllo".encode(), headers={"Authorization": token()}, timeout=5)
    assert text.status_code == 200 and text.json()["body"] == "héllo"
    assert text.json()["isBase64Encoded"] is False
    binary = requests.post(f"{base_url}/v1/x", data=b"\xff\x00", headers={"Authorization": token()}, timeout=5)
    assert binary.json()["isBase64Encoded"] is True and binary.json()["body"] == "/wA="


# Tokens are made when the test runs, not at collection: a full run outlasts the "future" token's 10 minutes.
@pytest.mark.parametrize(
    "authorization",
    [
        lambda: None,
        lambda: "Bearer not-a-jwt",
        lambda: f"Bearer {token(key=devtokens.generate_key())}",  # signed by another key
        lambda: f"Bearer {token(issuer='https://evil.example/')}",
        lambda: f"Bearer {token(audience='someone-else')}",
        lambda: f"Bearer {token(now=int(time.time()) - 7200, ttl_seconds=3600)}",  # expired
        lambda: f"Bearer {token(now=int(time.time()) + 600)}",  # not yet valid
    ],
    ids=["missing", "garbage", "wrong-key", "wrong-issuer", "wrong-audience", "expired", "future"],
)
def test_rejected_tokens_never_reach_the_handler(base_url: str, authorization: Callable[[], str | None]) -> None:
    calls = len(echo_handler.invocations)
    header = authorization()
    headers = {"Authorization": header} if header else {}
    response = requests.get(f"{base_url}/v1/orgs", headers=headers, timeout=5)
    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized"}
    assert "www-authenticate" in response.headers
    assert len(echo_handler.invocations) == calls


def test_public_route_needs_no_token(base_url: str) -> None:
    event = requests.get(f"{base_url}/v1/plans", timeout=5).json()
    assert event["routeKey"] == "GET /v1/plans"
    assert "authorizer" not in event["requestContext"] and "pathParameters" not in event


def test_unknown_route_is_404(base_url: str) -> None:
    for method, path in [("GET", "/nope"), ("POST", "/public/x"), ("GET", "/v1")]:
        response = requests.request(method, f"{base_url}{path}", timeout=5)
        assert response.status_code == 404 and response.json() == {"message": "Not Found"}


def test_route_precedence(base_url: str) -> None:
    auth = {"Authorization": f"Bearer {token()}"}
    # Exact path beats the greedy route; method-specific beats ANY only where the path matches.
    assert requests.post(f"{base_url}/v1/plans", timeout=5).status_code == 401  # -> ANY /v1/{proxy+}
    event = requests.get(f"{base_url}/v1/orgs/o1/members/u1", headers=auth, timeout=5).json()
    assert event["routeKey"] == f"GET {MEMBER}"
    assert event["pathParameters"] == {"org_id": "o1", "user_id": "u1"}
    event = requests.delete(f"{base_url}/v1/orgs/o1/members/u1", headers=auth, timeout=5).json()
    assert event["routeKey"] == "ANY /v1/{proxy+}"
    assert requests.get(f"{base_url}/public/a/b", timeout=5).json()["pathParameters"] == {"proxy": "a/b"}


def test_handler_results(base_url: str) -> None:
    auth = {"Authorization": f"Bearer {token()}"}
    plain = requests.get(f"{base_url}/v1/plain", headers=auth, timeout=5)
    assert plain.status_code == 200 and plain.json() == {"echo": True}
    assert plain.headers["content-type"] == "application/json"
    failed = requests.get(f"{base_url}/v1/raise", headers=auth, timeout=5)
    assert failed.status_code == 500 and failed.json() == {"message": "Internal Server Error"}

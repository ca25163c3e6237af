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


# Who may read the Stripe secret: exactly the functions whose code calls Stripe.
STRIPE_CALLERS = {"ApiFunction", "StripeWebhookFunction", "WalletBillsFunction", "SpendIngestFunction"}
STRIPE_CALLERS |= {"InvoiceTaskFunction", "CreditSweeperFunction"}  # the sweeper resumes interrupted auto-top-ups
STRIPE_CALLERS |= {"OutboxPublisherFunction"}  # the outbox's seat sync tasks
STRIPE_CALLERS |= {"ReconcilerFunction"}  # the daily reconciliation reads Stripe (and replays lost webhooks)
API_GATEWAY_TIMEOUT_S = 30


def _reads_stripe_secret(props: dict[str, Any]) -> bool:
    return any(isinstance(p, dict) and "AWSSecretsManagerGetSecretValuePolicy" in p for p in props["Policies"])


def test_only_the_functions_that_call_stripe_may_read_its_secret() -> None:
    functions = _of_type("AWS::Serverless::Function")
    readers = {name for name, fn in functions.items() if _reads_stripe_secret(fn["Properties"])}
    told = {
        name
        for name, fn in functions.items()
        if "STRIPE_SECRET_ARN" in fn["Properties"].get("Environment", {}).get("Variables", {})
    }
    assert readers == told == STRIPE_CALLERS
    assert "STRIPE_SECRET_ARN" not in TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]


@pytest.mark.parametrize("name", sorted(STRIPE_CALLERS))
def test_stripe_callers_outlive_their_slowest_stripe_call(name: str) -> None:
    from shared.stripe_gateway import worst_case_call_seconds

    props = RESOURCES[name]["Properties"]
    timeout = props.get("Timeout", TEMPLATE["Globals"]["Function"]["Timeout"])
    assert timeout >= worst_case_call_seconds() + 3, "room to answer after the slowest Stripe call"
    if any(e["Type"] == "HttpApi" for e in props.get("Events", {}).values()):
        assert timeout < API_GATEWAY_TIMEOUT_S, "API Gateway gives up at 30 s: answer before it does"


def test_the_reserved_concurrency_budget_leaves_the_account_its_unreserved_100() -> None:
    reserved = {
        name: fn["Properties"]["ReservedConcurrentExecutions"]
        for name, fn in _of_type("AWS::Serverless::Function").items()
    }
    assert all(n >= 1 for n in reserved.values())
    assert sum(reserved.values()) <= 1000 - 100
    # A Stripe outage fills the Stripe callers' budget only: credit reservations have their own.
    assert "InternalApiFunction" not in STRIPE_CALLERS
    assert reserved["InternalApiFunction"] >= max(reserved[n] for n in STRIPE_CALLERS)


@pytest.mark.parametrize(
    ("method", "path", "function"),
    [
        ("POST", "/v1/internal/wallet/bills", "WalletBillsFunction"),  # the one route that may call Stripe
        ("GET", "/v1/internal/wallet/bills", "InternalApiFunction"),  # no such route there: its 404
        ("POST", "/v1/internal/wallet/holds", "InternalApiFunction"),
        ("POST", "/v1/internal/wallet/holds/h1/release", "InternalApiFunction"),
        ("POST", "/v1/internal/credits/reservations", "InternalApiFunction"),
        ("POST", "/webhooks/stripe", "StripeWebhookFunction"),
        ("GET", "/v1/plans", "ApiFunction"),
    ],
)
def test_routes_reach_the_function_api_gateway_would_pick(method: str, path: str, function: str) -> None:
    from tests.local.api import LocalHttpApi
    from tests.local.cfn import function_specs, local_resource_names

    api = LocalHttpApi(function_specs(TEMPLATE, local_resource_names(TEMPLATE)))
    found = api.match(method, path)
    assert found is not None and found[0].spec.logical_id == function


def test_cors_preflights_reach_api_gateway_without_a_token() -> None:
    # A browser's OPTIONS carries no JWT: on the authorized ANY route it would get 401 and block the call.
    api = RESOURCES["ApiFunction"]["Properties"]["Events"]
    preflight = [e["Properties"] for e in api.values() if e["Properties"].get("Method") == "OPTIONS"]
    assert preflight == [
        {"ApiId": {"Ref": "HttpApi"}, "Path": "/v1/{proxy+}", "Method": "OPTIONS", "Auth": {"Authorizer": "NONE"}}
    ]
    assert "CorsConfiguration" in RESOURCES["HttpApi"]["Properties"]


def test_the_invoice_bucket_refuses_deletes_of_documents_and_nothing_else() -> None:
    # Denying bucket-level actions (e.g. s3:PutLifecycleConfiguration) to "*" would fail later deploys.
    statements = RESOURCES["DocumentsBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    kept = next(s for s in statements if s["Sid"] == "InvoicesAreKept")
    assert kept["Action"] == ["s3:DeleteObject", "s3:DeleteObjectVersion"]
    assert kept["Resource"] == {"Fn::Sub": "${DocumentsBucket.Arn}/*"}


def _granted(props: dict[str, Any], on: str | None = None) -> set[str]:
    """The actions a function's inline statements and managed policies (of this template) grant
    (on resource `on` only, when given)."""
    actions: set[str] = set()
    for policy in props["Policies"]:
        statements = policy.get("Statement", []) if isinstance(policy, dict) else []
        if isinstance(policy, dict) and "Ref" in policy:
            statements = RESOURCES[policy["Ref"]]["Properties"]["PolicyDocument"]["Statement"]
        for statement in statements:
            if on is not None and on not in str(statement.get("Resource")):
                continue
            action = statement.get("Action", [])
            actions |= set(action if isinstance(action, list) else [action])
    return actions


def test_only_member_removal_may_delete_from_the_billing_table_and_the_invoice_task_only_writes_documents() -> None:
    functions = _of_type("AWS::Serverless::Function")
    deleters = {
        name for name, fn in functions.items() if "dynamodb:DeleteItem" in _granted(fn["Properties"], "'BillingTable'")
    }
    assert deleters == {"ApiFunction"}  # DELETE /v1/orgs/{org_id}/members/{user_id}; ledgers only append
    s3 = {a for a in _granted(functions["InvoiceTaskFunction"]["Properties"]) if a.startswith("s3:")}
    assert s3 == {"s3:PutObject"}


def test_cloudwatch_may_use_the_operations_key_only_for_this_account() -> None:
    statements = RESOURCES["OperationsKey"]["Properties"]["KeyPolicy"]["Statement"]
    [cloudwatch] = [s for s in statements if s["Principal"].get("Service") == "cloudwatch.amazonaws.com"]
    assert cloudwatch["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}


def test_every_new_dead_letter_notifies_even_while_others_wait() -> None:
    alarms = _of_type("AWS::CloudWatch::Alarm")
    on_queue = {
        a["Properties"]["MetricName"]
        for a in alarms.values()
        if a["Properties"].get("Namespace") == "AWS/SQS"
        and a["Properties"]["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["FailedInvocationsQueue", "QueueName"]}
    }
    assert on_queue == {"ApproximateNumberOfMessagesVisible", "NumberOfMessagesSent"}


def test_the_outbox_publisher_reads_only_new_outbox_items_and_retries_until_sent() -> None:
    from tests.local.streams import matches, stream_sources

    [source] = stream_sources(TEMPLATE)
    assert (source.function, source.table) == ("OutboxPublisherFunction", "BillingTable")
    assert RESOURCES["BillingTable"]["Properties"]["StreamSpecification"]["StreamViewType"] == "NEW_IMAGE"

    def record(event: str, sk: str) -> dict[str, Any]:
        return {"eventName": event, "dynamodb": {"NewImage": {"PK": {"S": "ORG#o"}, "SK": {"S": sk}}}}

    def wanted(r: dict[str, Any]) -> bool:
        return any(matches(p, r) for p in source.patterns)

    assert wanted(record("INSERT", "OUTBOX#abc"))
    assert not wanted(record("MODIFY", "OUTBOX#abc"))  # a re-put of the same message is not sent again
    assert not wanted(record("INSERT", "WALLET"))
    props = RESOURCES["OutboxPublisherFunction"]["Properties"]["Events"]["Outbox"]["Properties"]
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["MaximumRetryAttempts"] == -1 and props["MaximumRecordAgeInSeconds"] == 86400
    assert props["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["FailedInvocationsQueue", "Arn"]}

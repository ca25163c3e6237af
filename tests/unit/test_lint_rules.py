"""`make lint` runs the real SAM transform, then cfn-lint with our rules (tests/lint/rules/) on what it
produces. Each rule is shown passing on template.yaml as transformed and failing on a copy broken the
way it guards against."""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint
from cfnlint.rules import RulesCollection

REPO = Path(__file__).parents[2]
RULES_DIR = REPO / "tests" / "lint" / "rules"
SAM_PYTHON = REPO / ".venv-sam" / "bin" / "python"  # samtranslator pins another pydantic (see transform.py)
Template = dict[str, Any]


def _transform(template: Path, out: Path) -> subprocess.CompletedProcess[str]:
    assert SAM_PYTHON.exists(), f"{SAM_PYTHON} is missing: `make test` bootstraps it (make .venv-sam/bin/sam)"
    return subprocess.run(
        [str(SAM_PYTHON), "-m", "tests.lint.transform", str(template), "-o", str(out), "--base", str(REPO)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def transformed(tmp_path_factory: pytest.TempPathFactory) -> Template:
    out = tmp_path_factory.mktemp("cfn") / "template.json"
    done = _transform(REPO / "template.yaml", out)
    assert done.returncode == 0, done.stderr
    result: Template = json.loads(out.read_text())
    return result


def _our_findings(template: Template) -> list[tuple[str, str]]:
    rules = RulesCollection()
    rules.create_from_directory(str(RULES_DIR))
    matches = lint(json.dumps(template), rules=rules, regions=["us-east-1"])
    return [(m.rule.id, m.message) for m in matches if m.rule.id.startswith("E91")]


def _broken(transformed: Template, change: Callable[[dict[str, Any]], None]) -> Template:
    template = copy.deepcopy(transformed)
    change(template["Resources"])
    return template


def _fires(template: Template, rule: str, *words: str) -> None:
    found = [message for rule_id, message in _our_findings(template) if rule_id == rule]
    assert any(all(w in message for w in words) for message in found), (rule, words, found)


# ------------------------------------------------------------------------------ the transform itself


def test_the_transformed_template_passes_every_rule(transformed: Template) -> None:
    assert _our_findings(transformed) == []
    types = {r["Type"] for r in transformed["Resources"].values()}
    assert "AWS::Serverless::Function" not in types and "AWS::Lambda::Function" in types  # really transformed


def test_the_transform_refuses_what_a_deploy_refuses(tmp_path: Path) -> None:
    # The defect this lint exists for: an AWS_IAM route on an HTTP API without the IAM authorizer passed
    # cfn-lint and `sam validate --lint`, and failed at deploy.
    text = (REPO / "template.yaml").read_text()
    line = next(line for line in text.splitlines() if "EnableIamAuthorizer: true" in line)
    broken = tmp_path / "template.yaml"
    broken.write_text(text.replace(line + "\n", ""))
    done = _transform(broken, tmp_path / "out.json")
    assert done.returncode == 1
    assert "AWS_IAM" in done.stderr and "a deploy would fail" in done.stderr


# ------------------------------------------------------------------------------------------ E9101


def test_e9101_a_function_without_reserved_concurrency(transformed: Template) -> None:
    def change(r: dict[str, Any]) -> None:
        del r["InternalApiFunction"]["Properties"]["ReservedConcurrentExecutions"]

    _fires(_broken(transformed, change), "E9101", "InternalApiFunction", "ReservedConcurrentExecutions")


def test_e9101_a_function_without_an_errors_alarm(transformed: Template) -> None:
    def change(r: dict[str, Any]) -> None:
        del r["ApiErrorsAlarm"]

    _fires(_broken(transformed, change), "E9101", "ApiFunction", "Errors")


def test_e9101_a_function_without_its_log_group_or_retention(transformed: Template) -> None:
    def no_group(r: dict[str, Any]) -> None:
        del r["CreditSweeperFunction"]["Properties"]["LoggingConfig"]

    def forever(r: dict[str, Any]) -> None:
        del r["InvoiceTaskFunctionLogGroup"]["Properties"]["RetentionInDays"]

    def shared(r: dict[str, Any]) -> None:
        r["WalletBillsFunction"]["Properties"]["LoggingConfig"]["LogGroup"] = {"Ref": "InternalApiFunctionLogGroup"}

    _fires(_broken(transformed, no_group), "E9101", "CreditSweeperFunction", "LogGroup")
    _fires(_broken(transformed, forever), "E9101", "InvoiceTaskFunctionLogGroup", "forever")
    _fires(_broken(transformed, shared), "E9101", "InternalApiFunctionLogGroup", "shared")


def test_e9101_an_asynchronously_invoked_function_without_a_dlq(transformed: Template) -> None:
    def change(r: dict[str, Any]) -> None:
        del r["SpendIngestFunction"]["Properties"]["DeadLetterConfig"]

    _fires(_broken(transformed, change), "E9101", "SpendIngestFunction", "asynchronously")


# ------------------------------------------------------------------------------------------ E9102


def test_e9102_a_rule_dlq_without_a_queue_policy(transformed: Template) -> None:
    def change(r: dict[str, Any]) -> None:
        del r["FailedInvocationsQueuePolicy"]

    _fires(_broken(transformed, change), "E9102", "SpendIngestFunctionBillRecorded", "events.amazonaws.com")


def test_e9102_a_schedule_dlq_its_role_cannot_send_to(transformed: Template) -> None:
    def change(r: dict[str, Any]) -> None:
        role = r["InvoiceDispatcherFunctionDailyRole"]["Properties"]
        role["Policies"] = [p for p in role["Policies"] if "sqs:SendMessage" not in json.dumps(p)]

    _fires(_broken(transformed, change), "E9102", "InvoiceDispatcherFunctionDaily", "role of the schedule")


# ------------------------------------------------------------------------------------------ E9103


def test_e9103_an_alarm_without_actions(transformed: Template) -> None:
    def change(r: dict[str, Any]) -> None:
        r["InvoiceRunOrgFailedAlarm"]["Properties"]["AlarmActions"] = []

    _fires(_broken(transformed, change), "E9103", "InvoiceRunOrgFailedAlarm", "tell nobody")


def test_e9103_an_alarm_topic_on_the_aws_managed_key(transformed: Template) -> None:
    # How the stack shipped: alarms published to the customers' topic, encrypted with alias/aws/sns.
    def change(r: dict[str, Any]) -> None:
        r["OperationsTopic"]["Properties"]["KmsMasterKeyId"] = "alias/aws/sns"

    _fires(_broken(transformed, change), "E9103", "OperationsTopic", "alias/aws/sns")


# ------------------------------------------------------------------------------------------ E9104


def test_e9104_tables_without_pitr_or_deletion_protection(transformed: Template) -> None:
    def no_pitr(r: dict[str, Any]) -> None:
        r["IdempotencyTable"]["Properties"]["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] = False

    def deletable(r: dict[str, Any]) -> None:
        del r["BillingTable"]["Properties"]["DeletionProtectionEnabled"]

    _fires(_broken(transformed, no_pitr), "E9104", "IdempotencyTable", "point-in-time")
    _fires(_broken(transformed, deletable), "E9104", "BillingTable", "deletion protection")


def test_e9104_a_bucket_public_or_without_tls_only(transformed: Template) -> None:
    def public(r: dict[str, Any]) -> None:
        r["DocumentsBucket"]["Properties"]["PublicAccessBlockConfiguration"]["RestrictPublicBuckets"] = False

    def plain_http(r: dict[str, Any]) -> None:
        doc = r["DocumentsBucketPolicy"]["Properties"]["PolicyDocument"]
        doc["Statement"] = [s for s in doc["Statement"] if "aws:SecureTransport" not in json.dumps(s)]

    _fires(_broken(transformed, public), "E9104", "DocumentsBucket", "RestrictPublicBuckets")
    _fires(_broken(transformed, plain_http), "E9104", "DocumentsBucket", "non-TLS")


# ------------------------------------------------------------------------------------------ E9105


def test_e9105_logs_star_and_cloudwatch_logs_full_access(transformed: Template) -> None:
    def star(r: dict[str, Any]) -> None:
        policy = r["InvoiceRunStateMachineRole"]["Properties"]["Policies"][0]["PolicyDocument"]
        policy["Statement"].append({"Effect": "Allow", "Action": "logs:*", "Resource": "*"})

    def managed(r: dict[str, Any]) -> None:  # what the state machine had
        arns = r["InvoiceRunStateMachineRole"]["Properties"].setdefault("ManagedPolicyArns", [])
        arns.append("arn:aws:iam::aws:policy/CloudWatchLogsFullAccess")

    _fires(_broken(transformed, star), "E9105", "InvoiceRunStateMachineRole", "logs:*")
    _fires(_broken(transformed, managed), "E9105", "InvoiceRunStateMachineRole", "CloudWatchLogsFullAccess")


# ------------------------------------------------------------------------------------------ E9106


def test_e9106_schedules_with_names_or_without_retries_or_dlq(transformed: Template) -> None:
    def named(r: dict[str, Any]) -> None:  # what SAM writes without OmitName
        r["CreditSweeperFunctionEveryFiveMinutes"]["Properties"]["Name"] = "CreditSweeperFunctionEveryFiveMinutes"

    def no_retry(r: dict[str, Any]) -> None:
        del r["InvoiceDispatcherFunctionDaily"]["Properties"]["Target"]["RetryPolicy"]

    def no_dlq(r: dict[str, Any]) -> None:
        del r["InvoiceDispatcherFunctionDaily"]["Properties"]["Target"]["DeadLetterConfig"]

    _fires(_broken(transformed, named), "E9106", "CreditSweeperFunctionEveryFiveMinutes", "literal Name")
    _fires(_broken(transformed, no_retry), "E9106", "InvoiceDispatcherFunctionDaily", "RetryPolicy")
    _fires(_broken(transformed, no_dlq), "E9106", "InvoiceDispatcherFunctionDaily", "DeadLetterConfig")


def test_e9103_an_alarm_topic_on_a_key_cloudwatch_may_not_use(transformed: Template) -> None:
    # Our own key instead of alias/aws/sns only helps if its policy lets CloudWatch encrypt with it.
    def change(r: dict[str, Any]) -> None:
        policy = r["OperationsKey"]["Properties"]["KeyPolicy"]
        policy["Statement"] = [s for s in policy["Statement"] if "cloudwatch" not in json.dumps(s)]

    _fires(_broken(transformed, change), "E9103", "OperationsTopic", "cloudwatch.amazonaws.com")


def test_e9102_a_queue_policy_for_another_rule_or_queue_does_not_count(transformed: Template) -> None:
    def other_rule(r: dict[str, Any]) -> None:
        doc = r["FailedInvocationsQueuePolicy"]["Properties"]["PolicyDocument"]
        doc["Statement"][0]["Condition"]["ArnEquals"]["aws:SourceArn"] = {"Fn::GetAtt": ["SomeOtherRule", "Arn"]}

    def other_queue(r: dict[str, Any]) -> None:
        doc = r["FailedInvocationsQueuePolicy"]["Properties"]["PolicyDocument"]
        doc["Statement"][0]["Resource"] = {"Fn::GetAtt": ["SomeOtherQueue", "Arn"]}

    _fires(_broken(transformed, other_rule), "E9102", "SpendIngestFunctionBillRecorded")
    _fires(_broken(transformed, other_queue), "E9102", "SpendIngestFunctionBillRecorded")


# ------------------------------------------------------------------------------ gaps an outside review found


def _tls_statement(r: dict[str, Any]) -> dict[str, Any]:
    doc = r["DocumentsBucketPolicy"]["Properties"]["PolicyDocument"]
    statement: dict[str, Any] = next(s for s in doc["Statement"] if s.get("Sid") == "TlsOnly")
    return statement


@pytest.mark.parametrize(
    "weaken",
    [
        lambda s: s.update(Action="s3:GetObject"),  # plain HTTP still lets everything else through
        lambda s: s.update(Principal={"AWS": {"Fn::Sub": "arn:aws:iam::${AWS::AccountId}:root"}}),  # not everyone
        lambda s: s.update(Resource=[s["Resource"][0]]),  # the bucket only, not its objects
        lambda s: s.update(Resource=[s["Resource"][1]]),  # the objects only, not the bucket
    ],
    ids=["one-action", "one-principal", "bucket-only", "objects-only"],
)
def test_e9104_a_tls_deny_that_does_not_cover_everything_does_not_count(
    transformed: Template, weaken: Callable[[dict[str, Any]], None]
) -> None:
    _fires(_broken(transformed, lambda r: weaken(_tls_statement(r))), "E9104", "DocumentsBucket", "non-TLS")


def test_e9104_takes_every_spelling_cloudformation_accepts(transformed: Template) -> None:
    def spelled(r: dict[str, Any]) -> None:
        statement = _tls_statement(r)
        statement["Condition"] = {"Bool": {"aws:securetransport": ["false"]}}  # keys are case-insensitive
        statement["Action"] = ["s3:*"]
        statement["Principal"] = {"AWS": "*"}
        r["BillingTable"]["Properties"]["DeletionProtectionEnabled"] = "true"
        pitr = r["IdempotencyTable"]["Properties"]["PointInTimeRecoverySpecification"]
        pitr["PointInTimeRecoveryEnabled"] = "True"
        r["DocumentsBucket"]["Properties"]["PublicAccessBlockConfiguration"]["BlockPublicAcls"] = "true"
        r["InternalApiFunction"]["Properties"]["ReservedConcurrentExecutions"] = {"Ref": "AlarmEmail"}

    assert _our_findings(_broken(transformed, spelled)) == []


@pytest.mark.parametrize(
    "statement",
    [
        {"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"},  # everything but S3: logs:* included
        {"Effect": "Allow", "Action": "lo*", "Resource": "*"},
        {"Effect": "Allow", "Action": ["logs:CreateLogDelivery", "*"], "Resource": "*"},
    ],
    ids=["not-action", "wildcard", "star"],
)
def test_e9105_logs_star_in_any_spelling(transformed: Template, statement: dict[str, Any]) -> None:
    def change(r: dict[str, Any]) -> None:
        r["InvoiceRunStateMachineRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"].append(statement)

    _fires(_broken(transformed, change), "E9105", "InvoiceRunStateMachineRole", "logs:*")


@pytest.mark.parametrize(
    "arn",
    [
        {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/CloudWatchLogsFullAccess"},
        {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":iam::aws:policy/AdministratorAccess"]]},
        "arn:aws:iam::aws:policy/PowerUserAccess",
    ],
    ids=["sub", "join-admin", "power-user"],
)
def test_e9105_broad_managed_policies_by_any_arn(transformed: Template, arn: Any) -> None:
    def change(r: dict[str, Any]) -> None:
        r["InvoiceRunStateMachineRole"]["Properties"].setdefault("ManagedPolicyArns", []).append(arn)

    _fires(_broken(transformed, change), "E9105", "InvoiceRunStateMachineRole", "attaches")


def test_e9105_a_not_action_that_excludes_logs_is_not_broad(transformed: Template) -> None:
    def change(r: dict[str, Any]) -> None:
        statements = r["InvoiceRunStateMachineRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        statements.append({"Effect": "Allow", "NotAction": ["logs:*", "iam:*", "s3:*"], "Resource": "*"})

    assert [f for f in _our_findings(_broken(transformed, change)) if f[0] == "E9105"] == []


def test_e9101_a_function_invoked_through_an_alias_or_sns_needs_a_dlq(transformed: Template) -> None:
    def through_alias(r: dict[str, Any]) -> None:
        del r["SpendIngestFunction"]["Properties"]["DeadLetterConfig"]
        r["SpendIngestAlias"] = {
            "Type": "AWS::Lambda::Alias",
            "Properties": {
                "FunctionName": {"Ref": "SpendIngestFunction"},
                "FunctionVersion": "$LATEST",
                "Name": "live",
            },
        }
        rule = next(v for v in r.values() if v["Type"] == "AWS::Events::Rule")
        rule["Properties"]["Targets"][0]["Arn"] = {"Ref": "SpendIngestAlias"}

    def through_sns(r: dict[str, Any]) -> None:
        r["SweeperSubscription"] = {
            "Type": "AWS::SNS::Subscription",
            "Properties": {
                "Protocol": "lambda",
                "TopicArn": {"Ref": "OperationsTopic"},
                "Endpoint": {"Fn::GetAtt": ["ApiFunction", "Arn"]},
            },
        }

    _fires(_broken(transformed, through_alias), "E9101", "SpendIngestFunction", "asynchronously")
    _fires(_broken(transformed, through_sns), "E9101", "ApiFunction", "SweeperSubscription")


def test_e9103_disabled_actions_and_the_aws_key_by_sub_or_parameter(transformed: Template) -> None:
    def disabled(r: dict[str, Any]) -> None:
        r["InvoiceRunOrgFailedAlarm"]["Properties"]["ActionsEnabled"] = False

    def by_sub(r: dict[str, Any]) -> None:
        r["OperationsTopic"]["Properties"]["KmsMasterKeyId"] = {
            "Fn::Sub": "arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:alias/aws/sns"
        }

    _fires(_broken(transformed, disabled), "E9103", "InvoiceRunOrgFailedAlarm", "disabled")
    _fires(_broken(transformed, by_sub), "E9103", "OperationsTopic", "alias/aws/sns")
    by_parameter = _broken(
        transformed, lambda r: r["OperationsTopic"]["Properties"].update(KmsMasterKeyId={"Ref": "K"})
    )
    by_parameter.setdefault("Parameters", {})["K"] = {"Type": "String", "Default": "alias/aws/sns"}
    _fires(by_parameter, "E9103", "OperationsTopic", "alias/aws/sns")


def test_e9102_an_arn_like_condition_for_another_rule_does_not_count(transformed: Template) -> None:
    def change(r: dict[str, Any]) -> None:
        statement = r["FailedInvocationsQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
        statement["Condition"] = {"ArnLike": {"aws:SourceArn": {"Fn::GetAtt": ["SomeOtherRule", "Arn"]}}}

    _fires(_broken(transformed, change), "E9102", "SpendIngestFunctionBillRecorded")


def test_e9104_a_tls_deny_narrowed_by_another_condition_does_not_count(transformed: Template) -> None:
    def change(r: dict[str, Any]) -> None:
        _tls_statement(r)["Condition"]["StringEquals"] = {"aws:PrincipalAccount": "111122223333"}

    _fires(_broken(transformed, change), "E9104", "DocumentsBucket", "non-TLS")


@pytest.mark.parametrize("kind", ["AWS::IAM::RolePolicy", "AWS::IAM::UserPolicy", "AWS::IAM::GroupPolicy"])
def test_e9105_inline_policy_resources(transformed: Template, kind: str) -> None:
    def change(r: dict[str, Any]) -> None:
        document = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "logs:*", "Resource": "*"}]}
        r["Extra"] = {"Type": kind, "Properties": {"PolicyName": "x", "PolicyDocument": document}}

    _fires(_broken(transformed, change), "E9105", "Extra", "logs:*")


@pytest.mark.parametrize("policy", ["CloudWatchFullAccess", "CloudWatchFullAccessV2"])
def test_e9105_cloudwatch_full_access(transformed: Template, policy: str) -> None:
    def change(r: dict[str, Any]) -> None:
        arns = r["InvoiceRunStateMachineRole"]["Properties"].setdefault("ManagedPolicyArns", [])
        arns.append(f"arn:aws:iam::aws:policy/{policy}")

    _fires(_broken(transformed, change), "E9105", "InvoiceRunStateMachineRole", policy)


def test_e9101_an_errors_alarm_naming_its_function_by_sub_counts(transformed: Template) -> None:
    def change(r: dict[str, Any]) -> None:
        r["ApiErrorsAlarm"]["Properties"]["Dimensions"][0]["Value"] = {"Fn::Sub": "${ApiFunction}"}

    assert [f for f in _our_findings(_broken(transformed, change)) if f[0] == "E9101"] == []

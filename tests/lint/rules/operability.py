"""Our cfn-lint rules, run by `make lint` on the *transformed* template (tests/lint/transform.py).

Each rule is a way this stack once failed, or would fail, in production while every schema check
passed. Their tests (tests/unit/test_lint_rules.py) break the template that way and see the rule fire.
cfn-lint loads this file with `--append-rules tests/lint/rules`; it imports nothing of the project.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from typing import Any

from cfnlint.rules import CloudFormationLintRule, RuleMatch

ASYNC_INVOKERS = ("AWS::Events::Rule", "AWS::Scheduler::Schedule")


# ------------------------------------------------------------------------------------ template helpers


def _resources(cfn: Any, type_: str | tuple[str, ...] | None = None) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = cfn.template.get("Resources", {})
    types = (type_,) if isinstance(type_, str) else type_
    return {k: v for k, v in found.items() if isinstance(v, dict) and (types is None or v.get("Type") in types)}


def _props(resource: dict[str, Any]) -> dict[str, Any]:
    props = resource.get("Properties") or {}
    return props if isinstance(props, dict) else {}


def _ref(value: Any) -> str | None:
    """The logical id `value` refers to: {"Ref": X} or {"Fn::GetAtt": [X, ...]} (or "X.Attr")."""
    if isinstance(value, dict) and len(value) == 1:
        ((fn, arg),) = value.items()
        if fn == "Ref" and isinstance(arg, str):
            return arg
        if fn == "Fn::GetAtt":
            if isinstance(arg, list) and arg and isinstance(arg[0], str):
                return arg[0]
            if isinstance(arg, str):
                return arg.split(".", 1)[0]
    return None


def _listify(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statements(document: Any) -> Iterator[dict[str, Any]]:
    if not isinstance(document, dict):
        return
    for statement in _listify(document.get("Statement", [])):
        if isinstance(statement, dict):
            yield statement


def _policy_documents(resource: dict[str, Any]) -> Iterator[tuple[list[str | int], Any]]:
    """(path, PolicyDocument) of every IAM policy document a role / policy / managed policy holds."""
    props = _props(resource)
    match resource.get("Type"):
        case "AWS::IAM::Role" | "AWS::IAM::User" | "AWS::IAM::Group":
            for i, policy in enumerate(_listify(props.get("Policies", []))):
                if isinstance(policy, dict):
                    yield ["Properties", "Policies", i, "PolicyDocument"], policy.get("PolicyDocument")
        case "AWS::IAM::Policy" | "AWS::IAM::ManagedPolicy" | "AWS::IAM::RolePolicy" | "AWS::IAM::UserPolicy":
            yield ["Properties", "PolicyDocument"], props.get("PolicyDocument")
        case "AWS::IAM::GroupPolicy":
            yield ["Properties", "PolicyDocument"], props.get("PolicyDocument")


def _allows(statement: dict[str, Any], action: str) -> bool:
    """Does an Allow statement grant `action` (exactly or by a wildcard pattern such as kms:GenerateDataKey*)?"""
    if statement.get("Effect") != "Allow":
        return False
    granted = {a.lower() for a in _listify(statement.get("Action", [])) if isinstance(a, str)}
    return any(fnmatch.fnmatchcase(action.lower(), pattern) for pattern in granted)


def _names(value: Any, logical_id: str) -> bool:
    """Does a Resource / Principal value name `logical_id` (directly or in a list, or through Fn::Sub)?"""
    for item in _listify(value):
        if _ref(item) == logical_id or item == "*":
            return True
        if isinstance(item, dict) and "Fn::Sub" in item:
            text = item["Fn::Sub"][0] if isinstance(item["Fn::Sub"], list) else item["Fn::Sub"]
            if isinstance(text, str) and ("${" + logical_id) in text:
                return True
            if isinstance(item["Fn::Sub"], list) and any(_ref(v) == logical_id for v in item["Fn::Sub"][1].values()):
                return True
    return False


def _true(value: Any) -> bool:
    """CloudFormation takes true and "true" (any case) alike."""
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _any_action_of(patterns: Any, service: str) -> bool:
    """Do these action patterns cover every action of `service` (logs:*, *, l*, ...)? Tested on a made-up name."""
    made_up = f"{service}:zzzmadeupaction"
    return any(isinstance(p, str) and fnmatch.fnmatchcase(made_up, p.lower()) for p in _listify(patterns))


def _grants_all_of(statement: dict[str, Any], service: str) -> bool:
    """Does an Allow statement grant every action of `service`, by Action or by NotAction?"""
    if statement.get("Effect") != "Allow":
        return False
    if "NotAction" in statement:  # everything except what it names
        return not _any_action_of(statement["NotAction"], service)
    return _any_action_of(statement.get("Action", []), service)


def _secure_transport(statement: dict[str, Any]) -> str:
    """The aws:SecureTransport value a statement's Bool condition tests, lower-cased ("" if none).
    Condition keys are case-insensitive; a value may be a list."""
    condition = statement.get("Condition") or {}
    for operator in ("Bool", "BoolIfExists"):
        for key, value in (condition.get(operator) or {}).items():
            if key.lower() == "aws:securetransport":
                values = {str(v).lower() for v in _listify(value)}
                return values.pop() if len(values) == 1 else ""
    return ""


def _everyone(principal: Any) -> bool:
    return principal == "*" or (isinstance(principal, dict) and "*" in _listify(principal.get("AWS", [])))


def _bucket_scopes(resources: Any, bucket: str) -> set[str]:
    """Which of the bucket itself ("bucket") and its objects ("objects") a statement's Resource covers."""
    scopes: set[str] = set()
    for item in _listify(resources):
        text = _arn_text(item)
        if item == "*" or text in ("*", "arn:aws:s3:::*"):
            scopes |= {"bucket", "objects"}
        elif _ref(item) == bucket:
            scopes.add("bucket")
        elif text is not None and (f"${{{bucket}.Arn}}" in text or f"${{{bucket}}}" in text):
            scopes.add("objects" if text.endswith("/*") else "bucket")
    return scopes


def _arn_text(value: Any) -> str | None:
    """The text of a literal ARN, an Fn::Sub template or an Fn::Join of texts and references."""
    if isinstance(value, str):
        return value
    if not isinstance(value, dict) or len(value) != 1:
        return None
    ((fn, arg),) = value.items()
    if fn == "Fn::Sub":
        text = arg[0] if isinstance(arg, list) else arg
        return text if isinstance(text, str) else None
    if fn == "Fn::Join" and isinstance(arg, list) and len(arg) == 2 and isinstance(arg[1], list):
        parts = [p if isinstance(p, str) else "${" + (_ref(p) or "?") + ".Arn}" for p in arg[1]]
        return str(arg[0]).join(parts)
    return None


def _alarm_metrics(props: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every metric an alarm reads, as {Namespace, MetricName, Dimensions}: single-metric or metric math."""
    if "MetricName" in props:
        yield {k: props.get(k) for k in ("Namespace", "MetricName", "Dimensions")}
    for query in _listify(props.get("Metrics", [])):
        metric = ((query or {}).get("MetricStat") or {}).get("Metric") if isinstance(query, dict) else None
        if isinstance(metric, dict):
            yield metric


def _dimension_refs(metric: dict[str, Any], name: str) -> set[str]:
    """The logical ids a metric's dimension `name` names: by Ref / GetAtt, or a whole "${X}" Fn::Sub."""
    found = set()
    for d in _listify(metric.get("Dimensions") or []):
        if not isinstance(d, dict) or d.get("Name") != name:
            continue
        value = d.get("Value")
        text = _arn_text(value) if isinstance(value, dict) and "Fn::Sub" in value else None
        ref = _ref(value) or (
            text[2:-1].split(".", 1)[0] if text and text.startswith("${") and text.endswith("}") else None
        )
        if ref:
            found.add(ref)
    return found


def _function_of(cfn: Any, logical_id: str | None) -> str | None:
    """The function a reference names: the function itself, or the function of an alias or version."""
    resource = _resources(cfn).get(logical_id or "", {})
    if resource.get("Type") in ("AWS::Lambda::Alias", "AWS::Lambda::Version"):
        return _ref(_props(resource).get("FunctionName"))
    return logical_id if resource.get("Type") == "AWS::Lambda::Function" else None


def _async_targets(cfn: Any) -> dict[str, str]:
    """Function logical id -> the rule, schedule or SNS subscription that invokes it asynchronously."""
    targets: dict[str, str] = {}
    for name, resource in _resources(cfn, ASYNC_INVOKERS).items():
        props = _props(resource)
        for target in [*_listify(props.get("Targets", [])), props.get("Target")]:
            if isinstance(target, dict) and (fn := _function_of(cfn, _ref(target.get("Arn")))):
                targets.setdefault(fn, name)
    for name, resource in _resources(cfn, "AWS::SNS::Subscription").items():
        props = _props(resource)
        fn = _function_of(cfn, _ref(props.get("Endpoint")))
        if str(props.get("Protocol", "")).lower() == "lambda" and fn:
            targets.setdefault(fn, name)
    return targets


def _bounded(value: Any) -> bool:
    """A ReservedConcurrentExecutions CloudFormation accepts: a number, a numeric string or a parameter."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, str) and value.isdigit()) or _ref(value) is not None


# ----------------------------------------------------------------------------------------------- rules


class FunctionOperability(CloudFormationLintRule):
    """Every Lambda function can be operated: its logs kept, its errors alarmed, its concurrency bounded,
    and, when something invokes it asynchronously, its failures kept somewhere."""

    id = "E9101"
    shortdesc = "Lambda functions have a log group with retention, an Errors alarm, reserved concurrency, a DLQ"
    description = (
        "Each AWS::Lambda::Function logs to its own AWS::Logs::LogGroup with RetentionInDays, is watched by "
        "an AWS::CloudWatch::Alarm on AWS/Lambda Errors, sets ReservedConcurrentExecutions, and - when an "
        "EventBridge rule or a Scheduler schedule invokes it - has a DeadLetterConfig or an on-failure destination."
    )
    source_url = "https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html"
    tags = ["lambda", "operations"]

    def match(self, cfn: Any) -> list[RuleMatch]:
        matches: list[RuleMatch] = []
        functions = _resources(cfn, "AWS::Lambda::Function")
        groups = _resources(cfn, "AWS::Logs::LogGroup")
        alarmed = {
            fn
            for alarm in _resources(cfn, "AWS::CloudWatch::Alarm").values()
            for metric in _alarm_metrics(_props(alarm))
            if metric.get("Namespace") == "AWS/Lambda" and metric.get("MetricName") == "Errors"
            for fn in _dimension_refs(metric, "FunctionName")
        }
        on_failure = {
            _function_of(cfn, _ref(_props(config).get("FunctionName"))) or _props(config).get("FunctionName")
            for config in _resources(cfn, "AWS::Lambda::EventInvokeConfig").values()
            if ((_props(config).get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
        }
        async_targets = _async_targets(cfn)
        group_users: dict[str, list[str]] = {}
        for name, resource in functions.items():
            props = _props(resource)
            path = ["Resources", name, "Properties"]
            group = _ref((props.get("LoggingConfig") or {}).get("LogGroup"))
            if group is None or group not in groups:
                matches.append(RuleMatch(path, f"{name} has no LoggingConfig.LogGroup of its own (a LogGroup)"))
            else:
                group_users.setdefault(group, []).append(name)
                if not _props(groups[group]).get("RetentionInDays"):
                    matches.append(RuleMatch(["Resources", group], f"{group} (logs of {name}) keeps logs forever"))
            if name not in alarmed:
                matches.append(RuleMatch(path, f"{name} has no alarm on its AWS/Lambda Errors metric"))
            if not _bounded(props.get("ReservedConcurrentExecutions")):
                matches.append(RuleMatch(path, f"{name} has no ReservedConcurrentExecutions"))
            dlq = (props.get("DeadLetterConfig") or {}).get("TargetArn")
            if name in async_targets and not dlq and name not in on_failure:
                matches.append(
                    RuleMatch(
                        path,
                        f"{name} is invoked asynchronously by {async_targets[name]} but has neither a "
                        "DeadLetterConfig nor an on-failure destination: its failed events would be lost",
                    )
                )
        for group, users in group_users.items():
            if len(users) > 1:
                matches.append(RuleMatch(["Resources", group], f"{group} is shared by {', '.join(sorted(users))}"))
        return matches


class DeadLetterQueueCanReceive(CloudFormationLintRule):
    """A dead-letter queue nobody may send to loses exactly the events it exists to keep."""

    id = "E9102"
    shortdesc = "Dead-letter queues of EventBridge rules and Scheduler schedules accept their dead letters"
    description = (
        "An SQS queue that is the DeadLetterConfig of an EventBridge rule target has an AWS::SQS::QueuePolicy "
        "letting events.amazonaws.com send to it; one of a Scheduler schedule is sendable by the schedule's "
        "execution role (Scheduler sends with that role) or by scheduler.amazonaws.com through a queue policy."
    )
    source_url = "https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-rule-dlq.html"
    tags = ["sqs", "eventbridge", "scheduler"]

    def match(self, cfn: Any) -> list[RuleMatch]:
        matches: list[RuleMatch] = []
        for name, resource in _resources(cfn, ASYNC_INVOKERS).items():
            props = _props(resource)
            rule = resource.get("Type") == "AWS::Events::Rule"
            for i, target in enumerate(_listify(props.get("Targets", [])) if rule else [props.get("Target")]):
                if not isinstance(target, dict):
                    continue
                queue = _ref((target.get("DeadLetterConfig") or {}).get("Arn"))
                if queue is None:
                    continue
                path = ["Resources", name, "Properties", *(["Targets", i] if rule else ["Target"]), "DeadLetterConfig"]
                # A rule sends as events.amazonaws.com (a queue policy naming this queue and, if it tests
                # aws:SourceArn, this rule); Scheduler sends with the schedule's execution role only.
                if rule and self._queue_policy_allows(cfn, queue, name):
                    continue
                if not rule and self._role_allows(cfn, _ref(target.get("RoleArn")), queue):
                    continue
                sender = "events.amazonaws.com (for this rule)" if rule else "role of the schedule"
                matches.append(RuleMatch(path, f"{queue}, dead-letter queue of {name}, lets no {sender} send to it"))
        return matches

    @staticmethod
    def _queue_policy_allows(cfn: Any, queue: str, rule: str) -> bool:
        for policy in _resources(cfn, "AWS::SQS::QueuePolicy").values():
            props = _props(policy)
            if not any(_ref(q) == queue for q in _listify(props.get("Queues", []))):
                continue
            for statement in _statements(props.get("PolicyDocument")):
                principal = statement.get("Principal") or {}
                services = _listify(principal.get("Service", [])) if isinstance(principal, dict) else []
                condition = statement.get("Condition") or {}
                sources = [(condition.get(op) or {}).get("aws:SourceArn") for op in ("ArnEquals", "ArnLike")]
                source = next((s for s in sources if s is not None), None)
                if (
                    _allows(statement, "sqs:SendMessage")
                    and "events.amazonaws.com" in services
                    and _names(statement.get("Resource", "*"), queue)
                    and (source is None or _names(source, rule))
                ):
                    return True
        return False

    @staticmethod
    def _role_allows(cfn: Any, role: str | None, queue: str) -> bool:
        resource = _resources(cfn).get(role or "")
        if resource is None:
            return False
        return any(
            _allows(statement, "sqs:SendMessage") and _names(statement.get("Resource"), queue)
            for _, document in _policy_documents(resource)
            for statement in _statements(document)
        )


class AlarmsReachSomeone(CloudFormationLintRule):
    """An alarm with no action, or one that publishes to a topic CloudWatch cannot encrypt for, tells nobody."""

    id = "E9103"
    shortdesc = "Alarms have actions, and no action is an SNS topic encrypted with alias/aws/sns"
    description = (
        "Every AWS::CloudWatch::Alarm has AlarmActions. CloudWatch cannot use the AWS-managed key "
        "alias/aws/sns, so an alarm whose action is a topic encrypted with it is never delivered."
    )
    source_url = "https://repost.aws/knowledge-center/cloudwatch-receive-sns-for-alarm-trigger"
    tags = ["cloudwatch", "sns", "operations"]

    def match(self, cfn: Any) -> list[RuleMatch]:
        matches: list[RuleMatch] = []
        topics = _resources(cfn, "AWS::SNS::Topic")
        for name, alarm in _resources(cfn, "AWS::CloudWatch::Alarm").items():
            actions = _listify(_props(alarm).get("AlarmActions") or [])
            path = ["Resources", name, "Properties"]
            enabled = _props(alarm).get("ActionsEnabled", True)
            if not actions or enabled is False or str(enabled).lower() == "false":
                matches.append(
                    RuleMatch(path, f"{name} has no AlarmActions (or they are disabled): it would tell nobody")
                )
            for i, action in enumerate(actions):
                topic = _ref(action)
                key = self._key_text(cfn, _props(topics[topic]).get("KmsMasterKeyId")) if topic in topics else None
                if isinstance(key, str) and key.endswith("alias/aws/sns"):
                    matches.append(
                        RuleMatch(
                            [*path, "AlarmActions", i],
                            f"{name} publishes to {topic}, encrypted with alias/aws/sns, which CloudWatch cannot use",
                        )
                    )
                elif _ref(key) is not None and not self._cloudwatch_may_use(cfn, _ref(key) or ""):
                    matches.append(
                        RuleMatch(
                            [*path, "AlarmActions", i],
                            f"{name} publishes to {topic}, whose key {_ref(key)} does not let cloudwatch.amazonaws.com "
                            "use it (kms:GenerateDataKey*, kms:Decrypt)",
                        )
                    )
        return matches

    @staticmethod
    def _key_text(cfn: Any, key: Any) -> Any:
        """A topic's key as written: a string, an Fn::Sub's text, or the Default of the parameter it Refs."""
        parameters = cfn.template.get("Parameters", {})
        if _ref(key) in parameters:
            return parameters[_ref(key)].get("Default", key)
        if isinstance(key, dict) and "Fn::Sub" in key:
            return _arn_text(key)
        return key

    @staticmethod
    def _cloudwatch_may_use(cfn: Any, key: str) -> bool:
        """Does the template's KMS key (or the key an alias of the template names) let CloudWatch encrypt?"""
        resources = _resources(cfn)
        resource = resources.get(key, {})
        if resource.get("Type") == "AWS::KMS::Alias":
            resource = resources.get(_ref(_props(resource).get("TargetKeyId")) or "", {})
        if resource.get("Type") != "AWS::KMS::Key":
            return True  # not ours to read: a key outside the template
        for statement in _statements(_props(resource).get("KeyPolicy")):
            principal = statement.get("Principal") or {}
            services = _listify(principal.get("Service", [])) if isinstance(principal, dict) else []
            if "cloudwatch.amazonaws.com" in services and _allows(statement, "kms:GenerateDataKey"):
                return _allows(statement, "kms:Decrypt")
        return False


class DataIsProtected(CloudFormationLintRule):
    """Billing data survives mistakes: tables restorable and undeletable, buckets private and TLS-only."""

    id = "E9104"
    shortdesc = "Tables have PITR and deletion protection; buckets block public access and refuse non-TLS"
    description = (
        "Every AWS::DynamoDB::Table enables PointInTimeRecovery and DeletionProtectionEnabled; every "
        "AWS::S3::Bucket sets all four PublicAccessBlockConfiguration flags and has a bucket policy that "
        "denies requests where aws:SecureTransport is false."
    )
    source_url = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/security-best-practices.html"
    tags = ["dynamodb", "s3", "data"]
    _BLOCKS = ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")

    def match(self, cfn: Any) -> list[RuleMatch]:
        matches: list[RuleMatch] = []
        for name, table in _resources(cfn, "AWS::DynamoDB::Table").items():
            props = _props(table)
            path = ["Resources", name, "Properties"]
            if not _true((props.get("PointInTimeRecoverySpecification") or {}).get("PointInTimeRecoveryEnabled")):
                matches.append(RuleMatch(path, f"{name} has no point-in-time recovery"))
            if not _true(props.get("DeletionProtectionEnabled")):
                matches.append(RuleMatch(path, f"{name} has no deletion protection"))
        for name, bucket in _resources(cfn, "AWS::S3::Bucket").items():
            block = _props(bucket).get("PublicAccessBlockConfiguration") or {}
            open_flags = [flag for flag in self._BLOCKS if not _true(block.get(flag))]
            if open_flags:
                matches.append(RuleMatch(["Resources", name, "Properties"], f"{name} does not set {open_flags}"))
            if not self._tls_only(cfn, name):
                matches.append(
                    RuleMatch(
                        ["Resources", name],
                        f"{name} has no bucket policy denying everyone (Principal *) every s3 action (s3:*) on the "
                        "bucket and its objects (/*) over non-TLS requests",
                    )
                )
        return matches

    @staticmethod
    def _tls_only(cfn: Any, bucket: str) -> bool:
        covered: set[str] = set()
        for policy in _resources(cfn, "AWS::S3::BucketPolicy").values():
            if _ref(_props(policy).get("Bucket")) != bucket:
                continue
            for statement in _statements(_props(policy).get("PolicyDocument")):
                if (
                    statement.get("Effect") == "Deny"
                    and _secure_transport(statement) == "false"
                    and len(statement.get("Condition") or {}) == 1  # no other condition narrows the deny
                    and _everyone(statement.get("Principal"))
                    and _any_action_of(statement.get("Action", []), "s3")
                ):
                    covered |= _bucket_scopes(statement.get("Resource"), bucket)
        return covered == {"bucket", "objects"}


class NoBroadLogsAccess(CloudFormationLintRule):
    """Nothing in this stack needs to read or delete every log group in the account."""

    id = "E9105"
    shortdesc = "No IAM statement grants logs:*, and no CloudWatchLogsFullAccess"
    description = (
        "IAM statements grant the CloudWatch Logs actions they need by name (never logs:* or *), and no role "
        "attaches the managed policy CloudWatchLogsFullAccess."
    )
    source_url = "https://docs.aws.amazon.com/step-functions/latest/dg/cw-logs.html"
    tags = ["iam", "least-privilege"]

    def match(self, cfn: Any) -> list[RuleMatch]:
        matches: list[RuleMatch] = []
        iam = (
            "AWS::IAM::Role",
            "AWS::IAM::Policy",
            "AWS::IAM::ManagedPolicy",
            "AWS::IAM::User",
            "AWS::IAM::Group",
            "AWS::IAM::RolePolicy",
            "AWS::IAM::UserPolicy",
            "AWS::IAM::GroupPolicy",
        )
        for name, resource in _resources(cfn, iam).items():
            for path, document in _policy_documents(resource):
                for statement in _statements(document):
                    if _grants_all_of(statement, "logs"):
                        message = f"{name} grants logs:* (by *, a wildcard or NotAction)"
                        matches.append(RuleMatch(["Resources", name, *path], message))
            for i, arn in enumerate(_listify(_props(resource).get("ManagedPolicyArns") or [])):
                text = _arn_text(arn) or ""
                broad = next((p for p in self._BROAD_MANAGED if text.endswith(f"/{p}")), None)
                if broad:
                    matches.append(
                        RuleMatch(
                            ["Resources", name, "Properties", "ManagedPolicyArns", i],
                            f"{name} attaches {broad}, which grants logs:*",
                        )
                    )
        return matches

    # AWS managed policies that grant logs:* (directly or as all actions)
    _BROAD_MANAGED = (
        "CloudWatchLogsFullAccess",
        "CloudWatchFullAccess",
        "CloudWatchFullAccessV2",
        "AdministratorAccess",
        "PowerUserAccess",
    )


class SchedulesAreSafe(CloudFormationLintRule):
    """A schedule with a literal name collides with the same stack deployed twice in one account, and one
    without a retry policy or a dead-letter queue loses a run silently."""

    id = "E9106"
    shortdesc = "Scheduler schedules have no literal Name, an explicit RetryPolicy and a DeadLetterConfig"
    description = (
        "AWS::Scheduler::Schedule names are unique per account and group: leave Name to CloudFormation. "
        "Each schedule's target sets RetryPolicy and DeadLetterConfig."
    )
    source_url = "https://github.com/aws/serverless-application-model/issues/3109"
    tags = ["scheduler", "operations"]

    def match(self, cfn: Any) -> list[RuleMatch]:
        matches: list[RuleMatch] = []
        for name, schedule in _resources(cfn, "AWS::Scheduler::Schedule").items():
            props = _props(schedule)
            path = ["Resources", name, "Properties"]
            if isinstance(props.get("Name"), str):
                matches.append(RuleMatch([*path, "Name"], f"{name} has the literal Name {props['Name']!r}"))
            target = props.get("Target") if isinstance(props.get("Target"), dict) else {}
            for key in ("RetryPolicy", "DeadLetterConfig"):
                if not target.get(key):
                    matches.append(RuleMatch([*path, "Target"], f"{name} has no {key}"))
        return matches

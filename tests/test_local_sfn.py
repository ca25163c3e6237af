"""Step Functions on the local stack: moto's ASL interpreter runs definitions from the template, and every
Lambda task reaches our handler in-process through the local Lambda (never moto's echoing stand-in)."""

from __future__ import annotations

import copy
import json
import os
import re
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.helpers import start_invoice_run
from tests.local import cfn, sfn_echo_handler, sfn_quotas
from tests.local.lambda_local import function_arn, parse_function_name
from tests.local.stack import LocalStack, start_local_stack

pytestmark = pytest.mark.integration

MISSING = function_arn("NotInTheTemplateFunction")


def _fn(handler: str, env: dict[str, Any] | None = None) -> dict[str, Any]:
    props: dict[str, Any] = {"Handler": f"tests/local/sfn_echo_handler.{handler}"}
    if env:
        props["Environment"] = {"Variables": env}
    return {"Type": "AWS::Serverless::Function", "Properties": props}


def _machine(definition: dict[str, Any], substitutions: dict[str, Any]) -> dict[str, Any]:
    props = {"Type": "STANDARD", "Definition": definition, "DefinitionSubstitutions": substitutions}
    return {"Type": "AWS::Serverless::StateMachine", "Properties": props}


def _invoke_task(function: str, **extra: Any) -> dict[str, Any]:
    params = {"FunctionName": function, "Payload.$": "$"}
    return {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": params, **extra}


def _catch_all() -> list[dict[str, Any]]:
    return [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Recover"}]


def _done() -> dict[str, Any]:
    return {"Type": "Pass", "Result": "recovered", "End": True}


LOOP_END = 10_000


def _loop_states() -> dict[str, Any]:
    """Counts $.i up to LOOP_END: 4 history events per turn (a Pass and a Choice, entered + exited each)."""
    more = {"Type": "Choice", "Choices": [{"Variable": "$.i", "NumericLessThan": LOOP_END, "Next": "Turn"}]}
    return {
        "Turn": {"Type": "Pass", "Parameters": {"i.$": "States.MathAdd($.i, 1)"}, "Next": "More"},
        "More": {**more, "Default": "Done"},
        "Done": {"Type": "Succeed"},
    }


def _loop() -> dict[str, Any]:
    return {"StartAt": "Turn", "States": _loop_states()}


def _batched_loops() -> dict[str, Any]:
    """A Distributed Map (S3 ItemReader, ItemBatcher of 2): each child loops from its first item's i."""
    first = {"Type": "Pass", "Parameters": {"item.$": "States.ArrayGetItem($.Items, 0)"}, "OutputPath": "$.item"}
    child = {"First": {**first, "Next": "Turn"}, **_loop_states()}
    reader = {
        "Resource": "arn:aws:states:::s3:getObject",
        "ReaderConfig": {"InputType": "JSON"},
        "Parameters": {"Bucket.$": "$.bucket", "Key.$": "$.key"},
    }
    return {
        "StartAt": "Batches",
        "States": {
            "Batches": {
                "Type": "Map",
                "ItemReader": reader,
                "ItemBatcher": {"MaxItemsPerBatch": 2},
                "ToleratedFailurePercentage": 40,
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                    "StartAt": "First",
                    "States": child,
                },
                "End": True,
            }
        },
    }


def _template() -> dict[str, Any]:
    """The real template plus test-only functions and state machines."""
    template = copy.deepcopy(cfn.load_template())
    resources = template["Resources"]
    resources["SfnDoubleFunction"] = _fn("double", {"TEST_STATE_MACHINE_ARN": {"Ref": "SfnMapMachine"}})
    resources["SfnFailFunction"] = _fn("fail")
    resources["SfnOversizedFunction"] = _fn("oversized")
    resources["SfnMapMachine"] = {
        "Type": "AWS::Serverless::StateMachine",
        "Properties": {
            "Type": "STANDARD",
            "DefinitionUri": "tests/local/sfn_test_map.asl.json",
            "DefinitionSubstitutions": {"DoubleFunctionArn": {"Fn::GetAtt": ["SfnDoubleFunction", "Arn"]}},
        },
    }
    retry = [{"ErrorEquals": ["InvoiceTaskError"], "IntervalSeconds": 1, "BackoffRate": 1.5, "MaxAttempts": 2}]
    catch = [{"ErrorEquals": ["States.TaskFailed"], "ResultPath": "$.error", "Next": "Recover"}]
    recover = {
        "Type": "Pass",
        "Parameters": {
            "customer.$": "$.customer",
            "error.$": "$.error.Error",
            "cause.$": "States.StringToJson($.error.Cause)",
        },
        "End": True,
    }
    resources["SfnRetryMachine"] = _machine(
        {
            "StartAt": "Invoice",
            "States": {"Invoice": _invoke_task("${FailArn}", Retry=retry, Catch=catch, End=True), "Recover": recover},
        },
        {"FailArn": {"Fn::GetAtt": ["SfnFailFunction", "Arn"]}},
    )
    resources["SfnUnknownInvokeMachine"] = _machine(
        {"StartAt": "T", "States": {"T": _invoke_task("${Missing}", End=True)}}, {"Missing": MISSING}
    )
    resources["SfnUnknownResourceMachine"] = _machine(
        {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "${Missing}", "End": True}}}, {"Missing": MISSING}
    )
    resources["SfnLoopMachine"] = _machine(_loop(), {})
    resources["SfnOversizedMachine"] = _machine(
        {
            "StartAt": "EachCustomer",
            "States": {
                "EachCustomer": {
                    "Type": "Map",
                    "ItemsPath": "$.customers",
                    "ItemProcessor": {
                        "StartAt": "T",
                        "States": {
                            "T": _invoke_task("${OversizedArn}", Catch=_catch_all(), End=True),
                            "Recover": _done(),
                        },
                    },
                    "End": True,
                }
            },
        },
        {"OversizedArn": {"Fn::GetAtt": ["SfnOversizedFunction", "Arn"]}},
    )
    resources["SfnBatchMachine"] = _machine(_batched_loops(), {})
    resources["SfnWaitMachine"] = _machine(
        {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 1, "End": True}}}, {}
    )
    return template


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    saved = dict(os.environ)
    with start_local_stack(_template()) as local:
        local.apply_env()  # the handlers run in this process and read their env from os.environ
        try:
            yield local
        finally:
            os.environ.clear()
            os.environ.update(saved)


@pytest.fixture(autouse=True)
def _clear_invocations() -> None:
    sfn_echo_handler.invocations.clear()


def _run(stack: LocalStack, machine: str, payload: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    # Always name executions locally: moto names a nameless one "None" (and $$.Execution.Name is null).
    name = name or f"t-{time.time_ns()}"
    sfn = stack.client("stepfunctions")
    arn = sfn.start_execution(stateMachineArn=stack.resource_names[machine], name=name, input=json.dumps(payload))
    return stack.wait_for_execution(arn["executionArn"], timeout=30)


# ------------------------------------------------------------------------------------ wiring


def test_state_machines_come_from_the_template(stack: LocalStack) -> None:
    sfn = stack.client("stepfunctions")
    arn = stack.resource_names["SfnMapMachine"]
    assert arn == f"arn:aws:states:{cfn.REGION}:{cfn.ACCOUNT}:stateMachine:SfnMapMachine"
    definition = sfn.describe_state_machine(stateMachineArn=arn)["definition"]
    assert "${" not in definition
    task = json.loads(definition)["States"]["PerCustomer"]["ItemProcessor"]["States"]["Double"]
    assert task["Parameters"]["FunctionName"] == function_arn("SfnDoubleFunction")
    # !Ref StateMachine in a function's environment is the state machine's ARN.
    assert stack.functions["SfnDoubleFunction"].environment["TEST_STATE_MACHINE_ARN"] == arn
    assert stack.env["AWS_ENDPOINT_URL_LAMBDA"] == stack.lambda_endpoint


def _lambda_targets(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        resource = node.get("Resource")
        if isinstance(resource, str) and resource.startswith("arn:aws:lambda:"):
            yield resource
        if isinstance(resource, str) and resource.startswith("arn:aws:states:::lambda:invoke"):
            yield node.get("Parameters", {}).get("FunctionName", "<FunctionName from a JSONPath>")
        for value in node.values():
            yield from _lambda_targets(value)
    elif isinstance(node, list):
        for value in node:
            yield from _lambda_targets(value)


def test_every_template_state_machine_calls_only_template_functions(stack: LocalStack) -> None:
    """The real template's workflows (InvoiceRunStateMachine...) exist in moto as written, and each
    Lambda task names a function of the template - resolved by the local Lambda."""
    real = cfn.load_template()
    specs = cfn.state_machine_specs(real, stack.resource_names)
    assert specs, "template.yaml defines the invoice run state machine"
    sfn = stack.client("stepfunctions")
    for logical_id, spec in specs.items():
        described = sfn.describe_state_machine(stateMachineArn=stack.resource_names[logical_id])
        assert described["definition"] == sfn_quotas.localize(spec.name, spec.definition)
        for target in _lambda_targets(json.loads(spec.definition)):
            parsed = parse_function_name(target)
            assert parsed is not None and parsed[0] in stack.functions, f"{logical_id}: {target}"


def test_local_lambda_invokes_by_name_arn_and_qualifier(stack: LocalStack) -> None:
    client: Any = boto3.client("lambda", endpoint_url=stack.lambda_endpoint, region_name=cfn.REGION)
    for name in ("SfnDoubleFunction", function_arn("SfnDoubleFunction"), "SfnDoubleFunction:$LATEST"):
        response = client.invoke(FunctionName=name, Payload=json.dumps({"customer": "c", "amount": 2}))
        assert response["StatusCode"] == 200 and "FunctionError" not in response
        assert json.loads(response["Payload"].read())["doubled"] == 4


def test_local_lambda_reports_handler_errors_like_lambda(stack: LocalStack) -> None:
    client: Any = boto3.client("lambda", endpoint_url=stack.lambda_endpoint, region_name=cfn.REGION)
    response = client.invoke(FunctionName="SfnFailFunction", Payload=b'{"customer": "cus_1"}')
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    body = json.loads(response["Payload"].read())
    assert set(body) == {"errorMessage", "errorType", "requestId", "stackTrace"}
    assert (body["errorType"], body["errorMessage"]) == ("InvoiceTaskError", "cannot invoice cus_1")
    assert "sfn_echo_handler.py" in body["stackTrace"][-1]


def test_local_lambda_unknown_function_is_not_found(stack: LocalStack) -> None:
    client: Any = boto3.client("lambda", endpoint_url=stack.lambda_endpoint, region_name=cfn.REGION)
    for name in ("NotInTheTemplateFunction", MISSING, "arn:aws:lambda:eu-west-1:123456789012:function:SfnFailFunction"):
        with pytest.raises(client.exceptions.ResourceNotFoundException):
            client.invoke(FunctionName=name, Payload=b"{}")
    with pytest.raises(ClientError, match="InvalidRequestContentException"):
        client.invoke(FunctionName="SfnDoubleFunction", Payload=b"{not json")
    assert sfn_echo_handler.invocations == []


# ------------------------------------------------------------------------------------ executions


def test_map_runs_our_handler_per_item(stack: LocalStack) -> None:
    customers: list[dict[str, Any]] = [
        {"id": "cus_a", "amount": 5},
        {"id": "cus_b", "amount": 7},
        {"id": "cus_c", "amount": 11},
    ]
    name = f"inv-{time.time_ns()}"
    execution = _run(stack, "SfnMapMachine", {"period": "2025-05", "customers": customers}, name=name)
    assert execution["status"] == "SUCCEEDED", execution
    output = json.loads(execution["output"])
    machine_arn = stack.resource_names["SfnMapMachine"]
    expected = [
        {"customer": c["id"], "doubled": 2 * c["amount"], "handledBy": "SfnDoubleFunction", "stateMachine": machine_arn}
        for c in customers
    ]
    assert output["results"] == expected  # the handler's outputs, in item order - not the echoed input
    assert output["summary"]["doubled"] == 6  # plain function-ARN Resource + Parameters with an intrinsic
    calls = sorted((e["customer"], e["amount"], e.get("runId", "")) for n, e in sfn_echo_handler.invocations)
    per_customer = [(c["id"], c["amount"], f"run-2025-05-{name}") for c in customers]  # ItemSelector + Format
    assert calls == [("all", 3, ""), *per_customer]


def test_task_error_is_retried_then_caught(stack: LocalStack) -> None:
    started = time.monotonic()
    execution = _run(stack, "SfnRetryMachine", {"customer": "cus_x"})
    elapsed = time.monotonic() - started
    assert execution["status"] == "SUCCEEDED", execution
    output = json.loads(execution["output"])
    assert output["customer"] == "cus_x"
    assert output["error"] == "InvoiceTaskError"  # the handler's exception type, as in AWS
    assert output["cause"]["errorMessage"] == "cannot invoice cus_x"
    assert [n for n, _ in sfn_echo_handler.invocations] == ["fail"] * 3  # first attempt + MaxAttempts 2
    assert elapsed >= 2.5  # IntervalSeconds 1, then 1 * BackoffRate 1.5


@pytest.mark.parametrize("machine", ["SfnUnknownInvokeMachine", "SfnUnknownResourceMachine"])
def test_task_naming_a_function_not_in_the_template_fails(stack: LocalStack, machine: str) -> None:
    execution = _run(stack, machine, {"customer": "cus_1"})
    assert execution["status"] == "FAILED", execution
    assert f"Function not found: {MISSING}" in execution["cause"]
    if machine == "SfnUnknownInvokeMachine":
        assert execution["error"] == "Lambda.ResourceNotFoundException"
    assert sfn_echo_handler.invocations == []


def test_reusing_an_execution_name_is_rejected(stack: LocalStack) -> None:
    sfn = stack.client("stepfunctions")
    machine = stack.resource_names["SfnWaitMachine"]
    name = f"run-{time.time_ns()}"
    first = sfn.start_execution(stateMachineArn=machine, name=name, input="{}")["executionArn"]
    # While it runs, the same name and input is idempotent (AWS does the same for STANDARD)...
    assert sfn.start_execution(stateMachineArn=machine, name=name, input="{}")["executionArn"] == first
    # ...other input is not.
    with pytest.raises(sfn.exceptions.ExecutionAlreadyExists):
        sfn.start_execution(stateMachineArn=machine, name=name, input='{"other": 1}')
    assert stack.wait_for_execution(first, timeout=30)["status"] == "SUCCEEDED"
    # Once it has finished, any reuse of the name is rejected: "a second start is a no-op" catches this.
    with pytest.raises(sfn.exceptions.ExecutionAlreadyExists):
        sfn.start_execution(stateMachineArn=machine, name=name, input="{}")
    assert re.fullmatch(rf"arn:aws:states:us-east-1:\d{{12}}:execution:SfnWaitMachine:{name}", first)


def test_the_real_invoice_run_executes(stack: LocalStack) -> None:
    assert "InvoiceRunStateMachine" in cfn.load_template()["Resources"]
    arn = start_invoice_run(stack, [], f"empty-{time.time_ns()}")
    execution = stack.wait_for_execution(arn, timeout=30)
    assert execution["status"] == "SUCCEEDED", execution
    assert set(json.loads(execution["output"])) == {"MapRunArn", "ResultWriterDetails"}


# ------------------------------------------------------------------------------------ AWS's quotas


def _history(stack: LocalStack, arn: str) -> list[dict[str, Any]]:
    pages = stack.client("stepfunctions").get_paginator("get_execution_history")
    return [e for page in pages.paginate(executionArn=arn) for e in page["events"]]


def test_history_quota_fails_the_execution_at_25000_events(stack: LocalStack) -> None:
    # 6,300 turns are 25,206 events: moto alone runs them to SUCCEEDED; AWS fails at event 25,000.
    execution = _run(stack, "SfnLoopMachine", {"i": LOOP_END - 6_300})
    assert execution["status"] == "FAILED", execution
    assert execution["error"] == "States.Runtime"
    assert "maximum number of history events (25,000)" in execution["cause"]
    events = _history(stack, execution["executionArn"])
    assert len(events) == sfn_quotas.HISTORY_QUOTA
    assert events[-1]["type"] == "ExecutionFailed"


def test_each_child_execution_has_its_own_history(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sfn_quotas, "HISTORY_QUOTA", 200)  # a small quota, the same rule
    key, bucket = f"loops-{time.time_ns()}.json", stack.resource_names["InvoiceRunsBucket"]

    def run(turns: list[int]) -> dict[str, Any]:
        items = [{"i": LOOP_END - n} for n in turns]
        stack.client("s3").put_object(Bucket=bucket, Key=key, Body=json.dumps(items).encode())
        return _run(stack, "SfnBatchMachine", {"bucket": bucket, "key": key})

    # Five children (batches of 2) of 40 turns: 160+ events each, 800+ in all, yet each is under 200.
    fine = run([40] * 10)
    assert fine["status"] == "SUCCEEDED", fine
    assert len(_history(stack, fine["executionArn"])) < 20  # the parent's history holds none of it
    # One child of five over its quota: 20 % of the items failed, within the 40 % tolerated.
    assert run([60, 60] + [10] * 8)["status"] == "SUCCEEDED"
    # Three of five: 60 % failed, over the threshold.
    failed = run([60] * 6 + [10] * 4)
    assert failed["status"] == "FAILED", failed
    assert failed["error"] == "States.ExceedToleratedFailureThreshold"


def test_item_batcher_groups_items_as_aws_does() -> None:
    items = [{"org_id": f"o{i}"} for i in range(7)]
    assert [len(b["Items"]) for b in sfn_quotas.batches(items, {"MaxItemsPerBatch": 3})] == [3, 3, 1]
    by_bytes = sfn_quotas.batches(items, {"MaxItemsPerBatch": 100, "MaxInputBytesPerBatch": 50})
    assert all(len(json.dumps(b, separators=(",", ":"))) <= 50 for b in by_bytes)
    assert [i for b in by_bytes for i in b["Items"]] == items


def test_payload_quota_is_terminal_as_in_aws(stack: LocalStack) -> None:
    # The task's 256 KB result fails it with States.DataLimitExceeded, which States.ALL does not catch
    # (moto's Catch would take it to "Recover").
    execution = _run(stack, "SfnOversizedMachine", {"customers": [{"customer": "cus_big"}]})
    assert execution["status"] == "FAILED", execution
    assert execution["error"] == "States.DataLimitExceeded"
    assert [n for n, _ in sfn_echo_handler.invocations] == ["oversized"]

"""Small test helpers: an HTTP client for the local API that mints dev tokens per person, and
a reader of an org's stored items (to prove that refused requests wrote nothing)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests
from boto3.dynamodb.conditions import Key


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]

    @property
    def code(self) -> str | None:
        return (self.body or {}).get("error", {}).get("code") if isinstance(self.body, dict) else None


class ApiClient:
    def __init__(self, base_url: str):
        self.base_url = base_url
        self._session = requests.Session()

    def call(
        self,
        method: str,
        path: str,
        *,
        as_user: str | None = None,
        groups: tuple[str, ...] = (),
        json: Any = None,
        params: dict[str, Any] | None = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        from tests.local import devtokens

        hdrs = dict(headers or {})
        if token is None and as_user is not None:
            token = devtokens.mint(as_user, groups=groups, email=f"{as_user}@example.com")
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        resp = self._session.request(method, self.base_url + path, json=json, params=params, headers=hdrs, timeout=30)
        body: Any = None
        if resp.content:
            try:
                body = resp.json()
            except ValueError:
                body = resp.text
        return Reply(resp.status_code, body, dict(resp.headers))


@contextmanager
def dynamo_calls(table: Any) -> Iterator[list[tuple[str, str]]]:
    """The DynamoDB calls made through `table`'s client inside the block, as sent: (operation, its
    parameters as text), recorded by botocore's `before-call` event."""
    seen: list[tuple[str, str]] = []
    events = table.meta.client.meta.events

    def record(params: Any, model: Any, **_: Any) -> None:
        seen.append((model.name, repr(params)))

    events.register("before-call.dynamodb", record)
    try:
        yield seen
    finally:
        events.unregister("before-call.dynamodb", record)


def new_user(label: str = "user") -> str:
    return f"{label}_{uuid.uuid4().hex[:10]}"


def org_items(table: Any, org_id: str) -> list[dict[str, Any]]:
    """Every stored item of an org's partition, for before/after comparisons."""
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"KeyConditionExpression": Key("PK").eq(f"ORG#{org_id}"), "ConsistentRead": True}
    while True:
        resp = table.query(**kwargs)
        items += resp["Items"]
        if "LastEvaluatedKey" not in resp:
            return items
        kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


def user_org_count(table: Any, user_id: str) -> int:
    resp = table.query(IndexName="GSI1", KeyConditionExpression=Key("GSI1PK").eq(f"USER#{user_id}"))
    return len(resp["Items"])


def capture_events(stack: Any, pattern: dict[str, Any]) -> str:
    """A fresh SQS queue that receives this system's EventBridge events matching `pattern`."""
    import json

    sqs, events = stack.client("sqs"), stack.client("events")
    url = str(sqs.create_queue(QueueName=f"events-{new_user()}")["QueueUrl"])
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rule = f"capture-{new_user()}"
    events.put_rule(
        Name=rule,
        EventBusName=stack.env["EVENT_BUS_NAME"],
        EventPattern=json.dumps({"source": ["layers.billing"], **pattern}),
    )
    events.put_targets(Rule=rule, EventBusName=stack.env["EVENT_BUS_NAME"], Targets=[{"Id": "q", "Arn": arn}])
    return url


def capture_notifications(stack: Any) -> str:
    """A fresh SQS queue subscribed (raw delivery) to the notifications topic."""
    sqs = stack.client("sqs")
    url = str(sqs.create_queue(QueueName=f"notes-{new_user()}")["QueueUrl"])
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    stack.client("sns").subscribe(
        TopicArn=stack.env["NOTIFICATIONS_TOPIC_ARN"],
        Protocol="sqs",
        Endpoint=arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    return url


def drain(stack: Any, queue_url: str) -> list[dict[str, Any]]:
    """Every JSON message waiting on the queue, oldest first (and removes them), once the outbox has sent
    everything committed so far."""
    import json

    stack.flush_outbox()
    sqs = stack.client("sqs")
    found: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        if not got.get("Messages"):
            return found
        found += [json.loads(m["Body"]) for m in got["Messages"]]
        for m in got["Messages"]:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])


def start_invoice_run(stack: Any, orgs: list[dict[str, str]], name: str) -> str:
    """Starts the real invoice run as the dispatcher does: the due list in the runs bucket, its location as
    the execution's input. Returns the execution ARN."""
    import json

    bucket, key = stack.resource_names["InvoiceRunsBucket"], f"due/{name}.json"
    stack.client("s3").put_object(Bucket=bucket, Key=key, Body=json.dumps(orgs).encode())
    started = stack.client("stepfunctions").start_execution(
        stateMachineArn=stack.resource_names["InvoiceRunStateMachine"],
        name=name,
        input=json.dumps({"bucket": bucket, "key": key, "orgs": len(orgs)}),
    )
    return str(started["executionArn"])


def invoice_steps(org_id: str, period_key: str, *, after: Any = None) -> list[str]:
    """Runs the invoice run's five steps for one org and period in this process, as the state machine's
    tasks would, at a time the period may be invoiced: `after` (a timedelta) past its settle time
    (default one minute). The whole process travels there (time-machine) for the steps only."""
    from datetime import timedelta

    import time_machine

    from functions.api.container import services
    from shared.credits.periods import period_containing
    from shared.invoices.service import _period
    from shared.orgs.service import SETTLE_WINDOW

    invoices = services().invoices
    org = services().orgs._repo.require_org(org_id)
    period = _period(org, period_key)
    assert period_containing(org, period.start).key == period_key
    at = period.end + SETTLE_WINDOW + (after if after is not None else timedelta(minutes=1))
    with time_machine.travel(at, tick=True):
        return [
            step(org_id, period_key)
            for step in (invoices.close, invoices.collect, invoices.finalize, invoices.render, invoices.issue)
        ]

"""DynamoDB may leave keys of a BatchGetItem unprocessed (under load, even for a small batch): every read
through BatchGetItem asks them again. Made at botocore's boundary: an after-call hook moves the items of the
first answer to `UnprocessedKeys`, as DynamoDB returns them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.auth import Caller
from shared.credits.periods import period_containing
from shared.orgs.models import READ
from shared.usage.metering import UsageEvent
from tests.helpers import ApiClient, new_user
from tests.integration.credit_kit import credit_kit


@contextmanager
def first_answer_unprocessed(table: Any) -> Iterator[list[int]]:
    """The first BatchGetItem of the table's client answers nothing: each key it found left unprocessed, with
    the request's other parameters (projection, names), as DynamoDB returns them."""
    events, left, asked = table.meta.client.meta.events, [], []

    def note(params: dict[str, Any], **_: Any) -> None:
        asked.append({k: v for k, v in params["RequestItems"][table.name].items() if k != "Keys"})

    def unprocess(parsed: dict[str, Any], **_: Any) -> None:
        found = parsed.get("Responses", {}).get(table.name, [])
        if left or not found:
            return
        left.append(len(found))
        keys = [  # (the answer as on the wire, before boto3's resource layer makes Python values of it)
            {"PK": i["PK"], "SK": i["SK"]}
            if "PK" in i
            else {"PK": {"S": f"ORG#{i['org_id']['S']}"}, "SK": {"S": "ORG"}}
            for i in found
        ]
        parsed["Responses"][table.name] = []
        parsed["UnprocessedKeys"] = {table.name: {**asked[-1], "Keys": keys}}

    events.register("provide-client-params.dynamodb.BatchGetItem", note)
    events.register("after-call.dynamodb.BatchGetItem", unprocess)
    try:
        yield left
    finally:
        events.unregister("after-call.dynamodb.BatchGetItem", unprocess)
        events.unregister("provide-client-params.dynamodb.BatchGetItem", note)


def _org(api: ApiClient, owner: str, name: str) -> str:
    return str(api.call("POST", "/v1/orgs", as_user=owner, json={"name": name, "plan_id": "free"}).body["org_id"])


def test_a_members_access_to_its_org_survives_unprocessed_keys(api: ApiClient, stack: Any, table: Any) -> None:
    owner = new_user()
    org_id = _org(api, owner, "Busy")
    at = datetime(2026, 12, 7, 9, 14, 2, tzinfo=UTC)
    kit = credit_kit(stack.env["TABLE_NAME"], stack.env["EVENT_BUS_NAME"], at, table=table)
    caller = Caller(user_id=owner, email=None, groups=frozenset())
    # When the read of the org and its member comes back with both keys unprocessed
    with first_answer_unprocessed(table) as left:
        access = kit.orgs.access(caller, org_id, READ)
    # Then they are asked again: the owner reaches its org (not a 404 `org_not_found`)
    assert left == [2]
    assert access.org.org_id == org_id


def test_a_users_orgs_are_all_listed_under_unprocessed_keys(api: ApiClient, stack: Any, table: Any) -> None:
    owner = new_user()
    made = {_org(api, owner, f"Org {n}") for n in range(3)}
    at = datetime(2026, 12, 7, 9, 14, 2, tzinfo=UTC)
    kit = credit_kit(stack.env["TABLE_NAME"], stack.env["EVENT_BUS_NAME"], at, table=table)
    with first_answer_unprocessed(table) as left:
        page = kit.orgs.list_my_orgs(Caller(user_id=owner, email=None, groups=frozenset()), None, 10)
    assert left == [3]
    assert {m.org_id for m in page.items} == made


def test_a_period_read_under_load_still_counts_its_usage(api: ApiClient, stack: Any, table: Any) -> None:
    owner = new_user()
    org_id = _org(api, owner, "Metered")
    at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=41)
    kit = credit_kit(stack.env["TABLE_NAME"], stack.env["EVENT_BUS_NAME"], at, table=table)
    kit.usage.record_events([UsageEvent("workflow_runs", org_id, at, 7, "runs-1")])
    org = kit.org_repo.require_org(org_id)
    period = period_containing(org, at)
    with first_answer_unprocessed(table) as left:
        [usage] = kit.usage.periods(org, period)
    assert left
    assert usage.metered["workflow_runs"].total == 7

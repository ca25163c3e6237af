"""DynamoDB Local's parse cache (tests/local/dynamodb_local_agent): the agent applies to the pinned DynamoDB Local,
and with it a table's changed schema reaches every request that follows (the session's DynamoDB Local runs with it
wherever a javac is found, as in `make test`)."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.local import dynamodb_local

pytestmark = pytest.mark.integration


def test_the_agent_transforms_the_pinned_dynamodb_local() -> None:
    java, _ = dynamodb_local.find_java()
    jar = dynamodb_local.find_jar()
    assert java and jar
    agent = dynamodb_local.parse_cache_agent(java)
    assert agent is not None, "no javac beside the java `make` found, or the agent does not compile with it"
    command = [java, dynamodb_local.AGENT_EXPORTS, f"-javaagent:{agent}", "-cp", f"{agent}:{jar}"]
    check = subprocess.run(
        [*command, dynamodb_local.AGENT_CLASS],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.stdout.strip() == "parse cache: ok", check.stderr


def test_without_the_agent_the_self_check_fails() -> None:
    """The self-check can fail: the same classes without the agent's transformation."""
    java, _ = dynamodb_local.find_java()
    jar, agent = dynamodb_local.find_jar(), dynamodb_local.parse_cache_agent(str(java))
    check = subprocess.run(
        [str(java), dynamodb_local.AGENT_EXPORTS, "-cp", f"{agent}:{jar}", dynamodb_local.AGENT_CLASS],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode != 0 and "was not transformed" in check.stderr


@pytest.fixture
def client(stack: Any) -> Iterator[Any]:
    ddb = boto3.client("dynamodb")
    made: list[str] = []
    ddb.made = made  # type: ignore[attr-defined]
    yield ddb
    for name in made:
        ddb.delete_table(TableName=name)


def _table(ddb: Any, key: str) -> str:
    name = f"agent-{uuid.uuid4().hex[:10]}"
    ddb.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
        KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.made.append(name)
    return name


def _add_index(ddb: Any, name: str, attribute: str) -> None:
    """A global secondary index `by-<attribute>` (a string hash key, every attribute projected) added to `name`."""
    ddb.update_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": attribute, "AttributeType": "S"}],
        GlobalSecondaryIndexUpdates=[
            {
                "Create": {
                    "IndexName": f"by-{attribute}",
                    "KeySchema": [{"AttributeName": attribute, "KeyType": "HASH"}],
                    "Projection": {"ProjectionType": "ALL"},
                }
            }
        ],
    )


def _settled(ddb: Any, name: str) -> None:
    """Every index of the table active, none being deleted."""
    for _ in range(100):
        table = ddb.describe_table(TableName=name)["Table"]
        if all(index["IndexStatus"] == "ACTIVE" for index in table.get("GlobalSecondaryIndexes", [])):
            return
        time.sleep(0.1)
    raise AssertionError(f"{name}'s indexes never settled")


def test_an_index_added_and_removed_reaches_the_writes_and_reads_that_follow(client: Any) -> None:
    name = _table(client, "id")
    client.put_item(TableName=name, Item={"id": {"S": "before"}, "colour": {"S": "red"}})
    client.get_item(TableName=name, Key={"id": {"S": "before"}})  # the schema without the index, parsed and kept
    _add_index(client, name, "colour")
    _settled(client, name)
    client.put_item(TableName=name, Item={"id": {"S": "after"}, "colour": {"S": "red"}})
    with pytest.raises(ClientError, match="Type mismatch"):  # the new index's key type is checked on writes
        client.put_item(TableName=name, Item={"id": {"S": "wrong"}, "colour": {"N": "1"}})
    found = client.query(
        TableName=name,
        IndexName="by-colour",
        KeyConditionExpression="colour = :c",
        ExpressionAttributeValues={":c": {"S": "red"}},
    )["Items"]
    assert sorted(item["id"]["S"] for item in found) == ["after", "before"]

    client.update_table(TableName=name, GlobalSecondaryIndexUpdates=[{"Delete": {"IndexName": "by-colour"}}])
    _settled(client, name)
    assert "GlobalSecondaryIndexes" not in client.describe_table(TableName=name)["Table"]
    with pytest.raises(ClientError, match="index"):
        client.query(
            TableName=name,
            IndexName="by-colour",
            KeyConditionExpression="colour = :c",
            ExpressionAttributeValues={":c": {"S": "red"}},
        )
    client.put_item(TableName=name, Item={"id": {"S": "no-index"}, "colour": {"N": "1"}})  # no key type to check


def test_time_to_live_turned_on_and_off_is_described_as_it_is(client: Any) -> None:
    name = _table(client, "id")
    described = client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    assert described["TimeToLiveStatus"] == "DISABLED"
    client.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "ends"})
    described = client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    assert (described["TimeToLiveStatus"], described["AttributeName"]) == ("ENABLED", "ends")
    client.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": False, "AttributeName": "ends"})
    assert client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]["TimeToLiveStatus"] == "DISABLED"


def test_tables_of_other_schemas_in_turn_keep_their_own_keys(client: Any) -> None:
    by_id, by_name = _table(client, "id"), _table(client, "name")
    for n in range(3):
        client.put_item(TableName=by_id, Item={"id": {"S": f"i{n}"}})
        client.put_item(TableName=by_name, Item={"name": {"S": f"n{n}"}})
        with pytest.raises(ClientError, match="key"):
            client.put_item(TableName=by_id, Item={"name": {"S": "x"}})
        with pytest.raises(ClientError, match="key"):
            client.get_item(TableName=by_name, Key={"id": {"S": "i0"}})
    assert client.get_item(TableName=by_name, Key={"name": {"S": "n2"}})["Item"] == {"name": {"S": "n2"}}


def test_an_expression_parsed_once_is_evaluated_with_each_requests_names_and_values(client: Any) -> None:
    name = _table(client, "id")
    update = "SET #v = if_not_exists(#v, :zero) + :n, #t = :tag"
    for n in range(1, 4):
        for key in ("a", "b"):
            client.update_item(
                TableName=name,
                Key={"id": {"S": key}},
                UpdateExpression=update,
                ConditionExpression="attribute_not_exists(#t) OR #t <> :tag",
                ExpressionAttributeNames={"#v": "total" if key == "a" else "count", "#t": "tag"},
                ExpressionAttributeValues={":zero": {"N": "0"}, ":n": {"N": str(n)}, ":tag": {"S": f"{key}{n}"}},
            )
    with pytest.raises(ClientError, match="ConditionalCheckFailed"):  # the same condition, false this time
        client.update_item(
            TableName=name,
            Key={"id": {"S": "a"}},
            UpdateExpression=update,
            ConditionExpression="attribute_not_exists(#t) OR #t <> :tag",
            ExpressionAttributeNames={"#v": "total", "#t": "tag"},
            ExpressionAttributeValues={":zero": {"N": "0"}, ":n": {"N": "100"}, ":tag": {"S": "a3"}},
        )
    a = client.get_item(
        TableName=name, Key={"id": {"S": "a"}}, ProjectionExpression="#v", ExpressionAttributeNames={"#v": "total"}
    )
    b = client.get_item(
        TableName=name, Key={"id": {"S": "b"}}, ProjectionExpression="#v", ExpressionAttributeNames={"#v": "count"}
    )
    assert a["Item"] == {"total": {"N": "6"}} and b["Item"] == {"count": {"N": "6"}}


def test_a_refused_expression_is_refused_every_time(client: Any) -> None:
    name = _table(client, "id")
    client.put_item(TableName=name, Item={"id": {"S": "a"}, "n": {"N": "1"}})
    for _ in range(3):
        with pytest.raises(ClientError, match="Syntax error"):
            client.update_item(TableName=name, Key={"id": {"S": "a"}}, UpdateExpression="SET n = n +")
        with pytest.raises(ClientError, match="Syntax error"):
            client.query(
                TableName=name, KeyConditionExpression="id = = :a", ExpressionAttributeValues={":a": {"S": "a"}}
            )
        client.update_item(
            TableName=name,
            Key={"id": {"S": "a"}},
            UpdateExpression="SET n = n + :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
        )
    assert client.get_item(TableName=name, Key={"id": {"S": "a"}})["Item"]["n"] == {"N": "4"}


def _count(ddb: Any, name: str) -> int:
    return int(ddb.scan(TableName=name, Select="COUNT", ConsistentRead=True)["Count"])


def _until(what: str, done: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


def test_a_ttl_sweep_goes_on_while_a_table_of_the_same_schema_gains_an_index(client: Any) -> None:
    """DynamoDB Local's TTL sweep holds the table's schema for its whole run (a page of 20 items at a time). Two
    tables of one schema share its parse: UpdateTable on the other one changes a copy of its own, so the sweep's
    key attributes stay the table's (found by a differential run against DynamoDB Local without the agent: the sweep
    stopped for good, its keys taking the other table's new index attribute)."""
    swept, changed = _table(client, "pk"), _table(client, "pk")
    for name in (changed, swept):
        client.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "exp"})
    expired = int(time.time()) - 1000
    for start in (0, 25):
        client.batch_write_item(
            RequestItems={
                swept: [
                    {"PutRequest": {"Item": {"pk": {"S": f"k{n:02d}"}, "exp": {"N": str(expired)}, "g1": {"S": "v"}}}}
                    if n % 2 == 0
                    else {"PutRequest": {"Item": {"pk": {"S": f"k{n:02d}"}, "exp": {"N": str(expired)}}}}
                    for n in range(start, start + 25)
                ]
            }
        )
    _until("the sweep's first page", lambda: _count(client, swept) < 50, 30)
    _add_index(client, changed, "g1")
    _until("every expired item swept", lambda: _count(client, swept) == 0, 60)
    assert "GlobalSecondaryIndexes" not in client.describe_table(TableName=swept)["Table"]

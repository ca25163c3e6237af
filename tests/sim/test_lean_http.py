"""The world's session (`world.lean_session`: its lean transport, `tests/local/lean_http.py`) against botocore's own
transport, on the same DynamoDB Local through a recording proxy: for each case both reach DynamoDB Local with
the same bytes (but the uuids botocore draws for each call) and the caller gets the same result or the same
error - a failed condition, a cancelled transaction, throttling (retried, and exhausted), a page near 1 MB,
a chunked reply, a reply cut halfway (botocore retries it), a keep-alive connection the server closed."""

from __future__ import annotations

import re
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import boto3
import pytest
from boto3.dynamodb.conditions import Key
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from tests.local import cfn
from tests.sim.world import _unsigned, lean_session

pytestmark = pytest.mark.integration

THROTTLED_BODY = (
    b'{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException",'
    b'"message":"Rate of requests exceeds the allowed throughput."}'
)
THROTTLED = (
    b"HTTP/1.1 400 Bad Request\r\nServer: Jetty(12.1.11)\r\nx-amzn-RequestId: THROTTLED\r\n"
    b"Content-Type: application/x-amz-json-1.0\r\nContent-Length: " + str(len(THROTTLED_BODY)).encode() + b"\r\n\r\n"
) + THROTTLED_BODY


# Drawn afresh for each call: its invocation id, a transaction's idempotency token (ClientRequestToken); and a
# retry's deadline (the clock's time).
_FRESH = re.compile(rb'(amz-sdk-invocation-id: |"ClientRequestToken": ")[0-9a-f-]{36}|(ttl=)[0-9TZ]{16}')


class _Stream:
    """One side of a proxied connection: reads whole HTTP messages (DynamoDB Local frames with Content-Length)."""

    def __init__(self, sock: socket.socket):
        self.sock, self.rest = sock, b""

    def message(self) -> bytes | None:
        while b"\r\n\r\n" not in self.rest:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.rest += data
        head, _, _ = self.rest.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?im)^content-length: *(\d+)", head)[1])  # type: ignore[index]
        size = len(head) + 4 + length
        while len(self.rest) < size:
            self.rest += self.sock.recv(65536)
        message, self.rest = self.rest[:size], self.rest[size:]
        return message


def _chunked(reply: bytes) -> bytes:
    head, _, body = reply.partition(b"\r\n\r\n")
    head = re.sub(rb"(?im)^content-length: *\d+", b"Transfer-Encoding: chunked", head)
    chunks = [body[i : i + 40000] for i in range(0, len(body), 40000)]
    framed = b"".join(b"%x;note=1\r\n%s\r\n" % (len(c), c) for c in chunks)
    return head + b"\r\n\r\n" + framed + b"0\r\nX-Trailer: 1\r\n\r\n"


# What the proxy does to a reply, by the name of the action.
_CHANGES: dict[str, Callable[[bytes], bytes]] = {
    "cut": lambda reply: reply[: len(reply) // 2],  # in the body: botocore's CRC32 check refuses it
    # In the status line: no reply. (Cut after it, in the headers, the two differ: http.client takes the end of the
    # connection for the headers' end, and botocore's transport answers a 200 with no body - an empty result; the
    # lean transport a closed connection, which botocore retries.)
    "cut_head": lambda reply: reply[:10],
    "chunked": _chunked,
}


class Proxy:
    """Between the clients and DynamoDB Local: records each request as it arrived, and does to the next ones what
    `plan` says: "throttle" (answers DynamoDB's throttling error itself), "cut" / "cut_head" (half the reply, or
    its first 10 bytes, then closes),
    "chunked" (the reply re-framed in chunks), "close" (closes the connection after the reply, as a server closes
    an idle keep-alive connection); otherwise forwards."""

    def __init__(self, upstream: str):
        host, port = upstream.removeprefix("http://").rsplit(":", 1)
        self.upstream = (host, int(port))
        self.requests: list[bytes] = []
        self.plan: list[str] = []
        self.settle, self.received, self.handled = threading.Condition(), 0, 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        upstream = socket.create_connection(self.upstream)
        client, server = _Stream(conn), _Stream(upstream)
        while (request := client.message()) is not None:
            with self.settle:
                self.requests.append(request)
                self.received += 1
            action = self.plan.pop(0) if self.plan else "forward"
            if action == "throttle":
                conn.sendall(THROTTLED)
            else:
                upstream.sendall(request)
                reply = server.message() or b""
                conn.sendall(_CHANGES.get(action, lambda reply: reply)(reply))
            if action in ("cut", "cut_head", "close"):
                conn.close()
            with self.settle:
                self.handled += 1
                self.settle.notify_all()
            if action in ("cut", "cut_head", "close"):
                break
        upstream.close()
        conn.close()

    def settled(self) -> None:
        """Wait until the proxy has done all it does to the requests it got (closed the connection, say)."""
        with self.settle:
            assert self.settle.wait_for(lambda: self.handled == self.received, timeout=10)

    def taken(self) -> list[bytes]:
        """The requests recorded since the last call, the uuids botocore draws for each call blanked."""
        taken, self.requests = self.requests, []
        return [_FRESH.sub(rb"\1\2-", r) for r in taken]

    def stop(self) -> None:
        self.server.close()


@pytest.fixture(scope="module")
def proxy(stack: Any) -> Iterator[Proxy]:
    made = Proxy(stack.dynamodb_endpoint)
    yield made
    made.stop()


@pytest.fixture(scope="module")
def table_name(stack: Any) -> str:
    name = f"Lean{uuid.uuid4().hex[:10]}"
    direct = stack.client("dynamodb")
    cfn.create_tables(direct, {"Resources": {name: cfn.load_template()["Resources"]["BillingTable"]}})
    table = boto3.resource("dynamodb", endpoint_url=stack.dynamodb_endpoint).Table(name)
    with table.batch_writer() as batch:  # 30 items of ~60 KB: a Query's first page stops near 1 MB
        for n in range(30):
            batch.put_item(Item={"PK": "BIG", "SK": f"ITEM#{n:03d}", "blob": "x" * 60_000, "n": n})
    return name


def _table(proxy: Proxy, name: str, *, lean: bool, **config: Any) -> Any:
    session = boto3.session.Session()
    if lean:
        lean_session(session._session)
    else:  # what the world's session was before the lean transport
        session._session.set_default_client_config(Config(parameter_validation=False))
        _unsigned(session._session)
    return session.resource("dynamodb", endpoint_url=proxy.url, config=Config(**config)).Table(name)


def _outcome(call: Callable[[], Any]) -> Any:
    """What the caller sees, but what differs between any two calls (the request id, the date)."""
    try:
        return ("result", _stable(call()))
    except ClientError as exc:
        return ("error", type(exc).__name__, str(exc), _stable(exc.response))
    except BotoCoreError as exc:
        return ("error", type(exc).__name__, str(exc))


def _stable(response: Any) -> Any:
    if isinstance(response, list):
        return [_stable(r) for r in response]
    if isinstance(response, dict):
        metadata = response.get("ResponseMetadata", {})
        metadata.pop("RequestId", None)
        for header in ("date", "x-amzn-requestid"):
            metadata.get("HTTPHeaders", {}).pop(header, None)
        return {key: _stable(value) for key, value in response.items()}
    return response


def _both(proxy: Proxy, name: str, case: Callable[[Any], Any], plan: list[str] = [], **config: Any) -> Any:  # noqa: B006
    """The case's outcome and the requests that reached DynamoDB Local, through botocore's transport then the
    lean one (each table made anew: a connection of its own), the proxy doing `plan` to each's first requests."""
    seen = []
    for lean in (False, True):
        table = _table(proxy, name, lean=lean, **config)
        proxy.taken()
        proxy.plan = list(plan)
        seen.append((_outcome(lambda: case(table)), proxy.taken()))  # noqa: B023 (called at once)
    assert seen[0][0] == seen[1][0], "what the caller gets"
    assert seen[0][1] == seen[1][1], "what reached DynamoDB Local"

    return seen[0]


def _reset(table: Any, pk: str) -> None:
    table.put_item(Item={"PK": pk, "SK": "ITEM", "amount": 100, "tags": {"a", "b"}, "note": "été"})


def test_a_failed_condition_is_the_same_error(proxy: Proxy, table_name: str) -> None:
    def case(table: Any) -> Any:
        _reset(table, "COND")
        return table.put_item(
            Item={"PK": "COND", "SK": "ITEM", "amount": 1},
            ConditionExpression="attribute_not_exists(PK)",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )

    outcome, requests = _both(proxy, table_name, case)
    assert outcome[1] == "ConditionalCheckFailedException"
    assert outcome[3]["Item"]["amount"] == {"N": "100"}
    assert outcome[3]["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert len(requests) == 2


def test_a_cancelled_transaction_is_the_same_error(proxy: Proxy, table_name: str) -> None:
    def case(table: Any) -> Any:
        _reset(table, "TX")
        put = {"TableName": table_name, "Item": {"PK": "TX", "SK": "OTHER", "v": Decimal("1.5")}}
        check = {"TableName": table_name, "Key": {"PK": "TX", "SK": "ITEM"}, "ConditionExpression": "amount > :m"}
        check["ExpressionAttributeValues"] = {":m": 500}
        return table.meta.client.transact_write_items(TransactItems=[{"Put": put}, {"ConditionCheck": check}])

    outcome, _ = _both(proxy, table_name, case)
    assert outcome[1] == "TransactionCanceledException"
    assert [r["Code"] for r in outcome[3]["CancellationReasons"]] == ["None", "ConditionalCheckFailed"]


def test_throttling_is_retried_the_same_way(proxy: Proxy, table_name: str) -> None:
    def case(table: Any) -> Any:
        table.update_item(
            Key={"PK": "THROTTLE", "SK": "ITEM"},
            UpdateExpression="SET amount = :a",
            ExpressionAttributeValues={":a": 7},
            ReturnValues="ALL_NEW",
        )
        return table.get_item(Key={"PK": "THROTTLE", "SK": "ITEM"}, ConsistentRead=True)

    outcome, requests = _both(proxy, table_name, case, plan=["throttle"])
    assert outcome[1]["Item"] == {"PK": "THROTTLE", "SK": "ITEM", "amount": 7}
    assert [b"attempt=2" in r for r in requests] == [False, True, False]


def test_throttling_to_the_last_attempt_is_the_same_error(proxy: Proxy, table_name: str) -> None:
    outcome, requests = _both(
        proxy,
        table_name,
        lambda table: table.get_item(Key={"PK": "THROTTLE", "SK": "ITEM"}),
        plan=["throttle"] * 2,
        retries={"mode": "standard", "total_max_attempts": 2},
    )
    assert "ThrottlingException" in outcome[2]
    assert outcome[3]["ResponseMetadata"]["RetryAttempts"] == 1
    assert len(requests) == 2


def test_a_page_near_one_megabyte_and_the_next(proxy: Proxy, table_name: str) -> None:
    def case(table: Any) -> Any:
        first = table.query(KeyConditionExpression=Key("PK").eq("BIG"))
        second = table.query(KeyConditionExpression=Key("PK").eq("BIG"), ExclusiveStartKey=first["LastEvaluatedKey"])
        return {"first": first, "second": second}

    outcome, _ = _both(proxy, table_name, case)
    first, second = outcome[1]["first"], outcome[1]["second"]
    assert int(first["ResponseMetadata"]["HTTPHeaders"]["content-length"]) > 900_000
    assert len(first["Items"]) + len(second["Items"]) == 30 and "LastEvaluatedKey" not in second


def test_a_chunked_reply(proxy: Proxy, table_name: str) -> None:
    outcome, _ = _both(
        proxy, table_name, lambda table: table.query(KeyConditionExpression=Key("PK").eq("BIG")), plan=["chunked"]
    )
    assert outcome[1]["Count"] > 10 and "content-length" not in outcome[1]["ResponseMetadata"]["HTTPHeaders"]


@pytest.mark.parametrize("cut", ["cut", "cut_head"])
def test_a_reply_cut_short_is_retried_by_botocore(proxy: Proxy, table_name: str, cut: str) -> None:
    outcome, requests = _both(
        proxy, table_name, lambda table: table.get_item(Key={"PK": "BIG", "SK": "ITEM#001"}), plan=[cut]
    )
    assert outcome[1]["Item"]["n"] == 1 and outcome[1]["ResponseMetadata"]["RetryAttempts"] == 1
    assert [b"attempt=2" in r for r in requests] == [False, True]


def test_a_keep_alive_connection_the_server_closed(proxy: Proxy, table_name: str) -> None:
    def case(table: Any) -> Any:  # `added` serves three calls: its values must come back from each as they went
        _reset(table, "KEEP")
        added = {
            "Key": {"PK": "KEEP", "SK": "ITEM"},
            "UpdateExpression": "ADD amount :one",
            "ReturnValues": "UPDATED_NEW",
        }
        updates = []
        for _ in range(3):
            proxy.settled()  # the connection closed (when the plan says so) before the next request
            updates.append(table.update_item(**added, ExpressionAttributeValues={":one": 1}))
        assert added["Key"] == {"PK": "KEEP", "SK": "ITEM"}  # the caller's dicts spared (serialized in a copy)
        return updates

    outcome, requests = _both(proxy, table_name, case, plan=["close", "forward", "close"])
    assert [r["Attributes"]["amount"] for r in outcome[1]] == [101, 102, 103]  # each applied once
    assert len(requests) == 4 and not any(b"attempt=2" in r for r in requests)

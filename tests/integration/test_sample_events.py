"""Each function's handler, invoked in-process with each of its sample events from events/."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.local.cfn import function_specs, load_template, local_resource_names
from tests.local.samples import sample_event

pytestmark = pytest.mark.integration

EVENTS = Path(__file__).parents[2] / "events"
TEMPLATE = load_template()
FUNCTIONS = function_specs(TEMPLATE, local_resource_names(TEMPLATE))


class _Context:
    function_name = "local"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:local"
    aws_request_id = "sample-request"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 10_000


def _handler(handler: str) -> Any:
    module, attr = handler.rsplit(".", 1)
    return getattr(importlib.import_module(module.replace("/", ".")), attr)


def test_every_function_has_sample_events() -> None:
    assert FUNCTIONS
    for logical_id in FUNCTIONS:
        assert list((EVENTS / logical_id).glob("*.json")), f"events/{logical_id}/ has no sample event"


@pytest.mark.parametrize("path", sorted(EVENTS.glob("*/*.json")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_handler_accepts_its_sample_event(stack: Any, path: Path) -> None:
    spec = FUNCTIONS[path.parent.name]
    event = sample_event(stack, path)
    reply = _handler(spec.handler)(event, _Context())
    if "requestContext" in event:  # an HTTP API event: an HTTP reply with a JSON body
        assert 200 <= reply["statusCode"] < 300, reply
        assert json.loads(reply["body"])
    elif "Records" in event:  # a stream batch: every record handled
        assert reply == {"batchItemFailures": []}
    else:  # a scheduled event: the handler's own result
        assert isinstance(reply, dict) and reply


def test_a_platform_bill_the_wallet_refuses_is_kept_for_support_and_not_retried(stack: Any, table: Any) -> None:
    from tests.helpers import org_items

    # Given the sample bill for a funded USD agency org, but billed in EUR
    spec = FUNCTIONS["SpendIngestFunction"]
    event = sample_event(stack, EVENTS / "SpendIngestFunction" / "bill_recorded.json")
    event["detail"] |= {"currency": "EUR", "bill_id": "meta-eur-1"}
    org_id = event["detail"]["org_id"]
    before = [i for i in org_items(table, org_id) if i["SK"].startswith(("WALLET", "WLEDGER#"))]
    # When the event is handled (twice: a redelivery), Then it is refused without an error (no retry, no DLQ)
    for _ in range(2):
        reply = _handler(spec.handler)(event, _Context())
        assert reply["refused"] == "currency_mismatch" and "USD" in reply["message"]
    # And the wallet is untouched, and the bill is kept for support with why
    assert [i for i in org_items(table, org_id) if i["SK"].startswith(("WALLET", "WLEDGER#"))] == before
    [kept] = [i for i in org_items(table, org_id) if i["SK"].startswith("BILLREFUSED#")]
    assert (kept["SK"], kept["code"], kept["currency"], int(kept["amount_minor"])) == (
        "BILLREFUSED#meta#meta-eur-1",
        "currency_mismatch",
        "EUR",
        12345,
    )

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

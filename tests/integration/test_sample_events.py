"""Each function's handler, invoked in-process with each of its sample events from events/."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_stripe_webhooks import sign
from tests.local.cfn import function_specs, load_template, local_resource_names

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


def _agency_org_with_project(stack: Any) -> tuple[str, str]:
    import boto3

    from shared.auth import Caller
    from shared.catalog import plan_catalog
    from shared.clock import SystemClock
    from shared.orgs.models import BillingMode
    from shared.orgs.repository import OrgRepository
    from shared.orgs.service import OrgService

    orgs = OrgService(
        OrgRepository(boto3.resource("dynamodb").Table(stack.env["TABLE_NAME"])), plan_catalog(), SystemClock()
    )
    owner = Caller("sample_owner", None, frozenset())
    org = orgs.create_org(owner, name="Sample agency", billing_mode=BillingMode.AGENCY, currency="USD", plan_id="pro")
    project = orgs.create_project(owner, org.org.org_id, name="Sample")
    return org.org.org_id, project.project_id


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
    event = json.loads(path.read_text())
    if "stripe-signature" in event.get("headers", {}):
        event["headers"]["stripe-signature"] = sign(event["body"])  # signatures expire after 300 s
    if isinstance(event.get("detail"), dict) and event["detail"].get("org_id") == "org_sample_agency":
        # The sample names placeholder ids: give it a real agency org and project to bill.
        event["detail"]["org_id"], event["detail"]["project_id"] = _agency_org_with_project(stack)
    if event.get("org_id") == "org_sample_agency":
        event["org_id"] = _agency_org_with_project(stack)[0]
    reply = _handler(spec.handler)(event, _Context())
    if "requestContext" in event:  # an HTTP API event: an HTTP reply with a JSON body
        assert 200 <= reply["statusCode"] < 300, reply
        assert json.loads(reply["body"])
    else:  # a scheduled event: the handler's own result
        assert isinstance(reply, dict) and reply

"""Test session: one local stack per test process (DynamoDB Local with tables from template.yaml,
moto server for the other AWS services) and the local HTTP API in front of the real handlers.

Unit tests (tests/unit) use none of it and run with the network blocked."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

# Powertools reads these when shared.observability is first imported, which may be at collection time,
# before the stack applies the template's environment.
for _name, _value in {
    "POWERTOOLS_SERVICE_NAME": "layers-billing",
    "POWERTOOLS_METRICS_NAMESPACE": "LayersBilling",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_TRACE_DISABLED": "true",
}.items():
    os.environ.setdefault(_name, _value)

from tests.helpers import ApiClient  # noqa: E402


@pytest.fixture(scope="session")
def stack() -> Iterator[Any]:
    from tests.local.stack import start_local_stack

    local = start_local_stack()
    local.apply_env()
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture(autouse=True)
def _stripe_objects_within_the_contract(request: pytest.FixtureRequest) -> Iterator[None]:
    """The local Stripe (strict) records every object it returned or sent outside the pinned API version's
    contract (the request got a 500; an event made off a request, e.g. by a clock advance, only this record):
    a test that made one fails."""
    if "stack" not in request.fixturenames:
        yield
        return
    guard = request.getfixturevalue("stack").stripe.contract
    seen = len(guard.violations)
    yield
    assert guard.violations[seen:] == [], "the Stripe emulator sent objects outside the API version's contract"


@pytest.fixture(scope="session")
def api(stack: Any) -> ApiClient:
    _, base_url = stack.serve_api()  # stopped with the stack; Stripe's webhooks go to it
    return ApiClient(base_url)


@pytest.fixture(scope="session")
def table(stack: Any) -> Any:
    import boto3

    return boto3.resource("dynamodb").Table(stack.env["TABLE_NAME"])


@pytest.fixture(autouse=True)
def _block_network_in_unit_tests(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests are pure: any socket connection fails loudly."""
    if "tests/unit/" not in str(request.path):
        return

    def refuse(*_: Any, **__: Any) -> None:
        raise RuntimeError("unit tests must not use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)


# The simulation's one line (tests/sim/test_simulation.py records it as a user property; under xdist the
# controller receives it with the report), printed in the terminal summary.
_SIMULATION_LINES: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _SIMULATION_LINES.extend(str(value) for name, value in report.user_properties if name == "simulation")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for line in dict.fromkeys(_SIMULATION_LINES):
        terminalreporter.write_line(line)

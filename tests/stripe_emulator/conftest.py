"""Each test module gets its own emulator (module scope) and a real `stripe.StripeClient` pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import stripe

from tests.local.stripe_emulator import StripeEmulator
from tests.stripe_emulator.helpers import WebhookReceiver


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def emulator(receiver: WebhookReceiver) -> Iterator[StripeEmulator]:
    emu = StripeEmulator(api_key="sk_test_local", webhook_secret="whsec_local", strict_contract=True)
    emu.start(host="127.0.0.1", port=0)
    emu.set_webhook_endpoint(receiver.url)
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture(autouse=True)
def _objects_within_the_contract(request: pytest.FixtureRequest) -> Iterator[None]:
    """The emulator (strict) records objects it returned or sent outside the pinned API version's contract:
    a test that made one fails, even when the object was an event sent off a request (a clock advance)."""
    if "emulator" not in request.fixturenames:
        yield
        return
    guard = request.getfixturevalue("emulator").contract
    seen = len(guard.violations)
    yield
    assert guard.violations[seen:] == [], "the emulator sent objects outside the API version's contract"


@pytest.fixture(scope="module")
def client(emulator: StripeEmulator) -> stripe.StripeClient:
    # No retries: tests that check errors must see the first response.
    return stripe.StripeClient("sk_test_local", base_addresses={"api": emulator.base_url}, max_network_retries=0)

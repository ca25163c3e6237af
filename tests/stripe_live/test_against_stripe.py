"""The contract scenario (scenario.py) against Stripe's own test mode, to check the emulator against Stripe.

    STRIPE_API_KEY=sk_test_... .venv/bin/python -m pytest -q -m stripe_live tests/stripe_live

Skipped unless STRIPE_API_KEY holds a test-mode secret key (`sk_test_`; a live key is refused), so it never
runs in CI here. It creates customers, prices, a few $10-$20 test charges and a test clock (deleted at the end)
in that account, and needs no webhook endpoint. `STRIPE_LIVE_API_BASE=http://127.0.0.1:12111` points it at
another Stripe-compatible server instead (e.g. `python -m tests.local.stripe_emulator --port 12111` with
STRIPE_API_KEY=sk_test_local). Each test fails on its own assertions or when a request or an answered object
is outside the pinned version's contract (the problems are listed).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from tests.stripe_live import scenario
from tests.stripe_live.scenario import Setup, Target

API_KEY = os.environ.get("STRIPE_API_KEY", "")

pytestmark = [
    pytest.mark.stripe_live,
    pytest.mark.skipif(
        not API_KEY.startswith("sk_test_"),
        reason="set STRIPE_API_KEY=sk_test_... (a Stripe test-mode secret key) to run against Stripe",
    ),
]


@pytest.fixture(scope="module")
def live() -> Target:
    api_base = os.environ.get("STRIPE_LIVE_API_BASE") or None
    # Stripe's test clocks take seconds to minutes to advance; look every 2 s (well under the rate limit).
    return scenario.target(API_KEY, api_base, poll=2.0, timeout=300.0)


@pytest.fixture(scope="module")
def setup(live: Target) -> Setup:
    with live.recorder.recording():
        made = scenario.catalog_and_customer(live)
    assert live.recorder.problems() == []
    return made


@pytest.fixture
def checked(live: Target) -> Iterator[None]:
    """The test's exchanges are recorded; none may be outside the contract."""
    mark = live.recorder.mark()
    with live.recorder.recording():
        yield
    assert live.recorder.problems(mark) == []


@pytest.mark.usefixtures("checked")
@pytest.mark.parametrize("step", scenario.STEPS, ids=lambda step: step.__name__)
def test_gateway_step(live: Target, setup: Setup, step: Callable[[Target, Setup], None]) -> None:
    step(live, setup)


@pytest.mark.usefixtures("checked")
def test_subscription_on_a_test_clock(live: Target, setup: Setup) -> None:
    scenario.subscription_on_a_clock(live, setup)


@pytest.mark.usefixtures("checked")
def test_customer_portal(live: Target, setup: Setup) -> None:
    scenario.portal(live, setup)

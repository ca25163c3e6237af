"""The scenario of tests/stripe_live (run against Stripe's test mode with a key) against the emulator, so it
keeps passing here and a run against Stripe compares the two on the same assertions."""

from __future__ import annotations

from tests.local.stripe_emulator import StripeEmulator
from tests.stripe_live import scenario


def test_the_live_scenario_passes_against_the_emulator(emulator: StripeEmulator) -> None:
    target = scenario.target("sk_test_local", emulator.base_url, poll=0.01, timeout=30.0)
    with target.recorder.recording():
        setup = scenario.catalog_and_customer(target)
        for step in scenario.STEPS:
            step(target, setup)
        scenario.subscription_on_a_clock(target, setup)
        scenario.portal(target, setup)
    assert target.recorder.problems() == []
    assert len(target.recorder.exchanges) > 40

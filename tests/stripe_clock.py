"""Advancing a Stripe test clock the way Stripe allows it (used against the emulator and Stripe's test mode).

- One advance may go at most two intervals of the shortest subscription on the clock (two years without one):
  for our monthly prices a step of 31 days always fits, so a longer advance is made in steps.
- An advance answers `status: advancing` and completes asynchronously (`test_helpers.test_clock.ready`); the
  clock refuses another advance until then, and what it did (renewals, invoices) is only there once ready.
"""

from __future__ import annotations

import time
from typing import Any

import stripe

DAY = 86_400
CLOCK_STEP = 31 * DAY  # within two intervals of a monthly subscription (>= 59 days)


def wait_until_ready(client: stripe.StripeClient, clock_id: str, *, timeout: float = 60.0, poll: float = 0.01) -> Any:
    """The clock once `ready` (AssertionError on `internal_failure`, TimeoutError after `timeout` s)."""
    deadline = time.monotonic() + timeout
    while True:
        clock = client.v1.test_helpers.test_clocks.retrieve(clock_id)
        if clock.status == "ready":
            return clock
        if clock.status == "internal_failure":
            raise AssertionError(f"test clock {clock_id} failed to advance (internal_failure)")
        if time.monotonic() > deadline:
            raise TimeoutError(f"test clock {clock_id} still {clock.status} after {timeout} s")
        time.sleep(poll)


def advance_clock(
    client: stripe.StripeClient,
    clock_id: str,
    frozen_time: int,
    *,
    step: int = CLOCK_STEP,
    timeout: float = 60.0,
    poll: float = 0.01,
) -> Any:
    """Advances to `frozen_time` in steps of at most `step` seconds, each awaited until the clock is ready;
    returns the ready clock."""
    clock = wait_until_ready(client, clock_id, timeout=timeout, poll=poll)
    while clock.frozen_time < frozen_time:
        target = min(frozen_time, clock.frozen_time + step)
        client.v1.test_helpers.test_clocks.advance(clock_id, params={"frozen_time": target})
        clock = wait_until_ready(client, clock_id, timeout=timeout, poll=poll)
    return clock

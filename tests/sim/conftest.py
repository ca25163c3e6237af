"""The simulation's world for its tests: a table of its own on the session's DynamoDB Local."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.sim.world import SimWorld


@pytest.fixture(scope="module")
def world(stack: Any) -> Iterator[SimWorld]:
    """The run's world on the session's DynamoDB Local. The stack's stream pumps (its tables' outbox, polled ten
    times a second: ~9 % of a core, DynamoDB Local's mostly) are paused meanwhile: the simulation's table is not
    theirs (its stream is simulated), and the budget gets the cores."""
    for pump in stack.streams:
        pump.pause()
    made = SimWorld()
    try:
        yield made
    finally:
        made.stop()
        for pump in stack.streams:
            pump.resume()

"""The simulation in CI: as many seeded scenarios as fit the budget (SIM_SCENARIOS, at most; SIM_BUDGET_S),
every invariant holding in each. `make test` runs this file alone, after every other test (the budget gets both
cores); that each invariant is able to fail, and the seeds that found bugs, are `test_simulator_catches.py`'s."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from tests.sim.runner import report, run_many
from tests.sim.world import SimWorld

pytestmark = pytest.mark.integration

SEED = int(os.environ.get("SIM_SEED", "20261207"))
SCENARIOS = int(os.environ.get("SIM_SCENARIOS", "10000"))
BUDGET_S = float(os.environ.get("SIM_BUDGET_S", "280"))  # the run stays under 5 minutes on 2 cores
PROCESSES = int(os.environ.get("SIM_PROCESSES", "2"))  # Python's threads share one core: a process per core
WORKERS = int(os.environ.get("SIM_WORKERS", "4"))  # threads in each process


def test_every_invariant_holds_in_every_scenario(
    world: SimWorld, record_property: Callable[[str, object], None]
) -> None:
    summary = run_many(world, SEED, SCENARIOS, workers=WORKERS, processes=PROCESSES, each_step=False, budget_s=BUDGET_S)
    record_property("simulation", summary.line())
    print(summary.line())
    failures = [report(world, outcome, scenario, budget_s=30) for outcome, scenario in summary.failed[:2]]
    failures += [f"{f.invariant} (seed {SEED}): {f.detail}" for f in summary.global_failures]
    assert not failures, "\n\n".join(failures)
    assert summary.scenarios > 0

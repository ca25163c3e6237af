"""`python -m tests.sim --seed S --scenarios N`: runs scenarios S .. S+N-1 on a DynamoDB Local of its own
(or the one AWS_ENDPOINT_URL_DYNAMODB names) and prints the summary line; a failure is shrunk and printed
with its replay command. Exit status 1 when an invariant broke."""

from __future__ import annotations

import argparse
import os
import random
import sys

from tests.sim.runner import report, run_many


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sim")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--scenarios", type=int, default=200)
    parser.add_argument("--workers", type=int, default=4, help="threads in each process")
    parser.add_argument("--processes", type=int, default=2, help="Python's threads share one core: a process per core")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 2**31)
    stops = _local_dynamodb()
    from tests.sim.world import SimWorld

    world = SimWorld()
    try:
        summary = run_many(world, seed, args.scenarios, workers=args.workers, processes=args.processes)
        print(summary.line())
        seconds = max(summary.seconds, 1e-9)
        rates = f"{summary.scenarios / seconds:.2f} scenarios/s, {summary.steps / seconds:.1f} steps/s"
        print(f"({seconds:.1f} s: {rates})")
        for outcome, scenario in summary.failed[:3]:
            print(report(world, outcome, scenario))
        for failure in summary.global_failures:
            print(f"invariant {failure.invariant} broken across the run (seed {seed}): {failure.detail}")
            print(f"replay: make sim SEED={seed} SCENARIOS={args.scenarios}")
        return 1 if summary.failed or summary.global_failures else 0
    finally:
        world.stop()
        for stop in stops:
            stop()


def _local_dynamodb() -> list:
    if os.environ.get("AWS_ENDPOINT_URL_DYNAMODB"):
        return []
    from tests.local.dynamodb_local import start_dynamodb_local

    endpoint, stop = start_dynamodb_local()
    os.environ.update(
        AWS_ENDPOINT_URL_DYNAMODB=endpoint,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="local",
        AWS_SECRET_ACCESS_KEY="local",
        POWERTOOLS_TRACE_DISABLED="true",
        POWERTOOLS_METRICS_DISABLED="true",
        POWERTOOLS_SERVICE_NAME="layers-billing",
    )
    return [stop]


if __name__ == "__main__":
    sys.exit(main())

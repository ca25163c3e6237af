"""Starting the monthly invoice run (Step Functions, a Distributed Map over the due orgs).

Storage: the day's due (org, period) list is one JSON array in the runs bucket, `due/<date>.json`
(the Map's ItemReader reads it; the execution input carries only its location, so the input never grows
with the number of orgs). The execution is named by the date: a second start the same day is a no-op.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from typing import Any


@dataclass(frozen=True)
class DuePeriod:
    org_id: str
    period_key: str


@dataclass(frozen=True)
class RunStart:
    execution: str
    orgs: int
    started: bool
    execution_arn: str | None = None


def due_list_key(run_on: date) -> str:
    return f"due/{run_on.isoformat()}.json"


class InvoiceRunStarter:
    def __init__(self, s3: Any, sfn: Any, *, bucket: str, state_machine_arn: str):
        self._s3, self._sfn = s3, sfn
        self._bucket, self._machine = bucket, state_machine_arn

    def start(self, run_on: date, due: list[DuePeriod]) -> RunStart:
        """Writes the due list, then starts the day's run. Idempotent per day: a repeat rewrites the
        same list and finds the execution already started."""
        key = due_list_key(run_on)
        body = json.dumps([{"org_id": d.org_id, "period_key": d.period_key} for d in due], separators=(",", ":"))
        self._s3.put_object(Bucket=self._bucket, Key=key, Body=body.encode(), ContentType="application/json")
        name = f"invoice-run-{run_on.isoformat()}"
        run_input = json.dumps({"bucket": self._bucket, "key": key, "orgs": len(due)})
        try:
            started = self._sfn.start_execution(stateMachineArn=self._machine, name=name, input=run_input)
        except self._sfn.exceptions.ExecutionAlreadyExists:
            return RunStart(name, len(due), started=False)
        return RunStart(name, len(due), started=True, execution_arn=started["executionArn"])

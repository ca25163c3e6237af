"""AWS Step Functions rules that moto's ASL interpreter (moto 5.2.5) ignores, enforced in the local stack
so a state machine fails here where it would fail in AWS (DESIGN §9). Patches moto in this process only
(its server runs in-process: `ThreadedMotoServer`).

- **History quota**: 25,000 events per execution (Standard). AWS logs ExecutionFailed as event 25,000
  unless that event is ExecutionSucceeded; so does this. Each child execution of a Distributed Map has
  its own history (moto pools all children into one unbounded, discarded list).
- **Payload quota (256 KB)**: moto already fails a state whose output or a task result is over the quota
  with `States.DataLimitExceeded`. It lets `States.ALL` catch it (and then crashes on the error's name
  inside Map iterations); AWS does not: `States.ALL` never catches `States.DataLimitExceeded` or
  `States.Runtime`, so the execution fails. A child execution's input (a batch) is held to it too.
- **Distributed Map**: moto's parser refuses `ItemBatcher` and integer `ToleratedFailurePercentage`, and
  tolerates every failed child. `localize` takes the `ItemBatcher` out of the definition moto parses
  and keeps it here; the Map run then batches the items as AWS does (`{"Items": [...]}` per child
  execution, `MaxItemsPerBatch`, `MaxInputBytesPerBatch`) and fails with
  `States.ExceedToleratedFailureThreshold` when more children fail than the threshold allows.
"""

from __future__ import annotations

import json
import threading
from typing import Any

HISTORY_QUOTA = 25_000  # events per Standard execution (hard quota)
PAYLOAD_QUOTA = 256 * 1024  # bytes of UTF-8 JSON per state input / output / task result (hard quota)

# (state machine name, Map state name) -> its ItemBatcher: what moto's parser cannot read.
_batchers: dict[tuple[str, str], dict[str, Any]] = {}
_installed = threading.Lock()
_done = False


class HistoryQuotaExceeded(RuntimeError):
    """The execution reached Step Functions' quota of history events."""


# ------------------------------------------------------------------------------ definitions


def localize(machine_name: str, definition: str) -> str:
    """The definition moto can parse: each Map's `ItemBatcher` taken out (and kept for the Map run),
    an integer `ToleratedFailurePercentage` written as a float. Unsupported batcher fields fail here."""
    document = json.loads(definition)
    _localize_states(machine_name, document.get("States", {}))
    return json.dumps(document)


def _localize_states(machine: str, states: dict[str, Any]) -> None:
    for name, state in states.items():
        if state.get("Type") != "Map":
            continue
        batcher = state.pop("ItemBatcher", None)
        if batcher is not None:
            unsupported = set(batcher) - {"MaxItemsPerBatch", "MaxInputBytesPerBatch"}
            if unsupported or "ItemSelector" in state:
                raise ValueError(f"{machine}.{name}: the local ItemBatcher supports no {sorted(unsupported)}")
            _batchers[(machine, name)] = batcher
        if isinstance(state.get("ToleratedFailurePercentage"), int):
            state["ToleratedFailurePercentage"] = float(state["ToleratedFailurePercentage"])
        processor = state.get("ItemProcessor") or state.get("Iterator") or {}
        _localize_states(machine, processor.get("States", {}))


def batches(items: list[Any], batcher: dict[str, Any]) -> list[dict[str, Any]]:
    """Items grouped as AWS's ItemBatcher does: at most MaxItemsPerBatch items and MaxInputBytesPerBatch
    bytes (of the `{"Items": [...]}` JSON) per child execution."""
    most = int(batcher.get("MaxItemsPerBatch", len(items) or 1))
    max_bytes = int(batcher.get("MaxInputBytesPerBatch", PAYLOAD_QUOTA))
    out: list[list[Any]] = []
    size = 0
    for item in items:
        item_bytes = len(json.dumps(item, separators=(",", ":")).encode()) + 1
        if out and len(out[-1]) < most and size + item_bytes <= max_bytes:
            out[-1].append(item)
            size += item_bytes
        else:
            out.append([item])
            size = len(b'{"Items":[]}') + item_bytes
    return [{"Items": group} for group in out]


# ------------------------------------------------------------------------------ the patches


def install() -> None:
    """Patch moto's interpreter (idempotent)."""
    global _done
    with _installed:
        if _done:
            return
        _patch_history()
        _patch_catch_all()
        _patch_distributed_map()
        _done = True


def _patch_history() -> None:
    from moto.stepfunctions.parser.api import HistoryEventType
    from moto.stepfunctions.parser.asl.eval.environment import Environment
    from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager

    final = {
        HistoryEventType.ExecutionSucceeded,
        HistoryEventType.ExecutionFailed,
        HistoryEventType.ExecutionAborted,
        HistoryEventType.ExecutionTimedOut,
    }
    original_add, original_init = EventManager.add_event, Environment.__init__

    def add_event(self: Any, context: Any, event_type: Any, *args: Any, **kwargs: Any) -> int:
        owner = getattr(self, "quota_owner", None)
        if owner is not None and event_type not in final and len(self._history_event_list) >= HISTORY_QUOTA - 1:
            _fail_for_history(owner)
        return original_add(self, context, event_type, *args, **kwargs)

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.event_manager.quota_owner = self  # an execution's; a frame takes its parent's manager after

    EventManager.add_event = add_event  # type: ignore[method-assign]
    Environment.__init__ = init  # type: ignore[method-assign]


def _fail_for_history(owner: Any) -> None:
    from moto.stepfunctions.parser.api import ExecutionFailedEventDetails

    cause = f"The execution reached the maximum number of history events ({HISTORY_QUOTA:,})."
    if owner.is_running():
        owner.set_error(ExecutionFailedEventDetails(error="States.Runtime", cause=cause))  # stops every frame
    raise HistoryQuotaExceeded(cause)


def _patch_catch_all() -> None:
    """`States.ALL` matches neither `States.DataLimitExceeded` nor `States.Runtime` (AWS: terminal), and a
    Map iteration failing with a `States.*` error keeps that error (moto raises a ValueError instead)."""
    from moto.stepfunctions.parser.asl.component.common.error_name import error_equals_decl
    from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import iteration_worker

    terminal = {"States.DataLimitExceeded", "States.Runtime"}
    decl = error_equals_decl.ErrorEqualsDecl
    original_eval = decl._eval_body

    def eval_body(self: Any, env: Any) -> None:
        name = getattr(env.stack[-1], "error_name", None) if env.stack else None
        if name in terminal and name not in {e.error_name for e in self.error_names}:
            env.stack.pop()
            env.stack.append(False)
            return
        original_eval(self, env)

    def error_name_of(error_name: str) -> Any:
        if error_name.startswith("States."):
            return StatesErrorName.from_name(error_name)
        return CustomErrorName(error_name)

    decl._eval_body = eval_body  # type: ignore[method-assign]
    iteration_worker.CustomErrorName = error_name_of  # type: ignore[attr-defined,assignment]


def _patch_distributed_map() -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (
        distributed_iteration_component as component,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor import (
        distributed_item_processor_worker as worker,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager

    original_map_run = component.DistributedIterationComponent._map_run
    original_eval_job = worker.DistributedItemProcessorWorker._eval_job

    def map_run(self: Any, env: Any, eval_input: Any) -> None:
        machine = env.states.context_object.context_object_data["StateMachine"]["Name"]
        batcher = _batchers.get((machine, eval_input.state_name))
        items = env.stack.pop()
        jobs = batches(items, batcher) if batcher is not None else items
        env.stack.append(jobs)
        original_map_run(self, env, eval_input)
        _check_tolerated(env, eval_input, jobs, env.stack[-1], batched=batcher is not None)

    def eval_job(self: Any, env: Any, job: Any) -> None:
        manager = EventManager()  # a child execution: its own history, its own quota
        manager.quota_owner = env  # type: ignore[attr-defined]
        env.event_manager = manager
        size = len(json.dumps(job.job_input, separators=(",", ":")).encode())
        if size >= PAYLOAD_QUOTA:  # the child execution cannot start: it counts as failed
            self._map_run_record.item_counter.failed.count()
            job.job_output = None
            return
        original_eval_job(self, env, job)

    component.DistributedIterationComponent._map_run = map_run  # type: ignore[method-assign]
    worker.DistributedItemProcessorWorker._eval_job = eval_job  # type: ignore[method-assign]


def _check_tolerated(env: Any, eval_input: Any, jobs: list[Any], outputs: list[Any], *, batched: bool) -> None:
    """AWS fails the Map run when failed items exceed ToleratedFailureCount / ToleratedFailurePercentage
    (default 0); every item of a failed child counts as failed. moto reports a failed child as null."""
    from moto.stepfunctions.parser.api import ExecutionFailedEventDetails, HistoryEventType
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    total = sum(len(j["Items"]) for j in jobs) if batched else len(jobs)
    failed = sum((len(j["Items"]) if batched else 1) for j, out in zip(jobs, outputs, strict=False) if out is None)
    count = eval_input.tolerated_failure_count or 0
    percentage = eval_input.tolerated_failure_percentage or 0
    if failed == 0 or failed <= count or (total and failed * 100 <= percentage * total):
        return
    typ = StatesErrorNameType.StatesExceedToleratedFailureThreshold
    cause = f"The specified tolerated failure threshold was exceeded: {failed} of {total} items failed."
    raise FailureEventException(
        failure_event=FailureEvent(
            env=env,
            error_name=StatesErrorName(typ=typ),
            event_type=HistoryEventType.MapRunFailed,
            event_details=EventDetails(  # type: ignore[typeddict-item]  # moto's TypedDict is total
                executionFailedEventDetails=ExecutionFailedEventDetails(error=typ.to_name(), cause=cause)
            ),
        )
    )

"""The sweeper's walk (shared/sweep.py) with its workers: one poisoned entry never stops the others, the
time budget is checked before each entry is handed out, and workers see the caller's deadline."""

from __future__ import annotations

import threading
from typing import Any

from shared.deadline import deadline_in, seconds_left
from shared.sweep import SWEEP_RESERVE_S, SWEEP_WORKERS, sweep


def _entries(n: int) -> list[dict[str, Any]]:
    return [{"PK": f"ORG#o{i % 7}", "SK": f"RESV#r{i}"} for i in range(n)]


def test_a_poisoned_entry_is_counted_and_the_rest_are_handled() -> None:
    handled: list[str] = []
    lock = threading.Lock()

    def handle(entry: dict[str, Any]) -> bool:
        if entry["SK"] in ("RESV#r13", "RESV#r77"):
            raise KeyError("status")  # an unreadable index entry
        with lock:
            handled.append(entry["SK"])
        return entry["SK"] != "RESV#r5"  # already released: nothing done

    report = sweep("reservations", iter(_entries(200)), handle)
    assert (report.done, report.failed, report.left_behind) == (197, 2, False)
    assert len(handled) == 198 and len(set(handled)) == 198


def test_entries_run_on_several_workers_with_the_callers_deadline() -> None:
    threads: set[str] = set()
    deadlines: list[float | None] = []
    barrier = threading.Barrier(2, timeout=5)  # two entries at once, or this test fails

    def handle(entry: dict[str, Any]) -> bool:
        threads.add(threading.current_thread().name)
        deadlines.append(seconds_left())
        if entry["SK"] in ("RESV#r0", "RESV#r1"):
            barrier.wait()
        return True

    with deadline_in(60):
        report = sweep("reservations", iter(_entries(40)), handle)
    assert report.done == 40 and len(threads) > 1 and SWEEP_WORKERS > 1
    assert all(left is not None and 0 < left <= 60 for left in deadlines)


def test_no_entry_is_started_without_time_left_and_it_says_so() -> None:
    handled: list[dict[str, Any]] = []
    with deadline_in(SWEEP_RESERVE_S - 1):
        report = sweep("wallet holds", iter(_entries(10)), lambda e: bool(handled.append(e)) or True)
    assert (report.done, report.left_behind, handled) == (0, True, [])

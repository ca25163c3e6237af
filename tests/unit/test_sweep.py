"""The sweeper's walk (shared/sweep.py) with its workers: one poisoned entry never stops the others, the
time budget is checked before each entry is handed out, and workers see the caller's deadline."""

from __future__ import annotations

import threading
from typing import Any

from shared.deadline import deadline_in, seconds_left
from shared.sweep import SWEEP_RESERVE_S, SWEEP_WORKERS, batches, sweep, sweep_batched


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


def test_batches_group_an_accounts_entries_in_the_order_met_at_most_so_many_and_each_once() -> None:
    # an entry met twice in a window comes once (one transaction may not touch an item twice)
    entries = [*_entries(30), {"PK": "ORG#o0", "SK": "RESV#r0"}]
    groups = list(batches(iter(entries), most=3, window=40))
    assert all(len({e["PK"] for e in g}) == 1 and len(g) <= 3 for g in groups)
    assert list(dict.fromkeys(g[0]["PK"] for g in groups))[:3] == ["ORG#o0", "ORG#o1", "ORG#o2"]
    assert [len(g) for g in groups[:2]] == [3, 2]  # o0's 5 entries: 3, then 2
    assert sorted(e["SK"] for g in groups for e in g) == sorted(e["SK"] for e in _entries(30))


def test_a_group_that_fails_or_cannot_goes_entry_by_entry_and_only_the_poisoned_one_fails() -> None:
    alone: list[str] = []
    lock = threading.Lock()

    def together(group: list[dict[str, Any]]) -> int | None:
        if any(e["SK"] == "RESV#r14" for e in group):
            raise KeyError("status")  # a poisoned entry among them
        if any(e["SK"] == "RESV#r15" for e in group):
            return None  # one of them was ended meanwhile: nothing written
        return len(group)

    def one(entry: dict[str, Any]) -> bool:
        if entry["SK"] == "RESV#r14":
            raise KeyError("status")
        with lock:
            alone.append(entry["SK"])
        return True

    report = sweep_batched("reservations", iter(_entries(70)), together, one, most=4)
    assert (report.done, report.failed, report.left_behind) == (69, 1, False)
    # r14's group and r15's group (o0 and o1, 4 at most each) went one by one; the others together
    assert "RESV#r14" not in alone and "RESV#r15" in alone and len(alone) == 7

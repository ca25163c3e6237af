"""The sweeper's walk over a sharded GSI2 list (shared/keys.py `listed_pks`): every shard, every page (a
boto3 paginator), within the Lambda's time budget, each failure on its own.

Guarantees: one entry that fails (a stale or poisoned index entry, a conflict) is logged and counted and
never stops the others; it stays listed, so the next run tries it again. When the budget runs out the
walk stops and says so (`left_behind`): what is left is still listed and due, and the next run (every
5 minutes) starts with it, oldest first in each shard.

`sweep_batched` (the expiries): the walk reads a window of entries (WINDOW, every shard), groups them by
account and hands each group to `together`, which ends them in one transaction of that account from what
the index projects (GSI2 projects ALL), with no read per entry: a group of a few calls instead of ~4 calls
per entry. A group that cannot (an entry ended meanwhile: its condition fails and nothing is written) or
raises (a poisoned entry) is handled entry by entry (`alone`), so isolation is per entry as before.

Groups are handled SWEEP_WORKERS at a time (mostly different orgs; two groups of one org meet the
account's version and retry). The walk reads pages in the calling thread and keeps at most twice the
workers in flight, so it never reads far ahead of what it can finish, and checks the time budget before
it hands out each group. Workers run in a copy of the caller's context (its Stripe deadline).
Repositories in a worker need a table that is safe to share: boto3 clients are thread-safe, resources
are not (`shared.dynamo.PerThreadTable` gives each worker its own)."""

from __future__ import annotations

import contextvars
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from itertools import islice
from typing import Any

from shared import keys
from shared.deadline import seconds_left
from shared.dynamo import Item, dynamo_errors, plain
from shared.observability import logger

SWEEP_RESERVE_S = 6.0  # the walk starts no entry with less than this left before the function's deadline
PAGE_SIZE = 1000  # entries per index query (a 1 MB page is the other bound)
WINDOW = 1000  # entries read (every shard) before they are grouped by account
SWEEP_WORKERS = 8  # entries handled at once (bench group 9: ~4x one at a time on DynamoDB Local)


@dataclass
class SweepReport:
    """What one run of a sweep did: `done` entries handled, `failed` ones left listed for the next run,
    `left_behind` when the time budget ended the walk before the lists were empty."""

    name: str
    done: int = 0
    failed: int = 0
    left_behind: bool = False


def due_entries(table: Any, listed: str, until: str, page_size: int = PAGE_SIZE) -> Iterator[Item]:
    """Entries of the GSI2 list `listed` due by `until` (sort key <= until), shard after shard, paginated."""
    paginator = table.meta.client.get_paginator("query")
    for pk in keys.listed_pks(listed):
        pages = paginator.paginate(
            TableName=table.name,
            IndexName="GSI2",
            KeyConditionExpression="GSI2PK = :pk AND GSI2SK <= :until",
            ExpressionAttributeValues={":pk": pk, ":until": until},  # the resource's client (de)serializes
            PaginationConfig={"PageSize": page_size},
        )
        with dynamo_errors():
            for page in pages:
                yield from (plain(item) for item in page["Items"])


def _handled(name: str, entry: Item, handle: Callable[[Item], bool]) -> tuple[int, int]:
    """(done, failed) for one entry: whatever it raises is logged and counted, never passed on."""
    try:
        return int(handle(entry)), 0
    except Exception:  # isolation: whatever one entry raises, it stays listed and the walk goes on
        logger.exception("sweep entry failed", extra={"sweep": name, "pk": entry.get("PK"), "sk": entry.get("SK")})
        return 0, 1


def _handled_batch(
    name: str, batch: list[Item], together: Callable[[list[Item]], int | None], alone: Callable[[Item], bool]
) -> tuple[int, int]:
    """(done, failed) for entries of one account: `together` handles them at once from what the index holds
    (None: it could not, e.g. one had ended meanwhile; nothing was written); if it cannot or raises, each
    entry on its own (`alone`: read afresh), so a poisoned entry fails alone."""
    try:
        done = together(batch)
        if done is not None:
            return done, 0
    except Exception:  # a poisoned entry among them: each on its own finds it
        logger.warning("sweep batch failed, its entries one by one", extra={"sweep": name, "pk": batch[0].get("PK")})
    results = [_handled(name, entry, alone) for entry in batch]
    return sum(d for d, _ in results), sum(f for _, f in results)


def _out_of_time() -> bool:
    left = seconds_left()
    return left is not None and left < SWEEP_RESERVE_S


Task = Callable[[], tuple[int, int]]


def _run(name: str, tasks: Iterator[Task], workers: int) -> SweepReport:
    """Runs the tasks `workers` at a time until they or the time run out; at most twice the workers in
    flight, the budget checked before each task is handed out."""
    report = SweepReport(name)
    in_flight: deque[Future[tuple[int, int]]] = deque()

    def collect(future: Future[tuple[int, int]]) -> None:
        done, failed = future.result()
        report.done += done
        report.failed += failed

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"sweep-{name}") as pool:
        for task in tasks:
            if _out_of_time():
                report.left_behind = True
                break
            context = contextvars.copy_context()  # the caller's deadline, in the worker
            in_flight.append(pool.submit(context.run, task))
            while len(in_flight) >= 2 * workers:
                collect(in_flight.popleft())
        while in_flight:
            collect(in_flight.popleft())
    return report


def sweep(
    name: str, entries: Iterator[Item], handle: Callable[[Item], bool], workers: int | None = None
) -> SweepReport:
    """Runs `handle` on each entry (True when it did something), `workers` (SWEEP_WORKERS) at a time, until
    the entries or the time run out."""
    tasks = (partial(_handled, name, entry, handle) for entry in entries)
    return _run(name, tasks, workers or SWEEP_WORKERS)


def batches(entries: Iterator[Item], most: int, window: int = WINDOW) -> Iterator[list[Item]]:
    """The entries, `window` at a time, grouped by account (PK) in the order each account first appears,
    `most` entries at most in a group (an entry listed twice comes once)."""
    while True:
        read = list(islice(entries, window))
        if not read:
            return
        groups: dict[str, dict[str, Item]] = {}
        for entry in read:
            groups.setdefault(str(entry.get("PK")), {}).setdefault(str(entry.get("SK")), entry)
        for group in groups.values():
            listed = list(group.values())
            yield from (listed[i : i + most] for i in range(0, len(listed), most))


def sweep_batched(
    name: str,
    entries: Iterator[Item],
    together: Callable[[list[Item]], int | None],
    alone: Callable[[Item], bool],
    most: int,
    workers: int | None = None,
) -> SweepReport:
    """Like `sweep`, with the entries of one account handled together (`together`: how many it ended, None
    if it could not), up to `most` in one go; a group that fails goes entry by entry (`alone`)."""
    tasks = (partial(_handled_batch, name, batch, together, alone) for batch in batches(entries, most))
    return _run(name, tasks, workers or SWEEP_WORKERS)

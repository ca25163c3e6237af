"""The sweeper's walk over a sharded GSI2 list (shared/keys.py `listed_pks`): every shard, every page (a
boto3 paginator), within the Lambda's time budget, each entry on its own.

Guarantees: one entry that fails (a stale or poisoned index entry, a conflict) is logged and counted and
never stops the others; it stays listed, so the next run tries it again. When the budget runs out the
walk stops and says so (`left_behind`): what is left is still listed and due, and the next run (every
5 minutes) starts with it, oldest first in each shard."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from shared import keys
from shared.deadline import seconds_left
from shared.dynamo import Item, dynamo_errors, plain
from shared.observability import logger

SWEEP_RESERVE_S = 6.0  # the walk starts no entry with less than this left before the function's deadline
PAGE_SIZE = 100


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


def sweep(name: str, entries: Iterator[Item], handle: Callable[[Item], bool]) -> SweepReport:
    """Runs `handle` on each entry (True when it did something) until the entries or the time run out."""
    report = SweepReport(name)
    for entry in entries:
        left = seconds_left()
        if left is not None and left < SWEEP_RESERVE_S:
            report.left_behind = True
            break
        try:
            report.done += handle(entry)
        except Exception:  # isolation: whatever one entry raises, it stays listed and the walk goes on
            report.failed += 1
            logger.exception("sweep entry failed", extra={"sweep": name, "pk": entry.get("PK"), "sk": entry.get("SK")})
    return report

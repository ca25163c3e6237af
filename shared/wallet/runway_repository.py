"""DynamoDB layout of the runway's alerts (org partition of BillingTable; keys in shared/keys.py):

  SK=WRUNWAY    stages (the org's alert days, highest first; absent: the defaults), stage (the deepest
                stage alerted since the runway last rose above it; absent: none), revision (+1 per change),
                runway_tenths and evaluated_at (the last evaluation that changed the stage)

A stage change is one transaction: the item, conditioned on the revision the evaluation read, and the
alert's outbox messages. Two evaluations racing cannot both alert one crossing: the second's condition
fails and it evaluates again. Open holds are read from the wallet's HOLD# items (status pending); the
daily evaluation lists orgs by their wallet's activity markers (WACTIVITY) and their open holds (GSI2
HOLD#ACTIVE, every shard)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared import keys
from shared.dynamo import TransactionConditionFailed, dynamo_errors, plain
from shared.outbox import Message, outbox_puts
from shared.sweep import due_entries


@dataclass(frozen=True)
class RunwayState:
    stages: tuple[int, ...] | None = None  # None: the defaults
    stage: int | None = None
    revision: int = 0


class RunwayRepository:
    def __init__(self, table: Any):
        self._table = table
        self._name: str = table.name

    def state(self, org_id: str) -> RunwayState:
        with dynamo_errors():
            got = self._table.get_item(Key=keys.key(org_id, keys.WALLET_RUNWAY_SK), ConsistentRead=True).get("Item")
        if not got:
            return RunwayState()
        item = plain(got)
        stages = tuple(int(s) for s in item["stages"]) if item.get("stages") else None
        stage = int(item["stage"]) if item.get("stage") is not None else None
        return RunwayState(stages, stage, int(item.get("revision", 0)))

    def set_stages(self, org_id: str, stages: Sequence[int]) -> None:
        """The org's alert stages (the stage alerted is kept: the next evaluation compares with it)."""
        with dynamo_errors():
            self._table.update_item(
                Key=keys.key(org_id, keys.WALLET_RUNWAY_SK),
                UpdateExpression="SET stages = :s ADD revision :one",
                ExpressionAttributeValues={":s": list(stages), ":one": 1},
            )

    def move_stage(
        self,
        org_id: str,
        read: RunwayState,
        stage: int | None,
        tenths: int | None,
        messages: Sequence[Message],
        now: datetime,
    ) -> bool:
        """Records the stage (with the alert's messages, once); False if the state changed since `read`."""
        values: dict[str, object] = {":rev": read.revision, ":next": read.revision + 1, ":at": now.isoformat()}
        sets = ["revision = :next", "evaluated_at = :at"]
        for name, value in (("stage", stage), ("runway_tenths", tenths)):
            sets.append(f"{name} = :{name}")
            values[f":{name}"] = value
        update = {
            "TableName": self._name,
            "Key": keys.key(org_id, keys.WALLET_RUNWAY_SK),
            "UpdateExpression": "SET " + ", ".join(sets),
            "ConditionExpression": "attribute_not_exists(revision) OR revision = :rev",
            "ExpressionAttributeValues": values,
        }
        cause = f"runway:{read.revision + 1}"
        try:
            with dynamo_errors():
                self._table.meta.client.transact_write_items(
                    TransactItems=[{"Update": update}, *outbox_puts(self._name, org_id, cause, messages, now)]
                )
        except TransactionConditionFailed:
            return False
        return True

    def orgs_to_watch(self, today: datetime, days: int) -> Iterator[str]:
        """Orgs whose wallet moved on any of the last `days` days and today, then orgs with an open hold
        (listed while pending, however old: a campaign's hold spends with no bill yet), each once."""
        seen: set[str] = set()
        for back in range(days + 1):
            day = (today - timedelta(days=back)).date().isoformat()
            listed = due_entries(self._table, keys.wallet_activity_of_day(day), "~")
            yield from _new(seen, (str(item["org_id"]) for item in listed))
        holds = due_entries(self._table, keys.ACTIVE_HOLDS, "~")
        yield from _new(seen, (keys.org_id_of(item["PK"]) for item in holds))


def _new(seen: set[str], org_ids: Iterable[str]) -> Iterator[str]:
    for org_id in org_ids:
        if org_id not in seen:
            seen.add(org_id)
            yield org_id

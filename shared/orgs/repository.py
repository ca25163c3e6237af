"""DynamoDB repository of the org aggregate (single table; layout in template.yaml)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from boto3.dynamodb.conditions import Attr, Key

from shared import keys
from shared.clock import iso
from shared.dynamo import Item, TransactionConditionFailed, TxItem, batch_get, dynamo_errors, org_items, plain
from shared.errors import ConcurrentUpdateError, ConflictError, NotFoundError, PlanLimitError
from shared.keys import period_index_key
from shared.orgs.models import Member, Membership, Org, Project, ProjectStatus, Role
from shared.outbox import Announcement, SeatSyncTask, outbox_puts
from shared.pagination import Page, decode_cursor, encode_cursor
from shared.retry import backoff
from shared.wallet.repository import KEEP, account_key, mode_sync


def _org_pk(org_id: str) -> str:
    return f"ORG#{org_id}"


def _member_key(org_id: str, user_id: str) -> dict[str, str]:
    return {"PK": _org_pk(org_id), "SK": f"MEMBER#{user_id}"}


def _project_key(org_id: str, project_id: str) -> dict[str, str]:
    return {"PK": _org_pk(org_id), "SK": f"PROJECT#{project_id}"}


@dataclass(frozen=True)
class OrgRead:
    """An org read with one of its projects (None: none) and more items (None: none), in one snapshot."""

    org: Org
    project: Project | None
    items: list[Item | None]


def active_project(project_id: str, project: Project | None) -> Project:
    """`require_active_project` of the project as read."""
    if project is None:
        raise NotFoundError(f"Project {project_id} was not found.", code="project_not_found")
    if project.status is not ProjectStatus.ACTIVE:
        raise ConflictError(f"Project {project_id} is archived.", code="project_archived")
    return project


def _found(org_id: str, org: Org | None) -> Org:
    if org is None:
        raise NotFoundError(f"Org {org_id} was not found.", code="org_not_found")
    return org


def _truncated_end(item: Item | None) -> str | None:
    return str(item["period_end"]) if item and item.get("truncated") else None


def _org_key(org_id: str) -> dict[str, str]:
    return {"PK": _org_pk(org_id), "SK": "ORG"}


def _instant(iso_text: str) -> datetime:
    return datetime.fromisoformat(iso_text.replace("Z", "+00:00"))


def _org_pk_sk(org_id: str, sk: str) -> dict[str, str]:
    return {"PK": _org_pk(org_id), "SK": sk}


GRACE_INDEX = "GRACE#END"
_MONEY_EXISTS = ("stripe_customer_id", "subscription")  # with a wallet: the org's currency is locked


def _dump(model: Org | Member | Project) -> Item:
    data = model.model_dump(mode="json", exclude_none=True)
    for field in ("created_at", "updated_at", "added_at"):
        if field in data:
            data[field] = iso(getattr(model, field))
    return data


@dataclass(frozen=True)
class PeriodRead:
    """What `OrgRepository.read_period` read of a billing period in one round trip: the org (None: not
    asked, or none), where a new subscription's anchor cut the period short (None: it was not), whether the
    period is on the invoice run's index (GSI2), and the other items asked for, by sort key (as stored)."""

    org_id: str
    org: Org | None
    truncated_end: str | None
    listed: bool
    items: Mapping[str, Item]

    def require_org(self) -> Org:
        """The org; NotFoundError (404, `org_not_found`) when there is none."""
        return _found(self.org_id, self.org)


BATCH_GET_MAX = 100  # keys per BatchGetItem (DynamoDB's limit)
MODE_CHANGE_ATTEMPTS = 8
_MODE_BACKOFF_CAP_S = 0.002 * 2 ** (MODE_CHANGE_ATTEMPTS - 1)  # the window doubles on every attempt
SEAT_CHANGE_ATTEMPTS = 8
_LIMIT_MESSAGE = "The plan's limit was reached by a concurrent change; nothing was changed."


def _period_listing(org_id: str, period_key: str, period_end_iso: str) -> Item:
    """The item that lists a billing period for the invoice run by the day it ends (GSI2 PERIODEND#<day>)."""
    return {
        **period_index_key(org_id, period_key),
        "type": "period_index",
        "GSI2PK": f"PERIODEND#{period_end_iso[:10]}",
        "GSI2SK": f"{org_id}#{period_key}",
        "org_id": org_id,
        "period_key": period_key,
        "period_end": period_end_iso,
    }


def _once(table_name: str, org_id: str, told: tuple[Announcement, datetime] | None) -> list[TxItem]:
    """The outbox items of an announcement, each written only if it never was (a transaction's items)."""
    if told is None:
        return []
    items = outbox_puts(table_name, org_id, told[0].cause, told[0].messages, told[1])
    for item in items:
        item["Put"]["ConditionExpression"] = "attribute_not_exists(PK)"
    return items


@dataclass(frozen=True)
class _OrgUpdate:
    """One conditional update of the org item, as update_item (or a transaction's Update) takes it."""

    expression: str
    condition: str
    names: Mapping[str, str]
    values: Mapping[str, object]

    @classmethod
    def setting(
        cls,
        changes: Mapping[str, object],
        condition: str,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, object] | None = None,
    ) -> _OrgUpdate:
        """SET of every attribute in `changes` (as #c<i> = :c<i>) under `condition`, which may use `names`
        and `values` of its own."""
        sets = ", ".join(f"#c{i} = :c{i}" for i in range(len(changes)))
        return cls(
            f"SET {sets}",
            condition,
            {**{f"#c{i}": k for i, k in enumerate(changes)}, **(names or {})},
            {**{f":c{i}": v for i, v in enumerate(changes.values())}, **(values or {})},
        )

    def params(self) -> dict[str, object]:
        return {
            "UpdateExpression": self.expression,
            "ConditionExpression": self.condition,
            "ExpressionAttributeNames": dict(self.names),
            "ExpressionAttributeValues": dict(self.values),
        }


@dataclass(frozen=True)
class _SeatChange:
    """A member added or removed: its member item (first in the transaction), the org's counters (second,
    `counters` added under `condition`), and the org's seat revision moved on by one, with the outbox task
    that syncs the Stripe seat quantity for the new revision (in the same transaction)."""

    org_id: str
    member: TxItem
    counters: str
    condition: str
    values: Mapping[str, object]
    at: datetime

    def items(self, table_name: str, revision: int) -> list[TxItem]:
        """The transaction at the org's seat `revision` (its condition fails once another change moved it)."""
        held = "seat_revision = :rev" if revision else "(attribute_not_exists(seat_revision) OR seat_revision = :rev)"
        org = {
            "TableName": table_name,
            "Key": _org_key(self.org_id),
            "UpdateExpression": f"ADD {self.counters}, seat_revision :one",
            "ConditionExpression": f"{self.condition} AND {held}",
            "ExpressionAttributeValues": {**self.values, ":one": 1, ":rev": revision},
        }
        task = SeatSyncTask(revision + 1)
        return [
            self.member,
            {"Update": org},
            *outbox_puts(table_name, self.org_id, f"seats:{task.seat_revision}", [task], self.at),
        ]


def _org_mode(changes: Mapping[str, object]) -> str | None:
    mode = changes.get("billing_mode")
    return None if mode is None else str(mode)


def _member_change_refused(exc: TransactionConditionFailed) -> ConflictError:
    """A member change's transaction refused: the member item first, the org's owners second."""
    if 0 in exc.indexes:
        return ConflictError("The member changed while this request ran; retry.", code="concurrent_update")
    return ConflictError("An org must keep at least one owner.", code="last_owner")


class OrgRepository:
    """All reads are strongly consistent; every write that depends on a counter is conditional."""

    def __init__(self, table: Any):
        self._table = table
        self._client = table.meta.client
        self._name = table.name

    # ------------------------------------------------------------------ reads
    def get_org_and_member(self, org_id: str, user_id: str) -> tuple[Org | None, Member | None]:
        org: Org | None = None
        member: Member | None = None
        for item in self._batch_get([_org_key(org_id), _member_key(org_id, user_id)]):
            if item["SK"] == "ORG":
                org = Org.model_validate(plain(item))
            else:
                member = Member.model_validate(plain(item))
        return org, member

    def get_member(self, org_id: str, user_id: str) -> Member | None:
        with dynamo_errors():
            item = self._table.get_item(Key=_member_key(org_id, user_id), ConsistentRead=True).get("Item")
        return Member.model_validate(plain(item)) if item else None

    def get_project(self, org_id: str, project_id: str) -> Project | None:
        with dynamo_errors():
            item = self._table.get_item(Key=_project_key(org_id, project_id), ConsistentRead=True).get("Item")
        return Project.model_validate(plain(item)) if item else None

    def _query(self, start: Mapping[str, Any] | None, **query: object) -> Any:
        """One page of `query`, from `start` (a LastEvaluatedKey) when given."""
        with dynamo_errors():
            return self._table.query(**query, **({"ExclusiveStartKey": start} if start else {}))

    def _query_org(self, org_id: str, prefix: str, cursor: str | None, limit: int) -> tuple[list[Item], str | None]:
        start = decode_cursor(cursor, "PK", _org_pk(org_id))
        if start and not str(start.get("SK", "")).startswith(prefix):
            decode_cursor("!", "PK", "")  # raises invalid_cursor
        resp = self._query(
            start,
            KeyConditionExpression=Key("PK").eq(_org_pk(org_id)) & Key("SK").begins_with(prefix),
            Limit=limit,
            ConsistentRead=True,
        )
        return resp["Items"], encode_cursor(resp.get("LastEvaluatedKey"), "PK")

    def list_members(self, org_id: str, cursor: str | None, limit: int) -> Page[Member]:
        items, nxt = self._query_org(org_id, "MEMBER#", cursor, limit)
        return Page([Member.model_validate(plain(i)) for i in items], nxt)

    def list_projects(self, org_id: str, cursor: str | None, limit: int) -> Page[Project]:
        items, nxt = self._query_org(org_id, "PROJECT#", cursor, limit)
        return Page([Project.model_validate(plain(i)) for i in items], nxt)

    def list_memberships(self, user_id: str, cursor: str | None, limit: int) -> Page[Membership]:
        start = decode_cursor(cursor, "GSI1PK", f"USER#{user_id}", fields=frozenset({"GSI1SK", "PK", "SK"}))
        ours = start and start["PK"].startswith("ORG#") and start["GSI1SK"] == start["PK"]
        if start and not (ours and start["SK"] == f"MEMBER#{user_id}"):
            decode_cursor("!", "PK", "")  # not the key of one of this user's memberships: invalid_cursor
        resp = self._query(
            start,
            IndexName="GSI1",
            KeyConditionExpression=Key("GSI1PK").eq(f"USER#{user_id}"),
            Limit=limit,
        )
        members = [Member.model_validate(plain(i)) for i in resp["Items"]]
        projection = {"ProjectionExpression": "org_id, #n", "ExpressionAttributeNames": {"#n": "name"}}
        got = self._batch_get([_org_key(m.org_id) for m in members], consistent=False, **projection) if members else []
        names = {i["org_id"]: i["name"] for i in got}
        page = [Membership(org_id=m.org_id, name=names[m.org_id], role=m.role) for m in members if m.org_id in names]
        return Page(page, encode_cursor(resp.get("LastEvaluatedKey"), "GSI1PK"))

    # ------------------------------------------------------------------ writes
    def create_org(self, org: Org, owner: Member) -> None:
        """Creates the org with its first owner, atomically."""
        items = [
            {
                "Put": {
                    "TableName": self._name,
                    "Item": {**_org_key(org.org_id), "type": "org", **_dump(org)},
                    "ConditionExpression": "attribute_not_exists(PK)",
                }
            },
            self._put_member_item(owner),
        ]
        try:
            with dynamo_errors():
                self._client.transact_write_items(TransactItems=items)
        except TransactionConditionFailed as exc:
            raise ConflictError("An org with this id already exists.", code="org_exists") from exc

    def _put_member_item(self, member: Member) -> TxItem:
        item = {
            **_member_key(member.org_id, member.user_id),
            "type": "member",
            "GSI1PK": f"USER#{member.user_id}",
            "GSI1SK": f"ORG#{member.org_id}",
            **_dump(member),
        }
        return {"Put": {"TableName": self._name, "Item": item, "ConditionExpression": "attribute_not_exists(PK)"}}

    def update_org(
        self,
        org_id: str,
        changes: Mapping[str, object],
        *,
        expected: Mapping[str, object],
        agency_fee_bps: int | None = None,
    ) -> Org:
        """Sets `changes` if every `expected` attribute still holds; ConflictError otherwise.
        `agency_fee_bps`: the fee rate the wallet keeps when the change leaves agency mode."""
        conditions = ["attribute_exists(PK)", *(f"#e{i} = :e{i}" for i in range(len(expected)))]
        values: dict[str, object] = {f":e{i}": v for i, v in enumerate(expected.values())}
        if "currency" in changes:  # checked in the write too: no money may exist in the old currency
            conditions += [f"(attribute_not_exists({a}) OR attribute_type({a}, :null))" for a in _MONEY_EXISTS]
            values[":null"] = "NULL"
        update = _OrgUpdate.setting(
            changes, " AND ".join(conditions), names={f"#e{i}": k for i, k in enumerate(expected)}, values=values
        )
        try:
            if "currency" in changes:
                item = self._update_without_wallet(org_id, update)
            else:
                item = self._update_org(org_id, update, _org_mode(changes), agency_fee_bps)
        except TransactionConditionFailed as exc:
            if "currency" in changes:
                raise ConflictError(
                    "The currency is locked: money exists in it (a Stripe customer, a subscription or a wallet).",
                    code="currency_locked",
                ) from exc
            raise ConflictError(
                "The org changed while this request ran; nothing was changed. Retry.", code="concurrent_update"
            ) from exc
        return Org.model_validate(plain(item))

    def _update_without_wallet(self, org_id: str, update: _OrgUpdate) -> Item:
        """The org's update, on condition that it has no wallet (a currency change: the wallet's first write
        copies the currency it is made in)."""
        no_wallet = {
            "TableName": self._name,
            "Key": account_key(org_id),
            "ConditionExpression": "attribute_not_exists(PK)",
        }
        with dynamo_errors():
            self._client.transact_write_items(
                TransactItems=[
                    {"Update": {"TableName": self._name, "Key": _org_key(org_id), **update.params()}},
                    {"ConditionCheck": no_wallet},
                ]
            )
            return dict(self._table.get_item(Key=_org_key(org_id), ConsistentRead=True)["Item"])

    def _update_org(
        self,
        org_id: str,
        update: _OrgUpdate,
        mode: str | None,
        agency_fee_bps: int | None = None,
        agency_until: object = KEEP,
        also: Sequence[TxItem] = (),
    ) -> Item:
        """Updates the org item and returns it. A billing-mode or agency_until change also sets the
        wallet's copy, in the same transaction (see `mode_sync`); `also`: more writes made with it, all or
        none. TransactionConditionFailed if the org's own condition fails."""
        if mode is None and agency_until is KEEP:
            return self._update_org_alone(org_id, update, also)
        for attempt in range(MODE_CHANGE_ATTEMPTS):
            with dynamo_errors():
                wallet = self._table.get_item(Key=account_key(org_id), ProjectionExpression="PK", ConsistentRead=True)
            sync = mode_sync(
                self._name,
                org_id,
                mode,
                wallet_exists="Item" in wallet,
                agency_fee_bps=agency_fee_bps,
                agency_until=agency_until,
            )
            try:
                with dynamo_errors():
                    self._client.transact_write_items(
                        TransactItems=[
                            {"Update": {"TableName": self._name, "Key": _org_key(org_id), **update.params()}},
                            sync,
                            *also,
                        ]
                    )
            except TransactionConditionFailed as exc:
                if 0 in exc.indexes or any(i >= 2 for i in exc.indexes):  # the org's or one of `also`'s
                    raise
                continue  # the wallet was created in between: read again
            except ConcurrentUpdateError:  # a wallet transaction in flight (holds, bills): back off
                time.sleep(backoff(attempt, cap=_MODE_BACKOFF_CAP_S))
                continue
            with dynamo_errors():
                return dict(self._table.get_item(Key=_org_key(org_id), ConsistentRead=True)["Item"])
        raise ConcurrentUpdateError("The org's wallet is busy; nothing was changed. Retry.")

    def _update_org_alone(self, org_id: str, update: _OrgUpdate, also: Sequence[TxItem]) -> Item:
        if not also:
            with dynamo_errors():
                resp = self._table.update_item(Key=_org_key(org_id), ReturnValues="ALL_NEW", **update.params())
            return dict(resp["Attributes"])
        with dynamo_errors():
            self._client.transact_write_items(
                TransactItems=[{"Update": {"TableName": self._name, "Key": _org_key(org_id), **update.params()}}, *also]
            )
            return dict(self._table.get_item(Key=_org_key(org_id), ConsistentRead=True)["Item"])

    def add_member(self, member: Member, *, expected_plan_id: str, max_members: int | None, seat_revision: int) -> None:
        """Adds a seat, with the outbox task that syncs Stripe's seat quantity (see `_write_seat_change`);
        refused if the member exists or the org is at its seat limit. `seat_revision`: the org's, as read."""
        condition = "attribute_exists(PK) AND plan_id = :plan"
        values: dict[str, object] = {":plan": expected_plan_id}
        if max_members is not None:
            condition += " AND member_count < :max"
            values[":max"] = max_members
        owner_add = ", owner_count :one" if member.role is Role.OWNER else ""
        change = _SeatChange(
            member.org_id,
            self._put_member_item(member),
            "member_count :one" + owner_add,
            condition,
            values,
            member.added_at,
        )
        try:
            self._write_seat_change(change, seat_revision)
        except TransactionConditionFailed as exc:
            if 0 in exc.indexes:
                raise ConflictError(f"{member.user_id} is already a member.", code="member_exists") from exc
            raise PlanLimitError(_LIMIT_MESSAGE, code="seat_limit_reached") from exc

    def change_role(self, org_id: str, user_id: str, old: Role, new: Role) -> Member:
        """Changes a role; demoting an owner is refused when they are the last one."""
        owner_delta = (new is Role.OWNER) - (old is Role.OWNER)
        org_update: TxItem = {
            "Update": {
                "TableName": self._name,
                "Key": _org_key(org_id),
                "UpdateExpression": "ADD owner_count :d",
                "ConditionExpression": "attribute_exists(PK)" + (" AND owner_count > :one" if owner_delta < 0 else ""),
                "ExpressionAttributeValues": {":d": owner_delta, **({":one": 1} if owner_delta < 0 else {})},
            }
        }
        items = [
            {
                "Update": {
                    "TableName": self._name,
                    "Key": _member_key(org_id, user_id),
                    "UpdateExpression": "SET #r = :new",
                    "ConditionExpression": "#r = :old",
                    "ExpressionAttributeNames": {"#r": "role"},
                    "ExpressionAttributeValues": {":new": new.value, ":old": old.value},
                }
            },
            *([org_update] if owner_delta else []),
        ]
        try:
            with dynamo_errors():
                self._client.transact_write_items(TransactItems=items)
        except TransactionConditionFailed as exc:
            raise _member_change_refused(exc) from exc
        member = self.get_member(org_id, user_id)
        if member is None:
            raise NotFoundError(f"{user_id} is not a member of this org.", code="member_not_found")
        return member

    def remove_member(self, org_id: str, user_id: str, role: Role, *, seat_revision: int, at: datetime) -> None:
        """Removes a seat, with the outbox task that syncs Stripe's seat quantity; refused when it is the
        last owner. `seat_revision`: the org's, as read; `at`: now (the task's time)."""
        is_owner = role is Role.OWNER
        delete: TxItem = {
            "Delete": {
                "TableName": self._name,
                "Key": _member_key(org_id, user_id),
                "ConditionExpression": "#r = :role",
                "ExpressionAttributeNames": {"#r": "role"},
                "ExpressionAttributeValues": {":role": role.value},
            }
        }
        change = _SeatChange(
            org_id,
            delete,
            "member_count :minus" + (", owner_count :minus" if is_owner else ""),
            "attribute_exists(PK)" + (" AND owner_count > :one" if is_owner else ""),
            {":minus": -1},
            at,
        )
        try:
            self._write_seat_change(change, seat_revision)
        except TransactionConditionFailed as exc:
            raise _member_change_refused(exc) from exc

    def _write_seat_change(self, change: _SeatChange, revision: int) -> None:
        """Commits `change` at the org's seat `revision`, which it moves on by one: the outbox task it
        writes is named by the new revision, so each seat change has one task (and one Stripe key). When a
        concurrent seat change moved the revision first, reads it again and retries.
        TransactionConditionFailed when any other condition fails."""
        for attempt in range(SEAT_CHANGE_ATTEMPTS):
            try:
                with dynamo_errors():
                    self._client.transact_write_items(TransactItems=change.items(self._name, revision))
                return
            except TransactionConditionFailed as exc:
                current = None if 0 in exc.indexes else self._seat_revision(change.org_id)
                if current is None or current == revision:
                    raise
                revision = current
            time.sleep(backoff(attempt))
        raise ConcurrentUpdateError("The org's seats are changing concurrently; nothing was changed. Retry.")

    def _seat_revision(self, org_id: str) -> int | None:
        """The org's seat revision now; None when there is no org."""
        with dynamo_errors():
            item = self._table.get_item(
                Key=_org_key(org_id), ProjectionExpression="seat_revision, PK", ConsistentRead=True
            ).get("Item")
        return None if item is None else int(item.get("seat_revision", 0))

    def create_project(self, project: Project, *, expected_plan_id: str, max_projects: int | None) -> None:
        """Creates an active project; refused at the plan's project limit."""
        items = [
            {
                "Put": {
                    "TableName": self._name,
                    "Item": {
                        **_project_key(project.org_id, project.project_id),
                        "type": "project",
                        **_dump(project),
                    },
                    "ConditionExpression": "attribute_not_exists(PK)",
                }
            },
            self._count_project(project.org_id, +1, expected_plan_id, max_projects),
        ]
        self._write_project_change(items)

    def set_project_status(
        self, project: Project, status: ProjectStatus, *, expected_plan_id: str, max_projects: int | None
    ) -> None:
        """Archives or reactivates; reactivation counts against the project limit again."""
        delta = 1 if status is ProjectStatus.ACTIVE else -1
        items = [
            {
                "Update": {
                    "TableName": self._name,
                    "Key": _project_key(project.org_id, project.project_id),
                    "UpdateExpression": "SET #s = :new, updated_at = :now",
                    "ConditionExpression": "#s = :old",
                    "ExpressionAttributeNames": {"#s": "status"},
                    "ExpressionAttributeValues": {
                        ":new": status.value,
                        ":old": project.status.value,
                        ":now": iso(project.updated_at),
                    },
                }
            },
            self._count_project(project.org_id, delta, expected_plan_id, max_projects),
        ]
        self._write_project_change(items)

    def _count_project(self, org_id: str, delta: int, plan_id: str, max_projects: int | None) -> TxItem:
        condition = "attribute_exists(PK) AND plan_id = :plan"
        values: dict[str, object] = {":d": delta, ":plan": plan_id}
        if delta > 0 and max_projects is not None:
            condition += " AND active_project_count < :max"
            values[":max"] = max_projects
        return {
            "Update": {
                "TableName": self._name,
                "Key": _org_key(org_id),
                "UpdateExpression": "ADD active_project_count :d",
                "ConditionExpression": condition,
                "ExpressionAttributeValues": values,
            }
        }

    def _write_project_change(self, items: list[TxItem]) -> None:
        try:
            with dynamo_errors():
                self._client.transact_write_items(TransactItems=items)
        except TransactionConditionFailed as exc:
            if 0 in exc.indexes:
                raise ConflictError(
                    "The project changed while this request ran; retry.", code="concurrent_update"
                ) from exc
            raise PlanLimitError(_LIMIT_MESSAGE) from exc

    # ------------------------------------------------------------------ Stripe links
    def has_wallet(self, org_id: str) -> bool:
        """Whether the org's wallet account exists (any movement, even a bill, creates it)."""
        with dynamo_errors():
            found = self._table.get_item(Key=keys.key(org_id, keys.WALLET_SK), ProjectionExpression="PK")
        return "Item" in found

    def get_org(self, org_id: str) -> Org | None:
        with dynamo_errors():
            item = self._table.get_item(Key=_org_key(org_id), ConsistentRead=True).get("Item")
        return Org.model_validate(plain(item)) if item else None

    def get_orgs(self, org_ids: Iterable[str]) -> dict[str, Org | None]:
        """Many orgs by key in batches of 100 (BatchGetItem), what DynamoDB leaves unprocessed asked again
        with backoff: one round trip per 100 orgs, not one per org. None for an org that does not exist."""
        wanted = sorted(set(org_ids))
        found: dict[str, Org | None] = dict.fromkeys(wanted)
        for start in range(0, len(wanted), BATCH_GET_MAX):
            keys = [_org_key(org_id) for org_id in wanted[start : start + BATCH_GET_MAX]]
            for item in self._batch_get(keys):
                org = Org.model_validate(plain(item))
                found[org.org_id] = org
        return found

    def get_projects(self, wanted: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Project]:
        """Many projects by (org_id, project_id), 100 per round trip; the ones that exist."""
        pairs = sorted(set(wanted))
        found: dict[tuple[str, str], Project] = {}
        for start in range(0, len(pairs), BATCH_GET_MAX):
            for item in self._batch_get([_project_key(o, p) for o, p in pairs[start : start + BATCH_GET_MAX]]):
                project = Project.model_validate(plain(item))
                found[project.org_id, project.project_id] = project
        return found

    def _batch_get(self, keys: list[dict[str, str]], consistent: bool = True, **asked: object) -> list[Item]:
        """The items of up to 100 keys, what DynamoDB leaves unprocessed asked again (`shared.dynamo.batch_get`)."""
        return batch_get(self._table.meta.client, self._name, keys, consistent=consistent, **asked)

    def org_and_items(self, org_id: str, more: Sequence[Mapping[str, str]]) -> tuple[Org, list[Item | None]]:
        """`require_org` and more items by key (None: none), in one snapshot (TransactGetItems): as if read
        one after the other with nothing written between. ConcurrentUpdateError while a transaction writes
        any of them."""
        with dynamo_errors():
            got = self._client.transact_get_items(
                TransactItems=[{"Get": {"TableName": self._name, "Key": k}} for k in (_org_key(org_id), *more)]
            )["Responses"]
        org, *items = (response.get("Item") for response in got)
        return _found(org_id, Org.model_validate(plain(org)) if org else None), [plain(i) if i else None for i in items]

    def require_org(self, org_id: str) -> Org:
        """The org; NotFoundError (404, `org_not_found`) when there is none."""
        return _found(org_id, self.get_org(org_id))

    def require_active_project(self, org_id: str, project_id: str) -> Project:
        """A project of the org that money may be committed for (a credit reservation, a wallet hold):
        NotFoundError (404, `project_not_found`) for none in this org, ConflictError (409,
        `project_archived`) for an archived one."""
        return active_project(project_id, self.get_project(org_id, project_id))

    def org_and_project(self, org_id: str, project_id: str, more: Sequence[Mapping[str, str]]) -> OrgRead:
        """`require_org`, the project (None: none) and more items by key (None: none), in one round trip
        (BatchGetItem, consistent: each item as of its own read, as GetItems one after the other)."""
        org, project, *items = self._items([_org_key(org_id), _project_key(org_id, project_id), *more])
        found = _found(org_id, Org.model_validate(org) if org else None)
        return OrgRead(found, Project.model_validate(project) if project else None, items)

    def _items(self, wanted: Sequence[Mapping[str, str]]) -> list[Item | None]:
        """Items by key, in that order (None: none), in one round trip (BatchGetItem, consistent)."""
        found = {(str(i["PK"]), str(i["SK"])): plain(i) for i in self._batch_get([dict(k) for k in wanted])}
        return [found.get((k["PK"], k["SK"])) for k in wanted]

    def link_stripe_customer(self, org_id: str, customer_id: str) -> str:
        """Records the org's Stripe customer once; returns the customer the org is linked to."""
        items = [
            {
                "Update": {
                    "TableName": self._name,
                    "Key": _org_key(org_id),
                    "UpdateExpression": "SET stripe_customer_id = :c",
                    "ConditionExpression": "attribute_exists(PK) AND attribute_not_exists(stripe_customer_id)",
                    "ExpressionAttributeValues": {":c": customer_id},
                }
            },
            {
                "Put": {
                    "TableName": self._name,
                    "Item": {"PK": f"STRIPE_CUSTOMER#{customer_id}", "SK": "LINK", "org_id": org_id},
                }
            },
        ]
        try:
            with dynamo_errors():
                self._client.transact_write_items(TransactItems=items)
        except TransactionConditionFailed:
            org = self.get_org(org_id)
            if org is None or org.stripe_customer_id is None:
                raise NotFoundError(f"Org {org_id} was not found.", code="org_not_found") from None
            return org.stripe_customer_id
        return customer_id

    def customer_org(self, customer_id: str, org_id: str) -> tuple[str | None, Org | None]:
        """The id of the org the customer is linked to (None: none) and, when that is `org_id` (the one
        expected), the org: both read in one round trip (BatchGetItem, consistent)."""
        items = self._batch_get([{"PK": f"STRIPE_CUSTOMER#{customer_id}", "SK": "LINK"}, _org_key(org_id)])
        linked = next((str(i["org_id"]) for i in items if i["SK"] == "LINK"), None)
        org = next((Org.model_validate(plain(i)) for i in items if i["SK"] == "ORG" and linked == org_id), None)
        return linked, org

    def org_id_for_customer(self, customer_id: str) -> str | None:
        with dynamo_errors():
            item = self._table.get_item(Key={"PK": f"STRIPE_CUSTOMER#{customer_id}", "SK": "LINK"}).get("Item")
        return str(item["org_id"]) if item else None

    def apply_subscription(
        self,
        org_id: str,
        changes: Mapping[str, object],
        *,
        fetched_ms: int,
        read: Org,
        agency_fee_bps: int | None = None,
        index: tuple[str, str] | None = None,
        told: tuple[Announcement, datetime] | None = None,
    ) -> Org | None:
        """Writes the subscription state fetched from Stripe at `fetched_ms` unless a later fetch was
        already written (out-of-order webhooks never roll state back): None when this one is stale.
        `changes` were made from `read`: if its billing mode or agency_until moved since, nothing is
        written and ConcurrentUpdateError says to make them again. `index`: (period key, end) of a period
        the state begins, listed for the invoice run in the same transaction (see `index_period`); `told`:
        what announces the change (and when), in the outbox with it, once (written before - by the sweeper,
        or a concurrent webhook - the state is written without it)."""
        condition = (
            "attribute_exists(PK) AND (attribute_not_exists(subscription_synced_ms) OR subscription_synced_ms <= :ms)"
            " AND billing_mode = :read_mode"
        )
        update = _OrgUpdate.setting(
            {**changes, "subscription_synced_ms": fetched_ms},
            condition,
            values={":ms": fetched_ms, ":read_mode": read.billing_mode.value},
        )
        until = changes.get("agency_until", KEEP)
        try:
            listing = [] if index is None else [_period_listing(org_id, *index)]
            also = [{"Put": {"TableName": self._name, "Item": item}} for item in listing] + _once(
                self._name, org_id, told
            )
            item = self._update_org(org_id, update, _org_mode(changes), agency_fee_bps, until, also)
        except TransactionConditionFailed as exc:
            if told is not None and 0 not in exc.indexes:  # the announcement only: it was written before (once)
                return self.apply_subscription(
                    org_id, changes, fetched_ms=fetched_ms, read=read, agency_fee_bps=agency_fee_bps, index=index
                )
            now = self.get_org(org_id)
            if now is None or now.subscription_synced_ms > fetched_ms:
                return None
            raise ConcurrentUpdateError("The org changed while its subscription was written; read again.") from None
        return Org.model_validate(plain(item))

    # ------------------------------------------------------------------ grace periods (dunning sweep)
    def track_grace(self, org_id: str, grace_ends_iso: str) -> None:
        """Lists the org until its grace period ends (GSI2 GRACE#END, by end): the sweeper tells it then.
        Written only when a payment fails, so a single index key stays far below a partition's limits."""
        item = {
            **_org_pk_sk(org_id, "DUNNING"),
            "type": "grace",
            "org_id": org_id,
            "grace_ends": grace_ends_iso,
            "GSI2PK": GRACE_INDEX,
            "GSI2SK": f"{grace_ends_iso}#{org_id}",
        }
        with dynamo_errors():
            self._table.put_item(Item=item)

    def untrack_grace(self, org_id: str, grace_ends_iso: str | None = None) -> None:
        """Takes the org off the grace list (its item stays, unlisted: the table allows no deletes but a
        member's); with `grace_ends_iso`, only if it still lists that grace (a new episode stays listed)."""
        exists = Attr("PK").exists()
        condition = exists if grace_ends_iso is None else exists & Attr("grace_ends").eq(grace_ends_iso)
        self._unlist(_org_pk_sk(org_id, "DUNNING"), condition)

    def _unlist(self, key: dict[str, str], condition: Any) -> None:
        """Removes an item's GSI2 keys (off its sparse list); nothing if the condition (existence first)
        does not hold."""
        try:
            with dynamo_errors():
                self._table.update_item(
                    Key=key, UpdateExpression="REMOVE GSI2PK, GSI2SK", ConditionExpression=condition
                )
        except TransactionConditionFailed:
            return

    def graces_ended(self, now_iso: str, limit: int) -> list[tuple[str, str]]:
        """(org, grace end) of the grace periods that ended by `now_iso`, oldest first."""
        key = Key("GSI2PK").eq(GRACE_INDEX) & Key("GSI2SK").lte(f"{now_iso}#~")
        with dynamo_errors():
            resp = self._table.query(IndexName="GSI2", KeyConditionExpression=key, Limit=limit)
        return [(str(item["org_id"]), str(item["grace_ends"])) for item in resp["Items"]]

    def set_enterprise_terms(self, org_id: str, terms: Mapping[str, object] | None) -> None:
        """The org's contract terms (None: none, the attribute removed as if never set)."""
        update = (
            {"UpdateExpression": "SET enterprise_terms = :t", "ExpressionAttributeValues": {":t": dict(terms)}}
            if terms is not None
            else {"UpdateExpression": "REMOVE enterprise_terms"}
        )
        with dynamo_errors():
            self._table.update_item(Key=_org_key(org_id), ConditionExpression="attribute_exists(PK)", **update)

    # ------------------------------------------------------------------ period-end index (invoice run)
    def index_period(
        self, org_id: str, period_key: str, period_end_iso: str, *, truncated: bool = False, relist: bool = True
    ) -> None:
        """Makes the period findable by the day it ends (GSI2 PERIODEND#<date>). Idempotent. `relist=False`:
        only a period not indexed yet; one already there stays as it is - listed as the subscription's mirror
        wrote it (its end, `truncated`), or taken off the index (invoiced, or re-anchored away) - so a rerun
        of the previous period's close, which indexes this one, changes nothing."""
        item = _period_listing(org_id, period_key, period_end_iso)
        unlisted = {} if relist else {"ConditionExpression": "attribute_not_exists(PK)"}
        try:
            with dynamo_errors():
                self._table.put_item(Item=item | ({"truncated": True} if truncated else {}), **unlisted)
        except TransactionConditionFailed:
            return

    def reanchor_periods(self, org_id: str, period_key: str, *, truncate: bool = False) -> None:
        """Deals with every other period of the org that overlaps the subscription's (indexed with its
        state, see `apply_subscription`) and has no invoice yet: one period per stretch of time, never a
        stray draft. The one anchored on the org's creation (before its first subscription) is taken off
        the index; with `truncate` (a later subscription, on a new anchor) the old subscription's period
        ends where the new one begins and is invoiced on its own, with what was recorded in it."""
        for other, other_end in self.listed_periods(org_id):
            if other == period_key or _instant(other_end) <= _instant(period_key):
                continue  # the period itself, or one that ended before it began (still to invoice)
            with dynamo_errors():
                invoiced = self._table.get_item(Key=_org_pk_sk(org_id, f"INVOICE#{other}"), ProjectionExpression="PK")
            if "Item" in invoiced:
                continue
            if truncate and other < period_key:
                self.index_period(org_id, other, period_key, truncated=True)
            else:
                self.unindex_period(org_id, other)

    def truncated_end(self, org_id: str, period_key: str) -> str | None:
        """Where a period cut short by a new subscription's anchor ends (None: it was not)."""
        with dynamo_errors():
            item = self._table.get_item(Key=period_index_key(org_id, period_key), ConsistentRead=True).get("Item")
        return _truncated_end(item)

    def read_period(
        self, org_id: str, period_key: str, *, with_org: bool = True, also: Sequence[str] = ()
    ) -> PeriodRead:
        """The period's listing (with the org unless `with_org` is False, and the org's items of the sort keys
        `also`) in one round trip: one consistent BatchGetItem."""
        index_key = period_index_key(org_id, period_key)
        asked = ([_org_key(org_id)] if with_org else []) + [index_key] + [_org_pk_sk(org_id, sk) for sk in also]
        items = {str(i["SK"]): i for i in self._batch_get(asked)}
        org, listing = items.pop("ORG", None), items.pop(str(index_key["SK"]), None)
        return PeriodRead(
            org_id=org_id,
            org=Org.model_validate(plain(org)) if org else None,
            truncated_end=_truncated_end(listing),
            listed=bool(listing and "GSI2PK" in listing),
            items=items,
        )

    def unindex_period(self, org_id: str, period_key: str) -> None:
        """The period off the invoice run's index (invoiced, or re-anchored away); its item stays, unlisted."""
        self._unlist(period_index_key(org_id, period_key), Attr("PK").exists())

    def periods_ending(self, day: str) -> list[tuple[str, str, str]]:
        """(org, period key, period end) of the periods ending on `day` not invoiced yet (an issued
        invoice takes its period off the index)."""
        found: list[tuple[str, str, str]] = []
        start = None
        while True:
            resp = self._query(start, IndexName="GSI2", KeyConditionExpression=Key("GSI2PK").eq(f"PERIODEND#{day}"))
            found += [(str(i["org_id"]), str(i["period_key"]), str(i["period_end"])) for i in resp["Items"]]
            start = resp.get("LastEvaluatedKey")
            if start is None:
                return found

    def listed_periods(self, org_id: str) -> list[tuple[str, str]]:
        """(period key, period end) of the org's periods still listed for the invoice run, read in one
        consistent query of its own partition (an org's run: its listings whatever day they end on)."""
        items = org_items(self._table, org_id, "PERIODIDX#", Attr("GSI2PK").exists())
        return [(str(i["period_key"]), str(i["period_end"])) for i in items]

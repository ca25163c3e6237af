"""DynamoDB layout of the wallet (org partition of BillingTable; keys in shared/keys.py):

  SK=WALLET                 the account (the ledger engine's): balance, held, pending, floor,
                            low_threshold, status, available (= the rule, kept arithmetically by holds),
                            version, seq, auto-top-up fields, spend per day for the runway
                            (spend_days: bills + fees; drawn_days: what of it bills took from holds),
                            billing_mode (the org's, kept in step by the org's writes: see mode_sync)
  SK=WLEDGER#<seq:012d>     entries, append-only: the lines of one change (kind, amount, balance_after),
                            currency, project, platform, ref, actor, idempotency_key, created_at
  SK=IDEM#<cause>           one per money movement's cause, written in the movement's transaction
  SK=HOLD#<hold_id>         holds: pending -> exhausted | voided | expired (GSI2 HOLD#ACTIVE#<shard> while
                            pending), remaining_minor drawn down by each bill that names it (legacy: posted)
  SK=TOPUP#<topup_id>       top-ups (GSI2 AUTO#INFLIGHT#<shard> while an auto-top-up has no payment intent yet)
  SK=WPERIOD#<period>#[LATE#<earlier period>#]<platform>#<project>  spend and fee per period and
                            platform and project: what the invoice reads (LATE#: recorded after the earlier
                            period's invoice was made, carried to this one)
  SK=WACTIVITY#<day>        a marker of a day the ledger moved (GSI2 WACTIVITY#DAY#<day>: the daily
                            reconciliation's orgs), put with each movement (overwritten, never deleted)
  SK=WSTMT#<period>         the movements by kind (topups, spend, fees, refunds, reversals, adjustments)
                            the period's invoice covers: its wallet statement

Every change is attributed to one period (shared/wallet/poster.py) and written under the condition
that the period's invoice (SK=INVOICE#<period>) does not exist yet, so every movement is on exactly one
invoice: the invoice's close and a movement of its period cannot both win.

Balance changes go through the ledger engine (shared/ledger), versioned. Holds do not move money: they
change `held` / `available` arithmetically under the condition `available >= :amount`, so 1,000
concurrent holds need no retries and can never pass the floor; the project's budget counters
(shared/budgets) are checked and updated in the same transaction."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from boto3.dynamodb.conditions import Attr

from shared import keys
from shared.budgets.models import BudgetTouch, merged
from shared.budgets.repository import BUDGET_CHANGED, BUDGET_RULE, BudgetChanged, BudgetRefused, BudgetRepository
from shared.dynamo import (
    Item,
    TransactionConditionFailed,
    TxItem,
    close_indexed,
    dynamo_errors,
    from_item,
    org_items,
    plain,
    set_fields,
)
from shared.ledger import WALLET, Cause, Change, ConditionFailed, EntryLine, Head, Ledger, LedgerConflict, Line, Named
from shared.ledger.engine import MAX_TRANSACTION_ITEMS
from shared.orgs.models import BillingMode
from shared.pagination import Page
from shared.sweep import due_entries
from shared.wallet.account import STATEMENT_FIELD, WalletAccount, WalletStatus
from shared.wallet.models import (
    Attribution,
    AutoTopUp,
    ChargeLink,
    Hold,
    HoldDrawn,
    PeriodMovements,
    PeriodSpend,
    Record,
    StoredWallet,
    TopUp,
    TopUpPut,
    TopUpSet,
    WalletChange,
)

MAX_HOLDS_ENDED = 99  # one sweep group of a wallet's holds: one transaction or a few (hold_packs)
_ACCOUNT = ("currency", "balance", "held", "pending", "floor", "low_threshold")
_AUTO = {f"auto_{name}": name for name in AutoTopUp.__dataclass_fields__}


class HoldRefused(Exception):
    pass


class HoldEnded(Exception):
    """The hold a bill names ended (voided, expired) while the bill was written."""


class ModeChanged(Exception):
    """The org's billing mode changed after it was read (checked when the wallet is first written)."""


class PeriodClosed(Exception):
    """The invoice of the period a change was attributed to was made meanwhile: attribute it again."""


class Duplicate(Exception):
    """The record exists already (a replayed hold or top-up)."""


def account_key(org_id: str) -> keys.Key:
    return keys.key(org_id, keys.WALLET_SK)


def hold_key(org_id: str, hold_id: str) -> keys.Key:
    return keys.key(org_id, keys.hold_sk(hold_id))


def hold_of(item: Item | None) -> Hold | None:
    """The hold of its item as read (plain numbers; None: none)."""
    return from_item(Hold, item) if item else None


KEEP = object()  # mode_sync: leave the wallet's copy of agency_until as it is


def mode_sync(
    table_name: str,
    org_id: str,
    mode: str | None,
    *,
    wallet_exists: bool,
    agency_fee_bps: int | None = None,
    agency_until: object = KEEP,
) -> TxItem:
    """The transaction item an org's billing-mode change carries, so the wallet's copy of the mode never
    disagrees with the org's: holds check the copy and need no third item. If the wallet did not exist
    when read, the item asserts it still does not; the wallet's first write copies the org's mode and
    asserts it is still the org's mode. Of two racing transactions one fails, and it reads again.
    The change bumps the wallet's version, so a balance change that read the old mode retries. Leaving
    agency mode keeps the fee rate it had (shared/wallet/account.kept_fee_bps). `agency_until` (an ISO
    instant, or None for no limit) is copied the same way: holds are refused from that instant on."""
    if not wallet_exists:
        condition = {"Key": account_key(org_id), "ConditionExpression": "attribute_not_exists(PK)"}
        return {"ConditionCheck": {"TableName": table_name, **condition}}
    values: dict[str, object] = {":one": 1}
    sets = ["version = version + :one"]
    if mode is not None:
        sets.append("billing_mode = :m")
        values[":m"] = mode
    if agency_fee_bps is not None:
        sets.append("agency_fee_bps = :fee")
        values[":fee"] = agency_fee_bps
    remove = ""
    if isinstance(agency_until, str):
        sets.append("agency_until = :until")
        values[":until"] = agency_until
    elif agency_until is None:
        remove = " REMOVE agency_until"
    return {
        "Update": {
            "TableName": table_name,
            "Key": account_key(org_id),
            "UpdateExpression": "SET " + ", ".join(sets) + remove,
            "ConditionExpression": "attribute_exists(PK)",
            "ExpressionAttributeValues": values,
        }
    }


def _stored(head: Head, item: Item) -> StoredWallet:
    account = WalletAccount(**{k: item[k] for k in _ACCOUNT}, status=WalletStatus(item["status"]))
    auto = AutoTopUp(**{name: item[attr] for attr, name in _AUTO.items() if attr in item})
    mode = BillingMode(item["billing_mode"]) if item.get("billing_mode") else None
    kept = int(item["agency_fee_bps"]) if "agency_fee_bps" in item else None
    days = {d: int(v) for d, v in (item.get("spend_days") or {}).items()}
    drawn = {d: int(v) for d, v in (item.get("drawn_days") or {}).items()}
    return StoredWallet(account, head, auto, mode, kept, days, drawn, item.get("available"))


class WalletRepository:
    def __init__(self, table: Any):
        self._table = table
        self._client = table.meta.client
        self._name: str = table.name
        self._ledger = Ledger(table, WALLET)
        self._budgets = BudgetRepository(table)

    @property
    def table(self) -> Any:
        return self._table

    # ------------------------------------------------------------------ reads
    def get(self, org_id: str) -> StoredWallet | None:
        read = self._ledger.read(org_id)
        return _stored(*read) if read else None

    @staticmethod
    def stored(item: Item | None) -> StoredWallet | None:
        """The wallet of its account item (plain numbers) read by another way than `get`; None for no item."""
        return _stored(Head(int(item["version"]), int(item["seq"])), item) if item else None

    def _item(self, org_id: str, sk: str) -> Item | None:
        with dynamo_errors():
            got = self._table.get_item(Key=keys.key(org_id, sk), ConsistentRead=True).get("Item")
        return plain(got) if got else None

    def invoice_made(self, org_id: str, period_key: str) -> bool:
        """Whether the period's invoice exists (its close made it): its movements are final."""
        with dynamo_errors():
            got = self._table.get_item(
                Key=keys.invoice_key(org_id, period_key), ConsistentRead=True, ProjectionExpression="PK"
            ).get("Item")
        return got is not None

    def hold(self, org_id: str, hold_id: str) -> Hold | None:
        return hold_of(self._item(org_id, keys.hold_sk(hold_id)))

    def record_refused_bill(self, org_id: str, bill: Mapping[str, object], code: str, reason: str, at: str) -> None:
        """A platform bill the wallet could not take (e.g. another currency), kept for support: its money
        was spent on the platform, so it must not vanish in a retry queue. One item per (platform, bill)."""
        item = {**bill, **keys.key(org_id, keys.refused_bill_sk(str(bill["platform"]), str(bill["bill_id"])))}
        item |= {"type": "refused_bill", "code": code, "reason": reason, "refused_at": at}
        with dynamo_errors():
            self._table.put_item(Item=item)

    def topup(self, org_id: str, topup_id: str) -> TopUp | None:
        item = self._item(org_id, keys.topup_sk(topup_id))
        return from_item(TopUp, item) if item else None

    def cause(self, org_id: str, cause: str) -> Item | None:
        """What the movement with this cause recorded (e.g. the fee charged), None if it never committed."""
        return self._ledger.cause(org_id, cause)

    def lines(self, org_id: str, cursor: str | None, limit: int, filters: dict[str, str | None]) -> Page[EntryLine]:
        """Newest first; filters: kind, project_id, platform, from/to (ISO dates, `to` exclusive)."""
        parts: list[Any] = [Attr(n).eq(filters[n]) for n in ("project_id", "platform") if filters.get(n)]
        if filters.get("from"):
            parts.append(Attr("created_at").gte(filters["from"]))
        if filters.get("to"):
            parts.append(Attr("created_at").lt(filters["to"]))
        where = None
        for part in parts:
            where = part if where is None else where & part
        return self._ledger.lines(org_id, cursor, limit, where=where, kind=filters.get("kind"))

    def expired_holds(self, now_iso: str) -> Iterator[Item]:
        """Listed holds past their expiry, every shard, paginated (read them with `listed_hold`)."""
        return due_entries(self._table, keys.ACTIVE_HOLDS, now_iso)

    @staticmethod
    def listed_hold(item: Item) -> tuple[str, Hold]:
        return keys.org_id_of(item["PK"]), from_item(Hold, item)

    def stalled_auto_top_ups(self, started_before_iso: str) -> Iterator[tuple[str, TopUp]]:
        """Auto-top-ups claimed before then that still have no payment intent, oldest first per shard."""
        for item in due_entries(self._table, keys.AUTO_IN_FLIGHT, started_before_iso):
            yield keys.org_id_of(item["PK"]), from_item(TopUp, item)

    def topups(self, org_id: str) -> list[TopUp]:
        """Every top-up of the org, in any status."""
        return [from_item(TopUp, i) for i in org_items(self._table, org_id, keys.TOPUP_PREFIX)]

    def period_spend(self, org_id: str, period_key: str) -> list[Item]:
        """Every (platform, project) spend aggregate of the period, page after page (a query answers at
        most 1 MB: an org with thousands of projects x platforms needs several)."""
        return org_items(self._table, org_id, keys.wallet_period_prefix(period_key))

    def charge_link(self, charge_id: str) -> tuple[str, str] | None:
        """(org id, top-up id) of the top-up a Stripe charge paid."""
        with dynamo_errors():
            got = self._table.get_item(Key=keys.charge_link_key(charge_id)).get("Item")
        return (str(got["org_id"]), str(got["topup_id"])) if got else None

    # ------------------------------------------------------------------ money movements
    def post(
        self,
        org_id: str,
        stored: StoredWallet,
        change: WalletChange,
        *,
        mode: str,
        attribution: Attribution,
        agency_until: str | None = None,
        now: datetime,
    ) -> None:
        """Commits a versioned change through the ledger engine. LedgerConflict if another change came
        first; AlreadyApplied if its cause was applied before; HoldEnded if the hold it posts is no longer
        pending; ModeChanged if this is the wallet's first write and the org's mode is no longer `mode`."""
        before, after = stored.account, change.after
        sets: dict[str, object] = {k: getattr(after, k) for k in _ACCOUNT if k != "held"}
        sets["status"] = after.status.value
        if change.auto is not None:
            sets |= {attr: getattr(change.auto, name) for attr, name in _AUTO.items()}
        sets |= _spend_days(change)
        items = [Named(_name(r), self._record_item(org_id, r, attribution)) for r in change.records]
        items += self._statement_items(org_id, change, attribution) + self._activity(org_id, change, now)
        items += [item for touch in merged(change.budgets) for item in self._budgets.touch_items(org_id, touch)]
        if stored.head.new:  # the wallet's copies of the billing mode and agency_until start equal to the org's
            sets["billing_mode"] = mode
            if agency_until is not None:
                sets["agency_until"] = agency_until
            items.append(Named("org_mode", _org_mode_is(self._name, org_id, mode, agency_until, after.currency)))
        cause = change.cause
        if cause is not None:  # where the movement went: which invoice covers it
            where = {"period_key": attribution.period_key, "late_for": attribution.late_for or ""}
            cause = Cause(cause.key, {**cause.record, **where})
        try:
            self._ledger.commit(
                Change(
                    org_id,
                    stored.head,
                    sets=sets,
                    adds={"held": after.held - before.held, "available": after.available - before.available},
                    lines=_lines(change),
                    entry={"currency": after.currency, **change.entry},
                    cause=cause,
                    items=items,
                    messages=change.messages,
                ),
                now,
            )
        except ConditionFailed as exc:
            if "org_mode" in exc.names:
                raise ModeChanged from exc
            if "hold" in exc.names:
                raise HoldEnded from exc
            if "period_open" in exc.names:
                raise PeriodClosed from exc
            if BUDGET_RULE in exc.names:  # the project's limits were put since read: read them again
                raise LedgerConflict from exc
            raise

    def _statement_items(self, org_id: str, change: WalletChange, attribution: Attribution) -> list[Named]:
        """The period's invoice is not made yet, and the change's movements are added to its statement."""
        open_check: TxItem = {
            "ConditionCheck": {
                "TableName": self._name,
                "Key": keys.invoice_key(org_id, attribution.period_key),
                "ConditionExpression": "attribute_not_exists(PK)",
            }
        }
        sums: dict[str, int] = {}
        for movement in change.movements:
            field_name = STATEMENT_FIELD[movement.kind]
            sums[field_name] = sums.get(field_name, 0) + movement.amount
        if not sums:
            return [Named("period_open", open_check)]
        statement: TxItem = {
            "Update": {
                "TableName": self._name,
                "Key": keys.wallet_statement_key(org_id, attribution.period_key),
                "UpdateExpression": "ADD " + ", ".join(f"#k{i} :v{i}" for i in range(len(sums))),
                "ExpressionAttributeNames": {f"#k{i}": k for i, k in enumerate(sums)},
                "ExpressionAttributeValues": {f":v{i}": v for i, v in enumerate(sums.values())},
            }
        }
        return [Named("period_open", open_check), Named("statement", statement)]

    def statement(self, org_id: str, period_key: str, later: Sequence[str]) -> PeriodMovements | None:
        """A period's movements by kind and the balance at its close: the balance now less what the
        movements of the `later` periods added - read in one snapshot (TransactGetItems), so no change
        falls between the reads. None if the org has no wallet."""
        wanted = [account_key(org_id)] + [keys.wallet_statement_key(org_id, k) for k in (period_key, *later)]
        with dynamo_errors():
            got = self._client.transact_get_items(
                TransactItems=[{"Get": {"TableName": self._name, "Key": k}} for k in wanted]
            )["Responses"]
        wallet, own, *after = [plain(r.get("Item") or {}) for r in got]
        if not wallet:
            return None
        figures = set(STATEMENT_FIELD.values())
        later_sum = sum(int(v) for item in after for k, v in item.items() if k in figures)
        moved = {k: int(v) for k, v in own.items() if k in figures}
        return PeriodMovements(moved, closing=int(wallet["balance"]) - later_sum)

    def _record_item(self, org_id: str, record: Record, attribution: Attribution) -> TxItem:
        if isinstance(record, HoldDrawn):
            return self._draw_item(org_id, record)
        if isinstance(record, TopUpPut):
            return self._put_topup(org_id, record.topup, listed=record.listed)
        if isinstance(record, TopUpSet):
            return _set(self._name, keys.key(org_id, keys.topup_sk(record.topup_id)), record.values)
        if isinstance(record, ChargeLink):
            item = {**keys.charge_link_key(record.charge_id), "org_id": org_id, "topup_id": record.topup_id}
            return {"Put": {"TableName": self._name, "Item": item}}
        return self._add_period_spend(org_id, record, attribution)

    def _activity(self, org_id: str, change: WalletChange, now: datetime) -> list[Named]:
        """The day's marker, with a change that moves money: the daily reconciliation finds an org that only
        spent (no Stripe movement, no report) by it."""
        if not change.movements:
            return []
        day = now.astimezone(UTC).date().isoformat()
        item: Item = {**keys.key(org_id, keys.wallet_activity_sk(day)), "type": "wallet_activity", "org_id": org_id}
        item |= {"GSI2PK": keys.listed_pk(keys.wallet_activity_of_day(day), org_id), "GSI2SK": org_id}
        return [Named("activity", {"Put": {"TableName": self._name, "Item": item}})]

    def _put_topup(self, org_id: str, topup: TopUp, *, listed: bool = False) -> TxItem:
        item: Item = {k: v for k, v in asdict(topup).items() if v is not None}
        item |= {**keys.key(org_id, keys.topup_sk(topup.topup_id)), "type": "wallet_topup"}
        if listed:  # until it has a payment intent: the sweeper resumes it if interrupted
            item |= {"GSI2PK": keys.listed_pk(keys.AUTO_IN_FLIGHT, topup.topup_id), "GSI2SK": topup.created_at}
        return {"Put": {"TableName": self._name, "ConditionExpression": "attribute_not_exists(PK)", "Item": item}}

    def _add_period_spend(self, org_id: str, spend: PeriodSpend, attribution: Attribution) -> TxItem:
        sk = keys.wallet_period_sk(attribution.period_key, spend.platform, spend.project_id, attribution.late_for)
        adds = (
            "credited_spend :s, credited_fee :f, corrections :one"
            if spend.correction
            else "ad_spend :s, fee :f, bills :one"
        )
        values: dict[str, object] = {":p": spend.platform, ":j": spend.project_id, ":s": spend.spend, ":f": spend.fee}
        sets = "SET platform = :p, project_id = :j"
        if attribution.late_for:
            sets += ", late_for = :late"
            values[":late"] = attribution.late_for
        return {
            "Update": {
                "TableName": self._name,
                "Key": keys.key(org_id, sk),
                "UpdateExpression": f"{sets} ADD {adds}",
                "ExpressionAttributeValues": values | {":one": 1},
            }
        }

    # ------------------------------------------------------------------ top-up records (no money moves)
    def create_topup(self, org_id: str, topup: TopUp) -> None:
        """Duplicate if a top-up with this id exists."""
        try:
            with dynamo_errors():
                self._client.transact_write_items(TransactItems=[self._put_topup(org_id, topup)])
        except TransactionConditionFailed as exc:
            raise Duplicate from exc

    def set_topup(
        self,
        org_id: str,
        topup_id: str,
        values: dict[str, object],
        *,
        only_from: str | None = None,
        unlist: bool = True,
    ) -> TopUp | None:
        """Sets `values` on a top-up, only while it is in status `only_from` if given (a credit that landed
        first is never overwritten); returns it as it is now, None if it was not in that status.
        `unlist`: takes it off the in-flight auto-top-up list, whether the values were set or not."""
        try:
            self._update_topup(org_id, topup_id, values, only_from, unlist)
        except TransactionConditionFailed:
            if unlist:
                self._update_topup(org_id, topup_id, {}, None, unlist)
            return None
        return self.topup(org_id, topup_id)

    def _update_topup(
        self, org_id: str, topup_id: str, values: dict[str, object], only_from: str | None, unlist: bool
    ) -> None:
        names = {f"#f{i}": k for i, k in enumerate(values)}
        vals: dict[str, object] = {f":f{i}": v for i, v in enumerate(values.values())}
        expression = ("SET " + ", ".join(f"#f{i} = :f{i}" for i in range(len(values))) if values else "") + (
            " REMOVE GSI2PK, GSI2SK" if unlist else ""
        )
        condition = "attribute_exists(PK)"
        if only_from is not None:
            condition += " AND #status = :from"
            names["#status"], vals[":from"] = "status", only_from
        update: dict[str, Any] = {"UpdateExpression": expression.strip(), "ConditionExpression": condition}
        update |= {"ExpressionAttributeNames": names} if names else {}
        update |= {"ExpressionAttributeValues": vals} if vals else {}
        with dynamo_errors():
            self._table.update_item(Key=keys.key(org_id, keys.topup_sk(topup_id)), **update)

    def reschedule_auto_top_up(
        self, org_id: str, topup_id: str, attempts: int, at_iso: str, failed_intent: str | None
    ) -> bool:
        """After a failed attempt: `attempts` made so far, listed for the sweeper again from `at_iso`, no
        payment intent and no card (the next attempt charges the card saved then: the owner may have
        replaced the declined one). Only once per attempt, only while still processing, and (for a failure Stripe
        reported later) only while `failed_intent` is the attempt's intent. False if any moved on."""
        listed = keys.listed_pk(keys.AUTO_IN_FLIGHT, topup_id)
        values: dict[str, object] = {":processing": "processing", ":n": attempts, ":listed": listed}
        if failed_intent is None:  # declined as it was made: this attempt is not counted yet
            condition = "#status = :processing AND (attribute_not_exists(attempts) OR attempts < :n)"
        else:  # counted when its intent was recorded; the intent goes with this update
            condition = "#status = :processing AND payment_intent_id = :pi"
            values[":pi"] = failed_intent
        try:
            with dynamo_errors():
                self._table.update_item(
                    Key=keys.key(org_id, keys.topup_sk(topup_id)),
                    UpdateExpression=(
                        "SET attempts = :n, GSI2PK = :listed, GSI2SK = :at REMOVE payment_intent_id, payment_method"
                    ),
                    ConditionExpression=condition,
                    ExpressionAttributeNames={"#status": "status"},
                    ExpressionAttributeValues=values | {":at": at_iso},
                )
        except TransactionConditionFailed:
            return False
        return True

    # ------------------------------------------------------------------ holds (no money moves)
    def place_hold(self, org_id: str, hold: Hold, budget: BudgetTouch | None = None) -> None:
        """One transaction, no reads: the wallet must be in agency mode (its copy of the org's mode), cover
        the amount and not be paused; the project's budget (`budget`, a guarded touch) must have room and be
        the one read. HoldRefused, BudgetRefused or BudgetChanged otherwise; Duplicate if the hold id exists
        (a replay)."""
        put: Item = {**asdict(hold), **keys.key(org_id, keys.hold_sk(hold.hold_id)), "type": "wallet_hold"}
        put = {k: v for k, v in put.items() if v is not None}
        put |= {"GSI2PK": keys.listed_pk(keys.ACTIVE_HOLDS, hold.hold_id), "GSI2SK": hold.expires_at}
        reserve = {
            "TableName": self._name,
            "Key": account_key(org_id),
            "UpdateExpression": "SET held = held + :a, available = available - :a",
            "ConditionExpression": "available >= :a AND #s <> :paused AND billing_mode = :agency"
            " AND (attribute_not_exists(agency_until) OR agency_until > :now)",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": {
                ":a": hold.amount_minor,
                ":paused": "paused",
                ":agency": "agency",
                ":now": hold.created_at,
            },
        }
        created = {"TableName": self._name, "ConditionExpression": "attribute_not_exists(PK)", "Item": put}
        named = [Named("wallet", {"Update": reserve}), Named("hold", {"Put": created})]
        named += self._budgets.touch_items(org_id, budget) if budget is not None else []
        try:
            with dynamo_errors():
                self._client.transact_write_items(TransactItems=[n.item for n in named])
        except TransactionConditionFailed as exc:
            failed = {named[i].name for i in exc.indexes}
            if "hold" in failed:
                raise Duplicate from exc
            if failed & BUDGET_CHANGED:
                raise BudgetChanged from exc
            if "wallet" in failed:
                raise HoldRefused from exc
            raise BudgetRefused from exc

    def end_hold(self, org_id: str, hold: Hold, status: str, ended_at: str) -> bool:
        """Voids or expires a pending hold as read: what it still holds is free again (in the wallet and in
        its project's budget). False if it is no longer pending or a bill drew on it since (read again)."""
        try:
            with dynamo_errors():
                self._client.transact_write_items(TransactItems=self._end_items(org_id, [hold], status, ended_at))
        except TransactionConditionFailed:
            return False
        return True

    def end_holds(self, org_id: str, holds: Sequence[Hold], status: str, ended_at: str) -> list[Hold]:
        """Voids or expires pending holds of one wallet as read, in one transaction (one of `hold_packs`),
        each as `end_hold` does. A hold no longer pending or drawn on since it was read falls out and the
        rest are tried again. The holds it ended (those that fell out: for the caller to read again)."""
        pending = list(holds)
        while pending:
            items = self._end_items(org_id, pending, status, ended_at)
            if len(items) > MAX_TRANSACTION_ITEMS:
                raise ValueError(f"{len(items)} items: more than one transaction takes (hold_packs)")
            try:
                with dynamo_errors():
                    self._client.transact_write_items(TransactItems=items)
            except TransactionConditionFailed as exc:
                fell = {i for i in exc.indexes if 1 <= i <= len(pending)}  # the closes: items 1..n
                if not fell:
                    raise
                pending = [h for i, h in enumerate(pending, start=1) if i not in fell]
                continue
            return pending
        return []

    def _end_items(self, org_id: str, holds: Sequence[Hold], status: str, ended_at: str) -> list[TxItem]:
        """The items that end pending holds as read: the account frees their remainders (`open_minor`), each
        hold (items 1..n) closes on being pending with the remainder read, and each project-period's
        budget gets its holds' remainders back (one item each)."""
        free = {
            "TableName": self._name,
            "Key": account_key(org_id),
            "UpdateExpression": "SET held = held - :a, available = available + :a",
            "ExpressionAttributeValues": {":a": sum(h.open_minor for h in holds)},
        }
        closes = [self._close_hold(org_id, h, status, ended_at) for h in holds]
        touches = merged(touch for h in holds if (touch := freed_budget(h)) is not None)
        budgets = [n.item for touch in touches for n in self._budgets.touch_items(org_id, touch)]
        return [{"Update": free}, *closes, *budgets]

    def _close_hold(self, org_id: str, hold: Hold, status: str, ended_at: str) -> TxItem:
        key = keys.key(org_id, keys.hold_sk(hold.hold_id))
        close = close_indexed(self._name, key, expected="pending", status=status, fields={"ended_at": ended_at})
        update = close["Update"]
        update["ConditionExpression"] += " AND " + _remaining_is(update, hold.open_minor)
        return close

    def _draw_item(self, org_id: str, draw: HoldDrawn) -> TxItem:
        """A bill's draw on a hold: still pending with `before` left; exhausted (and unlisted) at 0."""
        left = draw.before - draw.taken
        values = {":left": left, ":taken": draw.taken, ":bill": draw.bill, ":zero": 0, ":pending": "pending"}
        sets = "remaining_minor = :left, drawn_minor = if_not_exists(drawn_minor, :zero) + :taken, last_bill = :bill"
        update: dict[str, Any] = {
            "TableName": self._name,
            "Key": keys.key(org_id, keys.hold_sk(draw.hold_id)),
            "ConditionExpression": "#s = :pending",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": values,
        }
        if left == 0:
            sets += ", #s = :exhausted, ended_at = :bill"
            values[":exhausted"] = "exhausted"
            update["UpdateExpression"] = f"SET {sets} REMOVE GSI2PK, GSI2SK"
        else:
            update["UpdateExpression"] = f"SET {sets}"
        update["ConditionExpression"] += " AND " + _remaining_is(update, draw.before)
        return {"Update": update}

    def open_holds(self, org_id: str) -> list[Hold]:
        """The org's pending holds, each with what it still reserves (`open_minor`) and its expiry: what
        `held` is the sum of (the runway's view of committed spend)."""
        pending = org_items(self._table, org_id, keys.HOLD_PREFIX, Attr("status").eq("pending"))
        return [from_item(Hold, i) for i in pending]

    def copy_mode(self, org_id: str, mode: str) -> bool:
        """Gives a wallet written before it kept a copy of the org's billing mode that copy, if the org
        still has the mode it was read with. False if there was nothing to do."""
        copy = {
            "TableName": self._name,
            "Key": account_key(org_id),
            "UpdateExpression": "SET billing_mode = :m",
            "ConditionExpression": "attribute_exists(PK) AND attribute_not_exists(billing_mode)",
            "ExpressionAttributeValues": {":m": mode},
        }
        try:
            with dynamo_errors():
                self._client.transact_write_items(
                    TransactItems=[{"Update": copy}, _org_mode_is(self._name, org_id, mode)]
                )
        except TransactionConditionFailed:
            return False
        return True


def _spend_days(change: WalletChange) -> dict[str, object]:
    """The runway's spend per day a change sets (bills: all of it, and what of it they took from holds)."""
    days = {"spend_days": change.spend_days, "drawn_days": change.drawn_days}
    return {k: dict(v) for k, v in days.items() if v is not None}


def _lines(change: WalletChange) -> list[Line]:
    refs = list(change.line_refs) or [""] * len(change.movements)
    return [
        Line(m.kind.value, m.amount, m.balance_after, {"ref": ref} if ref else {})
        for m, ref in zip(change.movements, refs, strict=True)
    ]


def freed_budget(hold: Hold) -> BudgetTouch | None:
    """What ending a hold gives back to its project's budget: its remainder, in the period that counts it
    (None: a hold made before budgets, or nothing left)."""
    if not (hold.budget_period and hold.open_minor):
        return None
    return BudgetTouch(hold.project_id, hold.budget_period, hold.platform, held=-hold.open_minor)


def hold_packs(holds: Sequence[Hold]) -> list[list[Hold]]:
    """The holds in groups that `end_holds` ends in one transaction each (first fit, in order): the account,
    a close each and a budget item per project-period within MAX_TRANSACTION_ITEMS, and one platform per
    project-period (its budget item is written once)."""
    packs: list[list[Hold]] = []
    for hold in holds:
        pack = next((p for p in packs if _fits(p, hold)), None)
        if pack is None:
            packs.append([hold])
        else:
            pack.append(hold)
    return packs


def _fits(pack: list[Hold], hold: Hold) -> bool:
    places = {t.place: t.platform for h in pack if (t := freed_budget(h)) is not None}
    touch = freed_budget(hold)
    new_place = touch is not None and touch.place not in places
    if touch is not None and not new_place and places[touch.place] != touch.platform:
        return False
    return 1 + len(pack) + 1 + len(places) + new_place <= MAX_TRANSACTION_ITEMS


def _remaining_is(update: dict[str, Any], amount: int) -> str:
    """The condition that a hold still holds `amount` (a hold made before draw-downs: its whole amount)."""
    update["ExpressionAttributeValues"][":held_now"] = amount
    return "(remaining_minor = :held_now OR (attribute_not_exists(remaining_minor) AND amount_minor = :held_now))"


def _name(record: Record) -> str:
    return {HoldDrawn: "hold", TopUpPut: "topup", TopUpSet: "topup", ChargeLink: "charge", PeriodSpend: "spend"}[
        type(record)
    ]


def _org_mode_is(
    table_name: str, org_id: str, mode: str, agency_until: object = KEEP, currency: str | None = None
) -> TxItem:
    """The org still has the mode (and agency_until, and currency) the wallet's first write copies."""
    condition, values = "billing_mode = :mode", {":mode": mode}
    if currency is not None:
        condition += " AND currency = :currency"
        values[":currency"] = currency
    if isinstance(agency_until, str):
        condition += " AND agency_until = :until"
        values[":until"] = agency_until
    elif agency_until is None:
        condition += " AND (attribute_not_exists(agency_until) OR attribute_type(agency_until, :null))"
        values[":null"] = "NULL"
    return {
        "ConditionCheck": {
            "TableName": table_name,
            "Key": keys.org_key(org_id),
            "ConditionExpression": condition,
            "ExpressionAttributeValues": values,
        }
    }


def _set(table_name: str, key: keys.Key, values: Any) -> TxItem:
    return {"Update": {"TableName": table_name, "Key": key, **set_fields(values)}}

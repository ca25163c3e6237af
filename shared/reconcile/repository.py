"""Storage of reconciliation (BillingTable; keys in shared/keys.py):

  PK=ORG#<org>  SK=DISCREP#<kind>#<scope>   a discrepancy: sides, causes, first / last seen, status;
                                            GSI2 RECON#OPEN#<shard> (sort key first_seen) while open
  PK=RECON#GLOBAL SK=DISCREP#...            the same, of no one org (invoice number series)
  PK=ORG#<org>  SK=SPENDRPT#<day>#<platform>#<project>   the platform's latest spend report;
                                            GSI2 SPENDRPT#DAY#<day>#<shard>: the orgs reported that day
  PK=RECONRUN#<run> SK=STATE                a run's checkpoint: Stripe list cursors, phase
  PK=RECONRUN#<run> SK=ORG#<org>            an org to reconcile in the run (done: true when it was)

Nothing is deleted (the table allows no deletes): a resolved discrepancy is updated and leaves the open
list (its GSI2 keys removed). A discrepancy and its event are written in one transaction (the outbox)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

from boto3.dynamodb.conditions import Attr, Key

from shared import keys
from shared.dynamo import Item, TransactionConditionFailed, dynamo_errors, from_item, plain
from shared.ledger.engine import _lines_of
from shared.outbox import Message, outbox_puts
from shared.pagination import Page, decode_cursor, encode_cursor
from shared.reconcile.models import Discrepancy, DiscrepancyKind, SpendReport
from shared.sweep import due_entries
from shared.wallet.models import Hold, TopUp

_SERIES = {"INVOICE_NUMBERS": "LB", "CREDIT_NOTE_NUMBERS": "LBCN"}  # counter partition -> number prefix


def _discrepancy(item: Item) -> Discrepancy:
    found: Discrepancy = from_item(Discrepancy, item)
    return Discrepancy(**{**asdict(found), "kind": DiscrepancyKind(item["kind"]), "causes": tuple(item["causes"])})


class ReconcileRepository:
    def __init__(self, table: Any):
        self._table = table
        self._client = table.meta.client
        self._name: str = table.name

    # ------------------------------------------------------------------ discrepancies
    def discrepancy(self, org_id: str, kind: str, scope: str) -> Discrepancy | None:
        with dynamo_errors():
            got = self._table.get_item(Key=keys.discrepancy_key(org_id, kind, scope), ConsistentRead=True).get("Item")
        return _discrepancy(plain(got)) if got else None

    def save(self, found: Discrepancy, *, was: str | None, messages: Sequence[Message], now: datetime) -> bool:
        """Writes the discrepancy as it is now, with its messages, only if it is still in status `was`
        (None: not stored) as read. False if another run changed it meanwhile."""
        key = keys.discrepancy_key(found.org_id, found.kind.value, found.scope)
        item: Item = {k: v for k, v in asdict(found).items() if v is not None} | key
        item |= {"kind": found.kind.value, "causes": list(found.causes), "type": "discrepancy"}
        if found.status == "open":
            item |= {
                "GSI2PK": keys.listed_pk(keys.OPEN_DISCREPANCIES, key["PK"] + key["SK"]),
                "GSI2SK": found.first_seen,
            }
        put: dict[str, Any] = {"TableName": self._name, "Item": item}
        if was is None:
            put["ConditionExpression"] = "attribute_not_exists(PK)"
        else:
            put |= {"ConditionExpression": "#s = :was", "ExpressionAttributeNames": {"#s": "status"}}
            put["ExpressionAttributeValues"] = {":was": was}
        cause = f"discrepancy:{found.kind.value}:{found.scope}:{found.status}:{found.last_seen}"
        outbox = outbox_puts(self._name, found.org_id or "_", cause, messages, now)
        try:
            with dynamo_errors():
                self._client.transact_write_items(TransactItems=[{"Put": put}, *outbox])
        except TransactionConditionFailed:
            return False
        return True

    def of_org(
        self, org_id: str, cursor: str | None = None, limit: int = 1000, status: str | None = None
    ) -> Page[Discrepancy]:
        """The org's discrepancies (open and resolved), by kind and scope; `status` filters."""
        pk = keys.org_pk(org_id) if org_id else keys.GLOBAL_RECON_PK
        query: dict[str, Any] = {
            "KeyConditionExpression": Key("PK").eq(pk) & Key("SK").begins_with(keys.DISCREPANCY_PREFIX),
            "ConsistentRead": True,
            "Limit": limit,
        }
        if status:
            query |= {"FilterExpression": Attr("status").eq(status)}
        start = decode_cursor(cursor, "PK", "")
        if start:
            query["ExclusiveStartKey"] = {"PK": pk, **start}
        with dynamo_errors():
            resp = self._table.query(**query)
        items = [_discrepancy(plain(i)) for i in resp["Items"]]
        return Page(items, encode_cursor(resp.get("LastEvaluatedKey"), "PK"))

    def all_of_org(self, org_id: str, status: str | None = None) -> list[Discrepancy]:
        found: list[Discrepancy] = []
        cursor: str | None = None
        while True:
            page = self.of_org(org_id, cursor, status=status)
            found += page.items
            if not page.next_cursor:
                return found
            cursor = page.next_cursor

    def orgs_with_open(self) -> set[str]:
        """The orgs with an open discrepancy (every shard of the open list)."""
        return {
            keys.org_id_of(str(i["PK"])) if str(i["PK"]).startswith("ORG#") else ""
            for i in due_entries(self._table, keys.OPEN_DISCREPANCIES, "~")
        }

    def open_count(self) -> int:
        return sum(1 for _ in due_entries(self._table, keys.OPEN_DISCREPANCIES, "~"))

    def invoice_numbers(self) -> tuple[list[str], dict[str, int]]:
        """Every number given to an invoice or credit note (any item with a `number` of a series), and the
        counters of the invoice and credit-note series (`LB-<year>`, `LBCN-<year>` -> last). A scan (no index
        has every number): once a run, with a projection; a number index would make it a query (README
        "Reconciliation")."""
        numbers: list[str] = []
        counters: dict[str, int] = {}
        scan: dict[str, Any] = {
            "ProjectionExpression": "PK, SK, #n, #l",
            "FilterExpression": Attr("number").exists() | Attr("PK").is_in(list(_SERIES)),
            "ExpressionAttributeNames": {"#n": "number", "#l": "last"},
        }
        while True:
            with dynamo_errors():
                resp = self._table.scan(**scan)
            for item in resp["Items"]:
                if item["PK"] in _SERIES and "last" in item:
                    counters[f"{_SERIES[item['PK']]}-{str(item['SK']).removeprefix('YEAR#')}"] = int(item["last"])
                elif isinstance(item.get("number"), str) and not str(item["SK"]).startswith("DISCREP#"):
                    numbers.append(str(item["number"]))
            if "LastEvaluatedKey" not in resp:
                return numbers, counters
            scan["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    # ------------------------------------------------------------------ spend reports
    def put_report(self, report: SpendReport) -> bool:
        """Keeps the platform's latest report of (day, platform, project). False if a later one is kept, or
        if this report was replaced already (a resent report never takes back the restatement after it)."""
        fields: Item = asdict(report) | {"type": "spend_report"}
        fields["GSI2PK"] = keys.listed_pk(keys.reports_of_day(report.day), report.org_id)
        fields["GSI2SK"] = report.org_id
        names = {f"#{k}": k for k in fields}
        values: Item = {f":{k}": v for k, v in fields.items()} | {":ids": {report.report_id}}
        try:
            with dynamo_errors():
                self._table.update_item(
                    Key=keys.key(report.org_id, keys.spend_report_sk(report.day, report.platform, report.project_id)),
                    UpdateExpression="SET " + ", ".join(f"#{k} = :{k}" for k in fields) + " ADD report_ids :ids",
                    ConditionExpression="attribute_not_exists(PK) OR #report_id = :report_id OR "
                    "(#reported_at <= :reported_at AND NOT contains(report_ids, :report_id))",
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=values,
                )
        except TransactionConditionFailed:
            return False
        return True

    def reports(self, org_id: str, day_from: str, day_to: str) -> list[SpendReport]:
        """The org's reports of days in [day_from, day_to)."""
        span = Key("SK").between(keys.spend_report_sk(day_from, "", ""), keys.spend_report_sk(day_to, "", ""))
        items = self._query(Key("PK").eq(keys.org_pk(org_id)) & span)
        return [from_item(SpendReport, i) for i in items if str(i["day"]) < day_to]

    def orgs_reported(self, day: str) -> set[str]:
        return {str(i["org_id"]) for i in due_entries(self._table, keys.reports_of_day(day), "~")}

    def orgs_with_wallet_activity(self, day: str) -> set[str]:
        """The orgs whose wallet ledger moved on `day` (bills, top-ups, refunds: the day's markers)."""
        return {str(i["org_id"]) for i in due_entries(self._table, keys.wallet_activity_of_day(day), "~")}

    # ------------------------------------------------------------------ the wallet's records, as stored
    def entry_lines(self, org_id: str) -> Iterator[Any]:
        """Every wallet ledger line, oldest entry first."""
        condition = Key("PK").eq(keys.org_pk(org_id)) & Key("SK").begins_with(keys.WALLET_ENTRY_PREFIX)
        for item in self._query(condition):
            yield from reversed(_lines_of(item))

    def entry_lines_since(self, org_id: str, since_iso: str) -> list[Any]:
        """The wallet ledger lines of entries written at `since_iso` or later (newest entries read first,
        the read stops at the first older one: the cost is the recent entries only)."""
        condition = Key("PK").eq(keys.org_pk(org_id)) & Key("SK").begins_with(keys.WALLET_ENTRY_PREFIX)
        query: dict[str, Any] = {"KeyConditionExpression": condition, "ConsistentRead": True, "ScanIndexForward": False}
        query["Limit"] = 100
        found: list[Any] = []
        while True:
            with dynamo_errors():
                resp = self._table.query(**query)
            for item in resp["Items"]:
                if str(item["created_at"]) < since_iso:
                    return found
                found += _lines_of(plain(item))
            if "LastEvaluatedKey" not in resp:
                return found
            query["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def pending_holds(self, org_id: str) -> list[Hold]:
        condition = Key("PK").eq(keys.org_pk(org_id)) & Key("SK").begins_with(keys.HOLD_PREFIX)
        return [from_item(Hold, i) for i in self._query(condition) if i.get("status") == "pending"]

    def topups(self, org_id: str) -> list[TopUp]:
        condition = Key("PK").eq(keys.org_pk(org_id)) & Key("SK").begins_with(keys.TOPUP_PREFIX)
        return [from_item(TopUp, i) for i in self._query(condition)]

    def credited(self, org_id: str) -> set[str]:
        """The payment intents the wallet credited a top-up for (their `topup-credit:` causes)."""
        prefix = keys.cause_sk("topup-credit:")
        condition = Key("PK").eq(keys.org_pk(org_id)) & Key("SK").begins_with(prefix)
        return {str(i["SK"]).removeprefix(prefix) for i in self._query(condition)}

    # ------------------------------------------------------------------ runs (resumable)
    def run_state(self, run_id: str) -> Item:
        with dynamo_errors():
            got = self._table.get_item(Key={"PK": keys.recon_run_pk(run_id), "SK": "STATE"}, ConsistentRead=True)
        return plain(got.get("Item") or {})

    def save_run_state(self, run_id: str, state: Item) -> None:
        with dynamo_errors():
            self._table.put_item(Item={**state, "PK": keys.recon_run_pk(run_id), "SK": "STATE"})

    def queue_orgs(self, run_id: str, org_ids: set[str]) -> None:
        for org_id in sorted(org_ids):  # (not BatchWriteItem: the functions' policies grant item writes only)
            try:
                with dynamo_errors():
                    self._table.put_item(
                        Item={"PK": keys.recon_run_pk(run_id), "SK": f"ORG#{org_id}", "org_id": org_id},
                        ConditionExpression="attribute_not_exists(PK)",  # queued once: `done` is kept
                    )
            except TransactionConditionFailed:
                continue

    def queued_orgs(self, run_id: str) -> list[tuple[str, bool]]:
        items = self._query(Key("PK").eq(keys.recon_run_pk(run_id)) & Key("SK").begins_with("ORG#"))
        return [(str(i["org_id"]), bool(i.get("done"))) for i in items]

    def org_done(self, run_id: str, org_id: str) -> None:
        with dynamo_errors():
            self._table.update_item(
                Key={"PK": keys.recon_run_pk(run_id), "SK": f"ORG#{org_id}"},
                UpdateExpression="SET done = :t",
                ExpressionAttributeValues={":t": True},
            )

    def _query(self, condition: Any) -> list[Item]:
        query: dict[str, Any] = {"KeyConditionExpression": condition, "ConsistentRead": True}
        found: list[Item] = []
        while True:
            with dynamo_errors():
                resp = self._table.query(**query)
            found += [plain(i) for i in resp["Items"]]
            if "LastEvaluatedKey" not in resp:
                return found
            query["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

"""Invoices in BillingTable (org partition, SK=INVOICE#<period_key>) and the gapless number counter
(PK=INVOICE_NUMBERS, SK=YEAR#<yyyy>), plus the documents bucket.

Invoices of any size: an invoice's lines stay on its item while they are small (up to
INLINE_LINES_BYTES of JSON, every invoice but the largest). Larger line lists (an org with thousands of
projects x platforms) are stored beside it in the org's partition, content-addressed and immutable:
their canonical JSON, zlib-compressed, cut into chunk items of at most CHUNK_BYTES
(`SK=INVLINES#<period>#<sha256>#<nnnnn>`, well under DynamoDB's 400 KB item limit), then a marker
(`INVLINES#<period>#<sha256>`) once every chunk is written. The invoice item names the set by its
sha256 (`lines_digest`), so no item grows with the lines, the status machine stays one conditional
write on one small item (chunks are written before it, never inside its transaction: no 100-item /
4 MB transaction bound), a rerun writes nothing new (the marker says the set is there), and a read
checks the digest. Chunks are never deleted (the table allows no deletes); a set no invoice names is
only left by a collect retried with other content. `get`, `save` and `list` take and return the whole
`Invoice`, lines included."""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from boto3.dynamodb.conditions import Attr, Key

from shared import keys
from shared.dynamo import Item, TransactionConditionFailed, batch_get, dynamo_errors, plain
from shared.invoices.models import CUSTOMER_STATUSES, Invoice, InvoiceLine
from shared.outbox import Message, outbox_puts
from shared.pagination import Page, decode_cursor, encode_cursor

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import QueryInputTableQueryTypeDef, TableAttributeValueTypeDef


INLINE_LINES_BYTES = 64 * 1024  # lines up to this much JSON stay on the invoice item
CHUNK_BYTES = 256 * 1024  # compressed bytes per chunk item (DynamoDB's item limit is 400 KB)
# A page of invoices reads past the periods with nothing to bill (filtered out after DynamoDB's Limit): at
# least this many items per query, at most this many queries per page (about 40 years of monthly periods).
LIST_READ_AHEAD = 25
LIST_MAX_QUERIES = 20


class Counter(NamedTuple):
    """A year's invoice-number counter as read: its last number (0 and not `exists`: none issued yet)."""

    last: int
    exists: bool


def _counter_key(year: int) -> dict[str, str]:
    return {"PK": "INVOICE_NUMBERS", "SK": f"YEAR#{year}"}


def _counter_of(item: Item | None) -> Counter:
    return Counter(int(item["last"]), True) if item else Counter(0, False)


class InvoiceConflict(Exception):
    pass


class InvoiceLinesCorrupt(Exception):
    """A stored line set is incomplete or does not match its digest (never expected: chunks are immutable
    and the invoice names its set only once every chunk is written)."""


def _lines_json(lines: Sequence[InvoiceLine]) -> bytes:
    """The lines' canonical JSON: the same lines give the same bytes, hence the same digest."""
    dumped = [line.model_dump(mode="json", exclude_none=True) for line in lines]
    return json.dumps(dumped, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def _unpacked(packed: bytes) -> bytes:
    """The chunks' bytes decompressed; empty when they are not what was stored (the digest then refuses them)."""
    try:
        return zlib.decompress(packed)
    except zlib.error:
        return b""


class _LineStore:
    """An invoice's large line lists as content-addressed chunk items in its org's partition."""

    def __init__(self, table: Any):
        self._table = table

    def store(self, org_id: str, period_key: str, raw: bytes) -> tuple[str, int]:
        """Stores the line set (once: a repeat finds its marker), returns (digest, chunks)."""
        digest = hashlib.sha256(raw).hexdigest()
        marker = {"PK": keys.org_pk(org_id), "SK": keys.invoice_lines_marker_sk(period_key, digest)}
        with dynamo_errors():
            stored = self._table.get_item(Key=marker, ConsistentRead=True).get("Item")
        if stored:
            return digest, int(stored["chunks"])
        packed = zlib.compress(raw, 6)
        chunks = [packed[i : i + CHUNK_BYTES] for i in range(0, len(packed), CHUNK_BYTES)] or [b""]
        with dynamo_errors():
            for seq, data in enumerate(chunks):
                sk = keys.invoice_lines_sk(period_key, digest, seq)
                self._table.put_item(Item={"PK": marker["PK"], "SK": sk, "type": "invoice_lines", "data": data})
            self._table.put_item(Item={**marker, "type": "invoice_lines_set", "chunks": len(chunks), "bytes": len(raw)})
        return digest, len(chunks)

    def load(self, org_id: str, period_key: str, digest: str, chunks: int) -> list[InvoiceLine]:
        """The line set named by `digest`, checked against it. Raises InvoiceLinesCorrupt."""
        query: dict[str, Any] = {
            "KeyConditionExpression": Key("PK").eq(keys.org_pk(org_id))
            & Key("SK").begins_with(keys.invoice_lines_prefix(period_key, digest)),
            "ConsistentRead": True,
        }
        parts: list[bytes] = []
        with dynamo_errors():
            while True:
                resp = self._table.query(**query)
                parts += [bytes(item["data"].value) for item in resp["Items"]]
                if "LastEvaluatedKey" not in resp:
                    break
                query["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
        raw = _unpacked(b"".join(parts)) if len(parts) == chunks else b""
        if hashlib.sha256(raw).hexdigest() != digest:
            raise InvoiceLinesCorrupt(f"The lines of {org_id} {period_key} do not match their digest {digest}.")
        return [InvoiceLine.model_validate(line) for line in json.loads(raw)]


class InvoiceRepository:
    def __init__(self, table: Any):
        self._table = table
        self._client = table.meta.client
        self._name = table.name
        self._lines = _LineStore(table)

    def get(self, org_id: str, period_key: str) -> Invoice | None:
        with dynamo_errors():
            item = self._table.get_item(
                Key={"PK": keys.org_pk(org_id), "SK": keys.invoice_sk(period_key)}, ConsistentRead=True
            ).get("Item")
        return self._invoice(plain(item)) if item else None

    def of_item(self, item: Item) -> Invoice:
        """The invoice of its item as read in a batch with other items (see `get`)."""
        return self._invoice(plain(item))

    def _invoice(self, item: Item) -> Invoice:
        """The invoice of a stored item, with its lines (read from their chunks when stored beside it)."""
        if "lines_digest" not in item:
            return Invoice.model_validate(item)
        lines = self._lines.load(
            str(item["org_id"]), str(item["period_key"]), str(item["lines_digest"]), int(item["lines_chunks"])
        )
        return Invoice.model_validate(item).model_copy(update={"lines": lines})

    def list(self, org_id: str, cursor: str | None, limit: int) -> Page[Invoice]:
        """Newest first. Queries until the page is full or the invoices run out (bounded), so a page is
        never empty while older invoices exist behind periods that had nothing to bill. Only what a customer
        sees (CUSTOMER_STATUSES): no draft, no empty period."""
        start = decode_cursor(cursor, "PK", f"ORG#{org_id}")
        if start and not str(start.get("SK", "")).startswith("INVOICE#"):
            decode_cursor("!", "PK", "")
        items: list[dict[str, Any]] = []
        for _ in range(LIST_MAX_QUERIES):
            resp = self._list_query(org_id, start, max(limit - len(items), LIST_READ_AHEAD))
            items.extend(plain(i) for i in resp["Items"])
            start = resp.get("LastEvaluatedKey")
            if len(items) >= limit or not start:
                break
        if len(items) > limit:  # read ahead past the page: the cursor is the page's last invoice
            items, start = items[:limit], {"PK": f"ORG#{org_id}", "SK": items[limit - 1]["SK"]}
        return Page([self._invoice(i) for i in items], encode_cursor(start, "PK"))

    def _list_query(self, org_id: str, start: dict[str, Any] | None, limit: int) -> Any:
        kwargs: QueryInputTableQueryTypeDef = {
            "KeyConditionExpression": Key("PK").eq(f"ORG#{org_id}") & Key("SK").begins_with("INVOICE#"),
            # never a period with nothing to bill (no invoice) nor a draft the run is still making
            "FilterExpression": Attr("status").is_in(list(CUSTOMER_STATUSES)),
            "ScanIndexForward": False,
            "Limit": limit,
            "ConsistentRead": True,
        }
        if start:
            kwargs["ExclusiveStartKey"] = start
        with dynamo_errors():
            return self._table.query(**kwargs)

    def create_draft(self, invoice: Invoice) -> bool:
        """False when the period already has its invoice (a rerun)."""
        try:
            with dynamo_errors():
                self._table.put_item(Item=self._item(invoice), ConditionExpression="attribute_not_exists(PK)")
        except TransactionConditionFailed:
            return False
        return True

    def save(self, invoice: Invoice, *, expected_status: str) -> bool:
        try:
            with dynamo_errors():
                self._table.put_item(
                    Item=self._item(invoice),
                    ConditionExpression="#s = :s",
                    ExpressionAttributeNames={"#s": "status"},
                    ExpressionAttributeValues={":s": expected_status},
                )
        except TransactionConditionFailed:
            return False
        return True

    def issue(self, invoice: Invoice, messages: Sequence[Message], now: datetime) -> bool:
        """Saves the issued invoice with its announcements (the outbox), if it was still rendered."""
        put = {
            "TableName": self._table.name,
            "Item": self._item(invoice),
            "ConditionExpression": "#s = :s",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": {":s": "rendered"},
        }
        outbox = outbox_puts(self._table.name, invoice.org_id, f"invoice-issued:{invoice.invoice_id}", messages, now)
        try:
            with dynamo_errors():
                self._client.transact_write_items(TransactItems=[{"Put": put}, *outbox])
        except TransactionConditionFailed:
            return False
        return True

    def close_empty(self, invoice: Invoice) -> bool:
        """A draft with nothing to bill: recorded as `empty` (no number, no documents, no notice). False if
        it was not a draft."""
        put = {
            "TableName": self._table.name,
            "Item": self._item(invoice.model_copy(update={"status": "empty"})),
            "ConditionExpression": "#s = :s",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": {":s": "draft"},
        }
        try:
            with dynamo_errors():
                self._client.put_item(**put)
        except TransactionConditionFailed:
            return False
        return True

    def get_to_number(self, org_id: str, period_key: str) -> tuple[Invoice | None, dict[int, Counter]]:
        """The invoice (None: none) and the number counters of the years its period may end in (a monthly
        period starting in December may end in the next year), in one consistent BatchGetItem: `finalize`
        numbers the draft from its year's without reading it again."""
        year = int(period_key[:4])
        years = [year, year + 1] if period_key[5:7] == "12" else [year]
        invoice_key = {"PK": keys.org_pk(org_id), "SK": keys.invoice_sk(period_key)}
        items = self._batch_get([invoice_key, *(_counter_key(y) for y in years)])
        counters = {y: _counter_of(items.get(_counter_key(y)["SK"])) for y in years}
        invoice = items.get(invoice_key["SK"])
        return (self._invoice(plain(invoice)) if invoice else None), counters

    def _batch_get(self, asked: Sequence[dict[str, str]]) -> dict[str, Item]:
        """The items of the keys by sort key (consistent reads, `shared.dynamo.batch_get`)."""
        return {str(item["SK"]): item for item in batch_get(self._client, self._name, asked)}

    def finalize(self, invoice: Invoice, year: int, counter: Counter | None = None) -> bool:
        """Assigns the next number of the year and finalizes, in one transaction: a number is used only
        by a finalized invoice (no gaps), and a draft is numbered once. False if it was not a draft.
        `counter`: the year's counter as just read (else it is read here); a stale one only fails the
        transaction's condition, and the counter is read again."""
        while True:
            if counter is None:
                with dynamo_errors():
                    counter = _counter_of(self._table.get_item(Key=_counter_key(year), ConsistentRead=True).get("Item"))
            last, exists, counter = counter.last, counter.exists, None
            numbered = invoice.model_copy(update={"number": f"LB-{year}-{last + 1:06d}", "status": "finalized"})
            items = [
                {
                    "Put": {
                        "TableName": self._name,
                        "Item": {"PK": "INVOICE_NUMBERS", "SK": f"YEAR#{year}", "last": last + 1},
                        "ConditionExpression": "#l = :last" if exists else "attribute_not_exists(PK)",
                        **(
                            {}
                            if not exists
                            else {
                                "ExpressionAttributeNames": {"#l": "last"},
                                "ExpressionAttributeValues": {":last": last},
                            }
                        ),
                    }
                },
                {
                    "Put": {
                        "TableName": self._name,
                        "Item": self._item(numbered),
                        "ConditionExpression": "#s = :draft",
                        "ExpressionAttributeNames": {"#s": "status"},
                        "ExpressionAttributeValues": {":draft": "draft"},
                    }
                },
            ]
            try:
                with dynamo_errors():
                    self._client.transact_write_items(TransactItems=items)
                return True
            except TransactionConditionFailed as exc:
                if 1 in exc.indexes:
                    return False  # already finalized by an earlier run
                continue  # another invoice took the number: read the counter again

    def _item(self, invoice: Invoice) -> dict[str, TableAttributeValueTypeDef]:
        """The invoice's item. Lines past INLINE_LINES_BYTES are stored first, beside it (idempotent), and
        the item names them by digest instead of holding them."""
        item: dict[str, TableAttributeValueTypeDef] = {
            "PK": keys.org_pk(invoice.org_id),
            "SK": keys.invoice_sk(invoice.period_key),
            "type": "invoice",
            **invoice.model_dump(mode="json", exclude_none=True),
        }
        raw = _lines_json(invoice.lines)
        if len(raw) > INLINE_LINES_BYTES:
            digest, chunks = self._lines.store(invoice.org_id, invoice.period_key, raw)
            del item["lines"]
            item.update(lines_digest=digest, lines_chunks=chunks, lines_count=len(invoice.lines))
        return item


class DocumentStore:
    def __init__(self, s3: Any, bucket: str):
        self._s3 = s3
        self._bucket = bucket

    def put(self, key: str, body: bytes, content_type: str) -> None:
        self._s3.put_object(Bucket=self._bucket, Key=key, Body=body, ContentType=content_type)

    def get(self, key: str) -> bytes:
        return bytes(self._s3.get_object(Bucket=self._bucket, Key=key)["Body"].read())

    def url(self, key: str, filename: str, expires: int = 900) -> str:
        return str(
            self._s3.generate_presigned_url(
                "get_object",
                ExpiresIn=expires,
                Params={
                    "Bucket": self._bucket,
                    "Key": key,
                    "ResponseContentDisposition": f'attachment; filename="{filename}"',
                },
            )
        )

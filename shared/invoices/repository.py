"""Invoices in BillingTable (org partition, SK=INVOICE#<period_key>) and the gapless number counter
(PK=INVOICE_NUMBERS, SK=YEAR#<yyyy>), plus the documents bucket."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Attr, Key

from shared.dynamo import TransactionConditionFailed, dynamo_errors, plain
from shared.invoices.models import Invoice
from shared.outbox import Message, outbox_puts
from shared.pagination import Page, decode_cursor, encode_cursor

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import QueryInputTableQueryTypeDef, TableAttributeValueTypeDef


class InvoiceConflict(Exception):
    pass


class InvoiceRepository:
    def __init__(self, table: Any):
        self._table = table
        self._client = table.meta.client
        self._name = table.name

    def get(self, org_id: str, period_key: str) -> Invoice | None:
        with dynamo_errors():
            item = self._table.get_item(
                Key={"PK": f"ORG#{org_id}", "SK": f"INVOICE#{period_key}"}, ConsistentRead=True
            ).get("Item")
        return Invoice.model_validate(plain(item)) if item else None

    def list(self, org_id: str, cursor: str | None, limit: int) -> Page[Invoice]:
        kwargs: QueryInputTableQueryTypeDef = {
            "KeyConditionExpression": Key("PK").eq(f"ORG#{org_id}") & Key("SK").begins_with("INVOICE#"),
            "FilterExpression": Attr("status").ne("empty"),  # a period with nothing to bill has no invoice
            "ScanIndexForward": False,
            "Limit": limit,
            "ConsistentRead": True,
        }
        start = decode_cursor(cursor, "PK", f"ORG#{org_id}")
        if start:
            if not str(start.get("SK", "")).startswith("INVOICE#"):
                decode_cursor("!", "PK", "")
            kwargs["ExclusiveStartKey"] = start
        with dynamo_errors():
            resp = self._table.query(**kwargs)
        return Page(
            [Invoice.model_validate(plain(i)) for i in resp["Items"]], encode_cursor(resp.get("LastEvaluatedKey"), "PK")
        )

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

    def finalize(self, invoice: Invoice, year: int) -> bool:
        """Assigns the next number of the year and finalizes, in one transaction: a number is used only
        by a finalized invoice (no gaps), and a draft is numbered once. False if it was not a draft."""
        while True:
            with dynamo_errors():
                counter = self._table.get_item(
                    Key={"PK": "INVOICE_NUMBERS", "SK": f"YEAR#{year}"}, ConsistentRead=True
                ).get("Item")
            last = int(counter["last"]) if counter else 0
            numbered = invoice.model_copy(update={"number": f"LB-{year}-{last + 1:06d}", "status": "finalized"})
            items = [
                {
                    "Put": {
                        "TableName": self._name,
                        "Item": {"PK": "INVOICE_NUMBERS", "SK": f"YEAR#{year}", "last": last + 1},
                        "ConditionExpression": "attribute_not_exists(PK)" if counter is None else "#l = :last",
                        **(
                            {}
                            if counter is None
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

    @staticmethod
    def _item(invoice: Invoice) -> dict[str, TableAttributeValueTypeDef]:
        return {
            "PK": f"ORG#{invoice.org_id}",
            "SK": f"INVOICE#{invoice.period_key}",
            "type": "invoice",
            **invoice.model_dump(mode="json", exclude_none=True),
        }


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

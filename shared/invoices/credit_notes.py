"""Credit notes: corrections of an issued invoice (support only). An issued invoice is never edited; a
credit note states what is credited, line by line, numbered in its own gapless series
(`LBCN-<year>-<n>`), and sends the money back the way it came: wallet lines re-credited to the ad wallet
(an `adjustment` entry, on the wallet's next statement), Stripe-charged lines credited to the Stripe
customer's balance (what a Stripe credit note's `credit_amount` does: Stripe takes it off the customer's
next invoice).

Storage (BillingTable, org partition): `SK=CNOTE#<id>` the note; `SK=CREDITED#<invoice period>` what
each line of an invoice has been credited so far (versioned: two notes never credit the same money);
`PK=CREDIT_NOTE_NUMBERS, SK=YEAR#<yyyy>` the series' last number. The note, its number and the credited
amounts are written in one transaction; the money steps and the documents after it are idempotent (keyed
by the note), so a replay of the request by its Idempotency-Key finishes what a crash left."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from boto3.dynamodb.conditions import Key

from shared.auth import Caller
from shared.clock import Clock, iso
from shared.dynamo import TransactionConditionFailed, dynamo_errors, plain
from shared.errors import ConflictError, ForbiddenError, InvalidRequestError, NotFoundError
from shared.invoices.models import CreditNote, DocumentKind, DocumentUrl, Invoice, InvoiceLine
from shared.invoices.render import CSV_CONTENT_TYPE, render_credit_note_csv, render_credit_note_pdf
from shared.invoices.repository import DocumentStore
from shared.invoices.service import InvoiceService
from shared.orgs.models import READ
from shared.orgs.repository import OrgRepository
from shared.orgs.service import OrgService
from shared.pagination import Page, decode_cursor, encode_cursor
from shared.stripe_gateway import StripeGateway
from shared.wallet.models import BillResult
from shared.wallet.service import WalletService

SERIES = "CREDIT_NOTE_NUMBERS"


@dataclass(frozen=True)
class LineCredit:
    """Credit one line of the invoice (by its index): `amount_minor` of it, or all that is left."""

    line: int
    amount_minor: int | None = None


@dataclass(frozen=True)
class CreditNoteRequest:
    reason: str
    amount_minor: int | None = None  # an amount, taken from the invoice's lines in order
    lines: Sequence[LineCredit] = ()

    def digest(self, invoice_id: str) -> str:
        """The request's fingerprint (a key is for one request, against one invoice)."""
        body = {
            "invoice": invoice_id,
            "reason": self.reason,
            "amount": self.amount_minor,
            "lines": [(c.line, c.amount_minor) for c in self.lines],
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def creditable(line: InvoiceLine) -> bool:
    """Money the invoice took: Stripe charges and wallet debits (not information, not corrections)."""
    return line.paid_via in ("stripe", "wallet") and line.amount_minor > 0


def _source(line: InvoiceLine) -> tuple[str, ...]:
    """Lines that net against each other: one Stripe invoice's lines (a proration's credit), one
    platform and project's wallet lines of one period (a bill and its reversal or platform credit)."""
    if line.paid_via == "stripe":
        return ("stripe", line.stripe_invoice_id or "")
    return ("wallet", line.platform or "", line.project_id or "", line.late_for or "")


def _left_per_line(lines: Sequence[InvoiceLine], credited: Mapping[int, int]) -> dict[int, int]:
    """What each creditable line may still be credited: its amount less earlier credits, and never more
    than its source's net charge less what was credited against that source."""
    net: dict[tuple[str, ...], int] = {}
    for i, line in enumerate(lines):
        if line.paid_via != "info":
            net[_source(line)] = net.get(_source(line), 0) + line.amount_minor - credited.get(i, 0)
    return {
        i: max(0, min(line.amount_minor - credited.get(i, 0), net[_source(line)]))
        for i, line in enumerate(lines)
        if creditable(line)
    }


def allocate_credit(
    lines: Sequence[InvoiceLine], credited: Mapping[int, int], request: CreditNoteRequest
) -> dict[int, int]:
    """The one rule of what a credit note may credit: per line, never more than the line's amount less
    what earlier notes credited, and per source never more than what it charged net (a reversal or a
    proration on the same invoice counts). Explicit lines are credited as asked (all that is left when no
    amount); an amount is taken from the creditable lines in the invoice's order. 409 past what is left."""
    left = _left_per_line(lines, credited)
    sources: dict[tuple[str, ...], int] = {}
    for i, line in enumerate(lines):
        if line.paid_via != "info":
            sources[_source(line)] = sources.get(_source(line), 0) + line.amount_minor - credited.get(i, 0)
    taken: dict[int, int] = {}
    if request.lines:
        _check_named(left, request.lines)
        for ask in request.lines:
            room = min(left[ask.line], sources[_source(lines[ask.line])])
            take = room if ask.amount_minor is None else ask.amount_minor
            if not 0 < take <= room:
                raise _exceeds(room, f"line {ask.line}")
            taken[ask.line] = take
            sources[_source(lines[ask.line])] -= take
        return taken
    wanted = request.amount_minor or 0
    for index in left:
        take = min(left[index], sources[_source(lines[index])], wanted - sum(taken.values()))
        if take > 0:
            taken[index] = take
            sources[_source(lines[index])] -= take
    if sum(taken.values()) < wanted:
        raise _exceeds(sum(taken.values()), "the invoice")
    return taken


def _check_named(left: Mapping[int, int], asked: Sequence[LineCredit]) -> None:
    named = [ask.line for ask in asked]
    for line in named:
        if line not in left or named.count(line) > 1:
            raise InvalidRequestError(
                f"Line {line} cannot be credited: it is not a charge of this invoice (or named twice).",
                code="line_not_creditable",
            )


def _key_reused() -> ConflictError:
    return ConflictError(
        "This Idempotency-Key was used for another credit note request.", code="idempotency_key_reused"
    )


def _exceeds(left: int, what: str) -> ConflictError:
    return ConflictError(
        f"That is more than is left to credit on {what}: {left} (minor units), after earlier credit notes.",
        code="exceeds_creditable",
        details={"creditable_minor": left},
    )


def _bill_lines(lines: Sequence[InvoiceLine], platform: str, record: Mapping[str, object]) -> list[LineCredit]:
    """The invoice lines a bill is in (its platform, project and late-for period): its spend and its fee."""
    project, late_for = str(record.get("project_id", "")), str(record.get("late_for", "")) or None
    wanted = {"Ad spend": int(str(record.get("amount_minor", 0))), "Platform fee": int(str(record.get("fee_minor", 0)))}
    found = []
    for i, line in enumerate(lines):
        kind = line.description.split(":")[0]
        same = (line.platform, line.project_id, line.late_for) == (platform, project, late_for)
        if same and wanted.get(kind, 0) > 0:
            found.append(LineCredit(i, wanted[kind]))
    return found


class CreditNoteRepository:
    def __init__(self, table: Any):
        self._table = table
        self._client = table.meta.client
        self._name = table.name

    def get(self, org_id: str, note_id: str) -> tuple[CreditNote, str] | None:
        """The note and the digest of the request that made it."""
        with dynamo_errors():
            item = self._table.get_item(Key={"PK": f"ORG#{org_id}", "SK": f"CNOTE#{note_id}"}, ConsistentRead=True).get(
                "Item"
            )
        return (CreditNote.model_validate(plain(item)), str(item["request_digest"])) if item else None

    def credited(self, org_id: str, period_key: str) -> tuple[int, dict[int, int]]:
        """(version, credited minor units per line index) of an invoice: by credit notes and reversals."""
        version, lines, _ = self.credited_with_reversals(org_id, period_key)
        return version, lines

    def credited_with_reversals(self, org_id: str, period_key: str) -> tuple[int, dict[int, int], list[str]]:
        """(version, credited per line, the causes of the bills reversed against the invoice)."""
        with dynamo_errors():
            item = self._table.get_item(Key=_credited_key(org_id, period_key), ConsistentRead=True).get("Item") or {}
        lines = {int(k): int(v) for k, v in (item.get("lines") or {}).items()}
        return int(item.get("version", 0)), lines, [str(c) for c in item.get("reversals") or []]

    def count_reversal(
        self, org_id: str, period_key: str, credited: tuple[int, dict[int, int]], reversals: list[str]
    ) -> bool:
        """Counts a bill's reversal against its invoice's lines. False if they changed meanwhile."""
        update = _credited_put(self._name, org_id, period_key, *credited, reversals=reversals)
        try:
            with dynamo_errors():
                self._client.transact_write_items(TransactItems=[update])
        except TransactionConditionFailed:
            return False
        return True

    def list(self, org_id: str, cursor: str | None, limit: int) -> Page[CreditNote]:
        query: dict[str, Any] = {
            "KeyConditionExpression": Key("PK").eq(f"ORG#{org_id}") & Key("SK").begins_with("CNOTE#"),
            "ScanIndexForward": False,
            "Limit": limit,
            "ConsistentRead": True,
        }
        start = decode_cursor(cursor, "PK", f"ORG#{org_id}")
        if start:
            query["ExclusiveStartKey"] = start
        with dynamo_errors():
            resp = self._table.query(**query)
        notes = [CreditNote.model_validate(plain(i)) for i in resp["Items"]]
        return Page(notes, encode_cursor(resp.get("LastEvaluatedKey"), "PK"))

    def create(
        self, note: CreditNote, digest: str, credited: tuple[int, dict[int, int]], year: int
    ) -> CreditNote | None:
        """Numbers and stores the note with the invoice's new credited amounts, in one transaction. None
        if the invoice's credits changed meanwhile (allocate again); a number taken meanwhile is retried."""
        version, lines = credited
        while True:
            last = self._last_number(year)
            numbered = note.model_copy(update={"number": f"LBCN-{year}-{last + 1:06d}"})
            try:
                with dynamo_errors():
                    self._client.transact_write_items(
                        TransactItems=[
                            _counter_put(self._name, year, last),
                            _note_put(self._name, numbered, digest),
                            _credited_put(self._name, note.org_id, note.invoice_period_key, version, lines),
                        ]
                    )
                return numbered
            except TransactionConditionFailed as exc:
                if 1 in exc.indexes or 2 in exc.indexes:
                    return None
                # another note took the number: read the counter again

    def set_documents(self, note: CreditNote, pdf_key: str, csv_key: str) -> None:
        with dynamo_errors():
            self._table.update_item(
                Key={"PK": f"ORG#{note.org_id}", "SK": f"CNOTE#{note.credit_note_id}"},
                UpdateExpression="SET pdf_key = :p, csv_key = :c",
                ExpressionAttributeValues={":p": pdf_key, ":c": csv_key},
            )

    def _last_number(self, year: int) -> int:
        with dynamo_errors():
            counter = self._table.get_item(Key={"PK": SERIES, "SK": f"YEAR#{year}"}, ConsistentRead=True).get("Item")
        return int(counter["last"]) if counter else 0


def _credited_key(org_id: str, period_key: str) -> dict[str, str]:
    return {"PK": f"ORG#{org_id}", "SK": f"CREDITED#{period_key}"}


def _counter_put(table: str, year: int, last: int) -> dict[str, Any]:
    condition = "attribute_not_exists(PK)" if last == 0 else "#l = :last"
    values = (
        {} if last == 0 else {"ExpressionAttributeNames": {"#l": "last"}, "ExpressionAttributeValues": {":last": last}}
    )
    item = {"PK": SERIES, "SK": f"YEAR#{year}", "last": last + 1}
    return {"Put": {"TableName": table, "Item": item, "ConditionExpression": condition, **values}}


def _note_put(table: str, note: CreditNote, digest: str) -> dict[str, Any]:
    item = {
        "PK": f"ORG#{note.org_id}",
        "SK": f"CNOTE#{note.credit_note_id}",
        "type": "credit_note",
        "request_digest": digest,
        **note.model_dump(mode="json", exclude_none=True),
    }
    return {"Put": {"TableName": table, "Item": item, "ConditionExpression": "attribute_not_exists(PK)"}}


def _credited_put(
    table: str, org_id: str, period_key: str, version: int, lines: dict[int, int], reversals: list[str] | None = None
) -> dict[str, Any]:
    """The invoice's credited amounts, version `version` + 1 (an update: what it does not set stays)."""
    sets = "SET version = :next, #lines = :lines" + (", reversals = :reversals" if reversals is not None else "")
    values: dict[str, Any] = {":next": version + 1, ":lines": {str(k): v for k, v in lines.items()}}
    if reversals is not None:
        values[":reversals"] = reversals
    condition = "attribute_not_exists(version)" if version == 0 else "version = :v"
    if version:
        values[":v"] = version
    update = {
        "TableName": table,
        "Key": _credited_key(org_id, period_key),
        "UpdateExpression": sets,
        "ConditionExpression": condition,
        "ExpressionAttributeNames": {"#lines": "lines"},
        "ExpressionAttributeValues": values,
    }
    return {"Update": update}


@dataclass(frozen=True)
class CreditNoteDeps:
    repo: CreditNoteRepository
    invoices: InvoiceService
    wallet: WalletService
    gateway: StripeGateway
    documents: DocumentStore


class CreditNoteService:
    def __init__(self, orgs: OrgService, org_repo: OrgRepository, deps: CreditNoteDeps, clock: Clock):
        self._orgs = orgs
        self._org_repo = org_repo
        self._repo = deps.repo
        self._invoices = deps.invoices
        self._wallet = deps.wallet
        self._gateway = deps.gateway
        self._documents = deps.documents
        self._clock = clock

    def issue(
        self, caller: Caller, org_id: str, invoice_id: str, request: CreditNoteRequest, idempotency_key: str
    ) -> tuple[CreditNote, bool]:
        """Issues a credit note against an issued invoice (support only). Returns (note, replayed)."""
        if not caller.is_support:
            self._orgs.access(caller, org_id, READ)  # 404 for an org the caller is not in
            raise ForbiddenError("Only Layers support can issue a credit note.")
        invoice = self._invoices.get(caller, org_id, invoice_id)
        note_id = "cn_" + hashlib.sha256(f"{org_id}:{idempotency_key}".encode()).hexdigest()[:24]
        digest = request.digest(invoice_id)
        found = self._repo.get(org_id, note_id)
        if found is None:
            note, replayed = self._create(caller, invoice, note_id, request, idempotency_key)
        else:
            note, made_by = found
            if made_by != digest:
                raise _key_reused()
            replayed = True
        return self._finish(note), replayed

    def _create(
        self, caller: Caller, invoice: Invoice, note_id: str, request: CreditNoteRequest, key: str
    ) -> tuple[CreditNote, bool]:
        """The new note, or (replayed) the one a concurrent request with the same key made."""
        if invoice.status != "issued" or invoice.number is None:
            raise ConflictError("Only an issued invoice can be credited.", code="invoice_not_issued")
        while True:
            credited = self._repo.credited(invoice.org_id, invoice.period_key)
            taken = allocate_credit(invoice.lines, credited[1], request)
            lines = [
                invoice.lines[i].model_copy(
                    update={"amount_minor": amount, "description": f"Credit: {invoice.lines[i].description}"}
                )
                for i, amount in sorted(taken.items())
            ]
            now_credited = dict(credited[1]) | {i: credited[1].get(i, 0) + a for i, a in taken.items()}
            note = CreditNote(
                credit_note_id=note_id,
                org_id=invoice.org_id,
                invoice_id=invoice.invoice_id,
                invoice_number=invoice.number,
                invoice_period_key=invoice.period_key,
                number="",
                currency=invoice.currency,
                bill_to_name=invoice.bill_to_name,
                reason=request.reason,
                lines=lines,
                amount_minor=sum(taken.values()),
                to_wallet_minor=sum(line.amount_minor for line in lines if line.paid_via == "wallet"),
                to_stripe_minor=sum(line.amount_minor for line in lines if line.paid_via == "stripe"),
                actor=f"support:{caller.user_id}",
                idempotency_key=key,
                created_at=iso(self._clock.now()),
            )
            made = self._repo.create(
                note, request.digest(invoice.invoice_id), (credited[0], now_credited), self._clock.now().year
            )
            if made is not None:
                return made, False
            replay = self._repo.get(invoice.org_id, note_id)
            if replay is not None:  # a request with this key, concurrently: its note
                if replay[1] != request.digest(invoice.invoice_id):
                    raise _key_reused()
                return replay[0], True

    def _finish(self, note: CreditNote) -> CreditNote:
        """Sends the money back and renders the documents: each step once, whatever ran before."""
        cause = f"credit-note:{note.credit_note_id}"
        if note.to_wallet_minor:
            self._wallet.credit_adjustment(
                org_id=note.org_id, amount_minor=note.to_wallet_minor, cause=cause, ref=note.number, actor=note.actor
            )
        if note.to_stripe_minor:
            org = self._org_repo.require_org(note.org_id)
            if org.stripe_customer_id:
                self._gateway.adjust_customer_balance(
                    customer_id=org.stripe_customer_id,
                    amount_minor=-note.to_stripe_minor,
                    currency=note.currency,
                    description=f"Credit note {note.number} for invoice {note.invoice_number}",
                    key=cause,
                )
        if note.pdf_key is None:
            base = f"credit-notes/{note.org_id}/{note.number}"
            self._documents.put(f"{base}.pdf", render_credit_note_pdf(note), "application/pdf")
            self._documents.put(f"{base}.csv", render_credit_note_csv(note), CSV_CONTENT_TYPE)
            self._repo.set_documents(note, f"{base}.pdf", f"{base}.csv")
            note = note.model_copy(update={"pdf_key": f"{base}.pdf", "csv_key": f"{base}.csv"})
        return note

    # ------------------------------------------------------------------ bill reversals
    def reverse_bill_for(self, caller: Caller, org_id: str, platform: str, bill_id: str, reason: str) -> BillResult:
        """Support's reversal of a bill (404 for an org the caller cannot see, 403 for anyone else)."""
        if not caller.is_support:
            self._orgs.access(caller, org_id, READ)  # 404 for an org the caller is not in
            raise ForbiddenError("Only Layers support can reverse a platform bill.")
        self._orgs.access(caller, org_id, frozenset(), support=True)
        return self.reverse_bill(org_id, platform, bill_id, reason, f"support:{caller.user_id}")

    def reverse_bill(self, org_id: str, platform: str, bill_id: str, reason: str, actor: str) -> BillResult:
        """A bill's money returns once, by a reversal or by credit notes, never both: a bill on an issued
        invoice is reversed only if its lines there are still creditable, and the reversal is counted
        against them (so a credit note cannot return it again)."""
        record = self._wallet.bill_record(org_id, platform, bill_id)
        if record is not None and int(str(record.get("amount_minor", 0))) > 0 and record.get("period_key"):
            self._count_reversal(org_id, platform, bill_id, record)
        return self._wallet.reverse_bill(org_id=org_id, platform=platform, bill_id=bill_id, reason=reason, actor=actor)

    def _count_reversal(self, org_id: str, platform: str, bill_id: str, record: Mapping[str, object]) -> None:
        period_key = str(record["period_key"])
        invoice = self._invoices.stored(org_id, period_key)
        if invoice is None or invoice.status == "empty":
            return  # not invoiced yet: the reversal nets against the bill on the same invoice
        if invoice.status != "issued":
            raise ConflictError("The invoice this bill is on is being made: retry shortly.", code="invoice_in_progress")
        cause = f"bill:{platform}:{bill_id}"
        while True:
            version, credited, reversed_ = self._repo.credited_with_reversals(org_id, period_key)
            if cause in reversed_:
                return
            asked = _bill_lines(invoice.lines, platform, record)
            taken = allocate_credit(invoice.lines, credited, CreditNoteRequest(reason="reversal", lines=asked))
            now = dict(credited) | {i: credited.get(i, 0) + a for i, a in taken.items()}
            if self._repo.count_reversal(org_id, period_key, (version, now), [*reversed_, cause]):
                return

    def list(self, caller: Caller, org_id: str, cursor: str | None, limit: int) -> Page[CreditNote]:
        self._orgs.access(caller, org_id, READ, support=True)
        return self._repo.list(org_id, cursor, limit)

    def download(self, caller: Caller, org_id: str, note_id: str, kind: DocumentKind) -> DocumentUrl:
        self._orgs.access(caller, org_id, READ, support=True)
        found = self._repo.get(org_id, note_id)
        if found is None:
            raise NotFoundError(f"Credit note {note_id} was not found.", code="credit_note_not_found")
        key = found[0].pdf_key if kind == "pdf" else found[0].csv_key
        if key is None:
            raise NotFoundError("The credit note's documents are not rendered yet.", code="document_not_ready")
        return DocumentUrl(url=self._documents.url(key, f"{found[0].number}.{kind}"), expires_in=900)

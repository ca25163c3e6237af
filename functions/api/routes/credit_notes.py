"""Credit notes: support corrects an issued invoice; members list them and download their documents."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path
from pydantic import BaseModel, ConfigDict, Field, model_validator

from functions.api.container import services
from functions.api.routes.common import Cursor, Limit, OrgId, RequiredKey, caller_of
from functions.limits import MAX_MINOR, Reason
from shared.invoices.credit_notes import CreditNoteRequest, LineCredit
from shared.invoices.models import CreditNote, InvoiceLine

router = Router()
InvoiceId = Annotated[str, Path(pattern=r"^inv_[0-9TZ]{1,40}$")]
CreditNoteId = Annotated[str, Path(pattern=r"^cn_[0-9a-f]{24}$")]
MAX_CREDITED_LINES = 1_000


class LineCreditIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    line: int = Field(strict=True, ge=0, le=1_000_000, description="The line's index in the invoice's `lines`")
    amount_minor: int | None = Field(default=None, strict=True, gt=0, le=MAX_MINOR, description="Default: all of it")


class CreditNoteIn(BaseModel):
    """An amount (taken from the invoice's charged lines in order) or specific lines, with a reason."""

    model_config = ConfigDict(extra="forbid")
    reason: Reason
    amount_minor: int | None = Field(default=None, strict=True, gt=0, le=MAX_MINOR)
    lines: list[LineCreditIn] | None = Field(default=None, min_length=1, max_length=MAX_CREDITED_LINES)

    @model_validator(mode="after")
    def _one_of(self) -> CreditNoteIn:
        if (self.amount_minor is None) == (self.lines is None):
            raise ValueError("give either amount_minor or lines")
        return self


class CreditNoteOut(BaseModel):
    credit_note_id: str
    number: str
    invoice_id: str
    invoice_number: str
    currency: str
    reason: str
    lines: list[InvoiceLine]
    amount_minor: int
    to_wallet_minor: int
    to_stripe_minor: int
    created_at: str
    replayed: bool = False


class CreditNotePage(BaseModel):
    items: list[CreditNoteOut]
    next_cursor: str | None


class DocumentLink(BaseModel):
    url: str
    expires_in: int


def _out(note: CreditNote, replayed: bool = False) -> CreditNoteOut:
    return CreditNoteOut(**note.model_dump(include=set(CreditNoteOut.model_fields)), replayed=replayed)


@router.post(
    "/v1/orgs/<org_id>/invoices/<invoice_id>/credit-notes",
    tags=["invoices"],
    status_code=201,
    summary="Support: a credit note against an issued invoice (money back the way it came), once per key",
)
def issue_credit_note(
    org_id: OrgId, invoice_id: InvoiceId, body: CreditNoteIn, idempotency_key: RequiredKey
) -> CreditNoteOut:
    lines = [LineCredit(c.line, c.amount_minor) for c in body.lines or []]
    request = CreditNoteRequest(reason=body.reason, amount_minor=body.amount_minor, lines=lines)
    note, replayed = services().credit_notes.issue(caller_of(router), org_id, invoice_id, request, idempotency_key)
    return _out(note, replayed)


@router.get("/v1/orgs/<org_id>/credit-notes", tags=["invoices"], summary="Credit notes, newest first")
def list_credit_notes(org_id: OrgId, cursor: Cursor = None, limit: Limit = 20) -> CreditNotePage:
    page = services().credit_notes.list(caller_of(router), org_id, cursor, limit)
    return CreditNotePage(items=[_out(n) for n in page.items], next_cursor=page.next_cursor)


@router.get("/v1/orgs/<org_id>/credit-notes/<credit_note_id>/pdf", tags=["invoices"], summary="The credit note's PDF")
def credit_note_pdf(org_id: OrgId, credit_note_id: CreditNoteId) -> DocumentLink:
    link = services().credit_notes.download(caller_of(router), org_id, credit_note_id, "pdf")
    return DocumentLink(url=link.url, expires_in=link.expires_in)


@router.get("/v1/orgs/<org_id>/credit-notes/<credit_note_id>/csv", tags=["invoices"], summary="The credit note's CSV")
def credit_note_csv(org_id: OrgId, credit_note_id: CreditNoteId) -> DocumentLink:
    link = services().credit_notes.download(caller_of(router), org_id, credit_note_id, "csv")
    return DocumentLink(url=link.url, expires_in=link.expires_in)

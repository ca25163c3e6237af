"""Monthly invoices: list, one, and the PDF / CSV downloads (short-lived presigned URLs)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path
from pydantic import BaseModel

from functions.api.container import services
from functions.api.routes.common import Cursor, Limit, OrgId, caller_of
from shared.invoices.models import Invoice

router = Router()
InvoiceId = Annotated[str, Path(pattern=r"^inv_[0-9TZ]{1,40}$")]


class InvoicePage(BaseModel):
    items: list[Invoice]
    next_cursor: str | None


class DocumentLink(BaseModel):
    url: str
    expires_in: int


@router.get("/v1/orgs/<org_id>/invoices", tags=["invoices"], summary="Monthly invoices, newest first")
def list_invoices(org_id: OrgId, cursor: Cursor = None, limit: Limit = 20) -> InvoicePage:
    page = services().invoices.list(caller_of(router), org_id, cursor, limit)
    return InvoicePage(items=page.items, next_cursor=page.next_cursor)


@router.get("/v1/orgs/<org_id>/invoices/<invoice_id>", tags=["invoices"], summary="One invoice with its lines")
def get_invoice(org_id: OrgId, invoice_id: InvoiceId) -> Invoice:
    return services().invoices.get(caller_of(router), org_id, invoice_id)


@router.get("/v1/orgs/<org_id>/invoices/<invoice_id>/pdf", tags=["invoices"], summary="Download the PDF")
def invoice_pdf(org_id: OrgId, invoice_id: InvoiceId) -> DocumentLink:
    link = services().invoices.download(caller_of(router), org_id, invoice_id, "pdf")
    return DocumentLink(url=link.url, expires_in=link.expires_in)


@router.get("/v1/orgs/<org_id>/invoices/<invoice_id>/csv", tags=["invoices"], summary="Download the CSV")
def invoice_csv(org_id: OrgId, invoice_id: InvoiceId) -> DocumentLink:
    link = services().invoices.download(caller_of(router), org_id, invoice_id, "csv")
    return DocumentLink(url=link.url, expires_in=link.expires_in)

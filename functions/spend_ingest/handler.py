"""Platform bills arriving as EventBridge events (detail-type `AdPlatform.BillRecorded`): each is
recorded once, exactly like the service route (`POST /v1/internal/wallet/bills`). A refusal is final (a
retry would be refused again): the wallet kept the bill for support (BILLREFUSED# in the org's partition;
a bill id resent with other content, 409 idempotency_key_reused, changes nothing and is only logged)
and the alarm on PlatformBillsRefused tells someone (not a busy wallet: that is raised and retried)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel

from functions.eventbridge_ingest import Ingest, Ingested, ingest_handler
from shared.errors import InvalidRequestError, NotFoundError
from shared.wallet.service import Bill, BillReusedError, WalletNotAvailableError
from shared.wiring import Services


class PlatformBill(BaseModel):
    org_id: str
    platform: str
    bill_id: str
    project_id: str
    amount_minor: int  # negative: a platform credit
    currency: str
    billed_on: date
    hold_id: str | None = None


class BillRecordedEvent(EventBridgeModel):
    detail: PlatformBill


def _record(services: Services, event: BillRecordedEvent) -> Ingested:
    bill = Bill(**event.detail.model_dump(), actor=f"eventbridge:{event.source}")
    result = services.wallet.record_bill(bill)
    return Ingested(asdict(result), counted=0 if result.replayed else 1)


lambda_handler = ingest_handler(
    Ingest(
        model=BillRecordedEvent,
        apply=_record,
        counted_metric="PlatformBillsRecorded",
        refused_metric="PlatformBillsRefused",
        refusals=(InvalidRequestError, NotFoundError, WalletNotAvailableError, BillReusedError),
        about=lambda event: {"bill_id": event.detail.bill_id, "org_id": event.detail.org_id},
    )
)

"""Service-to-service routes (`/v1/internal/...`, IAM SigV4 in AWS): the workflow engine's credit
consumption, the usage ingestion path and the optimizer's wallet holds and bills. Never reachable with
a person's token.

Deployed twice (template.yaml): `InternalApiFunction` serves every route but one and never calls
Stripe; `WalletBillsFunction` serves `POST /v1/internal/wallet/bills`, which may charge an
auto-top-up, with its own concurrency, so a Stripe outage cannot starve credit reservations."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from functions.http import new_resolver, service_of
from functions.limits import (
    ID_PATTERN,
    KEY_PATTERN,
    MAX_BATCH_EVENTS,
    MAX_EVENT_COUNT,
    MAX_MINOR,
    MAX_QUANTITY,
    MAX_STORAGE_BYTES,
    BillDate,
    Id,
    Instant,
    Key,
    Reason,
)
from functions.usage_schema import UsageEventsIn, UsageEventsOut
from shared.credits.service import ReservationResult
from shared.deadline import within_lambda_time
from shared.dynamo import dynamodb_resource
from shared.observability import logger, metrics, tracer
from shared.orgs.repository import OrgRepository
from shared.reconcile.models import SpendReport
from shared.reconcile.repository import ReconcileRepository
from shared.reconcile.support import ReconcileDesk
from shared.settings import ApiSettings
from shared.usage.service import SdkEvent
from shared.wallet.models import Hold
from shared.wallet.service import Bill
from shared.wiring import Services, build_services

app = new_resolver()
# Counted with retries inside against concurrent batches; out of them: 503 usage_busy (re-sending is safe)
app.busy_operations = {("POST", "/v1/internal/usage/events"), ("POST", "/v1/internal/usage/sdk-events")}
RunId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_:.\-]{1,128}$")]
RunIdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9_:.\-]{1,128}$")]


@cache
def services() -> Services:
    return build_services(ApiSettings.from_env())


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReserveRequest(_Request):
    org_id: Id
    project_id: Id
    template_id: Id
    generation_type: Id
    quantity: int = Field(strict=True, ge=1, le=MAX_QUANTITY)
    workflow_run_id: RunId


class SettleRequest(_Request):
    org_id: Id
    quantity: int | None = Field(
        default=None, strict=True, ge=0, le=MAX_QUANTITY, description="Actual quantity; default as reserved"
    )
    occurred_at: Instant | None = Field(default=None, description="When the generation finished; default now")


class ReleaseRequest(_Request):
    org_id: Id


class SplitOut(BaseModel):
    included: int
    packs: int
    overage: int


class ReservationOut(BaseModel):
    workflow_run_id: str
    status: str
    project_id: str
    credits: int
    settled_credits: int | None
    split: SplitOut | None
    available_after: int | None
    replayed: bool

    @classmethod
    def of(cls, r: ReservationResult) -> ReservationOut:
        split = SplitOut(included=r.split.included, packs=r.split.packs, overage=r.split.overage) if r.split else None
        return cls(
            workflow_run_id=r.workflow_run_id,
            status=r.status,
            project_id=r.project_id,
            credits=r.credits,
            settled_credits=r.settled_credits,
            split=split,
            available_after=r.available_after,
            replayed=r.replayed,
        )


class SdkEventIn(_Request):
    org_id: Id
    occurred_at: Instant
    count: int = Field(default=1, strict=True, ge=1, le=MAX_EVENT_COUNT)


class SdkEventBatch(_Request):
    batch_id: RunId
    events: list[SdkEventIn] = Field(min_length=1, max_length=MAX_BATCH_EVENTS)


class IngestOut(BaseModel):
    batch_id: str
    events: int
    groups: int
    writes: int
    duplicate: bool
    unknown_orgs: list[str]


class StorageSnapshot(_Request):
    org_id: Id
    taken_at: Instant
    total_bytes: int = Field(strict=True, ge=0, le=MAX_STORAGE_BYTES)


class StorageOut(BaseModel):
    org_id: str
    period_key: str


@app.post(
    "/v1/internal/credits/reservations",
    tags=["internal"],
    status_code=201,
    summary="Reserve credits when a generation starts (idempotent by workflow_run_id)",
)
def reserve(body: ReserveRequest) -> ReservationOut:
    result = services().credits.reserve(
        org_id=body.org_id,
        project_id=body.project_id,
        template_id=body.template_id,
        generation_type=body.generation_type,
        quantity=body.quantity,
        workflow_run_id=body.workflow_run_id,
        actor=service_of(app),
    )
    return ReservationOut.of(result)


@app.post(
    "/v1/internal/credits/reservations/<workflow_run_id>/settle",
    tags=["internal"],
    summary="Settle with the actual quantity when the generation finishes",
)
def settle(workflow_run_id: RunIdPath, body: SettleRequest) -> ReservationOut:
    result = services().credits.settle(
        org_id=body.org_id,
        workflow_run_id=workflow_run_id,
        quantity=body.quantity,
        occurred_at=body.occurred_at,
        actor=service_of(app),
    )
    return ReservationOut.of(result)


@app.post(
    "/v1/internal/credits/reservations/<workflow_run_id>/release",
    tags=["internal"],
    summary="Release the credits of a failed generation",
)
def release(workflow_run_id: RunIdPath, body: ReleaseRequest) -> ReservationOut:
    result = services().credits.release(org_id=body.org_id, workflow_run_id=workflow_run_id, actor=service_of(app))
    return ReservationOut.of(result)


@app.post(
    "/v1/internal/usage/events",
    tags=["internal"],
    summary="Metered usage (workflow runs, SDK events): each event counted once by its event_id",
)
def usage_events(body: UsageEventsIn) -> UsageEventsOut:
    service_of(app)
    return UsageEventsOut.of(services().usage.record_events([e.event() for e in body.events]))


@app.post(
    "/v1/internal/usage/sdk-events",
    tags=["internal"],
    summary="A batch of SDK events (an adapter onto /usage/events: one event <batch_id>#<period>#<day> per org, "
    "period and UTC day)",
)
def sdk_events(body: SdkEventBatch) -> IngestOut:
    service_of(app)
    result = services().usage.ingest_sdk_events(
        body.batch_id, [SdkEvent(e.org_id, e.occurred_at, e.count) for e in body.events]
    )
    return IngestOut(
        batch_id=result.batch_id,
        events=result.events,
        groups=result.groups,
        writes=result.writes,
        duplicate=result.duplicate,
        unknown_orgs=result.unknown_orgs,
    )


@app.post("/v1/internal/usage/storage-snapshots", tags=["internal"], summary="A daily media-storage snapshot")
def storage_snapshot(body: StorageSnapshot) -> StorageOut:
    service_of(app)
    period = services().usage.record_storage(body.org_id, body.taken_at, body.total_bytes)
    return StorageOut(org_id=body.org_id, period_key=period.key)


class HoldRequest(_Request):
    org_id: Id
    hold_id: RunId
    project_id: Id
    platform: Id
    amount_minor: int = Field(strict=True, gt=0, le=MAX_MINOR)
    expires_at: AwareDatetime | None = Field(
        default=None,
        description="When the hold ends unless released or drawn to 0 (e.g. the campaign's end), with an offset; "
        "at most 31 days ahead (a later instant is brought in to that); default 24 hours",
    )


class HoldOut(BaseModel):
    hold_id: str
    status: str = Field(description="pending | exhausted | voided | expired")
    amount_minor: int = Field(description="Authorized when made")
    platform: str
    project_id: str
    remaining_minor: int = Field(default=0, description="Still held: the amount less what bills drew on it")
    drawn_minor: int = Field(default=0, description="Taken by the bills that named it")
    expires_at: str = ""


class ReleaseHoldRequest(_Request):
    org_id: Id


class BillRequest(_Request):
    org_id: Id
    platform: Id
    bill_id: Key
    project_id: Id
    # negative: a platform credit (money the platform gives back, e.g. for invalid traffic)
    amount_minor: int = Field(strict=True, ge=-MAX_MINOR, le=MAX_MINOR)
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
    billed_on: BillDate
    hold_id: RunId | None = None


class BillOut(BaseModel):
    bill_id: str
    platform: str
    amount_minor: int
    fee_minor: int
    replayed: bool


def _hold_out(hold: Hold) -> HoldOut:
    return HoldOut(
        hold_id=hold.hold_id,
        status=hold.status,
        amount_minor=hold.amount_minor,
        platform=hold.platform,
        project_id=hold.project_id,
        remaining_minor=hold.open_minor if hold.remaining_minor is None else hold.remaining_minor,
        drawn_minor=hold.drawn_minor,
        expires_at=hold.expires_at,
    )


@app.post(
    "/v1/internal/wallet/holds",
    tags=["internal"],
    status_code=201,
    summary="Optimizer: authorize spend before launching or scaling an ad (idempotent by hold_id)",
)
def place_hold(body: HoldRequest) -> HoldOut:
    service_of(app)
    return _hold_out(
        services().wallet.hold(
            org_id=body.org_id,
            hold_id=body.hold_id,
            project_id=body.project_id,
            platform=body.platform,
            amount_minor=body.amount_minor,
            expires_at=body.expires_at,
        )
    )


@app.post("/v1/internal/wallet/holds/<hold_id>/release", tags=["internal"], summary="Release an unused hold")
def release_hold(hold_id: RunIdPath, body: ReleaseHoldRequest) -> HoldOut:
    service_of(app)
    return _hold_out(services().wallet.release_hold(org_id=body.org_id, hold_id=hold_id))


@app.post(
    "/v1/internal/wallet/bills",
    tags=["internal"],
    summary="A platform bill: debit spend + platform fee, once per platform and bill id",
)
def record_bill(body: BillRequest) -> BillOut:
    result = services().wallet.record_bill(Bill(**body.model_dump(), actor=service_of(app)))
    return BillOut(**asdict(result))


class ReversalRequest(_Request):
    org_id: Id
    reason: Reason


BillPath = Annotated[str, Path(pattern=KEY_PATTERN)]
PlatformPath = Annotated[str, Path(pattern=ID_PATTERN)]


@app.post(
    "/v1/internal/wallet/bills/<platform>/<bill_id>/reversal",
    tags=["internal"],
    summary="The spend feed's correction: take back a recorded bill (spend + its fee), once per bill",
)
def reverse_bill(platform: PlatformPath, bill_id: BillPath, body: ReversalRequest) -> BillOut:
    actor = service_of(app)
    result = services().credit_notes.reverse_bill(body.org_id, platform, bill_id, body.reason, actor)
    return BillOut(**asdict(result))


class SpendReportRequest(_Request):
    org_id: Id
    platform: Id
    project_id: Id
    day: BillDate
    amount_minor: int = Field(strict=True, ge=0, le=MAX_MINOR)
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
    report_id: Key


class SpendReportOut(BaseModel):
    report_id: str
    kept: bool  # False: a later report of the same day, platform and project is kept already, or this one replaced


@app.post(
    "/v1/internal/wallet/spend-reports",
    tags=["internal"],
    summary="A platform's spend report (per platform, project and day): reconciled against its bills",
)
def spend_report(body: SpendReportRequest) -> SpendReportOut:
    actor = service_of(app)
    report = SpendReport(
        org_id=body.org_id,
        platform=body.platform,
        project_id=body.project_id,
        day=body.day.isoformat(),
        amount_minor=body.amount_minor,
        currency=body.currency,
        report_id=body.report_id,
        reported_at=datetime.now(UTC).isoformat(),
    )
    kept = reconcile_desk().report_spend(report)
    logger.info("spend report", extra={"report_id": body.report_id, "actor": actor, "kept": kept})
    return SpendReportOut(report_id=body.report_id, kept=kept)


@cache
def reconcile_desk() -> ReconcileDesk:
    table = dynamodb_resource().Table(ApiSettings.from_env().table_name)
    return ReconcileDesk(services().orgs, OrgRepository(table), ReconcileRepository(table))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
@within_lambda_time
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    metrics.add_metric(name="InternalRequests", unit=MetricUnit.Count, value=1)
    return app.resolve(event, context)

"""Service-to-service function (`/v1/internal/...`, IAM SigV4 in AWS): the workflow engine's credit
consumption and the usage ingestion path. Never reachable with a person's token."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from functions.http import new_resolver, service_of
from shared.credits.service import ReservationResult
from shared.observability import logger, metrics, tracer
from shared.settings import ApiSettings
from shared.usage.service import SdkEvent
from shared.wiring import Services, build_services

app = new_resolver()
RunId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_:.\-]{1,128}$")]
RunIdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9_:.\-]{1,128}$")]
Id = Annotated[str, StringConstraints(min_length=1, max_length=64)]


@cache
def services() -> Services:
    return build_services(ApiSettings())


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReserveRequest(_Request):
    org_id: Id
    project_id: Id
    template_id: Id
    generation_type: Id
    quantity: int = Field(ge=1, le=1000)
    workflow_run_id: RunId


class SettleRequest(_Request):
    org_id: Id
    quantity: int | None = Field(default=None, ge=0, le=1000, description="Actual quantity; default as reserved")
    occurred_at: datetime | None = Field(default=None, description="When the generation finished; default now")


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
    occurred_at: datetime
    count: int = Field(default=1, ge=1, le=1_000_000)


class SdkEventBatch(_Request):
    batch_id: RunId
    events: list[SdkEventIn] = Field(min_length=1, max_length=20_000)


class IngestOut(BaseModel):
    batch_id: str
    events: int
    groups: int
    writes: int
    duplicate: bool
    unknown_orgs: list[str]


class StorageSnapshot(_Request):
    org_id: Id
    taken_at: datetime
    total_bytes: int = Field(ge=0)


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


@app.post("/v1/internal/usage/sdk-events", tags=["internal"], summary="A batch of SDK events (idempotent per batch)")
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


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    metrics.add_metric(name="InternalRequests", unit=MetricUnit.Count, value=1)
    return app.resolve(event, context)

"""Metered usage arriving as EventBridge events (detail-type `Usage.EventsReported`, detail
`{events: [...]}` as the body of `POST /v1/internal/usage/events`): counted exactly like the route, each
event once by its event_id. Refusals are final (a retry would be refused again): the whole event for an
unknown org; one event (the rest counted) for usage too old to meter, dated before its org was created or
in the future (past the clock skew the route allows: the same rule), with an id reserved for the SDK batch
adapter or naming a project that is not its org's. Logged and counted in
UsageEventsRefused (alarmed); the event is in the log."""

from __future__ import annotations

from dataclasses import asdict

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel

from functions.eventbridge_ingest import Ingest, Ingested, ingest_handler
from functions.usage_schema import ReportedUsageEventsIn
from shared.errors import InvalidRequestError, NotFoundError
from shared.wiring import Services


class EventsReported(EventBridgeModel):
    detail: ReportedUsageEventsIn


def _record(services: Services, event: EventsReported) -> Ingested:
    result = services.usage.record_events([e.event() for e in event.detail.events], each=True)
    refusals = [asdict(r) for r in result.refused]
    return Ingested(asdict(result), counted=result.applied, refused=len(refusals), refusals=refusals)


lambda_handler = ingest_handler(
    Ingest(
        model=EventsReported,
        apply=_record,
        counted_metric="UsageEventsMetered",
        refused_metric="UsageEventsRefused",
        refusals=(InvalidRequestError, NotFoundError),
        about=lambda event: {"id": event.id},
        records=lambda event: len(event.detail.events),
    )
)

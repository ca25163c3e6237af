"""Metered usage arriving as EventBridge events (detail-type `Usage.EventsReported`, detail
`{events: [...]}` as the body of `POST /v1/internal/usage/events`): counted exactly like the route, each
event once by its event_id."""

from __future__ import annotations

from dataclasses import asdict
from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.usage_schema import UsageEventsIn
from shared.deadline import within_lambda_time
from shared.errors import InvalidRequestError, NotFoundError
from shared.observability import logger, metrics, tracer
from shared.settings import ApiSettings
from shared.wiring import Services, build_services


class EventsReported(EventBridgeModel):
    detail: UsageEventsIn


@cache
def services() -> Services:
    return build_services(ApiSettings.from_env())


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
@within_lambda_time
@event_parser(model=EventsReported)
def lambda_handler(event: EventsReported, context: LambdaContext) -> dict[str, Any]:
    events = [e.event() for e in event.detail.events]
    try:
        result = services().usage.record_events(events)
    except (InvalidRequestError, NotFoundError) as refused:
        # Final (a retry would be refused again): an unknown org, or usage too old to meter once. The
        # alarm on UsageEventsRefused tells someone; the event is in the log.
        logger.error("usage events refused", extra={"code": refused.code, "reason": refused.message, "id": event.id})
        metrics.add_metric(name="UsageEventsRefused", unit=MetricUnit.Count, value=len(events))
        return {"refused": refused.code, "message": refused.message}
    metrics.add_metric(name="UsageEventsMetered", unit=MetricUnit.Count, value=result.applied)
    return asdict(result)

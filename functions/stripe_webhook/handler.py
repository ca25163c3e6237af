"""Stripe webhook function: `POST /webhooks/stripe` (no JWT; Stripe's signature on the raw body).

The signature is verified first (bad or stale -> 400, nothing done). Then the event id is stored
(Powertools Idempotency, DynamoDB, kept 40 days) before anything acts, so each event acts at most
once: a redelivery gets the first reply, a concurrent one waits its turn (409, Stripe retries), and a
failure removes the record so Stripe's retry runs it again."""

from __future__ import annotations

from functools import cache
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.http import error_response, json_only, new_resolver
from shared.deadline import within_lambda_time
from shared.observability import logger, metrics, tracer
from shared.settings import WebhookSettings
from shared.stripe_gateway import StripeGateway, WebhookEvent
from shared.wiring import Services, build_services

DEDUPE_SECONDS = 40 * 24 * 3600  # Stripe retries for 3 days; we keep event ids well past 35 days

settings = WebhookSettings.from_env()  # validated at cold start
persistence = DynamoDBPersistenceLayer(table_name=settings.idempotency_table_name)
idempotency = IdempotencyConfig(event_key_jmespath="event_id", expires_after_seconds=DEDUPE_SECONDS)
app = new_resolver()


@cache
def services() -> Services:
    return build_services(settings)


@idempotent_function(data_keyword_argument="event", config=idempotency, persistence_store=persistence)
def act_once(event: dict[str, Any]) -> dict[str, str]:
    parsed = WebhookEvent(event["event_id"], event["type"], event["created"], event["object"])
    outcome = services().stripe_events.handle(parsed)
    logger.info("stripe event handled", extra={"event_id": parsed.event_id, "type": parsed.type, "outcome": outcome})
    return {"event_id": parsed.event_id, "outcome": outcome}


@app.post("/webhooks/stripe", include_in_schema=False, middlewares=[json_only])
def receive() -> Any:
    gateway: StripeGateway = services().stripe_events.gateway
    event = gateway.parse_webhook(
        app.current_event.decoded_body or "", app.current_event.headers.get("stripe-signature")
    )
    try:
        result = act_once(
            event={"event_id": event.event_id, "type": event.type, "created": event.created, "object": event.object}
        )
    except IdempotencyAlreadyInProgressError:
        # Another delivery of this event is being handled right now; Stripe will retry this one.
        return error_response(HTTPStatus.CONFLICT, "event_in_progress", "This event is being handled; retry later.")
    metrics.add_metric(name="StripeEventsHandled", unit=MetricUnit.Count, value=1)
    if result["outcome"].startswith("overage_deferred"):  # a renewal finalized before we billed it: alarmed
        metrics.add_metric(name="RenewalOverageDeferred", unit=MetricUnit.Count, value=1)
    return {"received": True, **result}


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
@within_lambda_time
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    metrics.add_metric(name="WebhookRequests", unit=MetricUnit.Count, value=1)
    idempotency.register_lambda_context(context)
    return app.resolve(event, context)

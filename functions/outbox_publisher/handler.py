"""The outbox publisher (BillingTable's stream, filtered to new OUTBOX# items): sends each event and
notification the committed changes wrote, and performs each task (the Stripe seat quantity sync; see
shared/outbox.py: a task that fails is listed for the sweeper's retry and the stream goes on). An event
or notification that cannot be sent is reported as a batch item failure, and so is every message after
it in the batch, unsent: Lambda retries from the failed one, in order, until it is delivered (or, after
24 h, hands it to the dead-letter queue), and nothing after a stuck message goes out twice. The same
when the function's time runs low: what is not sent yet is reported, never half-sent by a timeout.
Deliveries are at least once (a reply lost after a send): every message carries its `event_id` for
consumers to dedupe."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from shared.deadline import within_lambda_time
from shared.dynamo import dynamodb_resource
from shared.events import EventPublisher
from shared.notify import Notifier
from shared.observability import logger, metrics, tracer
from shared.outbox import OutboxPublisher, SeatSyncer, TaskDeferred
from shared.settings import ApiSettings

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
# A send gives up well inside the function's 30 s: a hung EventBridge or SNS is a failed record, retried.
_CLIENT = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"})
RESERVE_MS = 10_000  # no send starts with less time left than this


class NotSent(Exception):
    """A message left for the retry: an earlier one in the batch failed, or time ran low."""


@cache
def publisher() -> OutboxPublisher:
    settings = ApiSettings.from_env()
    events = EventPublisher(boto3.client("events", config=_CLIENT), settings.event_bus_name)
    notifier = Notifier(boto3.client("sns", config=_CLIENT), settings.notifications_topic_arn)
    return OutboxPublisher(events, notifier, dynamodb_resource().Table(settings.table_name), seats=seat_sync)


@cache
def seat_sync() -> SeatSyncer:
    """Made when the first task arrives: a batch of events and notices imports no Stripe code and never
    reads the Stripe secret (the gateway reads it on its first call)."""
    from shared.billing.dunning import DunningNotices
    from shared.billing.prices import StripePrices
    from shared.billing.subscriptions import SeatSync, SubscriptionMirror
    from shared.catalog import plan_catalog
    from shared.clock import SystemClock
    from shared.orgs.repository import OrgRepository
    from shared.outbox import OutboxWriter
    from shared.stripe_gateway import StripeGateway
    from shared.wiring import stripe_keys

    settings = ApiSettings.from_env()
    gateway = StripeGateway.from_keys(stripe_keys(settings.stripe_secret_arn), api_base=settings.stripe_api_base)
    table = dynamodb_resource().Table(settings.table_name)
    repo = OrgRepository(table)
    plans, clock = plan_catalog(), SystemClock()
    dunning = DunningNotices(repo, OutboxWriter(table, clock), plans, clock)
    return SeatSync(repo, gateway, StripePrices(gateway, plans), plans, SubscriptionMirror(repo, plans, clock, dunning))


class _Batch:
    """One invocation's sends, in order, stopping at the first that fails."""

    def __init__(self, context: LambdaContext) -> None:
        self._context = context
        self._stopped = False

    def deliver(self, record: DynamoDBRecord) -> None:
        if self._stopped or self._context.get_remaining_time_in_millis() < RESERVE_MS:
            self._stopped = True
            raise NotSent("left for the retry, in order")
        image = record.dynamodb.new_image if record.dynamodb else None
        if not image:
            return
        try:
            publisher().deliver(image)
        except TaskDeferred as deferred:  # a task never holds back what follows: the sweeper retries it
            name = "OutboxTaskFailed" if deferred.ended else "OutboxTasksDeferred"  # the first is alarmed
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
            return
        except Exception:
            self._stopped = True
            raise
        metrics.add_metric(name="OutboxMessagesSent", unit=MetricUnit.Count, value=1)


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
@within_lambda_time  # a task's Stripe calls end before the function would time out: a failed record, retried
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    batch = _Batch(context)
    return dict(
        process_partial_response(event=event, record_handler=batch.deliver, processor=processor, context=context)
    )

"""The outbox publisher (BillingTable's stream, filtered to new OUTBOX# items): sends each event and
notification the committed changes wrote (shared/outbox.py). A message that cannot be sent is reported
as a batch item failure, so Lambda retries from it, in order, until it is delivered (or, after 24 h,
hands it to the dead-letter queue); messages before it are not sent again. Deliveries are at least
once: every message carries its `event_id` for consumers to dedupe."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.events import EventPublisher
from shared.notify import Notifier
from shared.observability import logger, metrics, tracer
from shared.outbox import OutboxPublisher
from shared.settings import ApiSettings

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


@cache
def publisher() -> OutboxPublisher:
    settings = ApiSettings.from_env()
    events = EventPublisher(boto3.client("events"), settings.event_bus_name)
    return OutboxPublisher(events, Notifier(boto3.client("sns"), settings.notifications_topic_arn))


def deliver(record: DynamoDBRecord) -> None:
    image = record.dynamodb.new_image if record.dynamodb else None
    if not image:
        return
    publisher().deliver(image)
    metrics.add_metric(name="OutboxMessagesSent", unit=MetricUnit.Count, value=1)


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return dict(process_partial_response(event=event, record_handler=deliver, processor=processor, context=context))

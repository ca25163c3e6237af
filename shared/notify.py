"""Notifications to people (SNS topic; email/SMS/Slack subscribers hang off it)."""

from __future__ import annotations

import json
from typing import Any


class Notifier:
    def __init__(self, sns_client: Any, topic_arn: str):
        self._sns = sns_client
        self._topic_arn = topic_arn

    def notify(
        self,
        *,
        org_id: str,
        kind: str,
        subject: str,
        message: str,
        details: dict[str, Any],
        event_id: str | None = None,
    ) -> None:
        """Publishes one notification; `kind` (e.g. Payment.Failed) is a message attribute to filter on,
        `event_id` (the outbox message's id) the one to dedupe on."""
        body = {"org_id": org_id, "kind": kind, "message": message, "details": details}
        if event_id:
            body["event_id"] = event_id
        self._sns.publish(
            TopicArn=self._topic_arn,
            Subject=subject[:100],
            Message=json.dumps(body),
            MessageAttributes={
                "kind": {"DataType": "String", "StringValue": kind},
                "org_id": {"DataType": "String", "StringValue": org_id},
                **({"event_id": {"DataType": "String", "StringValue": event_id}} if event_id else {}),
            },
        )

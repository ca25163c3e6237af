"""Events out, on the EventBridge bus: detail-type `Resource.Verb`, source `layers.billing`."""

from __future__ import annotations

import json
from typing import Any

SOURCE = "layers.billing"


class EventPublisher:
    def __init__(self, events_client: Any, bus_name: str):
        self._events = events_client
        self._bus = bus_name

    def publish(self, detail_type: str, detail: dict[str, Any]) -> None:
        resp = self._events.put_events(
            Entries=[
                {
                    "Source": SOURCE,
                    "DetailType": detail_type,
                    "Detail": json.dumps(detail, default=str),
                    "EventBusName": self._bus,
                }
            ]
        )
        if resp.get("FailedEntryCount"):
            raise RuntimeError(f"EventBridge refused {detail_type}: {resp['Entries']}")

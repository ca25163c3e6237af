"""Events (`GET /v1/events`) and webhook endpoints (stored; deliveries go to the emulator's own endpoint)."""

from __future__ import annotations

import secrets

from .. import fixtures
from ..errors import invalid, param_missing
from ..params import (
    get_list,
    get_str,
    merge_metadata,
    req_str,
)
from ..routes import ID, Route, stripe
from ..store import Obj, Store


class EventsAndWebhooks:
    def __init__(self, store: Store) -> None:
        self.store = store

    def list_events(self, params: Obj) -> Obj:
        items = self.store.all("event")
        kind = get_str(params, "type")
        kinds = [str(k) for k in get_list(params, "types")]
        if kind and kinds:
            raise invalid("You cannot specify both `type` and `types`.", param="types")
        wanted = kinds or ([kind] if kind else [])
        if wanted:
            items = [e for e in items if any(_type_matches(e["type"], w) for w in wanted)]
        return self.store.paginate(items, "/v1/events", params, render=False)

    def create_webhook_endpoint(self, params: Obj) -> Obj:
        events = [str(e) for e in get_list(params, "enabled_events")]
        if not events:
            raise param_missing("enabled_events")
        endpoint = fixtures.base(
            "webhook_endpoint",
            id=fixtures.new_id("we_"),
            api_version=get_str(params, "api_version"),
            created=self.store.now(),
            description=get_str(params, "description"),
            enabled_events=events,
            metadata=merge_metadata({}, params.get("metadata")),
            url=req_str(params, "url"),
            secret="whsec_" + secrets.token_hex(16),
        )
        return self.store.add(endpoint)

    def list_webhook_endpoints(self, params: Obj) -> Obj:
        items = [e for e in self.store.all("webhook_endpoint") if not e.get("deleted")]
        rendered = self.store.paginate(items, "/v1/webhook_endpoints", params)
        for endpoint in rendered["data"]:
            endpoint.pop("secret", None)  # only returned on creation, as Stripe does
        return rendered

    def routes(self) -> list[Route]:
        return [
            stripe("GET", "/v1/events", self.list_events),
            stripe("GET", f"/v1/events/{ID}", lambda p, i: self.store.get("event", i)),
            stripe("POST", "/v1/webhook_endpoints", self.create_webhook_endpoint),
            stripe("GET", "/v1/webhook_endpoints", self.list_webhook_endpoints),
        ]


def _type_matches(event_type: str, pattern: str) -> bool:
    if pattern.endswith("*"):
        return event_type.startswith(pattern[:-1])
    return event_type == pattern

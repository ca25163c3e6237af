"""The shape of metered usage events, one for both ways they arrive: `POST /v1/internal/usage/events`
(functions/internal) and the EventBridge event `Usage.EventsReported` (functions/usage_ingest)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from functions.limits import MAX_EVENT_COUNT, MAX_USAGE_EVENTS, Id, Instant, Key, ReportedInstant
from shared.usage.metering import Metered, UsageEvent


class UsageEventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric: Literal["workflow_runs", "sdk_events"]
    org_id: Id
    project_id: Id | None = None
    occurred_at: Instant
    quantity: int = Field(default=1, strict=True, ge=1, le=MAX_EVENT_COUNT)
    event_id: Key = Field(
        description="Counted once per org, metric and event_id (35-day dedupe window); an id ending "
        "`#<period>#<day>` is reserved for the SDK batch adapter"
    )

    def event(self) -> UsageEvent:
        return UsageEvent(self.metric, self.org_id, self.occurred_at, self.quantity, self.event_id, self.project_id)


class UsageEventsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[UsageEventIn] = Field(min_length=1, max_length=MAX_USAGE_EVENTS)


class ReportedUsageEventIn(UsageEventIn):
    """An item of `Usage.EventsReported`: the route's, but an `occurred_at` outside the metering window
    (dated in the future past the clock skew, or too old) is the item's own refusal, not the event's
    (`usage_event_in_future`, `usage_event_too_old`: the metering's rule, the rest of the event counting)."""

    occurred_at: ReportedInstant


class ReportedUsageEventsIn(BaseModel):
    """The detail of `Usage.EventsReported`: the body of the route, its items refused one by one."""

    model_config = ConfigDict(extra="forbid")

    events: list[ReportedUsageEventIn] = Field(min_length=1, max_length=MAX_USAGE_EVENTS)


class RefusedEventOut(BaseModel):
    event_id: str
    code: str = Field(
        description="project_not_found | project_archived (on the EventBridge path also usage_event_too_old, "
        "usage_before_org, usage_event_in_future, usage_event_id_reserved)"
    )
    message: str


class UsageEventsOut(BaseModel):
    events: int
    applied: int = Field(description="Counted by this request")
    duplicates: int = Field(description="Seen before (an earlier request, or twice in this one): not counted again")
    counter_writes: int
    marker_writes: int
    refused: list[RefusedEventOut] = Field(
        default_factory=list,
        description="Events refused on their own (their project is not one of the org's, or was archived before "
        "the event), counted nowhere; the rest of the batch is counted",
    )

    @classmethod
    def of(cls, result: Metered) -> UsageEventsOut:
        return cls.model_validate(asdict(result))  # (its refused events as RefusedEventOut)

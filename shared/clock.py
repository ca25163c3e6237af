"""Time as a collaborator, so services and tests agree on "now"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

FUTURE_SKEW = timedelta(minutes=5)  # clocks differ a little; a time reported further ahead is a caller's bug


def in_future(at: datetime, now: datetime) -> bool:
    """A time a caller reports (when usage happened) is ahead of `now` by more than the clocks' skew allowed:
    the one rule of the request models (a 422) and of the metering (an EventBridge item refused alone)."""
    return at > now + FUTURE_SKEW


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

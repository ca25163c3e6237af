"""Deadlines for calls to the outside world (Stripe): a Lambda request's Stripe calls all end before the
function would time out, with room left to write what happened and answer.

Kept apart from the HTTP transport (shared/stripe_http.py) so handlers import it without `requests`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import wraps
from typing import Any, TypeVar

MIN_ATTEMPT_S = 1.5  # a Stripe attempt never starts with less left than this
ANSWER_RESERVE_S = 3.0  # what a Lambda request keeps, after its last Stripe call, to write and answer

_deadline: ContextVar[float | None] = ContextVar("stripe_deadline", default=None)


@contextmanager
def deadline_in(seconds: float) -> Iterator[None]:
    """Stripe calls made inside end `seconds` from now at the latest; an inner deadline only shortens."""
    outer = _deadline.get()
    mine = time.monotonic() + max(0.0, seconds)
    token = _deadline.set(mine if outer is None else min(outer, mine))
    try:
        yield
    finally:
        _deadline.reset(token)


def seconds_left() -> float | None:
    """Time left before the current deadline; None outside any."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()


F = TypeVar("F", bound=Callable[..., Any])


def within_lambda_time(handler: F) -> F:
    """A Lambda handler whose Stripe calls all end `ANSWER_RESERVE_S` before the function times out."""

    @wraps(handler)
    def run(event: Any, context: Any) -> Any:
        with deadline_in(context.get_remaining_time_in_millis() / 1000 - ANSWER_RESERVE_S):
            return handler(event, context)

    return run  # type: ignore[return-value]

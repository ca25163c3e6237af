"""The one retry policy for optimistic writes and for throttled upstream calls: full jitter over an
exponentially growing, capped window (AWS's "exponential backoff and jitter")."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from shared.errors import ConcurrentUpdateError

T = TypeVar("T")

BASE_S = 0.002
CAP_S = 0.05


def backoff(attempt: int, *, base: float = BASE_S, cap: float = CAP_S) -> float:
    """Seconds to wait before retry number `attempt` (0-based): uniform in [0, min(cap, base * 2^attempt))."""
    return random.uniform(0, min(cap, base * 2 ** min(attempt, 30)))  # noqa: S311 - jitter, not secrecy


def until_done(
    attempt: Callable[[], T],
    *,
    retry_on: tuple[type[BaseException], ...],
    attempts: int,
    busy: str,
    base: float = BASE_S,
    cap: float = CAP_S,
) -> T:
    """Runs `attempt` until it returns, retrying (with backoff) the exceptions in `retry_on`; after
    `attempts` tries, ConcurrentUpdateError(busy): the caller may retry the whole request safely."""
    for n in range(attempts):
        try:
            return attempt()
        except retry_on:
            time.sleep(backoff(n, base=base, cap=cap))
    raise ConcurrentUpdateError(busy)

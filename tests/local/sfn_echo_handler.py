"""Tiny handlers for testing Step Functions executions on the local stack (tests/test_local_sfn.py).

Their outputs differ from their inputs on purpose: an echoed input would mean a task never reached them.
"""

from __future__ import annotations

import os
import threading
from typing import Any

# Lets tests assert which invocations reached the handlers (and how often: retries).
invocations: list[tuple[str, Any]] = []
_lock = threading.Lock()


class InvoiceTaskError(Exception):
    """A custom error type: Step Functions sees its class name as the task's error."""


def _record(name: str, event: Any) -> None:
    with _lock:
        invocations.append((name, event))


def double(event: dict[str, Any], context: Any) -> dict[str, Any]:
    _record("double", event)
    return {
        "customer": event["customer"],
        "doubled": event["amount"] * 2,
        "handledBy": context.function_name,
        "stateMachine": os.environ.get("TEST_STATE_MACHINE_ARN", ""),
    }


def fail(event: dict[str, Any], context: Any) -> dict[str, Any]:
    _record("fail", event)
    raise InvoiceTaskError(f"cannot invoice {event.get('customer', '?')}")


def oversized(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A result over Step Functions' 256 KB payload quota."""
    _record("oversized", event)
    return {"customer": event.get("customer"), "blob": "x" * (256 * 1024)}

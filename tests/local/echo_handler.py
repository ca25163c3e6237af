"""A tiny handler for testing the local HTTP API: answers with the event it received."""

from __future__ import annotations

import json
from typing import Any

# Lets tests assert that rejected requests never reach the handler.
invocations: list[dict[str, Any]] = []


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    invocations.append(event)
    path = event.get("rawPath", "")
    if path.endswith("/raise"):
        raise RuntimeError("echo handler asked to fail")
    if path.endswith("/plain"):
        return {"echo": True}  # no statusCode: HTTP API wraps it as 200 JSON
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json", "x-function": context.function_name},
        "cookies": ["a=1; Path=/", "b=2"],
        "body": json.dumps(event),
    }

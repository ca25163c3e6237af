"""Stripe's own example object of each resource (fixtures3.json); every object we return starts from one."""

from __future__ import annotations

import copy
import json
import secrets
import string
from functools import cache
from pathlib import Path
from typing import Any

_FIXTURES = Path(__file__).with_name("fixtures3.json")
_ALPHABET = string.ascii_letters + string.digits


@cache
def _resources() -> dict[str, dict[str, Any]]:
    data: dict[str, dict[str, Any]] = json.loads(_FIXTURES.read_text(encoding="utf-8"))["resources"]
    return data


def base(resource: str, **overrides: Any) -> dict[str, Any]:
    """A fresh deep copy of the fixture of `resource`, with top-level fields overridden."""
    obj = copy.deepcopy(_resources()[resource])
    obj.update(overrides)
    if "livemode" in obj:
        obj["livemode"] = False
    return obj


def new_id(prefix: str, length: int = 24) -> str:
    """Ids shaped like Stripe's: `cus_` + random alphanumerics."""
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))

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
_REMOVED = object()

# Stripe's examples are partly older than the API version the emulator speaks (tests/contract; the contract
# wins): fields this version added, with the value Stripe sends when the feature is unused, and fields it
# removed. `a.b` is a nested field.
_CURRENT_VERSION: dict[str, dict[str, Any]] = {
    "charge": {"payment_method_details.card.electronic_commerce_indicator": None},
    "checkout.session": {"allowed_payment_method_types": None},
    "dispute": {"intended_submission_method": None, "evidence_details.submission_method": "not_submitted"},
    "invoice": {"subscription": _REMOVED},  # now `parent.subscription_details.subscription`
    "payment_intent": {"allowed_payment_method_types": None, "payment_record": None},
    "product": {"tax_details": None},
    "setup_intent": {"allowed_payment_method_types": None},
    "subscription": {
        "cancellation_details.feedback_option": None,
        "trial_settings.end_behavior.billing_cycle_anchor": None,
    },
    "subscription_item": {"current_trial": None},
}


@cache
def _resources() -> dict[str, dict[str, Any]]:
    data: dict[str, dict[str, Any]] = json.loads(_FIXTURES.read_text(encoding="utf-8"))["resources"]
    for resource, fields in _CURRENT_VERSION.items():
        for path, value in fields.items():
            *parents, name = path.split(".")
            node = data[resource]
            for parent in parents:
                node = node[parent]
            if value is _REMOVED:
                node.pop(name, None)
            else:
                node[name] = value
    return data


def base(resource: str, **overrides: Any) -> dict[str, Any]:
    """A fresh deep copy of the fixture of `resource`, with top-level fields overridden (their fixture values,
    an event's whole `data` among them, are not copied: the same fields in the same order as copying all)."""
    fixture = _resources()[resource]
    obj = {key: overrides[key] if key in overrides else copy.deepcopy(value) for key, value in fixture.items()}
    obj.update(overrides)
    if "livemode" in obj:
        obj["livemode"] = False
    return obj


def new_id(prefix: str, length: int = 24) -> str:
    """Ids shaped like Stripe's: `cus_` + random alphanumerics."""
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))

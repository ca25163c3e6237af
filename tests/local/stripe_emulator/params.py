"""Typed accessors of request parameters, and the parameter schemas of the emulator-only routes.

Stripe's endpoints are checked against the pinned API version's contract (contract.py), not here. The
`/_emulator/...` test helpers declare theirs: a schema is a dict of accepted names. A value of `ANY` accepts any
scalar; a nested dict is a sub-schema; a one-element list `[schema]` is a list of those. Every leaf arrives as a
string from the form encoding, so the accessors below coerce and validate.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any, Final

from .errors import ApiError, invalid, param_missing, param_unknown

Schema = dict[str, Any]
ANY: Final = "any"

# Accepted by every endpoint.
_COMMON: Schema = {"expand": [ANY]}


def _path(prefix: str, name: str) -> str:
    return f"{prefix}[{name}]" if prefix else name


def _check(value: Any, spec: Any, where: str) -> None:
    if spec == ANY:
        return
    if isinstance(spec, list):
        if value == "":  # `items=` clears a list
            return
        if not isinstance(value, list):
            raise invalid(f"Invalid array: {where}", param=where, code="parameter_invalid_array")
        for index, element in enumerate(value):
            _check(element, spec[0], f"{where}[{index}]")
        return
    if isinstance(spec, dict):
        if value == "":
            return
        if not isinstance(value, dict):
            raise invalid(f"Invalid object: {where}", param=where)
        for key, sub in value.items():
            if key not in spec:
                raise param_unknown(_path(where, key))
            _check(sub, spec[key], _path(where, key))


def validate(params: dict[str, Any], schema: Schema) -> None:
    """Refuse any parameter the endpoint does not declare (`parameter_unknown` names the full path)."""
    for key, value in params.items():
        spec = schema.get(key, _COMMON.get(key))
        if spec is None:
            raise param_unknown(key)
        _check(value, spec, key)


def require(params: dict[str, Any], name: str) -> Any:
    value = params.get(name)
    if value is None or value == "":
        raise param_missing(name)
    return value


def get_str(params: dict[str, Any], name: str, default: str | None = None) -> str | None:
    value = params.get(name)
    if value is None:
        return default
    if not isinstance(value, str):
        raise invalid(f"Invalid string: {name}", param=name)
    return value


def req_str(params: dict[str, Any], name: str, *, label: str | None = None) -> str:
    value = params.get(name)
    if value is None or value == "":
        raise param_missing(label or name)
    if not isinstance(value, str):
        raise invalid(f"Invalid string: {label or name}", param=label or name)
    return value


def get_int(params: dict[str, Any], name: str, default: int | None = None, *, label: str | None = None) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return default
    try:
        return int(str(value))
    except ValueError:
        where = label or name
        raise ApiError(400, f"Invalid integer: {value}", code="parameter_invalid_integer", param=where) from None


def req_int(params: dict[str, Any], name: str, *, label: str | None = None) -> int:
    value = get_int(params, name, label=label)
    if value is None:
        raise param_missing(label or name)
    return value


def get_decimal(params: dict[str, Any], name: str, *, label: str | None = None) -> Decimal | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise invalid(f"Invalid decimal: {value}", param=label or name) from None


def get_bool(params: dict[str, Any], name: str, default: bool | None = None) -> bool | None:
    value = params.get(name)
    if value is None or value == "":
        return default
    if value in ("true", True):
        return True
    if value in ("false", False):
        return False
    raise invalid(f"Invalid boolean: {value}", param=name, code="parameter_invalid_boolean")


def get_enum(params: dict[str, Any], name: str, allowed: tuple[str, ...], default: str | None = None) -> str | None:
    value = get_str(params, name, default)
    if value is not None and value not in allowed:
        raise invalid(
            f"Invalid {name}: must be one of {', '.join(allowed)}",
            param=name,
            code="parameter_invalid_string",
        )
    return value


def get_dict(params: dict[str, Any], name: str) -> dict[str, Any]:
    value = params.get(name)
    if value is None or value == "":
        return {}
    if isinstance(value, list):  # `metadata[0]=x` parsed as a list: keys were indexes
        return {str(index): item for index, item in enumerate(value)}
    if not isinstance(value, dict):
        raise invalid(f"Invalid object: {name}", param=name)
    return value


def get_list(params: dict[str, Any], name: str) -> list[Any]:
    value = params.get(name)
    if value is None or value == "":
        return []
    if isinstance(value, dict):  # a single `name[key]=` map where a list was expected
        return [value]
    if not isinstance(value, list):
        return [value]
    return value


def merge_metadata(current: dict[str, str], update: Any) -> dict[str, str]:
    """Stripe semantics: `metadata=` clears all keys, `metadata[k]=` removes k, other keys are set."""
    if update is None:
        return current
    if update == "":
        return {}
    merged = dict(current)
    items = update.items() if isinstance(update, dict) else enumerate(update)
    for key, value in items:
        if value == "":
            merged.pop(str(key), None)
        else:
            merged[str(key)] = str(value)
    return merged

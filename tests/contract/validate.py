"""Checks requests and objects against the derived Stripe contract (`stripe-contract.json`, see derive.py).

    request_problems("POST", "/v1/payment_intents", {"amount": "2000", "currency": "usd",
                     "payment_method_types": ["card"]})  # ['payment_method_types: unknown parameter']
    request_problems("GET", "/v1/invoices/upcoming", {})
        # ['GET /v1/invoices/upcoming: no such endpoint in API version 2026-10-28.endive']
    object_problems({**invoice, "subscription": "sub_1"})  # ['invoice.subscription: not in this version']

Requests (`params` = the decoded form body or query string, nested dicts/lists as `forms.py` makes them):
- names are bracket paths, as Stripe's `param` (`items[0][price]`); every level is checked for unknown names;
- form values are strings: "123" is an integer, "true"/"false" booleans, "1.5" a decimal; Python values work too;
- "" only where the SDK types the parameter emptyable (`Literal['']|...`), and as a map value (`metadata[k]=`
  unsets a key);
- enums: every value outside the SDK's list is a problem, open enums (`x-sdk-open-enum`, typed
  `Literal[...] | str` in stripe-python) included: Stripe checks request enums server side and our code is
  written against this SDK (`strict_enums=False` accepts any string for open enums);
- path parameters must look like Stripe ids (`prefix_...`), unless the resource accepts custom ids (its
  create operation has an `id` parameter: coupons, plans, products...) or the segment is not an id at all
  (`NOT_IDS`): so `GET /v1/invoices/upcoming` is not read as retrieving an invoice called "upcoming".
Objects (`obj["object"]` names the schema; paths are JSON paths from the object name):
- fields the version does not have, required fields missing, null where not nullable, wrong JSON types,
  values outside closed enums (open enums accept any string: Stripe adds values without a new version;
  `strict_enums=True` flags them too);
- recursion into nested classes, lists (`{"object": "list", "data": [...]}`), expandable fields (an id or the
  expanded object, chosen by its `object`), and an event's `data.object`;
- a deleted object (`"deleted": true`) needs only `id`, `object` and `deleted`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

CONTRACT_PATH = Path(__file__).with_name("stripe-contract.json")
NOT_IDS = frozenset({"country", "rate_id", "report_type", "capability"})  # ISO codes, currencies, names
_ID = re.compile(r"[A-Za-z][A-Za-z0-9]*_[A-Za-z0-9_]+")  # fullmatch; ASCII only, as Stripe's
_INTEGER = re.compile(r"-?[0-9]+")
_NUMBER = re.compile(r"-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")
_DELETED_REQUIRED = ("deleted", "id", "object")
Schema = dict[str, Any]


@dataclass(frozen=True)
class _Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    literals: int
    operation: Schema


def _route(method: str, template: str, operation: Schema) -> _Route:
    parts = template.strip("/").split("/")
    regex = "/".join(f"(?P<{p[1:-1]}>[^/]+)" if p.startswith("{") else re.escape(p) for p in parts)
    literals = sum(not p.startswith("{") for p in parts)
    return _Route(method, template, re.compile(f"^/{regex}$"), literals, operation)


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _enum_text(values: Sequence[Any]) -> str:
    shown = ", ".join(repr(v) for v in values[:12])
    return f"[{shown}{', ...' if len(values) > 12 else ''}]"


class Contract:
    """One contract document; `Contract.default()` is the committed one."""

    def __init__(self, document: Schema) -> None:
        self.document = document
        self.version: str = document["info"]["version"]
        self.schemas: dict[str, Schema] = document["components"]["schemas"]
        self.resources = {name for name, schema in self.schemas.items() if "x-resourceId" in schema}
        routes = [_route(m.upper(), t, op) for t, methods in document["paths"].items() for m, op in methods.items()]
        self._routes = sorted(routes, key=lambda r: (-r.literals, r.template))
        # The routes a path can match, in that order, by method and number of `/` (a template's segments match
        # only a path with as many: `[^/]+` takes no `/`): a request looks at a few patterns, not every one.
        self._by_shape: dict[tuple[str, int], list[_Route]] = {}
        for route in self._routes:
            self._by_shape.setdefault((route.method, route.template.count("/")), []).append(route)
        self._custom_ids = self._collections_with_custom_ids()
        self._request_schemas: dict[int, Schema] = {}

    @classmethod
    @cache
    def default(cls) -> Contract:
        return cls(json.loads(CONTRACT_PATH.read_text()))

    def _collections_with_custom_ids(self) -> frozenset[str]:
        """Templates like `/v1/coupons` whose create operation takes an `id` (a custom id, any string)."""
        found = set()
        for template, methods in self.document["paths"].items():
            body: Schema = methods.get("post", {}).get("requestBody", {}).get("content", {})
            media: Schema = next(iter(body.values()), {})
            schema: Schema = media.get("schema", {})
            if "id" in schema.get("properties", {}) and not template.endswith("}"):
                found.add(template)
        return frozenset(found)

    # ---- requests -----------------------------------------------------------------------------------------

    def route(self, method: str, path: str) -> _Route | None:
        """The operation a concrete method + path calls (literal segments win over `{id}` ones)."""
        for route in self._by_shape.get((method.upper(), path.count("/")), ()):
            match = route.pattern.match(path)
            if match and self._ids_plausible(route, match):
                return route
        return None

    def _ids_plausible(self, route: _Route, match: re.Match[str]) -> bool:
        for name, value in match.groupdict().items():
            collection = route.template.split("/{" + name + "}")[0]
            if name not in NOT_IDS and collection not in self._custom_ids and not _ID.fullmatch(value):
                return False
        return True

    def request_problems(
        self, method: str, path: str, params: Mapping[str, Any], *, strict_enums: bool = True
    ) -> list[str]:
        route = self.route(method, path.split("?")[0])
        if route is None:
            return [f"{method.upper()} {path}: no such endpoint in API version {self.version}"]
        checker = _RequestChecker(self, strict_enums)
        schema = self._request_schemas.get(id(route.operation))
        if schema is None:  # made once per operation (the contract's operations live as long as it)
            schema = self._request_schemas[id(route.operation)] = self._request_schema(route.operation)
        checker.check(schema, params, "")
        return checker.problems

    @staticmethod
    def _request_schema(operation: Schema) -> Schema:
        if "requestBody" in operation:
            content = operation["requestBody"]["content"]
            schema: Schema = next(iter(content.values()))["schema"]
            return schema
        query = [p for p in operation.get("parameters", []) if p["in"] == "query"]
        return {
            "type": "object",
            "properties": {p["name"]: p["schema"] for p in query},
            "required": [p["name"] for p in query if p["required"]],
            "additionalProperties": False,
        }

    # ---- objects ------------------------------------------------------------------------------------------

    def object_problems(self, obj: Mapping[str, Any], *, strict_enums: bool = False) -> list[str]:
        kind = obj.get("object") if isinstance(obj, Mapping) else None
        return self.object_problems_at(obj, str(kind or "object"), strict_enums=strict_enums)

    def object_problems_at(
        self, obj: Any, path: str, *, strict_enums: bool = False, memo: dict[str, tuple[str, ...]] | None = None
    ) -> list[str]:
        """The problems of an object (found by its `object`) at `path` (each problem starts with it). `memo`:
        each object's problems remembered there (`_ObjectChecker.check_object`), the same for every call."""
        checker = _ObjectChecker(self, strict_enums, memo)
        checker.check_object(obj, path)
        return checker.problems

    def resolve(self, schema: Schema) -> tuple[Schema, str | None]:
        """Follows a `$ref` (and a nullable `anyOf` of one `$ref`); returns the schema and its name."""
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[1]
            return self.schemas[name], name
        return schema, None


class _Checker:
    def __init__(self, contract: Contract, strict_enums: bool) -> None:
        self.contract = contract
        self.strict_enums = strict_enums
        self.problems: list[str] = []

    def enum_problem(self, schema: Schema, value: Any) -> str | None:
        if "enum" not in schema or value in schema["enum"]:
            return None
        if schema.get("x-sdk-open-enum") and (not self.strict_enums or schema["enum"] == [""]):
            return None  # `Literal['']|str` is no enum: a string that may be emptied
        return f"{_describe(value)} is not one of {_enum_text(schema['enum'])}"

    def branch_problems(self, schema: Schema, value: Any, path: str) -> list[str]:
        saved, self.problems = self.problems, []
        try:
            self.check(schema, value, path)
            return self.problems
        finally:
            self.problems = saved

    def check(self, schema: Schema, value: Any, path: str) -> None:
        raise NotImplementedError

    def check_any_of(self, branches: list[Schema], value: Any, path: str) -> None:
        attempts = [self.branch_problems(branch, value, path) for branch in branches]
        if any(not problems for problems in attempts):
            return
        kinds = [_kind(self.contract.resolve(b)[0]) for b in branches]
        fitting = [a for a, k in zip(attempts, kinds, strict=True) if k == _value_kind(value)]
        if len(fitting) == 1:
            self.problems.extend(fitting[0])
            return
        expected = " or ".join(sorted({_expected(self.contract.resolve(b)[0]) for b in branches}))
        self.problems.append(f"{path}: expected {expected}, got {_describe(value)}")


def _kind(schema: Schema) -> str:
    if "anyOf" in schema:
        return "any"
    return {"object": "object", "array": "array"}.get(schema.get("type", ""), "scalar")


def _value_kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "object"
    return "array" if isinstance(value, list) else "scalar"


def _expected(schema: Schema) -> str:
    if "enum" in schema and not schema.get("x-sdk-open-enum"):
        return " or ".join(repr(v) for v in schema["enum"][:5])
    return str(schema.get("type", "any value"))


# ---- requests ---------------------------------------------------------------------------------------------


def _param(path: str, key: str) -> str:
    return f"{path}[{key}]" if path else key


def _as_list(value: Any) -> list[Any] | None:
    """A form array: a list, or a mapping with keys "0", "1", ... (`a[0]=x&a[1]=y` decoded as a dict)."""
    if isinstance(value, list):
        return value
    if isinstance(value, Mapping) and value and all(isinstance(k, str) and k.isdigit() for k in value):
        return [value[k] for k in sorted(value, key=int)]
    return None


class _RequestChecker(_Checker):
    def check(self, schema: Schema, value: Any, path: str, *, map_value: bool = False) -> None:
        if "anyOf" in schema:
            self.check_any_of(schema["anyOf"], value, path)
        elif schema.get("type") == "object":
            self._object(schema, value, path)
        elif schema.get("type") == "array":
            self._array(schema, value, path)
        elif problem := self._scalar(schema, value, map_value):
            self.problems.append(f"{path}: {problem}")

    def _object(self, schema: Schema, value: Any, path: str) -> None:
        if not isinstance(value, Mapping):
            self.problems.append(f"{path}: expected a hash ({path}[...]), got {_describe(value)}")
            return
        properties: dict[str, Schema] = schema.get("properties", {})
        extra = schema.get("additionalProperties", False)
        for key, item in value.items():
            if key in properties:
                self.check(properties[key], item, _param(path, key))
            elif isinstance(extra, dict):
                self.check(extra, item, _param(path, key), map_value=True)
            else:
                self.problems.append(f"{_param(path, key)}: unknown parameter")
        for key in schema.get("required", []):
            if key not in value:
                self.problems.append(f"{_param(path, key)}: required parameter missing")

    def _array(self, schema: Schema, value: Any, path: str) -> None:
        items = _as_list(value)
        if items is None:
            self.problems.append(f"{path}: expected an array ({path}[0]=...), got {_describe(value)}")
            return
        for index, item in enumerate(items):
            self.check(schema.get("items", {}), item, f"{path}[{index}]")

    def _scalar(self, schema: Schema, value: Any, map_value: bool) -> str | None:
        kind = schema.get("type")
        if kind is None:
            return None  # Any (a file upload)
        if value == "" and not map_value and "" not in schema.get("enum", []):
            return "empty string, but this parameter cannot be emptied"
        ok = {
            "string": isinstance(value, str) or (schema.get("format") == "decimal" and _is_number(value)),
            "integer": _is_integer(value),
            "number": _is_number(value),
            "boolean": isinstance(value, bool) or value in ("true", "false"),
        }.get(kind, True)
        if not ok:
            return f"expected {kind}, got {_describe(value)}"
        if schema.get("format") == "decimal" and not _is_number(value):
            return f"expected a decimal, got {_describe(value)}"
        return self.enum_problem(schema, _enum_value(schema, value))


def _is_integer(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, str) and bool(_INTEGER.fullmatch(value))
    )


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int | float) or (isinstance(value, str) and bool(_NUMBER.fullmatch(value)))


def _enum_value(schema: Schema, value: Any) -> Any:
    if schema.get("type") == "boolean" and isinstance(value, str):
        return value == "true"
    if schema.get("type") == "integer" and isinstance(value, str):
        return int(value)
    return value


# ---- objects ----------------------------------------------------------------------------------------------


MEMO_SIZE = 20_000  # objects a memo keeps (then it forgets them all and starts again)
_NOT_REMEMBERED = ("list", "search_result", "event")


class _ObjectChecker(_Checker):
    def __init__(self, contract: Contract, strict_enums: bool, memo: dict[str, tuple[str, ...]] | None = None):
        super().__init__(contract, strict_enums)
        self.memo = memo

    def check_object(self, value: Any, path: str) -> None:
        """An object by its own `object` value (a resource, or a list of them). With a memo, a dict's problems
        are found once, remembered by its `repr` (the same repr: the same keys in the same order, the same
        values of the same types, so the same problems in the same order) less its path: a problem is the
        path then what is wrong (`invoice.lines.data[0].x: ...`), the rest not depending on the path. Lists
        and events (each its own) are not remembered: their items and objects are."""
        if self.memo is None or type(value) is not dict or value.get("object") in _NOT_REMEMBERED:
            self._check_object(value, path)
            return
        key = f"{self.strict_enums}:{value!r}"
        known = self.memo.get(key)
        if known is None:
            checker = _ObjectChecker(self.contract, self.strict_enums, self.memo)
            checker._check_object(value, "")
            if len(self.memo) >= MEMO_SIZE:
                self.memo.clear()
            known = self.memo[key] = tuple(checker.problems)
        self.problems.extend(path + problem for problem in known)

    def _check_object(self, value: Any, path: str) -> None:
        kind = value.get("object") if isinstance(value, Mapping) else None
        if kind in ("list", "search_result") and isinstance(value.get("data"), list):
            for index, item in enumerate(value["data"]):
                self.check_object(item, f"{path}.data[{index}]")
        elif kind in self.contract.resources:
            self.check({"$ref": f"#/components/schemas/{kind}"}, value, path)
        else:
            self.problems.append(f"{path}: {_describe(kind)} is not an object type of this version")

    def check(self, schema: Schema, value: Any, path: str) -> None:
        if value is None:
            if not schema.get("nullable"):
                self.problems.append(f"{path}: null, but the field is not nullable")
            return
        schema, name = self.contract.resolve(schema)
        if "anyOf" in schema:
            self._any_of(schema["anyOf"], value, path)
        elif "properties" in schema:
            self._properties(schema, name, value, path)
        elif schema.get("type") == "object":
            self._map(schema, value, path)
        elif schema.get("type") == "array":
            self._array(schema, value, path)
        elif problem := self._scalar(schema, value):
            self.problems.append(f"{path}: {problem}")

    def _any_of(self, branches: list[Schema], value: Any, path: str) -> None:
        kind = value.get("object") if isinstance(value, Mapping) else None
        if kind is None:
            self.check_any_of(branches, value, path)
            return
        for branch in branches:
            resolved, name = self.contract.resolve(branch)
            if name == kind or kind in resolved.get("properties", {}).get("object", {}).get("enum", []):
                self.check(branch, value, path)
                return
        names = [self.contract.resolve(b)[1] for b in branches]
        self.problems.append(f"{path}: object {kind!r} where {' or '.join(filter(None, names))} is expected")

    def _properties(self, schema: Schema, name: str | None, value: Any, path: str) -> None:
        if not isinstance(value, Mapping):
            self.problems.append(f"{path}: expected an object, got {_describe(value)}")
            return
        properties: dict[str, Schema] = schema["properties"]
        deleted = value.get("deleted") is True and "x-resourceId" in schema
        for key in _DELETED_REQUIRED if deleted else schema.get("required", []):
            if key not in value:
                self.problems.append(f"{path}.{key}: required field missing")
        for key, item in value.items():
            if key not in properties:
                self.problems.append(f"{path}.{key}: not in this version")
            elif name == "event.Data" and key == "object" and isinstance(item, Mapping):
                self.check_object(item, f"{path}.{key}")
            else:
                self.check(properties[key], item, f"{path}.{key}")

    def _map(self, schema: Schema, value: Any, path: str) -> None:
        if not isinstance(value, Mapping):
            self.problems.append(f"{path}: expected an object, got {_describe(value)}")
            return
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict) and extra:
            for key, item in value.items():
                self.check(extra, item, f"{path}.{key}")

    def _array(self, schema: Schema, value: Any, path: str) -> None:
        if not isinstance(value, list):
            self.problems.append(f"{path}: expected an array, got {_describe(value)}")
            return
        for index, item in enumerate(value):
            self.check(schema.get("items", {}), item, f"{path}[{index}]")

    def _scalar(self, schema: Schema, value: Any) -> str | None:
        kind = schema.get("type")
        ok = {
            "string": isinstance(value, str),
            "integer": isinstance(value, int) and not isinstance(value, bool),
            "number": isinstance(value, int | float) and not isinstance(value, bool),
            "boolean": isinstance(value, bool),
        }.get(kind or "", True)
        if not ok:
            return f"expected {kind}, got {_describe(value)}"
        return self.enum_problem(schema, value)


# ---- the committed contract -------------------------------------------------------------------------------


def request_problems(method: str, path: str, params: Mapping[str, Any], *, strict_enums: bool = True) -> list[str]:
    """What is wrong with a request for the pinned API version (empty: nothing)."""
    return Contract.default().request_problems(method, path, params, strict_enums=strict_enums)


def object_problems(obj: Mapping[str, Any], *, strict_enums: bool = False) -> list[str]:
    """What is wrong with an object (found by `obj["object"]`) for the pinned API version."""
    return Contract.default().object_problems(obj, strict_enums=strict_enums)

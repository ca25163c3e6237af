"""Derives the Stripe API contract of the pinned SDK: `python -m tests.contract.derive [--check]`.

Sources of truth, all read from installed packages (nothing typed in from memory):
- the `stripe` Python SDK (uv.lock): every v1 operation is a service method (`stripe/**/_*_service.py`, walked
  from `stripe._v1_services._subservices`) calling `self._request("post", "/v1/...".format(...), params=...)`;
  its `params` annotation names a TypedDict in `stripe/params/**` (`NotRequired[...]` = optional, `Literal`
  enums, `Literal['']|...` = emptyable, nested TypedDicts inlined). Every object is a class of
  `stripe._object_classes.OBJECT_CLASSES` with annotated fields and nested `StripeObject` classes.
- the npm `stripe` package of the same API version (package.json devDependency): its TypeScript declarations
  tell a required nullable field (`foo: T | null`) from an optional one (`foo?: T`), which Python's
  `Optional[...]` cannot: required = no `?`; nullable = `| null` and `Optional[...]` (a non-Optional Python
  field is never null). A nested class's interface is the one its field's TypeScript type names (shared types
  like `Address` in shared.d.ts included). Where a class has no TypeScript counterpart, `Optional[...]` means
  optional and nullable.
Everything is read with `ast` (no SDK import side effects, a few seconds). Output: an OpenAPI 3.0 document
`tests/contract/stripe-contract.json` (sorted keys, one line per path and per schema), re-derived whenever
either package is upgraded (tests/unit/test_stripe_contract.py fails until it is).
Enums the SDK types as `Literal[...] | str` carry `x-sdk-open-enum: true`.
"""

from __future__ import annotations

import ast
import contextlib
import json
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import Any

import stripe
from stripe._api_version import _ApiVersion

from tests.contract.typescript import Interface, TypeScriptTypes

Schema = dict[str, Any]
Named = Callable[[str], Schema]

REPO = Path(__file__).resolve().parents[2]
CONTRACT_PATH = Path(__file__).with_name("stripe-contract.json")
NPM_PACKAGE = REPO / "node_modules" / "stripe"
SDK_DIR = Path(stripe.__file__).resolve().parent
PRIMITIVES: dict[str, Schema] = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "bool": {"type": "boolean"},
    "float": {"type": "number"},
    "Decimal": {"type": "string", "format": "decimal"},
    "Any": {},
    "object": {},
}
_LITERAL_TYPES = {str: "string", bool: "boolean", int: "integer"}
_CONTAINERS = ("list", "search_result")  # generic wrappers, inlined where used


class ContractError(RuntimeError):
    """The packages to derive from are missing, disagree on the API version, or use an unknown construct."""


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def list_schema(items: Schema, container: str = "list") -> Schema:
    extra = {"url": {"type": "string"}} if container == "list" else {"next_page": {"type": "string", "nullable": True}}
    return {
        "type": "object",
        "properties": {
            "object": {"type": "string", "enum": [container]},
            "data": {"type": "array", "items": items},
            "has_more": {"type": "boolean"},
            **extra,
        },
        "required": ["data", "has_more", "object"],
    }


# ---- Python sources ---------------------------------------------------------------------------------------


@dataclass
class PyModule:
    name: str
    tree: ast.Module
    imports: dict[str, tuple[str, str]] = field(default_factory=dict)  # local name -> (module, name)
    classes: dict[str, ast.ClassDef] = field(default_factory=dict)
    functional_typed_dicts: dict[str, ast.Dict] = field(default_factory=dict)  # X = TypedDict("X", {...})
    constants: dict[str, Any] = field(default_factory=dict)  # module-level literal assignments


def _read_module(name: str) -> PyModule:
    relative = Path(*name.split(".")[1:])
    path = SDK_DIR / relative.with_suffix(".py")
    if not path.exists():
        path = SDK_DIR / relative / "__init__.py"
    module = PyModule(name, ast.parse(path.read_text(), str(path)))
    for node in ast.walk(module.tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                module.imports[alias.asname or alias.name] = (node.module, alias.name)
    for node in module.tree.body:
        if isinstance(node, ast.ClassDef):
            module.classes[node.name] = node
        elif isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            target = node.target if isinstance(node, ast.AnnAssign) else node.targets[0]
            _read_assignment(module, ast.unparse(target), node.value)
    return module


def _read_assignment(module: PyModule, name: str, value: ast.expr) -> None:
    if isinstance(value, ast.Call) and ast.unparse(value.func) == "TypedDict":
        module.functional_typed_dicts[name] = _as_dict(value.args[1])
        return
    with contextlib.suppress(ValueError):  # not a literal: nothing the contract needs
        module.constants[name] = ast.literal_eval(value)


def _as_dict(node: ast.expr) -> ast.Dict:
    assert isinstance(node, ast.Dict), ast.unparse(node)
    return node


class Sources:
    def __init__(self) -> None:
        self._modules: dict[str, PyModule] = {}

    def module(self, name: str) -> PyModule:
        if name not in self._modules:
            self._modules[name] = _read_module(name)
        return self._modules[name]


def class_fields(cls: ast.ClassDef) -> Iterator[tuple[str, ast.expr]]:
    """(JSON name, annotation) of a class's own annotated fields (not ClassVars, not private)."""
    remap: dict[str, str] = {}
    for node in cls.body:
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "_field_remappings":
            remap = ast.literal_eval(node.value)
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            name = node.target.id
            if name.startswith("_") or ast.unparse(node.annotation).startswith("ClassVar"):
                continue
            yield remap.get(name, name), node.annotation


def nested_class(cls: ast.ClassDef, name: str) -> ast.ClassDef | None:
    return next((n for n in cls.body if isinstance(n, ast.ClassDef) and n.name == name), None)


# ---- annotations -> schemas -------------------------------------------------------------------------------


def _parsed(node: ast.expr) -> ast.expr:
    while isinstance(node, ast.Constant) and isinstance(node.value, str):
        node = ast.parse(node.value, mode="eval").body
    return node


def _subscript(node: ast.expr) -> tuple[str, list[ast.expr]] | None:
    node = _parsed(node)
    if not isinstance(node, ast.Subscript):
        return None
    args = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
    return ast.unparse(node.value), list(args)


def _union_members(node: ast.expr) -> list[ast.expr]:
    node = _parsed(node)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _union_members(node.left) + _union_members(node.right)
    sub = _subscript(node)
    if sub and sub[0] == "Union":
        return [m for arg in sub[1] for m in _union_members(arg)]
    if sub and sub[0] == "Optional":
        return [*_union_members(sub[1][0]), ast.Constant(None)]
    return [node]


def strip_not_required(node: ast.expr) -> tuple[ast.expr, bool]:
    sub = _subscript(node)
    if sub and sub[0] == "NotRequired":
        return sub[1][0], True
    return node, False


def annotation(node: ast.expr, named: Named) -> tuple[Schema, bool]:
    """The schema of a type annotation, and whether it admits None (`Optional[...]`, `... | None`)."""
    members = _union_members(node)
    optional = any(isinstance(m, ast.Constant) and m.value is None for m in members)
    schemas = [_single(m, named) for m in members if not (isinstance(m, ast.Constant) and m.value is None)]
    return _merge_union(schemas), optional


def _single(node: ast.expr, named: Named) -> Schema:
    node = _parsed(node)
    sub = _subscript(node)
    if sub is None:
        name = ast.unparse(node)
        return dict(PRIMITIVES[name]) if name in PRIMITIVES else named(name)
    base, args = sub
    if base == "Literal":
        values = [ast.literal_eval(a) for a in args]
        return {"type": _LITERAL_TYPES[type(values[0])], "enum": values, "x-literal": True}
    if base in ("List", "Dict", "UntypedStripeObject"):
        inner, optional = annotation(args[-1], named)
        inner = {**inner, "nullable": True} if optional else inner
        if base == "List":
            return {"type": "array", "items": inner}
        return {"type": "object", "additionalProperties": inner}
    if base == "ExpandableField":
        expanded = annotation(args[0], named)[0]
        return {"anyOf": [{"type": "string"}, *expanded.get("anyOf", [expanded])]}
    if base in ("ListObject", "SearchResultObject"):
        items = annotation(args[0], named)[0]
        return list_schema(items, "list" if base == "ListObject" else "search_result")
    raise ContractError(f"unknown annotation {ast.unparse(node)}")


def _merge_union(schemas: list[Schema]) -> Schema:
    literals: list[Schema] = []
    others: list[Schema] = []
    for schema in schemas:
        (literals if schema.pop("x-literal", False) else others).append(schema)
    if literals:
        values = [v for s in literals for v in s["enum"]]
        enum: Schema = {"type": literals[0]["type"], "enum": values}
        if enum["type"] == "string" and {"type": "string"} in others:  # Literal[...] | str
            others.remove({"type": "string"})
            enum["x-sdk-open-enum"] = True
        others.insert(0, enum)
    unique = [s for i, s in enumerate(others) if s not in others[:i]]  # Dict[str, str] | UntypedStripeObject[str]
    return unique[0] if len(unique) == 1 else {"anyOf": unique}


def nullable(schema: Schema) -> Schema:
    if "$ref" in schema:
        return {"anyOf": [schema], "nullable": True}
    return {**schema, "nullable": True}


# ---- request parameters -----------------------------------------------------------------------------------


class Params:
    """TypedDicts of `stripe/params/**` as inline object schemas (`additionalProperties: false`)."""

    def __init__(self, sources: Sources) -> None:
        self.sources = sources

    def schema(self, module: str, name: str, stack: tuple[str, ...] = ()) -> Schema:
        mod = self.sources.module(module)
        if name in mod.imports and name not in mod.classes:
            return self.schema(*mod.imports[name], stack=stack)
        qualified = f"{module}.{name}"
        if qualified in stack:
            raise ContractError(f"recursive params type {qualified}")
        properties: Schema = {}
        required: list[str] = []
        for key, node in self._fields(mod, name):
            inner, not_required = strip_not_required(node)
            schema, optional = annotation(inner, lambda n: self.schema(module, n, (*stack, qualified)))
            properties[key] = nullable(schema) if optional else schema
            if not not_required:
                required.append(key)
        return {
            "type": "object",
            "properties": properties,
            "required": sorted(required),
            "additionalProperties": False,
            "x-sdk-params": qualified,
        }

    def _fields(self, mod: PyModule, name: str) -> list[tuple[str, ast.expr]]:
        if name in mod.functional_typed_dicts:
            node = mod.functional_typed_dicts[name]
            return [(ast.literal_eval(k), v) for k, v in zip(node.keys, node.values, strict=True) if k is not None]
        if name not in mod.classes:
            raise ContractError(f"unknown params type {mod.name}.{name}")
        cls = mod.classes[name]
        inherited = [
            f for base in cls.bases if ast.unparse(base) not in ("TypedDict", "RequestOptions")
            for f in self._fields(mod, ast.unparse(base))
        ]  # fmt: skip
        return inherited + list(class_fields(cls))


# ---- objects ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Owner:
    """Where a nested class is being resolved from: its module, the class path, the TS counterpart."""

    module: str
    path: tuple[str, ...]  # ("Invoice", "AutomaticTax")
    schema_name: str  # "invoice.AutomaticTax"
    ts: Interface | None
    root_ts: Interface | None  # the resource's interface


class Objects:
    """Every v1 object (`OBJECT_CLASSES`) and its nested classes as `components.schemas`."""

    def __init__(self, sources: Sources, ts: TypeScriptTypes) -> None:
        self.sources = sources
        self.ts = ts
        self.schemas: dict[str, Schema] = {}

    @cached_property
    def resources(self) -> dict[tuple[str, str], str]:
        """(module, class) -> object name, for the classes whose OBJECT_NAME is their key."""
        classes: dict[str, tuple[str, str]] = self.sources.module("stripe._object_classes").constants["OBJECT_CLASSES"]
        found: dict[tuple[str, str], str] = {}
        for object_name, (module, cls) in sorted(classes.items()):
            node = self.sources.module(module).classes[cls]
            own = next((_assigned(n) for n in node.body if _assigns(n, "OBJECT_NAME")), None)
            if object_name not in _CONTAINERS and own == object_name:
                found[(module, cls)] = object_name
        return found

    def build(self) -> dict[str, Schema]:
        node_resources = self.ts.resources()
        for (module, cls), object_name in sorted(self.resources.items(), key=lambda kv: kv[1]):
            ts = node_resources.get(object_name)
            owner = _Owner(module, (cls,), object_name, ts, ts)
            self._class(owner)
            self.schemas[object_name]["x-resourceId"] = object_name
        return dict(sorted(self.schemas.items()))

    def _class(self, owner: _Owner) -> None:
        cls = self._class_node(owner.module, owner.path)
        schema: Schema = {"type": "object", "properties": {}, "required": [], "x-sdk-class": ""}
        self.schemas[owner.schema_name] = schema  # registered first: classes may refer to themselves
        node_fields = self.ts.all_fields(owner.ts) if owner.ts else {}
        missing_in_node = []
        for key, node in class_fields(cls):
            field_schema, optional = annotation(node, partial(self._named, owner, key))
            if owner.ts and key not in node_fields:
                missing_in_node.append(key)
            member = node_fields.get(key)
            # Python's Optional covers nullable and optional, so a non-Optional field is never null even where
            # TypeScript uses a looser shared type (`Address.country: string | null` for tax addresses)
            is_required, is_nullable = (
                (not member.optional, member.nullable and optional) if member else (not optional, optional)
            )
            schema["properties"][key] = nullable(field_schema) if is_nullable else field_schema
            if is_required:
                schema["required"].append(key)
        schema["required"].sort()
        schema["x-sdk-class"] = ".".join([owner.module, *owner.path])
        if owner.ts:
            schema["x-required-from"] = "stripe-node"
        if missing_in_node:
            schema["x-not-in-stripe-node"] = sorted(missing_in_node)

    def _class_node(self, module: str, path: tuple[str, ...]) -> ast.ClassDef:
        cls = self.sources.module(module).classes[path[0]]
        for part in path[1:]:
            inner = nested_class(cls, part)
            if inner is None:
                raise ContractError(f"no class {part} in {module}.{cls.name}")
            cls = inner
        return cls

    def _named(self, owner: _Owner, key: str, name: str) -> Schema:
        module = self.sources.module(owner.module)
        for depth in range(len(owner.path), 0, -1):  # the innermost enclosing class that has it
            if nested_class(self._class_node(owner.module, owner.path[:depth]), name) is not None:
                return self._nested(owner, depth, name, key)
        target = (owner.module, name) if name in module.classes else module.imports.get(name)
        if target in self.resources:
            return ref(self.resources[target])
        raise ContractError(f"cannot resolve {name} in {owner.module}.{'.'.join(owner.path)}")

    def _nested(self, owner: _Owner, depth: int, name: str, key: str) -> Schema:
        path = (*owner.path[:depth], name)
        base = self.resources[(owner.module, owner.path[0])]
        schema_name = ".".join([base, *path[1:]])
        if schema_name not in self.schemas:
            ts = self.ts.field_interface(owner.ts, key) if owner.ts and depth == len(owner.path) else None
            if ts is None and owner.root_ts is not None:  # same name under the resource's namespace
                qualname = ".".join([owner.root_ts.qualname, *path[1:]])
                ts = self.ts.interfaces.get((owner.root_ts.file, qualname))
            self._class(_Owner(owner.module, path, schema_name, ts, owner.root_ts))
        return ref(schema_name)


def _assigns(node: ast.stmt, name: str) -> bool:
    if isinstance(node, ast.AnnAssign):
        return node.value is not None and ast.unparse(node.target) == name
    return isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == name


def _assigned(node: ast.stmt) -> Any:
    assert isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None
    return ast.literal_eval(node.value)


# ---- operations -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    operation_id: str  # "v1.invoices.line_items.list"
    sdk_method: str  # "stripe._invoice_line_item_service.InvoiceLineItemService.list"
    http_method: str
    path: str  # "/v1/invoices/{invoice}/lines"
    base_address: str
    params: tuple[str, str] | None  # (module, TypedDict)
    returns: ast.expr | None
    module: str


def operations(sources: Sources) -> Iterator[Operation]:
    """Every v1 service method that sends a request, walking the client's service tree."""
    pending = [("v1", "stripe._v1_services")]
    while pending:
        prefix, module_name = pending.pop(0)
        subservices: dict[str, list[str]] = sources.module(module_name).constants.get("_subservices", {})
        for attribute, (module, cls) in subservices.items():
            yield from _service_operations(sources, f"{prefix}.{attribute}", module, cls)
            pending.append((f"{prefix}.{attribute}", module))


def _service_operations(sources: Sources, prefix: str, module_name: str, cls: str) -> Iterator[Operation]:
    module = sources.module(module_name)
    for method in module.classes[cls].body:
        if not isinstance(method, ast.FunctionDef):
            continue
        call = next((c for c in ast.walk(method) if _is_request(c)), None)
        if call is None:
            continue
        assert isinstance(call, ast.Call)
        http_method, path = ast.literal_eval(call.args[0]), _path_template(call.args[1])
        keywords = {k.arg: k.value for k in call.keywords}
        base = ast.literal_eval(keywords["base_address"]) if "base_address" in keywords else "api"
        params_arg = next((a for a in method.args.args + method.args.kwonlyargs if a.arg == "params"), None)
        params = None
        if params_arg is not None and params_arg.annotation is not None:
            params_name = ast.unparse(_union_members(params_arg.annotation)[0])
            params = module.imports.get(params_name, (module_name, params_name))
        yield Operation(
            f"{prefix}.{method.name}", f"{module_name}.{cls}.{method.name}", http_method, path, base, params,
            method.returns, module_name,
        )  # fmt: skip


def _is_request(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("_request", "_request_stream")
        and ast.unparse(node.func.value) == "self"
    )


def _path_template(node: ast.expr) -> str:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        node = node.func.value
    value = ast.literal_eval(node)
    assert isinstance(value, str)
    return value


def _operation_object(op: Operation, params: Params, objects: Objects, sources: Sources) -> Schema:
    schema: Schema = params.schema(*op.params) if op.params else {"type": "object", "properties": {}, "required": []}
    operation: Schema = {
        "operationId": op.operation_id,
        "x-sdk-method": op.sdk_method,
        "responses": {"200": {"description": "OK", "content": _response_content(op, objects, sources)}},
    }
    if op.base_address != "api":
        operation["x-sdk-base-address"] = op.base_address
    parameters = [
        {"in": "path", "name": name, "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"\{(\w+)\}", op.path)
    ]
    if op.http_method == "post":
        media = "multipart/form-data" if op.base_address == "files" else "application/x-www-form-urlencoded"
        operation["requestBody"] = {"required": bool(schema["required"]), "content": {media: {"schema": schema}}}
    else:
        parameters += [
            {"in": "query", "name": name, "required": name in schema["required"], "schema": prop,
             "style": "deepObject", "explode": True}
            for name, prop in schema["properties"].items()
        ]  # fmt: skip
    if parameters:
        operation["parameters"] = parameters
    return operation


def _response_content(op: Operation, objects: Objects, sources: Sources) -> Schema:
    if op.returns is None or ast.unparse(_parsed(op.returns)) == "Any":
        return {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    module = sources.module(op.module)

    def named(name: str) -> Schema:
        target = module.imports.get(name)
        if target not in objects.resources:
            raise ContractError(f"{op.sdk_method} returns unknown {name}")
        return ref(objects.resources[target])

    return {"application/json": {"schema": annotation(op.returns, named)[0]}}


# ---- the document -----------------------------------------------------------------------------------------


def load_typescript(package_dir: Path = NPM_PACKAGE) -> tuple[TypeScriptTypes, str]:
    """The npm package's declarations, after checking it is installed and has the SDK's API version."""
    version_file = package_dir / "cjs" / "apiVersion.js"
    if not version_file.exists():
        raise ContractError(
            f"npm package 'stripe' not found at {package_dir}: run `npm ci` (or `make bootstrap`); "
            "its TypeScript declarations tell required fields from optional ones"
        )
    found = re.search(r"ApiVersion = '([^']+)'", version_file.read_text())
    api_version = _ApiVersion.CURRENT
    if found is None or found.group(1) != api_version:
        raise ContractError(
            f"npm stripe at {package_dir} is for API {found and found.group(1)}, the Python SDK for {api_version}: "
            "pin the npm version whose cjs/apiVersion.js has the same ApiVersion"
        )
    npm_version = json.loads((package_dir / "package.json").read_text())["version"]
    return TypeScriptTypes(package_dir), npm_version


def derive(package_dir: Path = NPM_PACKAGE) -> Schema:
    ts, npm_version = load_typescript(package_dir)
    sources = Sources()
    objects = Objects(sources, ts)
    schemas = objects.build()
    params = Params(sources)
    paths: dict[str, dict[str, Schema]] = {}
    for op in operations(sources):
        methods = paths.setdefault(op.path, {})
        if op.http_method in methods:  # one endpoint, two SDK methods (sources.detach = payment_sources.delete)
            methods[op.http_method].setdefault("x-sdk-aliases", []).append(op.operation_id)
        else:
            methods[op.http_method] = _operation_object(op, params, objects, sources)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Stripe API contract (derived from the stripe SDKs)",
            "version": _ApiVersion.CURRENT,
            "x-sdk": f"stripe-python {stripe.VERSION}",
            "x-required-from": f"stripe-node {npm_version}",
            "description": (
                "Derived by tests/contract/derive.py from the installed stripe (Python) and stripe (npm) packages. "
                "required/nullable come from the TypeScript declarations; schemas without x-required-from "
                "have no TypeScript counterpart: there Optional[...] fields are nullable and not required."
            ),
        },
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": schemas},
    }


def dumps(contract: Schema) -> str:
    """JSON with one line per path and per schema: compact, and an SDK upgrade's diff names what changed."""

    def compact(value: Any) -> str:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))

    def block(entries: dict[str, Any], indent: str) -> str:
        lines = [f"{indent} {compact(key)}: {compact(value)}" for key, value in sorted(entries.items())]
        return "{\n" + ",\n".join(lines) + f"\n{indent}}}"

    head = {key: value for key, value in contract.items() if key not in ("paths", "components")}
    return (
        "{\n"
        + "".join(f" {compact(key)}: {compact(value)},\n" for key, value in sorted(head.items()))
        + f' "paths": {block(contract["paths"], " ")},\n'
        + f' "components": {{\n  "schemas": {block(contract["components"]["schemas"], "  ")}\n }}\n'
        + "}\n"
    )


def main(argv: list[str]) -> int:
    text = dumps(derive())
    if "--check" in argv:
        same = CONTRACT_PATH.exists() and CONTRACT_PATH.read_text() == text
        print("up to date" if same else f"{CONTRACT_PATH} is stale: run python -m tests.contract.derive")
        return 0 if same else 1
    CONTRACT_PATH.write_text(text)
    print(f"wrote {CONTRACT_PATH.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Reads the TypeScript declarations of the npm `stripe` package (`node_modules/stripe/cjs/**/*.d.ts`).

Only what the contract needs: every interface (namespace-qualified, per file) with its fields, each field
optional (`foo?: T`) or not and nullable (`T | null`) or not, and enough of the imports to follow a field's
type to the interface it names. The files are emitted by `tsc`: one member per line, so a line reader with a
brace stack is enough (inline object types `{ ... }` are skipped, they are maps).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

_OPENER = re.compile(r"^(?:export )?(?:declare )?(interface|namespace|class) (\w+)(?: extends ([^{]+))? \{$")
_FIELD = re.compile(r"^(?:readonly )?(\w+)(\?)?: (.*?);?$")
_IMPORT = re.compile(r"^import \{ ?(.*?) ?\} from '([^']+)';$")
_IMPORT_ALL = re.compile(r"^import \* as (\w+) from '([^']+)';$")
_REEXPORT = re.compile(r"^export \{ ?(.*?) ?\} from '([^']+)';$")
_OBJECT_LITERAL = re.compile(r"^'([\w.]+)'$")
_IDENTIFIER = re.compile(r"[A-Za-z_][\w.]*")


@dataclass(frozen=True)
class Field:
    optional: bool
    nullable: bool
    type: str


@dataclass
class Interface:
    file: Path
    qualname: str  # "Invoice.AutomaticTax.Liability"
    fields: dict[str, Field] = field(default_factory=dict)
    extends: tuple[str, ...] = ()

    @property
    def scope(self) -> list[str]:
        return self.qualname.split(".")[:-1]


@dataclass
class _File:
    imports: dict[str, tuple[Path, str]] = field(default_factory=dict)  # local name -> (file, exported name)
    star_imports: dict[str, Path] = field(default_factory=dict)


def _split_top_level_union(text: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char in "<({[":
            depth += 1
        elif char in ">)}]":
            depth -= 1
        elif char == "|" and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    return parts


def _module_path(base: Path, spec: str) -> Path:
    return (base.parent / spec).resolve().with_suffix("").with_suffix(".d.ts")


def _import_names(names: str) -> list[tuple[str, str]]:
    pairs = []
    for part in names.split(","):
        words = part.split()
        if words:
            pairs.append((words[-1], words[0]))  # (local, exported): "A as B" -> (B, A)
    return pairs


class TypeScriptTypes:
    """The interfaces of every declaration file under the package's `cjs/` (resources and shared types)."""

    def __init__(self, package_dir: Path) -> None:
        self.package_dir = package_dir
        self.interfaces: dict[tuple[Path, str], Interface] = {}
        self._files: dict[Path, _File] = {}
        cjs = package_dir.resolve() / "cjs"
        files = sorted([cjs / "shared.d.ts", *(cjs / "resources").rglob("*.d.ts")])
        for path in files:
            if "V2" not in path.relative_to(cjs).parts:
                self._read(path)

    def _read(self, path: Path) -> None:
        info = self._files.setdefault(path, _File())
        stack: list[tuple[str, str]] = []  # (kind, name)
        current: Interface | None = None
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith(("/*", "*", "//")):
                continue
            if not stack and self._read_import(path, info, line):
                continue
            current = self._read_line(path, line, stack, current)

    def _read_import(self, path: Path, info: _File, line: str) -> bool:
        if match := _IMPORT.match(line) or _REEXPORT.match(line):
            target = _module_path(path, match.group(2))
            for local, exported in _import_names(match.group(1)):
                info.imports[local] = (target, exported)
            return True
        if match := _IMPORT_ALL.match(line):
            info.star_imports[match.group(1)] = _module_path(path, match.group(2))
            return True
        return False

    def _read_line(
        self, path: Path, line: str, stack: list[tuple[str, str]], current: Interface | None
    ) -> Interface | None:
        inside_interface = bool(stack) and stack[-1][0] == "interface"
        if opener := _OPENER.match(line):
            kind, name, extends = opener.groups()
            stack.append((kind, name))
            if kind == "interface":
                qualname = ".".join(n for k, n in stack if k in ("namespace", "interface"))
                bases = tuple(b.strip() for b in (extends or "").split(",") if b.strip())
                current = self.interfaces[(path, qualname)] = Interface(path, qualname, extends=bases)
            return current
        if inside_interface and current is not None and (member := _FIELD.match(line)):
            name, optional, type_text = member.groups()
            if type_text.endswith("{"):
                stack.append(("inline", name))
            union = _split_top_level_union(type_text.rstrip("{").strip())
            current.fields[name] = Field(optional=bool(optional), nullable="null" in union, type=type_text)
            return current
        opened, closed = line.count("{"), line.count("}")
        stack.extend([("other", "")] * max(opened - closed, 0))
        for _ in range(max(closed - opened, 0)):
            kind, name = stack.pop()
            if kind == "inline" and current is not None and "null" in _split_top_level_union(line.strip("};")):
                before = current.fields[name]  # `foo: {` ... `} | null;`
                current.fields[name] = Field(before.optional, nullable=True, type=before.type + line)
        return self._innermost_interface(path, stack)

    def _innermost_interface(self, path: Path, stack: list[tuple[str, str]]) -> Interface | None:
        frames = list(stack)
        while frames and frames[-1][0] == "inline":  # inside a field's inline type: still that interface
            frames.pop()
        if not frames or frames[-1][0] != "interface":
            return None
        qualname = ".".join(n for k, n in frames if k in ("namespace", "interface"))
        return self.interfaces.get((path, qualname))

    # ---- lookups -------------------------------------------------------------------------------------

    def resources(self) -> dict[str, Interface]:
        """Top-level interfaces with an `object: '<name>'` literal, by that name (not `Deleted*`)."""
        found: dict[str, Interface] = {}
        for (_, qualname), interface in sorted(self.interfaces.items()):
            literal = interface.fields.get("object")
            if "." in qualname or qualname.startswith("Deleted") or qualname.endswith("Params") or literal is None:
                continue
            if match := _OBJECT_LITERAL.match(literal.type.rstrip(";")):
                found.setdefault(match.group(1), interface)
        return found

    def resolve(self, file: Path, scope: list[str], name: str, depth: int = 0) -> Interface | None:
        """The interface a (dotted) type name means in `file`, seen from inside namespace `scope`."""
        for i in range(len(scope), -1, -1):
            if hit := self.interfaces.get((file, ".".join([*scope[:i], name]))):
                return hit
        head, _, rest = name.partition(".")
        info = self._files.get(file)
        if info is None or depth > 5:
            return None
        if head in info.imports:
            target, exported = info.imports[head]
            return self.resolve(target, [], ".".join(filter(None, [exported, rest])), depth + 1)
        if head in info.star_imports and rest:
            return self.resolve(info.star_imports[head], [], rest, depth + 1)
        return None

    def field_interface(self, owner: Interface, field_name: str) -> Interface | None:
        """The interface named by the type of `owner.field_name` (`X | null`, `Array<X>`, ...), if any."""
        member = self.all_fields(owner).get(field_name)
        if member is None:
            return None
        for token in _IDENTIFIER.findall(member.type):
            if token[0].isupper() and (hit := self.resolve(owner.file, owner.scope, token)):
                return hit
        return None

    def all_fields(self, interface: Interface, depth: int = 0) -> dict[str, Field]:
        fields: dict[str, Field] = {}
        for base in interface.extends:
            parent = self.resolve(interface.file, interface.scope, base.split("<")[0])
            if parent is not None and depth < 5:
                fields.update(self.all_fields(parent, depth + 1))
        fields.update(interface.fields)
        return fields

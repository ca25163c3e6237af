"""No production function over 60 lines: ruff has no rule for a function's length, so this is ours.

`python -m tests.lint.function_length shared functions` walks the Python files under the given paths
(files or directories) and lists every function or method, nested ones included, that spans more
than `--max-lines` lines, counted from its `def` line (not its
decorators) to its last line, comments and blank lines inside it included. It exits 1 when any is
found, 0 otherwise. `make lint` runs it.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

MAX_LINES = 60


@dataclass(frozen=True)
class LongFunction:
    """A function whose `def` line to last line spans more than the limit."""

    path: Path
    line: int
    name: str
    lines: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.name} is {self.lines} lines long"


def _python_files(paths: Sequence[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*.py") if ".venv" not in p.parts)
        else:
            yield path


def _functions(tree: ast.AST) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Every function in the tree with its qualified name (`Class.method`, `outer.inner`)."""

    def walk(node: ast.AST, prefix: str) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                yield name, child
                yield from walk(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, f"{prefix}{child.name}.")
            else:
                yield from walk(child, prefix)

    yield from walk(tree, "")


def long_functions(source: str, path: Path, max_lines: int = MAX_LINES) -> list[LongFunction]:
    """The functions of one module's source that span more than `max_lines` lines."""
    found = []
    for name, node in _functions(ast.parse(source, filename=str(path))):
        lines = (node.end_lineno or node.lineno) - node.lineno + 1
        if lines > max_lines:
            found.append(LongFunction(path=path, line=node.lineno, name=name, lines=lines))
    return found


def check(paths: Sequence[Path], max_lines: int = MAX_LINES) -> list[LongFunction]:
    """The functions over `max_lines` lines in every Python file under `paths`."""
    found: list[LongFunction] = []
    for path in _python_files(paths):
        found.extend(long_functions(path.read_text(encoding="utf-8"), path, max_lines))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="files or directories to check")
    parser.add_argument("--max-lines", type=int, default=MAX_LINES, help="longest function allowed (lines)")
    args = parser.parse_args(argv)
    missing = [p for p in args.paths if not p.exists()]
    if missing:
        parser.error(f"no such path: {', '.join(map(str, missing))}")
    found = check(args.paths, args.max_lines)
    for function in found:
        print(function)
    if found:
        print(f"{len(found)} function(s) over {args.max_lines} lines", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

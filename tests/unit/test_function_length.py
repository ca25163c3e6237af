"""`make lint` fails on a production function over 60 lines (tests/lint/function_length.py), counted
from its `def` line to its last line: shown on files with a function just over and just at the limit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.lint.function_length import MAX_LINES, check

REPO = Path(__file__).parents[2]


def _function(name: str, lines: int, indent: str = "") -> str:
    """A function of exactly `lines` lines, `def` line included, with a comment and a blank line inside."""
    body = [f"{indent}def {name}() -> int:", f"{indent}    # a comment counts", ""]
    body += [f"{indent}    x{i} = {i}" for i in range(lines - len(body) - 1)]
    body.append(f"{indent}    return 0")
    assert len(body) == lines
    return "\n".join(body) + "\n"


def _run(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.lint.function_length", *map(str, paths)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_function_of_61_lines_fails_the_check(tmp_path: Path) -> None:
    # Given a module with a 61-line function (decorated: the decorator does not count) and a 60-line one
    source = tmp_path / "module.py"
    source.write_text("import functools\n\n\n@functools.cache\n" + _function("long", 61) + "\n\n" + _function("ok", 60))

    # When the check runs on it
    done = _run(source)

    # Then it fails and names only the long function, where it starts and how long it is
    assert done.returncode == 1, done
    assert done.stdout.splitlines() == [f"{source}:5: long is 61 lines long"]


def test_a_function_of_60_lines_passes(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "module.py").write_text(_function("ok", MAX_LINES))

    done = _run(tmp_path)

    assert done.returncode == 0, done
    assert done.stdout == ""


def test_methods_and_nested_functions_are_checked_by_their_qualified_name(tmp_path: Path) -> None:
    source = tmp_path / "module.py"
    nested = "def outer() -> None:\n" + _function("inner", 61, indent="    ")
    source.write_text("class Service:\n" + _function("method", 61, indent="    ") + "\n\n" + nested)

    found = [(f.name, f.line, f.lines) for f in check([source])]

    assert found == [("Service.method", 2, 61), ("outer", 65, 62), ("outer.inner", 66, 61)]

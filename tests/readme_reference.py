"""The README's generated sections: the limits table (functions/limits.py) and the error-code list
(functions/error_codes.py). tests/unit/test_readme_reference.py fails when the README differs;
`python -m tests.readme_reference` rewrites them."""

from __future__ import annotations

import re
from pathlib import Path

from functions.error_codes import ERRORS, STRIPE_CODE_PATTERN
from functions.limits import LIMITS

README = Path(__file__).resolve().parents[1] / "README.md"
_START = "<!-- generated: {name} (python -m tests.readme_reference) -->\n"
_END = "<!-- end generated: {name} -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # a pattern's alternation would end the table cell


def limits_table() -> str:
    rows = ["| what | limit | where |", "|---|---|---|"]
    rows += [f"| {limit.what} | {_cell(limit.rule)} | {limit.where} |" for limit in LIMITS]
    return "\n".join(rows) + "\n"


def error_table() -> str:
    rows = ["| code | status | meaning |", "|---|---|---|"]
    rows += [f"| `{e.code}` | {', '.join(map(str, e.statuses))} | {e.meaning} |" for e in ERRORS]
    rows.append(f"| `stripe_<code>` | 422 | Stripe refused the request (`{STRIPE_CODE_PATTERN}`, Stripe's own code) |")
    return "\n".join(rows) + "\n"


SECTIONS = {"limits": limits_table, "errors": error_table}


def render(text: str) -> str:
    """`text` (the README) with every generated section replaced by what the code says now."""
    for name, make in SECTIONS.items():
        start, end = _START.format(name=name), _END.format(name=name)
        pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.DOTALL)
        block = start + make() + end
        text, count = pattern.subn(lambda _, block=block: block, text)
        if count != 1:
            raise ValueError(f"README.md needs exactly one generated '{name}' section (found {count})")
    return text


def main() -> None:
    README.write_text(render(README.read_text()))
    print(f"rewrote the generated sections of {README}")


if __name__ == "__main__":
    main()

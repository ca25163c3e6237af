"""The error registry (functions/error_codes.py) is complete and right: every code the code can answer
is in it, with the status its error class maps to, and the OpenAPI document enumerates them."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from functions.error_codes import BY_CODE, ERRORS, STRIPE_CODE_PATTERN, codes_for
from functions.http import status_of
from functions.openapi import error_schema
from shared import errors

REPO = Path(__file__).resolve().parents[2]
DOMAIN = {
    name: cls for name, cls in vars(errors).items() if isinstance(cls, type) and issubclass(cls, errors.DomainError)
}
# Codes built at run time: the reservation's state (`already_<status>`), and in shared/stripe_gateway.py
# the variable `code` = `stripe_<Stripe's code>` (an open set: STRIPE_CODE_PATTERN in the document).
DYNAMIC = {"f'already_{record.status}'", "code"}


def _error_classes() -> dict[str, type[errors.DomainError]]:
    """Every DomainError subclass defined anywhere in shared/ (by name)."""
    import importlib

    found = dict(DOMAIN)
    for path in (REPO / "shared").rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
        if not any(n.endswith(("Error", "Large")) for n in names):
            continue
        module = importlib.import_module(".".join(path.relative_to(REPO).with_suffix("").parts))
        for name in names:
            cls = getattr(module, name)
            if isinstance(cls, type) and issubclass(cls, errors.DomainError):
                found[name] = cls
    return found


def _raised() -> Iterator[tuple[str, str, str]]:
    """(class or function, code, file) for every code written in shared/ and functions/."""
    for path in [*(REPO / "shared").rglob("*.py"), *(REPO / "functions").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                for stmt in node.body:
                    targets = stmt.targets if isinstance(stmt, ast.Assign) else []
                    if any(isinstance(t, ast.Name) and t.id == "code" for t in targets):
                        assert isinstance(stmt, ast.Assign)
                        yield node.name, ast.literal_eval(stmt.value), str(path)
            if isinstance(node, ast.Call):
                name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
                for kw in node.keywords:
                    if kw.arg == "code":
                        value = kw.value
                        code = value.value if isinstance(value, ast.Constant) else ast.unparse(value)
                        yield name, str(code), str(path)
                if name == "error_response" and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant):
                    status = ast.unparse(node.args[0]).rsplit(".", 1)[-1]
                    yield f"error_response:{status}", str(node.args[1].value), str(path)


def test_every_code_the_code_answers_is_registered_with_its_status() -> None:
    classes = _error_classes()
    problems = []
    for raiser, code, path in _raised():
        if code in DYNAMIC or raiser == "DomainError":
            continue
        entry = BY_CODE.get(code)
        if entry is None:
            problems.append(f"{code} ({raiser}, {path}) is not in functions/error_codes.py")
            continue
        if raiser.startswith("error_response:"):
            from http import HTTPStatus

            status = int(HTTPStatus[raiser.split(":")[1]])
        elif raiser in classes:
            status = int(status_of(classes[raiser]("x")))
        else:
            continue  # a helper that passes a code through; its class is checked where it is defined
        if status not in entry.statuses:
            problems.append(f"{code} is answered with {status} by {raiser} ({path}), registered as {entry.statuses}")
    assert not problems, "\n".join(problems)


def test_the_dynamic_codes_are_registered_as_far_as_they_can_be() -> None:
    for state in ("settled", "released", "expired", "reserved"):
        assert BY_CODE[f"already_{state}"].statuses == (409,)
    assert STRIPE_CODE_PATTERN == r"^stripe_[a-z0-9_]+$"


def test_the_registry_has_one_entry_per_code_and_a_meaning_for_each() -> None:
    codes = [e.code for e in ERRORS]
    assert len(codes) == len(set(codes))
    assert all(e.meaning and e.statuses for e in ERRORS)


def test_the_documents_error_schemas_enumerate_the_registry() -> None:
    for status in (400, 401, 402, 403, 404, 409, 415, 422, 429, 503):
        schema = error_schema(status)
        code = schema["properties"]["error"]["properties"]["code"]
        enum = code["anyOf"][0]["enum"] if "anyOf" in code else code["enum"]
        assert enum == codes_for(status) and enum, status

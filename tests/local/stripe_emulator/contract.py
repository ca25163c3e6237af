"""The emulator speaks the pinned API version (tests/contract: the contract derived from the SDK).

- Every `/v1` request is checked against the contract before it is routed: an endpoint the version does not
  have answers 404, a parameter it does not have (or of the wrong type, outside an enum, missing) 400 in
  Stripe's error shape, from the first problem. Every check is recorded (`ContractGuard.requests`).
- With `strict=True` (the local stack and the emulator's tests) every object the emulator returns (a 200
  body) or sends (an event, with its `data.object`) is checked too: a response that violates the contract
  answers 500 `api_error` listing the problems, an event that does makes the request that emitted it fail the
  same way; both are recorded in `ContractGuard.violations`, which the test fixtures assert empty.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from tests.contract.validate import Contract

from .errors import ApiError

# Parameters this version removed for which Stripe answers its own code rather than `parameter_unknown`.
_REMOVED: dict[tuple[str, str, str], tuple[str, str]] = {
    ("POST", "/v1/payment_intents", "payment_method_types"): (
        "payment_method_types_no_longer_supported",
        "The `payment_method_types` parameter is no longer supported on this API version. Use "
        "`allowed_payment_method_types`, `excluded_payment_method_types` or dynamic payment methods.",
    ),
}
# What a request problem (`<param>: <what>`, from tests/contract/validate.py) answers. Stripe's documented
# codes where it has one (parameter_unknown, parameter_missing, parameter_invalid_empty/_integer); the others
# follow the same naming.
_CODES: tuple[tuple[str, str], ...] = (
    ("unknown parameter", "parameter_unknown"),
    ("required parameter missing", "parameter_missing"),
    ("empty string", "parameter_invalid_empty"),
    ("expected integer", "parameter_invalid_integer"),
    ("expected boolean", "parameter_invalid_boolean"),
    ("expected an array", "parameter_invalid_array"),
    ("expected a hash", "parameter_invalid_hash"),
    ("expected a decimal", "parameter_invalid_decimal"),
    ("expected number", "parameter_invalid_decimal"),
)
_SHOWN = 20  # problems listed in a 500's message


@dataclass(frozen=True)
class CheckedRequest:
    method: str
    path: str
    params: dict[str, Any]
    problems: tuple[str, ...]


class ContractGuard:
    """Checks requests (always) and returned/sent objects (when `strict`) against the pinned contract."""

    def __init__(self, *, strict: bool = False) -> None:
        self.strict = strict
        self.requests: list[CheckedRequest] = []
        self.violations: list[str] = []
        self._lock = threading.Lock()
        self._checked: dict[str, tuple[str, ...]] = {}  # an object's repr -> its problems, each less its path

    @property
    def contract(self) -> Contract:
        return Contract.default()  # loaded once per process

    # ---- requests -----------------------------------------------------------------------------------------

    def refuse(self, method: str, path: str, params: dict[str, Any]) -> ApiError | None:
        """Stripe's error for a request this version refuses (recorded either way); None: it may go on."""
        contract = self.contract
        problems = contract.request_problems(method, path, params)
        with self._lock:
            self.requests.append(CheckedRequest(method, path, params, tuple(problems)))
        if not problems:
            return None
        route = contract.route(method, path)
        if route is None:
            return ApiError(404, f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs.")
        for problem in problems:
            removed = _REMOVED.get((method, route.template, problem.partition(": ")[0]))
            if removed is not None and problem.endswith(": unknown parameter"):
                return ApiError(400, removed[1], code=removed[0], param=problem.partition(": ")[0])
        return _error(problems[0])

    def requests_since(self, mark: int) -> list[CheckedRequest]:
        with self._lock:
            return self.requests[mark:]

    def mark(self) -> int:
        with self._lock:
            return len(self.requests)

    # ---- objects ------------------------------------------------------------------------------------------

    def response_error(self, method: str, path: str, body: dict[str, Any]) -> ApiError | None:
        """A 500 when (strict) a response body violates the contract."""
        if not self.strict or "object" not in body:
            return None
        problems = self._object_problems(body)
        return self._violation(f"the response to {method} {path} is", problems) if problems else None

    def check_event(self, event: dict[str, Any]) -> None:
        """Raises (a 500 for the request that emitted it) when (strict) an event violates the contract."""
        if not self.strict:
            return
        problems = self._object_problems(event)
        if problems:
            raise self._violation(f"event {event['type']} ({event['id']}) is", problems)

    def _object_problems(self, obj: dict[str, Any]) -> list[str]:
        """`Contract.object_problems(obj)`, each object (a list's items, an event's object...) checked once
        while the guard remembers it (the reconciler lists the same events again and again)."""
        return self.contract.object_problems_at(obj, str(obj.get("object") or "object"), memo=self._checked)

    def _violation(self, where: str, problems: list[str]) -> ApiError:
        shown = "; ".join(problems[:_SHOWN]) + (f"; ... ({len(problems)} in all)" if len(problems) > _SHOWN else "")
        message = f"Stripe emulator: {where} outside the contract of API version {self.contract.version}: {shown}"
        with self._lock:
            self.violations.append(message)
        return ApiError(500, message, type="api_error")


def _error(problem: str) -> ApiError:
    param, _, what = problem.partition(": ")
    code = next((code for needle, code in _CODES if what.startswith(needle)), "parameter_invalid_string")
    messages = {
        "parameter_unknown": f"Received unknown parameter: {param}",
        "parameter_missing": f"Missing required param: {param}.",
        "parameter_invalid_empty": (
            f"You passed an empty string for '{param}'. We assume empty values are an attempt to unset a "
            f"parameter; however '{param}' cannot be unset. You should remove '{param}' from your request or "
            "supply a non-empty value."
        ),
    }
    return ApiError(400, messages.get(code, f"Invalid {param}: {what}"), code=code, param=param)

"""Stripe-shaped API errors: `{"error": {"type", "code", "param", "message", ...}}` with the right HTTP status."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """Raised anywhere in the emulator; the server turns it into Stripe's error body and status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code:
            error["code"] = self.code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param is not None:
            error["param"] = self.param
        error.update(self.extra)
        return {"error": error}


def missing(resource: str, object_id: str, param: str = "id") -> ApiError:
    return ApiError(404, f"No such {resource}: '{object_id}'", code="resource_missing", param=param)


def param_missing(param: str) -> ApiError:
    return ApiError(400, f"Missing required param: {param}.", code="parameter_missing", param=param)


def param_unknown(param: str) -> ApiError:
    return ApiError(
        400,
        f"Received unknown parameter: {param}",
        code="parameter_unknown",
        param=param,
    )


def invalid(message: str, *, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, code=code, param=param)

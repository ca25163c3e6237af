"""Domain errors. Each carries a machine-readable code; the HTTP layer maps the class to a status."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of every error the API reports to a caller. Raising one means nothing was written."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details or {}


class UnauthenticatedError(DomainError):
    code = "unauthenticated"


class NotFoundError(DomainError):
    code = "not_found"


class ForbiddenError(DomainError):
    code = "forbidden"


class InvalidRequestError(DomainError):
    """Well-formed input that the domain rejects (unknown plan, unsupported currency, bad cursor)."""

    code = "invalid_request"


class ConflictError(DomainError):
    """The request conflicts with the current state (already exists, last owner, concurrent change)."""

    code = "conflict"


class PlanLimitError(ConflictError):
    """A plan limit (projects, seats, agency mode) refuses the change."""

    code = "plan_limit_reached"


class ConcurrentUpdateError(ConflictError):
    """Another writer changed the same aggregate first; the caller may retry."""

    code = "concurrent_update"


class ThrottledError(DomainError):
    code = "throttled"


class UsageBusyError(DomainError):
    """Concurrent requests kept the same counters busy past the retries made inside: 503 with Retry-After.
    Nothing half-counted matters: re-sending is safe (each usage event counts once by its event_id)."""

    code = "usage_busy"

    def __init__(self, message: str, *, retry_after_s: int = 1):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PaymentDeclinedError(DomainError):
    """The card was declined (Stripe card_error)."""

    code = "payment_declined"


class UpstreamError(DomainError):
    """A provider (Stripe) is unreachable or failed after retries; the caller may retry."""

    code = "stripe_unavailable"


class StripeTimeoutError(UpstreamError):
    """Stripe did not answer in the time the request had left (or too little was left to ask): whatever
    was sent carried an idempotency key, so a retry is safe."""

    code = "stripe_timeout"


class WebhookSignatureError(DomainError):
    """A webhook's signature does not verify (tampered, wrong secret or too old)."""

    code = "invalid_signature"


class MalformedWebhookError(WebhookSignatureError):
    """A correctly signed webhook body that is not a Stripe event (no id, type or data.object)."""

    code = "malformed_event"

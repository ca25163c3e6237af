"""Powertools Logger, Tracer and Metrics, set up once and shared by every function."""

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
# Every function talks to AWS: trace boto calls from cold start. Patching `requests` (Stripe's HTTP
# client) would import it, about 60 ms; functions that call Stripe patch it on first use instead.
tracer = Tracer(patch_modules=["botocore"])
metrics = Metrics()


def trace_stripe_http() -> None:
    """X-Ray subsegments for Stripe's HTTP calls (idempotent; a no-op with tracing disabled)."""
    tracer.patch(["requests"])

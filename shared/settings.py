"""Environment settings, validated once at cold start. No silent defaults for what must be configured.

Each field is read from the upper-cased environment variable of its name. (A plain pydantic model:
pydantic-settings cost about 90 ms of every cold start for this one lookup.)"""

from __future__ import annotations

import os
from typing import Self

from pydantic import BaseModel, ConfigDict


class ApiSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    table_name: str  # TABLE_NAME
    # STRIPE_SECRET_ARN: JSON {"api_key", "webhook_secret"}. Only the functions that call Stripe have it
    # (and may read it); in the others the gateway refuses to connect.
    stripe_secret_arn: str | None = None
    notifications_topic_arn: str  # NOTIFICATIONS_TOPIC_ARN
    event_bus_name: str  # EVENT_BUS_NAME: events out (Credits.UsageWarning, ...)
    documents_bucket: str  # DOCUMENTS_BUCKET: invoice PDFs and CSVs
    # Unset in AWS (the SDK's api.stripe.com); the local stack points it at the Stripe emulator.
    stripe_api_base: str | None = None

    @classmethod
    def from_env(cls) -> Self:
        """ValidationError naming each missing variable's field."""
        found = {name: os.environ[name.upper()] for name in cls.model_fields if name.upper() in os.environ}
        return cls.model_validate(found)


class WebhookSettings(ApiSettings):
    idempotency_table_name: str  # IDEMPOTENCY_TABLE_NAME: processed Stripe event ids


class DispatcherSettings(ApiSettings):
    invoice_run_state_machine_arn: str  # INVOICE_RUN_STATE_MACHINE_ARN
    invoice_runs_bucket: str  # INVOICE_RUNS_BUCKET: the day's due list the run's Distributed Map reads


class ReconcilerSettings(ApiSettings):
    invoice_runs_bucket: str  # INVOICE_RUNS_BUCKET: the invoice run's due lists (the orgs it took each day)
    # RECONCILE_STRIPE_READS_PER_S: the run's share of Stripe's read limit (100/s live, 25/s test mode)
    reconcile_stripe_reads_per_s: float


class StripeSecret(BaseModel):
    """The Stripe secret's JSON, validated when it is first read."""

    api_key: str
    webhook_secret: str

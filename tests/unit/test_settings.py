"""Settings come from the upper-cased environment variable of each field; a missing one fails cold start."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.settings import DispatcherSettings

ENV = {
    "TABLE_NAME": "billing",
    "STRIPE_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:1:secret:stripe",
    "NOTIFICATIONS_TOPIC_ARN": "arn:aws:sns:us-east-1:1:notify",
    "EVENT_BUS_NAME": "bus",
    "DOCUMENTS_BUCKET": "docs",
    "INVOICE_RUN_STATE_MACHINE_ARN": "arn:aws:states:us-east-1:1:stateMachine:run",
}


def test_fields_are_read_from_their_upper_cased_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STRIPE_API_BASE", raising=False)
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    settings = DispatcherSettings.from_env()
    assert (settings.table_name, settings.invoice_run_state_machine_arn) == (
        "billing",
        ENV["INVOICE_RUN_STATE_MACHINE_ARN"],
    )
    assert settings.stripe_api_base is None


def test_a_missing_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("EVENT_BUS_NAME")
    with pytest.raises(ValidationError) as missing:
        DispatcherSettings.from_env()
    assert [e["loc"] for e in missing.value.errors()] == [("event_bus_name",)]

"""Settings come from the upper-cased environment variable of each field; a missing one fails cold start."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.dynamo import dynamodb_resource
from shared.settings import DispatcherSettings

ENV = {
    "TABLE_NAME": "billing",
    "STRIPE_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:1:secret:stripe",
    "NOTIFICATIONS_TOPIC_ARN": "arn:aws:sns:us-east-1:1:notify",
    "EVENT_BUS_NAME": "bus",
    "DOCUMENTS_BUCKET": "docs",
    "INVOICE_RUN_STATE_MACHINE_ARN": "arn:aws:states:us-east-1:1:stateMachine:run",
    "INVOICE_RUNS_BUCKET": "runs",
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


def test_a_function_without_the_stripe_secret_never_reads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only the functions that call Stripe get STRIPE_SECRET_ARN (and the right to read it): the others
    # build the same services, and the gateway reads the secret on its first Stripe call, never before.
    from shared import wiring
    from shared.settings import ApiSettings

    reads: list[str] = []
    monkeypatch.setattr(wiring, "get_secret", lambda name, **_: reads.append(name))
    offline = {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}
    for name, value in {**offline, **ENV}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("STRIPE_SECRET_ARN")
    settings = ApiSettings.from_env()
    assert settings.stripe_secret_arn is None
    dynamodb_resource.cache_clear()  # one per process: not this test's fake one for the tests after it
    try:
        services = wiring.build_services(settings)
        with pytest.raises(RuntimeError, match="STRIPE_SECRET_ARN"):
            services.subscriptions._gateway.customer_balance("cus_1")
    finally:
        dynamodb_resource.cache_clear()
    assert reads == []

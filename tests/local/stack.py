"""The local stack: DynamoDB Local + moto's server, with the template's resources created in them.

Production code has no local branches: boto3 finds the local endpoints through the standard
AWS_ENDPOINT_URL_<SERVICE> variables in `env` (service id upper-cased, spaces -> underscores).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import boto3

from tests.local import cfn, devtokens
from tests.local.api import LocalHttpApi
from tests.local.dynamodb_local import start_dynamodb_local, start_moto_server
from tests.local.stripe_emulator import StripeEmulator

REGION = cfn.REGION
LOCAL_SECRET = '{"api_key":"sk_test_local","webhook_secret":"whsec_local"}'

# Services served by moto, by the suffix of their AWS_ENDPOINT_URL_<SERVICE> variable.
MOTO_SERVICES = ("S3", "EVENTBRIDGE", "SNS", "SECRETS_MANAGER", "SFN", "SCHEDULER")


@dataclass
class LocalStack:
    dynamodb_endpoint: str
    moto_endpoint: str
    env: dict[str, str]  # everything the functions need, AWS endpoints included
    template: dict[str, Any]
    functions: dict[str, cfn.FunctionSpec]
    resource_names: dict[str, str]
    stripe: StripeEmulator
    _stops: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def serve_api(self, host: str = "127.0.0.1", port: int = 0) -> tuple[LocalHttpApi, str]:
        """Starts the local HTTP API in front of the template's functions and points the Stripe
        emulator's webhooks at its `/webhooks/stripe` route. Returns (api, base_url)."""
        api = LocalHttpApi(
            self.functions, issuer=devtokens.ISSUER, audience=devtokens.AUDIENCE, public_key=devtokens.public_key()
        )
        base_url = api.start(host=host, port=port)
        self.stripe.set_webhook_endpoint(f"{base_url}/webhooks/stripe")
        self._stops.append(api.stop)
        return api, base_url

    def apply_env(self) -> None:
        os.environ.update(self.env)

    def client(self, service: str) -> Any:
        """A boto3 client for `service` pointed at the local stack (independent of os.environ)."""
        endpoint = self.dynamodb_endpoint if service == "dynamodb" else self.moto_endpoint
        return _client(service, endpoint)

    def stop(self) -> None:
        while self._stops:
            self._stops.pop()()

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _client(service: str, endpoint: str) -> Any:
    return boto3.client(
        service,  # type: ignore[call-overload]  # service name is a runtime string
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",  # local emulators accept any credentials
    )


def _create_moto_resources(endpoint: str, template: dict[str, Any], names: dict[str, str]) -> None:
    """Create the template's bucket(s), event bus(es), topic(s) and secret(s) in moto.

    Secrets: `names` is updated with the ARN moto returns, since that is what !Ref yields in AWS.
    Idempotent: every ThreadedMotoServer in a process shares moto's global backends, so a second stack
    in the same process (another test module) finds these resources already there.
    """
    for logical_id, resource in template.get("Resources", {}).items():
        name = names.get(logical_id, logical_id)
        match resource.get("Type"):
            case "AWS::S3::Bucket":
                _client("s3", endpoint).create_bucket(Bucket=name)  # us-east-1: re-creating is a no-op
            case "AWS::Events::EventBus":
                events = _client("events", endpoint)
                with contextlib.suppress(events.exceptions.ResourceAlreadyExistsException):
                    events.create_event_bus(Name=name)
            case "AWS::SNS::Topic":
                _client("sns", endpoint).create_topic(Name=name.rsplit(":", 1)[1])  # idempotent by name
            case "AWS::SecretsManager::Secret":
                secrets = _client("secretsmanager", endpoint)
                try:
                    names[logical_id] = secrets.create_secret(Name=name, SecretString=LOCAL_SECRET)["ARN"]
                except secrets.exceptions.ResourceExistsException:
                    names[logical_id] = secrets.describe_secret(SecretId=name)["ARN"]


def start_local_stack(template: dict[str, Any] | None = None) -> LocalStack:
    template = template if template is not None else cfn.load_template()
    stops: list[Callable[[], None]] = []
    try:
        ddb_endpoint, stop_ddb = start_dynamodb_local()
        stops.append(stop_ddb)
        moto_endpoint, stop_moto = start_moto_server()
        stops.append(stop_moto)

        cfn.create_tables(_client("dynamodb", ddb_endpoint), template)
        names = cfn.local_resource_names(template, region=REGION)
        _create_moto_resources(moto_endpoint, template, names)
        functions = cfn.function_specs(template, names)
        stripe = StripeEmulator(api_key="sk_test_local", webhook_secret="whsec_local")
        stripe_url = stripe.start()
        stops.append(stripe.stop)
    except BaseException:
        for stop in reversed(stops):
            stop()
        raise

    env = {
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_ENDPOINT_URL_DYNAMODB": ddb_endpoint,
        **{f"AWS_ENDPOINT_URL_{service}": moto_endpoint for service in MOTO_SERVICES},
        # Powertools: no X-Ray, no EMF metric blobs on stdout, no dev-mode pretty printing.
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_DEV": "false",
        "STRIPE_API_BASE": stripe_url,  # the emulator; in AWS unset (api.stripe.com)
    }
    for spec in functions.values():
        env.update(spec.environment)
    return LocalStack(
        dynamodb_endpoint=ddb_endpoint,
        moto_endpoint=moto_endpoint,
        env=env,
        template=template,
        functions=functions,
        resource_names=names,
        stripe=stripe,
        _stops=stops,
    )

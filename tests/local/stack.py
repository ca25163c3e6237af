"""The local stack: DynamoDB Local + moto's server, with the template's resources created in them.

Production code has no local branches: boto3 finds the local endpoints through the standard
AWS_ENDPOINT_URL_<SERVICE> variables in `env` (service id upper-cased, spaces -> underscores).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import boto3

from tests.local import cfn, devtokens, sfn_quotas
from tests.local.api import LocalHttpApi
from tests.local.dynamodb_local import start_dynamodb_local, start_moto_server
from tests.local.lambda_local import LocalLambda, route_moto_step_functions
from tests.local.streams import StreamPump, stream_sources
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
    lambda_endpoint: str  # the local Lambda Invoke API, serving the template's functions
    local_lambda: LocalLambda
    streams: list[StreamPump] = field(default_factory=list)  # table streams -> their functions (the outbox)
    _stops: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def flush_outbox(self, timeout: float = 30.0) -> None:
        """Waits until every stream record written so far reached its function (the outbox was sent)."""
        for pump in self.streams:
            pump.flush(timeout)

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

    def wait_for_execution(self, execution_arn: str, timeout: float = 60) -> dict[str, Any]:
        """Poll describe_execution until the execution is no longer RUNNING; returns the description."""
        sfn = self.client("stepfunctions")
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            execution: dict[str, Any] = sfn.describe_execution(executionArn=execution_arn)
            if execution["status"] != "RUNNING":
                return execution
            if time.monotonic() > deadline:
                raise TimeoutError(f"{execution_arn} still RUNNING after {timeout}s")
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

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


def _enable_step_functions_execution(moto_endpoint: str) -> None:
    """Switch moto to its ASL interpreter (otherwise executions never run a state). Server mode has no
    env variable for it: the setting is moto's global user config, set through /moto-api/config. Must
    happen before state machines are created: the interpreter has its own backend."""
    body = json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode()
    request = urllib.request.Request(f"{moto_endpoint}/moto-api/config", data=body, method="POST")
    request.add_header("content-type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:  # our own local server
        response.read()


def _create_state_machines(endpoint: str, template: dict[str, Any], names: dict[str, str]) -> None:
    """Create every AWS::Serverless::StateMachine of `template` in moto from its real definition.

    `names[logical_id]` gets the ARN (what !Ref yields). Idempotent across stacks of one process (moto's
    backends are shared): an existing state machine gets this template's definition.
    """
    sfn = _client("stepfunctions", endpoint)
    sfn_quotas.install()  # the quotas and Distributed Map parts moto ignores
    for logical_id, spec in cfn.state_machine_specs(template, names).items():
        role = f"arn:aws:iam::{cfn.ACCOUNT}:role/{cfn.STACK_NAME}-{logical_id}Role"
        definition = sfn_quotas.localize(spec.name, spec.definition)
        arn = sfn.create_state_machine(name=spec.name, definition=definition, roleArn=role, type=spec.type)[
            "stateMachineArn"
        ]
        if sfn.describe_state_machine(stateMachineArn=arn)["definition"] != definition:
            sfn.update_state_machine(stateMachineArn=arn, definition=definition, roleArn=role)
        names[logical_id] = names[f"{logical_id}.Arn"] = arn


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
        _enable_step_functions_execution(moto_endpoint)
        _create_state_machines(moto_endpoint, template, names)
        functions = cfn.function_specs(template, names)  # after the resources: env may !Ref any of them
        local_lambda = LocalLambda(functions)
        lambda_endpoint = local_lambda.start()
        stops.append(local_lambda.stop)
        stripe = StripeEmulator(api_key="sk_test_local", webhook_secret="whsec_local", strict_contract=True)
        stripe_url = stripe.start()
        stops.append(stripe.stop)
        pumps = _start_stream_pumps(ddb_endpoint, template, names, local_lambda)
        stops += [pump.stop for pump in pumps]
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
        "AWS_ENDPOINT_URL_LAMBDA": lambda_endpoint,
        "STRIPE_API_BASE": stripe_url,  # the emulator; in AWS unset (api.stripe.com)
    }
    for spec in functions.values():
        env.update(spec.environment)
    # moto's Step Functions tasks ignore AWS_ENDPOINT_URL_* (its client factory pins moto's port): route
    # them through this env - Lambda tasks to the local Lambda, i.e. our real handlers.
    stops.append(route_moto_step_functions(env, moto_endpoint))
    return LocalStack(
        dynamodb_endpoint=ddb_endpoint,
        moto_endpoint=moto_endpoint,
        env=env,
        template=template,
        functions=functions,
        resource_names=names,
        stripe=stripe,
        lambda_endpoint=lambda_endpoint,
        local_lambda=local_lambda,
        streams=pumps,
        _stops=stops,
    )


def _start_stream_pumps(
    endpoint: str, template: dict[str, Any], names: dict[str, str], local_lambda: LocalLambda
) -> list[StreamPump]:
    """What Lambda's DynamoDB event source mappings do: each table stream drives its function."""
    dynamodb, streams = _client("dynamodb", endpoint), _client("dynamodbstreams", endpoint)
    pumps = []
    for source in stream_sources(template):
        table = names.get(source.table, source.table)
        arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
        pump = StreamPump(streams, arn, source, local_lambda.invoke, region=REGION)
        pump.start()
        pumps.append(pump)
    return pumps

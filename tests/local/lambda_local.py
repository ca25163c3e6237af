"""Local stand-in for the Lambda Invoke API, and the routing of moto's Step Functions tasks to it.

`LocalLambda` serves `POST /2015-03-31/functions/{FunctionName}/invocations` for the template's
functions: it imports the handler the template names and calls it in-process, answering like Lambda
(handler errors as `X-Amz-Function-Error: Unhandled` + the runtime's error JSON; an unknown function as
404 ResourceNotFoundException). boto3 reaches it through AWS_ENDPOINT_URL_LAMBDA.

moto's Step Functions interpreter (server mode) calls every service it integrates with through
`moto.stepfunctions.parser.asl.utils.boto_client.boto_client_for`, which pins `endpoint_url` to
`http://localhost:$MOTO_PORT` (default 5000) - so AWS_ENDPOINT_URL_* is ignored and, unrouted, tasks hit
moto's own Docker-less Lambda, which echoes the input back and "succeeds" for functions that don't
exist. `route_moto_step_functions` swaps that factory (in this process only) for one that resolves each
service's endpoint from the local stack's env exactly as boto3 would: Lambda -> LocalLambda,
DynamoDB -> DynamoDB Local, everything else -> the stack's moto server.
"""

from __future__ import annotations

import decimal
import importlib
import json
import sys
import threading
import traceback
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

import boto3
import botocore.session
from botocore.config import Config

from tests.local.api import INVOCATION_LOCK, LocalLambdaContext, _Server, reset_disabled_metrics
from tests.local.cfn import ACCOUNT, REGION, FunctionSpec

Handler = Callable[[dict[str, Any], Any], Any]

_INVOKE_PATH = "/2015-03-31/functions/"


def function_arn(name: str) -> str:
    """A function's ARN locally (functions are named by their logical id)."""
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"


def parse_function_name(raw: str) -> tuple[str, str | None] | None:
    """Lambda's FunctionName forms -> (name, qualifier); None if it names another account/region.

    Accepted: `Name`, `Name:qualifier`, `123456789012:function:Name[:qualifier]` and
    `arn:aws:lambda:<region>:<account>:function:Name[:qualifier]`.
    """
    parts = raw.split(":")
    if parts[0] == "arn":
        if len(parts) not in (7, 8) or parts[2] != "lambda" or parts[5] != "function":
            return None
        if parts[3] != REGION or parts[4] != ACCOUNT:
            return None
        return parts[6], parts[7] if len(parts) == 8 else None
    if len(parts) in (3, 4) and parts[1] == "function":
        if parts[0] != ACCOUNT:
            return None
        return parts[2], parts[3] if len(parts) == 4 else None
    if len(parts) in (1, 2):
        return parts[0], parts[1] if len(parts) == 2 else None
    return None


def _jsonable(value: Any) -> Any:
    """Decimals as JSON numbers, as the Lambda Python runtime's marshaller writes them."""
    if isinstance(value, decimal.Decimal):
        if value.is_nan():
            return float("nan")
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def runtime_error(error_type: str, message: str, request_id: str, stack: list[str] | None = None) -> dict[str, Any]:
    """The body the Lambda Python runtime (awslambdaric's make_error) returns for a failed invocation."""
    return {"errorMessage": message, "errorType": error_type, "requestId": request_id, "stackTrace": stack or []}


class LocalLambda:
    def __init__(self, functions: dict[str, FunctionSpec]) -> None:
        self.functions = dict(functions)
        self._handlers: dict[str, Handler] = {}
        self._import_lock = threading.Lock()
        self.invocations: list[tuple[str, Any]] = []  # (function name, event): what tests may assert on
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        local = self

        class RequestHandler(_RequestHandler):
            local_lambda = local

        self._server = _Server((host, port), RequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-lambda", daemon=True)
        self._thread.start()
        return f"http://{host}:{self._server.server_port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    # ------------------------------------------------------------------ invocation

    def handler_for(self, spec: FunctionSpec) -> Handler:
        # Imported lazily so the stack's environment is in place before module-level code runs.
        with self._import_lock:
            if spec.handler not in self._handlers:
                module_path, attr = spec.handler.rsplit(".", 1)
                module = importlib.import_module(module_path.replace("/", "."))
                self._handlers[spec.handler] = cast(Handler, getattr(module, attr))
            return self._handlers[spec.handler]

    def invoke(self, name: str, event: Any) -> tuple[bytes, str | None]:
        """Run function `name` (a known logical id) on `event`: (response body, function error or None)."""
        spec = self.functions[name]
        context = LocalLambdaContext(name, spec.timeout_s)
        request_id = context.aws_request_id
        self.invocations.append((name, event))
        try:
            handler = self.handler_for(spec)
        except ImportError as exc:
            module = spec.handler.rsplit(".", 1)[0]
            body = runtime_error("Runtime.ImportModuleError", f"Unable to import module '{module}': {exc}", request_id)
            return json.dumps(body).encode(), "Unhandled"
        except AttributeError:
            module, attr = spec.handler.rsplit(".", 1)
            body = runtime_error(
                "Runtime.HandlerNotFound", f"Handler '{attr}' missing on module '{module}'", request_id
            )
            return json.dumps(body).encode(), "Unhandled"
        try:
            with INVOCATION_LOCK:  # shared with the local API: one handler at a time in this process
                try:
                    result = handler(event, context)
                finally:
                    reset_disabled_metrics()
        except Exception as exc:
            frames = traceback.extract_tb(exc.__traceback__)[1:]  # drop this frame, as the runtime drops bootstrap's
            traceback.print_exc(file=sys.stderr)
            body = runtime_error(type(exc).__name__, str(exc), request_id, traceback.format_list(frames))
            return json.dumps(body).encode(), "Unhandled"
        if isinstance(result, bytes):
            return result, None
        try:
            return json.dumps(_jsonable(result)).encode(), None
        except (TypeError, ValueError) as exc:
            body = runtime_error("Runtime.MarshalError", f"Unable to marshal response: {exc}", request_id)
            return json.dumps(body).encode(), "Unhandled"


class _RequestHandler(BaseHTTPRequestHandler):
    local_lambda: LocalLambda
    protocol_version = "HTTP/1.1"  # keep-alive; every response carries Content-Length

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("x-amzn-requestid", str(uuid.uuid4()))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, code: str, message: str) -> None:
        # Lambda's REST-JSON errors: the code in x-amzn-ErrorType, {"Type", "Message"} in the body.
        body = json.dumps({"Type": "User", "Message": message}).encode()
        self._send(status, body, {"x-amzn-ErrorType": code})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        url = urlsplit(self.path)
        if not (url.path.startswith(_INVOKE_PATH) and url.path.endswith("/invocations")):
            self._error(404, "UnknownOperationException", f"Unknown operation: POST {url.path}")
            return
        raw_name = unquote(url.path[len(_INVOKE_PATH) : -len("/invocations")])
        parsed = parse_function_name(raw_name)
        local = self.local_lambda
        if parsed is None or parsed[0] not in local.functions:
            arn = raw_name if raw_name.startswith("arn:") else function_arn(raw_name)
            self._error(404, "ResourceNotFoundException", f"Function not found: {arn}")
            return
        name, qualifier = parsed
        qualifier = parse_qs(url.query).get("Qualifier", [qualifier or "$LATEST"])[0]
        try:
            event = json.loads(body) if body.strip() else {}
        except ValueError as exc:
            message = f"Could not parse request body into json: {exc}"
            self._error(400, "InvalidRequestContentException", message)
            return
        invocation_type = self.headers.get("x-amz-invocation-type", "RequestResponse")
        if invocation_type == "DryRun":
            self._send(204, b"")
            return
        if invocation_type == "Event":
            threading.Thread(target=local.invoke, args=(name, event), daemon=True).start()
            self._send(202, b"")
            return
        payload, function_error = local.invoke(name, event)
        headers = {"X-Amz-Executed-Version": "$LATEST" if qualifier == "$LATEST" else qualifier}
        if function_error:
            headers["X-Amz-Function-Error"] = function_error
        self._send(200, payload, headers)


# ------------------------------------------------------------------------ moto's Step Functions tasks

# Every module of moto's ASL interpreter that does `from ...boto_client import boto_client_for`.
_MOTO_SFN = "moto.stepfunctions.parser.asl"
_BOTO_CLIENT_USERS = (
    f"{_MOTO_SFN}.component.state.exec.state_task.lambda_eval_utils",
    f"{_MOTO_SFN}.component.state.exec.state_task.service.state_task_service_aws_sdk",
    f"{_MOTO_SFN}.component.state.exec.state_task.service.state_task_service_batch",
    f"{_MOTO_SFN}.component.state.exec.state_task.service.state_task_service_dynamodb",
    f"{_MOTO_SFN}.component.state.exec.state_task.service.state_task_service_ecs",
    f"{_MOTO_SFN}.component.state.exec.state_task.service.state_task_service_events",
    f"{_MOTO_SFN}.component.state.exec.state_task.service.state_task_service_glue",
    f"{_MOTO_SFN}.component.state.exec.state_task.service.state_task_service_sfn",
    f"{_MOTO_SFN}.component.state.exec.state_task.service.state_task_service_sns",
    f"{_MOTO_SFN}.component.state.exec.state_task.service.state_task_service_sqs",
    f"{_MOTO_SFN}.component.state.exec.state_task.service.state_task_service_unsupported",
    f"{_MOTO_SFN}.component.state.exec.state_map.item_reader.eval.resource_eval_s3",
    f"{_MOTO_SFN}.component.state.exec.state_map.result_writer.resource_eval.resource_eval_s3",
    f"{_MOTO_SFN}.utils.boto_client",
)

# (env, default endpoint) of the local stacks that routed moto, most recent last: moto's backends are
# process-global, so the most recently started stack's endpoints serve every execution.
_routes: list[tuple[dict[str, str], str]] = []
_routes_lock = threading.Lock()
_original: Callable[..., Any] | None = None
_service_ids: dict[str, str] = {}


def _endpoint_for(service: str, env: dict[str, str], default: str) -> str:
    """AWS_ENDPOINT_URL_<SERVICE ID> from `env`, as botocore resolves it; else `default` (moto)."""
    if service not in _service_ids:
        model = botocore.session.get_session().get_service_model(service)
        _service_ids[service] = str(model.service_id).upper().replace(" ", "_")
    return env.get(f"AWS_ENDPOINT_URL_{_service_ids[service]}", default)


_clients: dict[tuple[str, str, str], Any] = {}
_session = boto3.session.Session()  # private: creating clients off boto3's default session isn't thread-safe


def _routed_boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
    from moto.stepfunctions.parser.asl.component.common.timeouts.timeout import TimeoutSeconds

    with _routes_lock:
        if not _routes:
            raise RuntimeError("moto's Step Functions ran a task with no local stack routing it")
        env, default = _routes[-1]
        endpoint = _endpoint_for(service, env, default)
        key = (service, region, endpoint)
        # Clients are thread-safe once built; Map iterations run tasks from several threads at once.
        if key not in _clients:
            _clients[key] = _session.client(
                service,  # type: ignore[call-overload]  # service name is a runtime string
                region_name=region,
                endpoint_url=endpoint,
                aws_access_key_id="local",
                aws_secret_access_key="local",
                config=Config(  # as moto's own factory: no retries (the state machine's Retry decides)
                    parameter_validation=False,
                    retries={"max_attempts": 0, "total_max_attempts": 1},
                    connect_timeout=TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS,
                    read_timeout=TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS,
                ),
            )
        return _clients[key]


def _patch(replacement: Callable[..., Any], current: Callable[..., Any]) -> None:
    for module_name in _BOTO_CLIENT_USERS:
        module = importlib.import_module(module_name)
        if getattr(module, "boto_client_for", None) is current:
            module.boto_client_for = replacement  # type: ignore[attr-defined]
    # Belt and braces: any other loaded moto module holding the factory by name.
    for module_name, module in list(sys.modules.items()):
        if module_name.startswith("moto.") and getattr(module, "boto_client_for", None) is current:
            module.boto_client_for = replacement  # type: ignore[attr-defined]


def route_moto_step_functions(env: dict[str, str], default_endpoint: str) -> Callable[[], None]:
    """Route the service calls of moto's Step Functions tasks through `env`'s AWS_ENDPOINT_URL_*
    (falling back to `default_endpoint`); returns the function that undoes it."""
    global _original
    from moto.stepfunctions.parser.asl.utils import boto_client

    entry = (dict(env), default_endpoint)
    with _routes_lock:
        if _original is None:
            _original = boto_client.boto_client_for
            _patch(_routed_boto_client_for, _original)
        _routes.append(entry)

    def unroute() -> None:
        global _original
        with _routes_lock:
            _routes[:] = [route for route in _routes if route is not entry]
            if not _routes and _original is not None:
                _patch(_original, _routed_boto_client_for)
                _original = None

    return unroute

"""Local stand-in for API Gateway HTTP API + its JWT authorizer.

Routes come from the template's HttpApi events; requests become payload format 2.0 events (the shape
of `sam local generate-event apigateway http-api-proxy`) handed to the very handler the template names.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import re
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qsl, unquote, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from tests.local import devtokens
from tests.local.cfn import ACCOUNT, REGION, FunctionSpec, Route

Handler = Callable[[dict[str, Any], Any], Any]

# Route tiers, most specific first (API Gateway: full match, then {param}, then greedy {proxy+}).
_EXACT, _PARAM, _GREEDY = 0, 1, 2


@dataclass(frozen=True)
class _BoundRoute:
    spec: FunctionSpec
    route: Route
    regex: re.Pattern[str]
    param_names: tuple[str, ...]
    tier: int
    literals: int  # literal segments: more of them = more specific within a tier

    @property
    def route_key(self) -> str:
        return f"{self.route.method} {self.route.path}"


def _bind(spec: FunctionSpec, route: Route) -> _BoundRoute:
    parts: list[str] = []
    names: list[str] = []
    tier, literals = _EXACT, 0
    for segment in route.path.strip("/").split("/"):
        var = re.fullmatch(r"\{([^}]+?)(\+?)\}", segment)
        if var is None:
            parts.append(re.escape(segment))
            literals += 1
        elif var[2]:  # {name+}: one or more whole segments
            names.append(var[1])
            parts.append("(.+)")
            tier = _GREEDY
        else:
            names.append(var[1])
            parts.append("([^/]+)")
            tier = max(tier, _PARAM)
    regex = re.compile("/" + "/".join(parts))
    return _BoundRoute(spec, route, regex, tuple(names), tier, literals)


def flatten_claim(value: Any) -> str:
    """Claims as HTTP API passes them: all strings; lists as "[a b c]" (Go's fmt, really)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + " ".join(flatten_claim(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{flatten_claim(v)}" for k, v in sorted(value.items())) + "]"
    return str(value)


class LocalLambdaContext:
    """Just what Powertools and our handlers read from a Lambda context."""

    def __init__(self, function_name: str, timeout_s: int = 15, memory_mb: int = 512) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_mb
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up mid-response (curl | head, test timeouts) is not worth a traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


# One invocation at a time in this process. In AWS each function runs in its own environments; here
# they share one interpreter, and Powertools keeps the current event in a class attribute shared by
# every resolver, so two functions running at once would read each other's requests.
INVOCATION_LOCK = threading.RLock()


def reset_disabled_metrics() -> None:
    """Powertools 3.37 keeps its metric set when metrics are disabled (POWERTOOLS_METRICS_DISABLED), so
    across invocations it grows and prints itself at 100 entries. In Lambda each flush clears it; do
    the same after each local invocation."""
    from aws_lambda_powertools import Metrics

    Metrics().clear_metrics()


class LocalHttpApi:
    def __init__(
        self,
        functions: dict[str, FunctionSpec],
        issuer: str = devtokens.ISSUER,
        audience: str = devtokens.AUDIENCE,
        public_key: RSAPublicKey | None = None,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.public_key = public_key or devtokens.public_key()
        self.routes = [_bind(spec, route) for spec in functions.values() for route in spec.routes]
        keys = [r.route_key for r in self.routes]
        duplicates = {k for k in keys if keys.count(k) > 1}
        if duplicates:  # API Gateway refuses to deploy these too
            raise ValueError(f"duplicate routes: {sorted(duplicates)}")
        self._handlers: dict[str, Handler] = {}
        self._import_lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        api = self

        class RequestHandler(_RequestHandler):
            local_api = api

        self._server = _Server((host, port), RequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-http-api", daemon=True)
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

    # ------------------------------------------------------------------ routing and auth

    def match(self, method: str, path: str) -> tuple[_BoundRoute, dict[str, str]] | None:
        candidates = [r for r in self.routes if r.route.method in (method, "ANY") and r.regex.fullmatch(path)]
        if not candidates:
            return None
        best = min(candidates, key=lambda r: (r.tier, -r.literals, r.route.method == "ANY"))
        found = best.regex.fullmatch(path)
        assert found is not None
        values = [unquote(v) for v in found.groups()]
        return best, dict(zip(best.param_names, values, strict=True))

    def verify(self, authorization: str | None) -> dict[str, Any]:
        """Validate like the JWT authorizer; raises jwt.InvalidTokenError on any failure."""
        if not authorization:
            raise jwt.InvalidTokenError("missing token")
        token = authorization.strip()
        if token[:7].lower() == "bearer ":  # API Gateway also accepts the bare token
            token = token[7:].strip()
        claims: dict[str, Any] = jwt.decode(
            token,
            self.public_key,
            algorithms=["RS256"],
            audience=self.audience,
            issuer=self.issuer,
            options={"require": ["exp", "iss", "aud"]},
        )
        return claims

    # ------------------------------------------------------------------ invocation

    def handler_for(self, spec: FunctionSpec) -> Handler:
        # Imported lazily so the stack's environment is in place before module-level code runs.
        with self._import_lock:
            if spec.handler not in self._handlers:
                module_path, attr = spec.handler.rsplit(".", 1)
                module = importlib.import_module(module_path.replace("/", "."))
                self._handlers[spec.handler] = cast(Handler, getattr(module, attr))
            return self._handlers[spec.handler]


def build_event(
    *,
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
    bound: _BoundRoute,
    path_params: dict[str, str],
    claims: dict[str, Any] | None,
    source_ip: str,
    service: str | None = None,
    request_id: str,
    now: float,
) -> dict[str, Any]:
    """An API Gateway HTTP API payload format 2.0 event."""
    url = urlsplit(target)
    merged: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        merged[key] = f"{merged[key]},{value}" if key in merged else value
    # Payload 2.0 moves the Cookie header into `cookies`.
    cookie_header = merged.pop("cookie", "")
    cookies = [c.strip() for c in cookie_header.split(";") if c.strip()]
    merged.setdefault("x-forwarded-for", source_ip)
    merged.setdefault("x-forwarded-proto", "http")
    query: dict[str, str] = {}
    for key, value in parse_qsl(url.query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value

    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": bound.route_key,
        "rawPath": url.path,
        "rawQueryString": url.query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = merged
    if query:
        event["queryStringParameters"] = query
    if path_params:
        event["pathParameters"] = path_params
    host = merged.get("host", "localhost")
    context: dict[str, Any] = {"accountId": ACCOUNT, "apiId": "local"}
    if claims is not None:
        flat = {k: flatten_claim(v) for k, v in claims.items()}
        context["authorizer"] = {"jwt": {"claims": flat, "scopes": None}}
    if service is not None:
        # The shape API Gateway gives an IAM-authorized route (the caller's assumed role).
        context["authorizer"] = {
            "iam": {
                "accessKey": "ASIALOCALSERVICEKEY",
                "accountId": ACCOUNT,
                "callerId": f"AROALOCAL:{service}",
                "cognitoIdentity": None,
                "principalOrgId": None,
                "userArn": f"arn:aws:sts::{ACCOUNT}:assumed-role/layers-{service}/{service}",
                "userId": f"AROALOCAL:{service}",
            }
        }
    context |= {
        "domainName": host,
        "domainPrefix": host.split(".", 1)[0],
        "http": {
            "method": method,
            "path": url.path,
            "protocol": "HTTP/1.1",
            "sourceIp": source_ip,
            "userAgent": merged.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": bound.route_key,
        "stage": "$default",
        "time": datetime.fromtimestamp(now, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": int(now * 1000),
    }
    event["requestContext"] = context
    if body:
        try:
            event["body"], event["isBase64Encoded"] = body.decode("utf-8"), False
        except UnicodeDecodeError:
            event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode("ascii"), True
    else:
        event["isBase64Encoded"] = False
    return event


def to_http_response(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """Map a payload 2.0 handler result to (status, headers, body) as HTTP API does."""
    if not (isinstance(result, dict) and "statusCode" in result):
        # No statusCode: HTTP API answers 200 with the returned value as a JSON body.
        return 200, [("content-type", "application/json")], json.dumps(result).encode()
    headers = [(k, str(v)) for k, v in (result.get("headers") or {}).items()]
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers += [(name, str(v)) for v in values]
    headers += [("set-cookie", c) for c in result.get("cookies") or []]
    raw = result.get("body") or ""
    if isinstance(raw, bytes):
        body = raw
    elif result.get("isBase64Encoded"):
        body = base64.b64decode(raw)
    else:
        body = str(raw).encode()
    status = int(result["statusCode"])
    return status, headers, b"" if status in (204, 304) else body  # HTTP forbids a body on these


class _RequestHandler(BaseHTTPRequestHandler):
    local_api: LocalHttpApi
    protocol_version = "HTTP/1.1"  # keep-alive; every response carries Content-Length

    def log_message(self, format: str, *args: Any) -> None:
        if os.environ.get("LOCAL_API_VERBOSE") == "1":
            super().log_message(format, *args)

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: Any, extra: list[tuple[str, str]] | None = None) -> None:
        headers = [("content-type", "application/json"), *(extra or [])]
        self._send(status, headers, json.dumps(payload).encode())

    def _handle(self) -> None:
        # Read the body first so a rejected request never leaves bytes on a keep-alive connection.
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        api = self.local_api
        request_id = str(uuid.uuid4())
        found = api.match(self.command, urlsplit(self.path).path)
        if found is None:
            self._json(404, {"message": "Not Found"}, [("apigw-requestid", request_id)])
            return
        bound, path_params = found
        claims = None
        service = None
        if bound.route.iam:
            # Stands in for SigV4 + the IAM authorizer: a service dev token (group "service") is the
            # signed request of that service's role; anything else is refused as API Gateway does (403).
            try:
                service_claims = api.verify(self.headers.get("authorization"))
            except jwt.InvalidTokenError:
                service_claims = {}
            if "service" not in (service_claims.get("cognito:groups") or []):
                self._json(403, {"message": "Forbidden"}, [("apigw-requestid", request_id)])
                return
            service = str(service_claims["sub"]).removeprefix("service:")
        elif bound.route.authorized:
            try:
                claims = api.verify(self.headers.get("authorization"))
            except jwt.InvalidTokenError as exc:
                challenge = f'Bearer scope="" error="invalid_token" error_description="{exc}"'
                self._json(401, {"message": "Unauthorized"}, [("www-authenticate", challenge)])
                return
        event = build_event(
            method=self.command,
            target=self.path,
            headers=list(self.headers.items()),
            body=body,
            bound=bound,
            path_params=path_params,
            claims=claims,
            service=service,
            source_ip=self.client_address[0],
            request_id=request_id,
            now=time.time(),
        )
        try:
            handler = api.handler_for(bound.spec)
            with INVOCATION_LOCK:
                try:
                    result = handler(event, LocalLambdaContext(bound.spec.logical_id, bound.spec.timeout_s))
                finally:
                    reset_disabled_metrics()
            status, headers, payload = to_http_response(result)
        except Exception:
            traceback.print_exc(file=sys.stderr)
            self._json(500, {"message": "Internal Server Error"}, [("apigw-requestid", request_id)])
            return
        self._send(status, [*headers, ("apigw-requestid", request_id)], payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _handle

    def __getattr__(self, name: str) -> Any:
        # Every method reaches the router: one no route takes (TRACE, QUERY, ...) is API Gateway's 404,
        # never the 501 http.server answers for a method it has no do_ for.
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)

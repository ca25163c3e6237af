"""HTTP front: auth, form parsing, routing, idempotency, `expand[]`, Stripe's error bodies and headers."""

from __future__ import annotations

import base64
import json
import secrets
import socket
import time
import traceback
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from .errors import ApiError
from .forms import parse_form
from .params import get_list, validate
from .routes import Route
from .store import RequestContext, Store

IDEMPOTENCY_TTL = 24 * 3600


@dataclass(frozen=True)
class StoredResponse:
    fingerprint: str
    status: int
    body: bytes
    request_id: str
    stored_at: float


class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], store: Store, routes: list[Route], api_key: str, *, bind: bool = True
    ) -> None:
        super().__init__(address, RequestHandler, bind_and_activate=bind)
        self.store = store
        self.routes = routes
        self.api_key = api_key
        self.idempotency: dict[tuple[str, str], StoredResponse] = {}
        # Injected faults for the next /v1 requests: (status, after_execute). after_execute=True runs the
        # request (and saves its idempotent response) but answers `status`, like a reply lost on the way.
        self.faults: list[tuple[int, bool]] = []
        # Faults for the next requests of one kind only: (method or None for any, path prefix, status,
        # after_execute), each taken by the first matching /v1 request that the queue above left alone.
        self.targeted_faults: list[tuple[str | None, str, int, bool]] = []
        # Replies to the next /v1 requests sent one byte per this many seconds (the request runs first):
        # a slow network that never trips a per-read timeout.
        self.trickles: list[float] = []


class RequestHandler(BaseHTTPRequestHandler):
    server: EmulatorHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "stripe-emulator"
    _trickle = 0.0  # this request's reply: seconds per byte (0: at once)

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without this, Nagle + delayed ACK add ~40 ms per call.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        return

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # ------------------------------------------------------------------
    def _handle(self, method: str) -> None:
        self._trickle = 0.0
        request_id = "req_" + secrets.token_hex(7)
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        if not url.path.startswith(("/v1/", "/_emulator/")):
            self._send_page(url.path)
            return
        api_key = self._api_key()
        if api_key != self.server.api_key:
            shown = f"{api_key[:7]}***" if api_key else ""
            message = "You did not provide an API key." if not api_key else f"Invalid API Key provided: {shown}"
            self._send(401, ApiError(401, message).body(), request_id)
            return
        key = self.headers.get("Idempotency-Key") if method == "POST" else None
        params = parse_form(body if method == "POST" else url.query)
        fingerprint = json.dumps([method, url.path, params], sort_keys=True)
        store = self.server.store
        with store.lock:
            fault = self.server.faults.pop(0) if self.server.faults and url.path.startswith("/v1/") else None
            fault = fault or self._targeted_fault(method, url.path)
            self._trickle = self.server.trickles.pop(0) if self.server.trickles and url.path.startswith("/v1/") else 0.0
            if fault is not None and not fault[1]:
                self._send(fault[0], ApiError(fault[0], "Injected fault.", type="api_error").body(), request_id)
                return
            if key is not None:
                replay = self._replay(api_key, key, fingerprint, request_id, lost=fault)
                if replay:
                    return
            store.request = RequestContext(request_id, key)
            try:
                status, payload, executed = self._dispatch(method, url.path, params)
            finally:
                store.request = None
            encoded = self._json(payload)
            if key is not None and executed:
                # Like Stripe: only requests that started executing are saved (not validation failures).
                self.server.idempotency[(api_key, key)] = StoredResponse(
                    fingerprint, status, encoded, request_id, time.time()
                )
        if fault is not None:
            self._send(fault[0], ApiError(fault[0], "Injected fault.", type="api_error").body(), request_id)
            return
        self._send_raw(status, encoded, request_id, idempotency_key=key)

    def _targeted_fault(self, method: str, path: str) -> tuple[int, bool] | None:
        targeted = self.server.targeted_faults
        for i, (wanted_method, prefix, status, after_execute) in enumerate(targeted):
            if wanted_method in (None, method) and path.startswith(prefix):
                del targeted[i]
                return status, after_execute
        return None

    def _api_key(self) -> str:
        header = self.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            return value.strip()
        if scheme.lower() == "basic":  # curl -u sk_test_...:
            try:
                return base64.b64decode(value).decode().split(":", 1)[0]
            except ValueError:
                return ""
        return ""

    def _replay(
        self, api_key: str, key: str, fingerprint: str, request_id: str, lost: tuple[int, bool] | None = None
    ) -> bool:
        """Answers a key seen before (its saved reply, or a mismatch error); `lost`: an after_execute fault,
        whose status replaces the saved reply (a replayed reply can be lost too)."""
        store = self.server.idempotency
        now = time.time()
        for expired in [k for k, v in store.items() if now - v.stored_at > IDEMPOTENCY_TTL]:
            del store[expired]
        stored = store.get((api_key, key))
        if stored is None:
            return False
        if stored.fingerprint != fingerprint:
            error = ApiError(
                400,
                "Keys for idempotent requests can only be used with the same parameters they were first used with. "
                f"Try using a key other than '{key}' if you meant to execute a different request.",
                type="idempotency_error",
            )
            self._send(400, error.body(), request_id)
            return True
        if lost is not None:
            self._send(lost[0], ApiError(lost[0], "Injected fault.", type="api_error").body(), request_id)
            return True
        self._send_raw(
            stored.status, stored.body, stored.request_id, idempotency_key=key, extra={"Idempotent-Replayed": "true"}
        )
        return True

    def _dispatch(self, method: str, path: str, params: dict[str, Any]) -> tuple[int, dict[str, Any], bool]:
        """Returns (status, body, executed) where executed says the handler ran (for idempotency)."""
        store = self.server.store
        refused = store.contract.refuse(method, path, params) if path.startswith("/v1/") else None
        if refused is not None:
            return refused.status, refused.body(), False
        matched_path = False
        for route in self.server.routes:
            match = route.pattern.match(path)
            if match is None:
                continue
            matched_path = True
            if route.method != method:
                continue
            try:
                if route.schema is not None:  # an emulator-only route (Stripe's are checked by the contract)
                    validate(params, route.schema)
            except ApiError as error:
                return error.status, error.body(), False
            try:
                result = route.handler(params, *match.groups())
                # Lists are rendered by paginate(); deletions are plain stubs; anything else is a stored object.
                rendered = result if result.get("object") == "list" or result.get("deleted") else store.render(result)
                expand = [str(p) for p in get_list(params, "expand")]
                body = store.expand(rendered, expand)
                violation = store.contract.response_error(method, path, body)
                if violation is not None:
                    return violation.status, violation.body(), False
                return 200, body, True
            except ApiError as error:
                # Card errors come from requests that executed (and changed state): replay them too.
                return error.status, error.body(), error.status == 402
            except Exception as error:  # an emulator bug: say so loudly, as a Stripe api_error (500)
                traceback.print_exc()
                body = ApiError(500, f"Stripe emulator error: {error!r}", type="api_error").body()
                return 500, body, False
        message = f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs."
        if matched_path:
            message = f"Unrecognized request URL ({method}: {path}). This endpoint exists for another method."
        return 404, ApiError(404, message).body(), False

    # ---------------------------------------------------------- responses
    def _json(self, payload: dict[str, Any]) -> bytes:
        """A reply's body, indented as Stripe's."""
        return json.dumps(payload, indent=2).encode()

    def _send(self, status: int, payload: dict[str, Any], request_id: str) -> None:
        self._send_raw(status, self._json(payload), request_id)

    def _send_raw(
        self,
        status: int,
        body: bytes,
        request_id: str,
        *,
        idempotency_key: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Request-Id", request_id)
        self.send_header("Stripe-Version", self.headers.get("Stripe-Version") or self.server.store.api_version)
        if idempotency_key:
            self.send_header("Idempotency-Key", idempotency_key)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        trickle = self._trickle
        if not trickle:
            self.wfile.write(body)
            return
        self.wfile.flush()
        try:
            for i in range(len(body)):
                self.wfile.write(body[i : i + 1])
                self.wfile.flush()
                time.sleep(trickle)
        except OSError:
            self.close_connection = True  # the client gave up

    def _send_page(self, path: str) -> None:
        """Hosted pages (checkout, portal, invoices) are placeholders: a browser only needs a 200."""
        body = f"<html><body><h1>Stripe emulator</h1><p>{path}</p></body></html>".encode()
        self.send_response(
            200
            if path.startswith(
                ("/checkout/", "/billing_portal/", "/invoice/", "/receipts/", "/bank_transfer_instructions/")
            )
            else 404
        )
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

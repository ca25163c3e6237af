"""The emulator without a socket: a stripe-python `HTTPClient` whose requests run the emulator's own request
handler (auth, form parsing, idempotency, the contract, faults) in the calling thread. For a test or the
simulation that wants the SDK's whole request path but not HTTP's cost (~1.5 ms of Python a call, on both
ends); the emulator must be started, with a socket (`start`) or without (`start_in_process`): its server holds
the routes, idempotency keys and injected faults."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from email.message import Message
from typing import Any
from urllib.parse import urlsplit

import stripe

from .emulator import StripeEmulator
from .server import EmulatorHTTPServer, RequestHandler


class _Exchange(RequestHandler):
    """One request through `RequestHandler._handle`, its reply kept instead of written to a socket."""

    def __init__(self, server: EmulatorHTTPServer, url: str, headers: Mapping[str, str], body: bytes) -> None:
        # No socket, so BaseHTTPRequestHandler.__init__ (which reads one) is not called.
        self.server = server
        split = urlsplit(url)
        self.path = f"{split.path}?{split.query}" if split.query else split.path
        self.headers = Message()
        for name, value in headers.items():
            self.headers[name] = value
        self.headers["Content-Length"] = str(len(body))
        self.rfile = io.BytesIO(body)
        self.reply: tuple[str, int, dict[str, str]] = ("", 500, {})

    def _json(self, payload: dict[str, Any]) -> bytes:
        """Not indented: the same JSON for the SDK's parser, encoded by json's C encoder (`indent` makes it use
        its Python one)."""
        return json.dumps(payload).encode()

    def _send_raw(
        self,
        status: int,
        body: bytes,
        request_id: str,
        *,
        idempotency_key: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> None:
        headers = {
            "Content-Type": "application/json",
            "Request-Id": request_id,
            "Stripe-Version": self.headers.get("Stripe-Version") or self.server.store.api_version,
            **({"Idempotency-Key": idempotency_key} if idempotency_key else {}),
            **(extra or {}),
        }
        self.reply = (body.decode(), status, headers)

    def _send_page(self, path: str) -> None:
        self.reply = ("", 404, {})


class InProcessClient(stripe.HTTPClient):
    """`stripe.StripeClient(key, http_client=InProcessClient(emulator))`: each request handled in process."""

    name = "stripe-emulator-in-process"

    def __init__(self, emulator: StripeEmulator) -> None:
        super().__init__()
        self._emulator = emulator

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[str, int, Mapping[str, str]]:
        server = self._emulator.server
        body = post_data.encode() if isinstance(post_data, str) else bytes(post_data or b"")
        exchange = _Exchange(server, url, headers or {}, body)
        exchange._handle(method.upper())
        return exchange.reply

    def close(self) -> None:
        return None

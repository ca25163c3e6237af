"""The public handle: start/stop the server, configure webhook delivery, inspect events and deliveries."""

from __future__ import annotations

import contextlib
import copy
import threading
from collections.abc import Iterator
from typing import Any

from .contract import ContractGuard
from .engine import Engine
from .server import EmulatorHTTPServer
from .webhooks import Delivery, WebhookSender

# The API version stamped on events (the pinned stripe SDK's version; webhook handlers may compare it).
DEFAULT_API_VERSION = "2026-10-28.endive"


class StripeEmulator:
    """A stateful local Stripe for tests: `StripeClient(api_key, base_addresses={"api": emu.start()})`."""

    def __init__(
        self,
        api_key: str = "sk_test_local",
        webhook_secret: str = "whsec_local",
        *,
        webhook_url: str | None = None,
        retry_base_delay: float = 0.05,
        max_delivery_attempts: int = 5,
        api_version: str = DEFAULT_API_VERSION,
        draft_webhook_wait: float = 30.0,
        strict_contract: bool = False,
    ) -> None:
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.base_url = ""
        self._sender = WebhookSender(webhook_secret, base_delay=retry_base_delay, max_attempts=max_delivery_attempts)
        # Every /v1 request is checked against the pinned version; strict: every returned or sent object too.
        contract = ContractGuard(strict=strict_contract)
        self.engine = Engine(
            webhooks=self._sender, api_version=api_version, base_url=lambda: self.base_url, contract=contract
        )
        # The state every resource shares (objects, lock, events): tests may look inside, under its lock.
        self.store = self.engine.store
        self.store.webhook_url = webhook_url
        # Longest a clock advance lets webhook handlers run before finalizing a renewal draft (README).
        self.engine.clocks.draft_webhook_timeout = draft_webhook_wait
        self._server: EmulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve in a daemon thread; returns the base URL ("http://127.0.0.1:NNNN")."""
        server = EmulatorHTTPServer((host, port), self.store, self.engine.routes(), self.api_key)
        self._server = server
        self.base_url = f"http://{host}:{server.server_address[1]}"
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="stripe-emulator", daemon=True
        )
        self._thread.start()
        return self.base_url

    def start_in_process(self) -> str:
        """The server's state (routes, idempotency keys, faults) with no socket and no thread, for
        `InProcessClient` only; returns the base URL the SDK is given (nothing listens there)."""
        self._server = EmulatorHTTPServer(("127.0.0.1", 0), self.store, self.engine.routes(), self.api_key, bind=False)
        self.base_url = "http://stripe-emulator.in-process"
        return self.base_url

    @property
    def server(self) -> EmulatorHTTPServer:
        """The running server: its routes, idempotency keys and injected faults (see in_process.py)."""
        assert self._server is not None, "start() first"
        return self._server

    def stop(self) -> None:
        if self._server is not None:
            if self._thread is not None:
                self._server.shutdown()
            self._server.server_close()
            self._server = None
        self._sender.stop()

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 500,
        after_execute: bool = False,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """The next `count` /v1 requests answer `status` (500, 429, ...). With after_execute the request
        runs first (or is replayed) and only its reply is lost - a retry with the same Idempotency-Key gets
        the saved one.
        With `method` and `path` (a prefix, e.g. "/v1/subscriptions/"): the next `count` such requests
        only, after the untargeted faults."""
        assert self._server is not None, "start() first"
        if method is None and path is None:
            self._server.faults.extend([(status, after_execute)] * count)
            return
        targeted = (method.upper() if method else None, path or "/v1/", status, after_execute)
        self._server.targeted_faults.extend([targeted] * count)

    def clear_faults(self) -> None:
        """Injected faults not taken yet are dropped."""
        assert self._server is not None, "start() first"
        with self.store.lock:
            self._server.faults.clear()
            self._server.targeted_faults.clear()

    def trickle_next(self, count: int = 1, *, seconds_per_byte: float = 0.5) -> None:
        """The next `count` /v1 requests run, and their replies arrive one byte per `seconds_per_byte`:
        every read succeeds in time, the response never quite does."""
        assert self._server is not None, "start() first"
        self._server.trickles.extend([seconds_per_byte] * count)

    @property
    def webhook_url(self) -> str | None:
        """Where events are POSTed now (see set_webhook_endpoint)."""
        return self.store.webhook_url

    def set_webhook_endpoint(self, url: str | None) -> None:
        """Where events created from now on are POSTed, signed with the webhook secret (None: not delivered)."""
        with self.store.lock:
            self.store.webhook_url = url

    @contextlib.contextmanager
    def webhooks_lost(self) -> Iterator[None]:
        """Events created inside are never delivered (an endpoint down past Stripe's retries, a dashboard
        action whose webhook went nowhere): what only a reconciliation can find."""
        url = self.webhook_url
        self.wait_for_deliveries()
        self.set_webhook_endpoint(None)
        try:
            yield
        finally:
            self.set_webhook_endpoint(url)

    def wait_for_deliveries(self, timeout: float = 10) -> None:
        """Block until every queued event was delivered (2xx) or gave up; TimeoutError otherwise."""
        self._sender.wait(timeout)

    def events(self, type: str | None = None) -> list[dict[str, Any]]:
        """Every event created so far, oldest first (optionally of one type)."""
        with self.store.lock:
            events = [self.store.objects[i] for i in self.store.event_ids]
            return [copy.deepcopy(e) for e in events if type is None or e["type"] == type]

    @property
    def contract(self) -> ContractGuard:
        """What was checked against the API version's contract: `.requests` (each with its problems) and
        `.violations` (objects returned or sent outside the contract, strict mode)."""
        return self.store.contract

    @property
    def deliveries(self) -> list[Delivery]:
        return list(self._sender.deliveries)

    def advance_clock(self, test_clock_id: str, frozen_time: int) -> dict[str, Any]:
        """Same as POST /v1/test_helpers/test_clocks/{id}/advance."""
        with self.store.lock:
            clock = self.store.get("test_helpers.test_clock", test_clock_id)
            self.engine.clocks.advance_clock(clock, frozen_time)
            return self.store.render(clock)

    def __enter__(self) -> StripeEmulator:
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

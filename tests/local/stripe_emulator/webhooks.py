"""Signed webhook delivery: one background thread POSTs events in creation order, retrying with backoff."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Delivery:
    """One delivery attempt. `status_code` is None when the endpoint could not be reached."""

    event_id: str
    attempt: int
    status_code: int | None


def sign(payload: str, secret: str, timestamp: int) -> str:
    """Stripe's `Stripe-Signature` header: t=<unix>,v1=hex(hmac_sha256(secret, "<t>.<payload>"))."""
    mac = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


@dataclass(frozen=True)
class _Job:
    event_id: str
    payload: str
    url: str


class WebhookSender:
    """Delivers queued events one at a time (so the endpoint sees them in creation order)."""

    def __init__(self, secret: str, *, base_delay: float, max_attempts: int, timeout: float = 10.0) -> None:
        self.secret = secret
        self.base_delay = base_delay
        self.max_attempts = max_attempts
        self.timeout = timeout
        self.deliveries: list[Delivery] = []
        self._queue: deque[_Job] = deque()
        self._pending = 0
        self._enqueued = 0  # jobs ever queued; delivery is in order, so _finished >= n means the first n are done
        self._finished = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="stripe-emulator-webhooks", daemon=True)
        self._thread.start()

    def enqueue(self, event_id: str, payload: str, url: str) -> None:
        with self._cond:
            self._queue.append(_Job(event_id, payload, url))
            self._pending += 1
            self._enqueued += 1
            self._cond.notify_all()

    def mark(self) -> int:
        """How many events were queued so far (pass it to `done_through`)."""
        with self._cond:
            return self._enqueued

    def done_through(self, mark: int) -> bool:
        """Whether the first `mark` queued events were delivered (2xx) or given up."""
        with self._cond:
            return self._finished >= mark

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{self._pending} webhook event(s) still pending after {timeout}s")
                self._cond.wait(remaining)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                job = self._queue[0]
            self._deliver(job)
            with self._cond:
                self._queue.popleft()
                self._pending -= 1
                self._finished += 1
                self._cond.notify_all()

    def _deliver(self, job: _Job) -> None:
        for attempt in range(1, self.max_attempts + 1):
            status = self._post(job)
            with self._cond:
                self.deliveries.append(Delivery(job.event_id, attempt, status))
            if status is not None and 200 <= status < 300:
                return
            if attempt < self.max_attempts:
                # Exponential backoff, kept tiny by default so tests stay fast.
                with self._cond:
                    if self._cond.wait_for(lambda: self._stopping, self.base_delay * 2 ** (attempt - 1)):
                        return

    def _post(self, job: _Job) -> int | None:
        # Signed with the real wall clock: construct_event checks a 300 s tolerance against time.time().
        signature = sign(job.payload, self.secret, int(time.time()))
        request = urllib.request.Request(
            job.url,
            data=job.payload.encode(),
            method="POST",
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "Stripe-Signature": signature,
                "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status: int = response.status
                return status
        except urllib.error.HTTPError as error:
            return error.code
        except (OSError, ValueError):
            return None

"""Stripe's HTTP transport, bounded by a deadline.

A socket timeout bounds one read, not a response: a server trickling bytes keeps a call alive for as
long as it likes, and a request that makes several Stripe calls adds them up. So every Stripe call
runs under a deadline (shared/deadline.py: the request's, and never more than one call's budget): an
attempt that cannot start with `MIN_ATTEMPT_S` left is refused before anything is sent, and one
still running when the deadline passes has its socket shut, which ends any blocking read at once.

Imported on the first Stripe call only (with the SDK)."""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from shared.deadline import MIN_ATTEMPT_S, seconds_left

CONNECT_TIMEOUT_S = 2.0
READ_TIMEOUT_S = 6.0  # per read; the deadline bounds the whole attempt


class DeadlinePassed(requests.exceptions.RequestException):
    """No time left for (the rest of) an attempt. Not a connection error, so the SDK does not retry it."""


# The connections the current thread's attempt writes to: what the deadline's watchdog shuts.
_attempt = threading.local()


class _Watched:
    def request(self, *args: Any, **kwargs: Any) -> Any:
        connections = getattr(_attempt, "connections", None)
        if connections is not None:
            connections.append(self)
        return super().request(*args, **kwargs)  # type: ignore[misc]


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _WatchedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


def _shut(connections: list[Any], fired: threading.Event) -> None:
    fired.set()
    for connection in connections:
        sock = getattr(connection, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)


class DeadlineSession(requests.Session):
    """The `requests` session the Stripe SDK sends through: each attempt inside the current deadline."""

    def __init__(self) -> None:
        super().__init__()
        adapter = _WatchedAdapter()
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        left = seconds_left()
        if left is None:
            return super().request(method, url, *args, **kwargs)
        if left < MIN_ATTEMPT_S:
            raise DeadlinePassed(f"{max(left, 0):.1f} s left: too little to call Stripe")
        kwargs["timeout"] = (min(CONNECT_TIMEOUT_S, left), min(READ_TIMEOUT_S, left))
        connections: list[Any] = []
        _attempt.connections = connections
        fired = threading.Event()
        watchdog = threading.Timer(left, _shut, args=(connections, fired))
        watchdog.daemon = True
        watchdog.start()
        try:
            response = super().request(method, url, *args, **kwargs)
            if not kwargs.get("stream"):
                _ = response.content  # the body is read inside the deadline too
            return response
        except Exception as exc:
            if fired.is_set():
                raise DeadlinePassed("Stripe did not answer before the deadline") from exc
            raise
        finally:
            watchdog.cancel()
            _attempt.connections = None

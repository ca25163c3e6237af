"""A lean HTTP transport for a botocore session's DynamoDB calls to DynamoDB Local (the simulation's world).

botocore sends a request through urllib3 and http.client, which parse the reply's headers with the `email`
package: a good part of botocore's Python CPU a call (the simulation's profile: urllib3, http.client and
`email` ~25% of its Python side). `install(session)`
registers a `before-send.dynamodb` handler (the hook moto and botocore's Stubber answer through) that writes the
request botocore built and serialized - the same bytes urllib3 writes: its request line, `Host` and
`Accept-Encoding: identity`, then botocore's headers in their order, then the body - on a persistent
connection of the calling thread, and reads the reply's status line, headers and body (`Content-Length`,
chunked, or up to the close) into a `botocore.awsrequest.AWSResponse`. Everything else is botocore's own:
the reply's status and body go through its parser, its error mapping and its retries (a throttling or a failed
condition is a 400 JSON reply, as before); a connection error is raised as the botocore error urllib3's
would have become (`EndpointConnectionError`, `ConnectionClosedError`, `ReadTimeoutError`), so it is retried
the same way; a body cut short by the close is handed on as it came, as urllib3's `enforce_content_length=False`
hands it (botocore's CRC32 check of DynamoDB's replies refuses it: a retry). One difference, deliberate: a reply
cut within its headers is a closed connection here, where http.client takes the close for the headers' end (a
200 with no body: an empty result). A keep-alive connection the server closed is opened again once, only when
no byte of the reply came (the request was not read). Plain `http://` only; a request it does not know how to
send exactly (streaming, chunked upload, a body not in memory, a header urllib3 would treat itself) is left to
botocore's transport (the handler answers None).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from botocore.awsrequest import AWSResponse
from botocore.exceptions import (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

# botocore's defaults (`Config(connect_timeout=60, read_timeout=60)`).
CONNECT_TIMEOUT_S = 60.0
READ_TIMEOUT_S = 60.0
_RECV = 65536
# Headers urllib3 / http.client would add or act on themselves: a request carrying one goes to botocore's own.
_HANDLED_BY_URLLIB3 = frozenset(("host", "accept-encoding", "transfer-encoding", "expect"))
_REQUIRED = frozenset(("user-agent", "content-length"))  # botocore sets both; else urllib3 would add its own


def _pairs(headers: Any) -> list[tuple[str, Any]]:
    """A request's headers in their order: read off botocore's `HeadersDict` directly (its mapping interface makes
    a case-folded key for each lookup: a dozen a header)."""
    keyed = getattr(headers, "_dict", None)
    if isinstance(keyed, dict):
        return [(str(key), value) for key, value in keyed.items()]
    return list(headers.items())


class _Closed(Exception):
    """The connection ended; `replied` says whether any byte of the reply had come."""

    def __init__(self, replied: bool, error: BaseException | None = None):
        super().__init__("connection closed")
        self.replied, self.error = replied, error


class _Body:
    """The reply's body, read already: what `AWSResponse.raw` needs to be (`stream()`)."""

    def __init__(self, data: bytes):
        self._data = data

    def stream(self, amt: int | None = None, decode_content: bool | None = None) -> Iterator[bytes]:
        data, self._data = self._data, b""
        if data:
            yield data

    def read(self, amt: int | None = None, decode_content: bool | None = None) -> bytes:
        data, self._data = self._data, b""
        return data

    def close(self) -> None:
        self._data = b""


class _Origin:
    """What one endpoint URL's requests start with, computed once."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.address = (parts.hostname or "", parts.port or 80)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        host = parts.hostname or ""
        if ":" in host:  # IPv6, as http.client writes it
            host = f"[{host}]"
        if parts.port is not None and parts.port != 80:
            host = f"{host}:{parts.port}"
        self.target = target.encode("ascii")
        self.host = host.encode("idna")


class _Connection:
    def __init__(self, address: tuple[str, int], url: str):
        try:
            self.sock = socket.create_connection(address, timeout=CONNECT_TIMEOUT_S)
        except TimeoutError as exc:
            raise ConnectTimeoutError(endpoint_url=url, error=exc) from exc
        except OSError as exc:
            raise EndpointConnectionError(endpoint_url=url, error=exc) from exc
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as urllib3 sets it
        self.sock.settimeout(READ_TIMEOUT_S)
        self.used = False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def exchange(self, data: bytes, method: bytes) -> tuple[int, dict[str, str], bytes, bool]:
        """Send one request; (status, headers, body, keep the connection open)."""
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise _Closed(False, exc) from exc
        self.used = True
        reader = _Reader(self.sock)
        try:
            status, headers, close = reader.head()
            while 100 <= status < 200 and status != 101:  # an interim reply (100 Continue): the real one follows
                status, headers, close = reader.head()
            body = reader.body(status, headers, method, close)
        except ValueError as exc:  # not HTTP (a bad status line, length or chunk size): as urllib3's ProtocolError
            raise _Closed(True, exc) from exc
        return status, headers, body, not (close or reader.ended or reader.rest)


class _Reader:
    """Reads one reply from the socket: no copy of the body more than it takes to join its pieces."""

    def __init__(self, sock: socket.socket):
        self.sock, self.rest, self.replied, self.ended = sock, b"", False, False

    def _recv(self) -> bytes:
        try:
            data = self.sock.recv(_RECV)
        except TimeoutError:
            raise
        except OSError as exc:
            raise _Closed(self.replied, exc) from exc
        if data:
            self.replied = True
        return data

    def head(self) -> tuple[int, dict[str, str], bool]:
        buffer = self.rest
        end = buffer.find(b"\r\n\r\n")
        while end < 0:
            data = self._recv()
            if not data:
                raise _Closed(self.replied)
            buffer += data
            end = buffer.find(b"\r\n\r\n")
        lines = buffer[:end].split(b"\r\n")
        self.rest = buffer[end + 4 :]
        version, _, rest = lines[0].partition(b" ")
        status = int(rest[:3])
        headers: dict[str, str] = {}
        lowered: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            key, text = name.decode("latin-1").strip(), value.strip(b" \t").decode("latin-1")
            known = lowered.get(key.lower())
            if known is None:
                lowered[key.lower()] = key
                headers[key] = text
            else:  # a repeated header: one value, joined as urllib3 joins them
                headers[known] = f"{headers[known]}, {text}"
        connection = headers.get(lowered.get("connection", ""), "").lower()
        close = "close" in connection or (version == b"HTTP/1.0" and "keep-alive" not in connection)
        return status, headers, close

    def body(self, status: int, headers: dict[str, str], method: bytes, close: bool) -> bytes:
        if method == b"HEAD" or status in (204, 304):
            return b""
        lowered = {name.lower(): value for name, value in headers.items()}
        if "chunked" in lowered.get("transfer-encoding", "").lower():
            return self._chunked()
        length = lowered.get("content-length")
        if length is not None:  # cut short by the server's close, what came (urllib3's enforce_content_length=False)
            return self._exactly(int(length), short=True)
        if not close:
            raise _Closed(True, ValueError("a reply with no length on a kept connection"))
        pieces = [self.rest]
        while data := self._recv():
            pieces.append(data)
        self.rest = b""
        return b"".join(pieces)

    def _exactly(self, size: int, short: bool = False) -> bytes:
        """`size` bytes; or (`short`) fewer when the connection ends first (then `ended`)."""
        have = self.rest
        if len(have) >= size:
            self.rest = have[size:]
            return have[:size]
        buffer = bytearray(size)
        buffer[: len(have)] = have
        view, filled = memoryview(buffer), len(have)
        while filled < size:
            try:
                got = self.sock.recv_into(view[filled:])
            except TimeoutError:
                raise
            except OSError as exc:
                raise _Closed(True, exc) from exc
            if not got:
                if not short:
                    raise _Closed(True)
                self.ended = True
                return bytes(buffer[:filled])
            filled += got
        self.rest = b""
        return bytes(buffer)

    def _line(self) -> bytes:
        while (end := self.rest.find(b"\r\n")) < 0:
            data = self._recv()
            if not data:
                raise _Closed(True)
            self.rest += data
        line, self.rest = self.rest[:end], self.rest[end + 2 :]
        return line

    def _chunked(self) -> bytes:
        pieces = []
        while size := int(self._line().split(b";", 1)[0].strip(), 16):
            pieces.append(self._exactly(size))
            self._line()  # the CRLF after the chunk
        while self._line():  # trailers, up to the empty line
            pass
        return b"".join(pieces)


class LeanTransport:
    """One persistent connection per thread and endpoint; `send` is the `before-send` handler."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._origins: dict[str, _Origin] = {}

    def install(self, session: Any, service: str = "dynamodb") -> None:
        """Send `service`'s requests of the clients `session` makes from now on (a botocore session)."""
        session.register(f"before-send.{service}", self.send)

    def send(self, request: Any, **_: Any) -> AWSResponse | None:
        data = self._serialize(request)
        if data is None:
            return None
        url = request.url
        origin = self._origins[url]
        method = request.method.encode("ascii")
        status, headers, body = self._exchange(origin, url, data, method, request)
        return AWSResponse(url, status, headers, _Body(body))  # type: ignore[arg-type]  # any mapping will do

    def _serialize(self, request: Any) -> bytes | None:
        """The request's bytes as urllib3 would write them; None when it should go through botocore's own."""
        url, body, headers = request.url, request.body, request.headers
        if request.stream_output or not url.startswith("http://"):
            return None
        if isinstance(body, str):
            body = body.encode("utf-8")
        elif body is None:
            body = b""
        pairs = _pairs(headers)
        names = {name.lower() for name, _ in pairs}
        if not isinstance(body, bytes) or not names >= _REQUIRED or names & _HANDLED_BY_URLLIB3:
            return None
        origin = self._origins.get(url)
        if origin is None:
            origin = self._origins[url] = _Origin(url)
        lines = [
            request.method.encode("ascii") + b" " + origin.target + b" HTTP/1.1",
            b"Host: " + origin.host,
            b"Accept-Encoding: identity",
        ]
        for name, value in pairs:
            if isinstance(value, str):
                value = value.encode("latin-1")
            elif isinstance(value, int):
                value = str(value).encode("ascii")
            lines.append(name.encode("ascii") + b": " + value)
        lines.append(b"\r\n")
        return b"\r\n".join(lines) + body

    def _connection(self, origin: _Origin, url: str) -> _Connection:
        connections: dict[tuple[str, int], _Connection] | None = getattr(self._local, "connections", None)
        if connections is None or getattr(self._local, "pid", None) != os.getpid():  # a fork's own sockets
            connections = self._local.connections = {}
            self._local.pid = os.getpid()
        connection = connections.get(origin.address)
        if connection is None:
            connection = connections[origin.address] = _Connection(origin.address, url)
        return connection

    def _drop(self, origin: _Origin) -> None:
        connection = self._local.connections.pop(origin.address, None)
        if connection is not None:
            connection.close()

    def _exchange(
        self, origin: _Origin, url: str, data: bytes, method: bytes, request: Any
    ) -> tuple[int, dict[str, str], bytes]:
        for attempt in (1, 2):
            connection = self._connection(origin, url)
            reused = connection.used
            try:
                status, headers, body, keep = connection.exchange(data, method)
            except _Closed as closed:
                self._drop(origin)
                if attempt == 1 and reused and not closed.replied:
                    continue  # the server had closed the idle connection: it never read the request
                error = closed.error or ConnectionError("closed before a whole reply")
                raise ConnectionClosedError(error=error, request=request, endpoint_url=url) from closed.error
            except TimeoutError as exc:
                self._drop(origin)
                raise ReadTimeoutError(endpoint_url=url, error=exc) from exc
            if not keep:
                self._drop(origin)
            return status, headers, body
        raise AssertionError("unreachable")


def install(session: Any) -> LeanTransport:
    """The lean transport for `session`'s DynamoDB requests (a botocore session)."""
    transport = LeanTransport()
    transport.install(session)
    return transport

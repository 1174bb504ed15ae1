"""moto's server on 127.0.0.1, and a TCP tap that watches (and can cut) the agent's traffic.

`MotoServer` runs moto's ThreadedMotoServer on a free loopback port; `reset()` forgets every
bucket and parameter, `require_auth(True)` makes it check signatures and IAM policies (its
`/moto-api/reset-auth` switch), so wrong credentials get moto's own 403 answers.

`TcpTap` is a plain TCP proxy in front of it: it records each HTTP request line with its
`Range` header (what the agent actually asked for) and, when told, drops the connection after
N bytes of the response to the first request for one path: a download cut mid-way.
Import-only: the fixtures live in `aws_fixtures.py`.
"""

from __future__ import annotations

import socket
import threading
import urllib.request
from contextlib import suppress
from dataclasses import dataclass, field
from types import TracebackType

from moto.server import ThreadedMotoServer


class MotoServer:
    """moto's S3/SSM/IAM server on 127.0.0.1 (a context manager)."""

    def __init__(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.port = 0

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>`."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> MotoServer:
        self._server.start()
        self.port = self._server.get_host_and_port()[1]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.require_auth(False)
        self._server.stop()

    def _post(self, path: str, body: bytes = b"") -> None:
        # Not form-encoded: moto reads the raw body, which Flask empties for form posts.
        request = urllib.request.Request(  # noqa: S310 - http://127.0.0.1 only
            f"{self.url}{path}", data=body, method="POST", headers={"Content-Type": "text/plain"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            response.read()

    def reset(self) -> None:
        """Forget every resource (buckets, objects, parameters, IAM users)."""
        self._post("/moto-api/reset")

    def require_auth(self, enabled: bool) -> None:
        """Check SigV4 signatures and IAM policies from the next request on (or stop)."""
        self._post("/moto-api/reset-auth", b"0" if enabled else b"inf")


@dataclass(frozen=True, slots=True)
class SeenRequest:
    """One HTTP request that went through the tap."""

    method: str
    path: str
    range: str | None


@dataclass(slots=True)
class _Cut:
    path: str
    after_bytes: int
    done: bool = False


@dataclass(slots=True)
class _Connection:
    client: socket.socket
    upstream: socket.socket
    #: Response bytes still to forward before the connection is dropped (None: no cut).
    budget: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class TcpTap:
    """A TCP proxy on 127.0.0.1 in front of `upstream_port` that records HTTP requests.

    `cut(path, after_bytes)`: the response to the next request whose path (without the query)
    is `path` is cut after `after_bytes` bytes (status line and headers included): both sockets
    are shut down, as when a network drops.
    """

    def __init__(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.requests: list[SeenRequest] = []
        self.cuts_done = 0
        self._cut: _Cut | None = None
        self._lock = threading.Lock()
        self._connections: list[_Connection] = []
        self._threads: list[threading.Thread] = []
        self._closed = threading.Event()

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>`."""
        return f"http://127.0.0.1:{self.port}"

    def cut(self, path: str, after_bytes: int) -> None:
        """Drop the connection after `after_bytes` of the next response for `path`."""
        with self._lock:
            self._cut = _Cut(path, after_bytes)

    def requests_for(self, path: str, method: str = "GET") -> list[SeenRequest]:
        """The requests seen for `path` (query ignored), in order."""
        with self._lock:
            return [r for r in self.requests if r.path == path and r.method == method]

    def __enter__(self) -> TcpTap:
        thread = threading.Thread(target=self._accept, name="tap-accept", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closed.set()
        with suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        self._listener.close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            self._drop(connection)
        for thread in self._threads:
            thread.join(timeout=10)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._upstream_port))
            connection = _Connection(client, upstream)
            with self._lock:
                self._connections.append(connection)
            for target, name in ((self._requests_side, "up"), (self._responses_side, "down")):
                thread = threading.Thread(target=target, args=(connection,), daemon=True)
                thread.name = f"tap-{name}"
                thread.start()
                self._threads.append(thread)

    def _requests_side(self, connection: _Connection) -> None:
        """Client -> server: parse each request head (bodies skipped by Content-Length)."""
        buffer = b""
        body_left = 0
        while True:
            try:
                data = connection.client.recv(65536)
            except OSError:
                data = b""
            if not data:
                self._drop(connection)
                return
            buffer += data
            while True:
                if body_left:
                    skipped = min(body_left, len(buffer))
                    body_left -= skipped
                    forward, buffer = buffer[:skipped], buffer[skipped:]
                    if not self._send(connection.upstream, forward, connection):
                        return
                    if body_left:
                        break
                head_end = buffer.find(b"\r\n\r\n")
                if head_end < 0:
                    break
                head, buffer = buffer[: head_end + 4], buffer[head_end + 4 :]
                body_left = self._note_request(head, connection)
                if not self._send(connection.upstream, head, connection):
                    return

    def _note_request(self, head: bytes, connection: _Connection) -> int:
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = [*lines[0].split(" "), "", "", ""][:3]
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        path = target.split("?", 1)[0]
        with self._lock:
            self.requests.append(SeenRequest(method, path, headers.get("range")))
            cut = self._cut
            if cut is not None and not cut.done and cut.path == path and method == "GET":
                cut.done = True
                with connection.lock:
                    connection.budget = cut.after_bytes
        return int(headers.get("content-length", "0") or 0)

    def _responses_side(self, connection: _Connection) -> None:
        """Server -> client, cutting when a budget runs out."""
        while True:
            try:
                data = connection.upstream.recv(65536)
            except OSError:
                data = b""
            if not data:
                self._drop(connection)
                return
            with connection.lock:
                budget = connection.budget
                if budget is not None:
                    data = data[:budget]
                    connection.budget = budget - len(data)
            if data and not self._send(connection.client, data, connection):
                return
            if budget is not None and budget - len(data) <= 0:
                with self._lock:
                    self.cuts_done += 1
                self._drop(connection)
                return

    def _send(self, sock: socket.socket, data: bytes, connection: _Connection) -> bool:
        try:
            sock.sendall(data)
        except OSError:
            self._drop(connection)
            return False
        return True

    def _drop(self, connection: _Connection) -> None:
        for sock in (connection.client, connection.upstream):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

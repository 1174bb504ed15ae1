"""Local HTTP(S) servers and an HTTP proxy for revision-source tests, all on 127.0.0.1.

- `LocalServer` (fixtures `http_server`, `other_server`, `https_server`): a threaded HTTP/1.1
  server whose routes are plain functions of an `Exchange`. `Exchange.serve(data)` answers
  like S3 or a CDN (ETag, Last-Modified, Range/If-Range, 206/416), with `cut_after=N` to drop
  the connection after N body bytes; `redirect`, `respond` and `drop` cover the rest. Every
  request is recorded (`server.requests`) with its headers, so tests assert on what was sent.
- `LocalProxy` (fixture `proxy_server`): a forward proxy that answers CONNECT (tunnels) and
  absolute-URI GETs, records each request with its headers, can require Basic credentials, and
  connects every host name to 127.0.0.1 (the port is kept), so URLs such as
  `https://bundles.example.test:<port>/` reach a local server only through it.
- `test_ca` / `trust_test_ca`: a throwaway CA and a certificate for `localhost`,
  `*.example.test` and 127.0.0.1; `trust_test_ca` points SSL_CERT_FILE at the CA.
- `local_dns`: names under `.example.test` resolve to 127.0.0.1 (DNS is the outside world), so
  a direct connection to `bundles.example.test` reaches a local server without a proxy.
- `no_blocking`: fails the test if agent code blocks the event loop (blockbuster).
- `make_config(tmp_path, ...)`: an AgentConfig with small download settings.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import email.utils
import http.server
import re
import select
import socket
import socketserver
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from blockbuster import blockbuster_ctx

from codedeploy_agent.config import AgentConfig, DownloadSettings
from tests.fakes.brokers import make_test_pki


def unused_port() -> int:
    """A loopback TCP port nothing listens on (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def make_config(tmp_path: Path, **download: Any) -> AgentConfig:
    """An AgentConfig rooted in `tmp_path` whose `download:` section takes `download`."""
    settings = replace(DownloadSettings(connect_timeout_seconds=5.0), **download)
    return AgentConfig(root_dir=tmp_path / "root", log_dir=tmp_path / "logs", download=settings)


@pytest.fixture
def local_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Resolve every name under `.example.test` to 127.0.0.1 (other names as usual)."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host.rstrip(".").endswith(".example.test"):
            host = "127.0.0.1"
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def no_blocking() -> Iterator[None]:
    """Fail the test if codedeploy_agent makes a blocking call inside the event loop."""
    with blockbuster_ctx("codedeploy_agent"):
        yield


# ---------------------------------------------------------------------------------------------
# The HTTP server.


@dataclass(frozen=True)
class Seen:
    """One request as the server received it; header names are lower-cased."""

    method: str
    path: str
    target: str
    headers: dict[str, str]


class Exchange:
    """The request a route handles, and the ways to answer it."""

    def __init__(self, handler: _Handler, count: int) -> None:
        self._handler = handler
        parts = urlsplit(handler.path)
        self.path = parts.path
        self.query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        self.headers = {name.lower(): value for name, value in handler.headers.items()}
        #: 1 for the first request to this path, 2 for the second, ...
        self.count = count

    def respond(
        self, status: int, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> None:
        """Answer `status` with `body` (and a Content-Length)."""
        handler = self._handler
        handler.send_response(status)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(body)

    def respond_headers(self, status: int, headers: dict[str, str]) -> None:
        """Send the status line and headers only; the body follows with `write`."""
        handler = self._handler
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.flush()

    def write(self, data: bytes) -> None:
        """Send body bytes now (raises OSError once the client has gone)."""
        self._handler.wfile.write(data)
        self._handler.wfile.flush()

    def redirect(self, location: str, status: int = 302) -> None:
        """Answer a redirect to `location`."""
        self.respond(status, headers={"Location": location})

    def drop(self) -> None:
        """Close the connection without answering."""
        self._handler.close_connection = True
        with contextlib.suppress(OSError):
            self._handler.connection.shutdown(socket.SHUT_RDWR)

    def serve(
        self,
        data: bytes,
        *,
        etag: str | None = '"v1"',
        last_modified: datetime.datetime | None = None,
        ranges: bool = True,
        cut_after: int | None = None,
        chunked: bool = False,
        content_type: str = "application/octet-stream",
    ) -> None:
        """Serve `data` as a static object would: 200, or 206 for a satisfiable Range (when
        `ranges`) whose If-Range matches; `cut_after` drops the connection after that many
        body bytes; `chunked` sends no Content-Length."""
        handler = self._handler
        headers = {"Content-Type": content_type}
        if etag is not None:
            headers["ETag"] = etag
        if last_modified is not None:
            headers["Last-Modified"] = email.utils.format_datetime(last_modified, usegmt=True)
        if ranges:
            headers["Accept-Ranges"] = "bytes"
        start, end, status = 0, len(data), 200
        wanted = self.headers.get("range")
        if_range = self.headers.get("if-range")
        validators = {etag, headers.get("Last-Modified")}
        if ranges and wanted and (if_range is None or if_range in validators):
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", wanted.strip())
            if match is None or int(match.group(1)) >= len(data):
                self.respond(416, headers={"Content-Range": f"bytes */{len(data)}"})
                return
            start = int(match.group(1))
            end = min(int(match.group(2)) + 1, len(data)) if match.group(2) else len(data)
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        if chunked:
            handler.send_header("Transfer-Encoding", "chunked")
        else:
            handler.send_header("Content-Length", str(end - start))
        handler.send_header("Connection", "close")
        handler.end_headers()
        body = memoryview(data)[start:end]
        if cut_after is not None:
            body = body[:cut_after]
        try:
            if chunked:
                for offset in range(0, len(body), 65536):
                    piece = body[offset : offset + 65536]
                    handler.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                if cut_after is None:
                    handler.wfile.write(b"0\r\n\r\n")
            else:
                handler.wfile.write(body)
            handler.wfile.flush()
        except OSError:
            return
        if cut_after is not None:
            self.drop()


Route = Callable[[Exchange], None]


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        owner = self.server.owner
        path = urlsplit(self.path).path
        seen = Seen("GET", path, self.path, {k.lower(): v for k, v in self.headers.items()})
        with owner.lock:
            owner.requests.append(seen)
            count = owner.counts[path] = owner.counts.get(path, 0) + 1
            route = owner.routes.get(path)
        exchange = Exchange(self, count)
        if route is None:
            exchange.respond(404, b'{"message": "Not Found"}')
        else:
            route(exchange)
        self.close_connection = True

    do_HEAD = do_GET  # noqa: N815 - http.server's method naming

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        del format, args


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    owner: LocalServer
    tls: ssl.SSLContext | None = None

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        if self.tls is not None:
            # The handshake happens in the handler's thread, on first read.
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        del request, client_address  # clients that hang up mid-body are expected here


class LocalServer:
    """A threaded HTTP(S) server on 127.0.0.1 with routes and a request log."""

    def __init__(self, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Seen] = []
        self.counts: dict[str, int] = {}
        self.lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._server.tls = tls
        self.port = self._server.server_address[1]
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://{host}:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def start(self) -> LocalServer:
        """Start serving in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()

    def route(self, path: str, handler: Route) -> str:
        """Answer requests for `path` (query ignored) with `handler`; returns the full URL."""
        self.routes[path] = handler
        return self.url + path

    def serve_bytes(self, path: str, data: bytes, **options: Any) -> str:
        """Serve `data` at `path` (options as `Exchange.serve`); returns the full URL."""
        return self.route(path, lambda exchange: exchange.serve(data, **options))

    def requests_to(self, path: str) -> list[Seen]:
        """The recorded requests for `path`."""
        with self.lock:
            return [seen for seen in self.requests if seen.path == path]


@pytest.fixture
def http_server() -> Iterator[LocalServer]:
    """A plain HTTP server on 127.0.0.1."""
    server = LocalServer().start()
    yield server
    server.stop()


@pytest.fixture
def other_server() -> Iterator[LocalServer]:
    """A second plain HTTP server (another origin: redirect targets, codeload)."""
    server = LocalServer().start()
    yield server
    server.stop()


# ---------------------------------------------------------------------------------------------
# TLS.


@dataclass(frozen=True)
class TestCA:
    """A CA file to trust and a server context whose certificate it signed."""

    ca_file: Path
    server_context: ssl.SSLContext


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    """A throwaway CA and a server certificate for localhost, *.example.test and 127.0.0.1."""
    pki = make_test_pki(tmp_path_factory.mktemp("tls"), server_dns=("localhost", "*.example.test"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    return TestCA(pki.ca_file, context)


@pytest.fixture
def trust_test_ca(test_ca: TestCA, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point SSL_CERT_FILE at the test CA (the agent adds it to the trusted roots)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(test_ca.ca_file))
    return test_ca.ca_file


@pytest.fixture
def https_server(test_ca: TestCA) -> Iterator[LocalServer]:
    """An HTTPS server on 127.0.0.1 whose certificate the test CA signed."""
    server = LocalServer(tls=test_ca.server_context).start()
    yield server
    server.stop()


# ---------------------------------------------------------------------------------------------
# The proxy.


@dataclass
class ProxySeen:
    """One request the proxy received: `CONNECT host:port` or `GET http://...`."""

    method: str
    target: str
    headers: dict[str, str] = field(default_factory=dict)


class _ProxyHandler(socketserver.StreamRequestHandler):
    server: _ProxyServer
    #: Unbuffered, so that no byte the client sent after the headers is stuck in a buffer.
    rbufsize = 0

    def handle(self) -> None:
        owner = self.server.owner
        line = self.rfile.readline(8192).decode("latin-1").strip()
        if not line:
            return
        method, target, _version = line.split(" ", 2)
        headers: dict[str, str] = {}
        raw_headers: list[bytes] = []
        while (header := self.rfile.readline(8192)) not in (b"\r\n", b"\n", b""):
            name, _, value = header.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
            raw_headers.append(header)
        with owner.lock:
            owner.requests.append(ProxySeen(method, target, headers))
        if owner.credentials is not None:
            expected = "Basic " + base64.b64encode(owner.credentials.encode()).decode()
            if headers.get("proxy-authorization") != expected:
                self.wfile.write(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                    b'Proxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n\r\n'
                )
                return
        if method == "CONNECT":
            port = int(target.rsplit(":", 1)[1])
            try:
                upstream = socket.create_connection(("127.0.0.1", port))
            except OSError:
                self.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()
            _relay(self.connection, upstream)
            return
        parts = urlsplit(target)
        upstream = socket.create_connection(("127.0.0.1", parts.port or 80))
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        forwarded = [h for h in raw_headers if not h.lower().startswith(b"proxy-authorization")]
        upstream.sendall(f"{method} {path} HTTP/1.1\r\n".encode() + b"".join(forwarded) + b"\r\n")
        _relay(self.connection, upstream)


def _relay(client: socket.socket, upstream: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    with upstream:
        sockets = [client, upstream]
        while True:
            readable, _, _ = select.select(sockets, [], [], 10)
            if not readable:
                return
            for sock in readable:
                try:
                    data = sock.recv(1 << 16)
                except OSError:
                    return
                if not data:
                    return
                (upstream if sock is client else client).sendall(data)


class _ProxyServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: LocalProxy

    def handle_error(self, request: Any, client_address: Any) -> None:
        del request, client_address


class LocalProxy:
    """A recording forward proxy on 127.0.0.1 that sends every host to 127.0.0.1."""

    def __init__(self, credentials: str | None = None) -> None:
        self.requests: list[ProxySeen] = []
        self.lock = threading.Lock()
        #: `user:password` the proxy requires, or None.
        self.credentials = credentials
        self._server = _ProxyServer(("127.0.0.1", 0), _ProxyHandler)
        self._server.owner = self
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def start(self) -> LocalProxy:
        """Start serving in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def proxy_server() -> Iterator[LocalProxy]:
    """A recording forward proxy (CONNECT and absolute-URI GET)."""
    proxy = LocalProxy().start()
    yield proxy
    proxy.stop()

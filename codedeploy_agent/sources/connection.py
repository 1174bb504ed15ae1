"""One HTTP(S) GET, redirects followed: the request layer under `sources.http.download`.

Each request opens its own connection (directly, through an HTTP proxy, or through a CONNECT
tunnel for https), with the connect timeout while connecting and the read timeout afterwards.
Redirects (301, 302, 303, 307, 308; at most 5) are followed; once a redirect leaves the first
URL's origin (scheme, host, port), the caller's headers (`Authorization`, API `Accept`...) are
no longer sent: GitHub redirects archives to codeload, and presigned URLs must not receive our
credentials. A redirect from https to plain http is refused unless it goes to loopback.

Failures are sorted here: `Transient` for what a retry may fix (network errors, timeouts, 408,
429, 5xx), `DownloadError` for what it cannot (other 4xx, TLS certificate errors, a proxy that
wants credentials, bad URLs). Every URL in a message or log line is redacted.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import re
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urljoin, urlsplit

from codedeploy_agent import __version__
from codedeploy_agent.config import AgentConfig
from codedeploy_agent.errors import BundleError
from codedeploy_agent.log import get_logger
from codedeploy_agent.sources.proxy import Proxy, is_loopback, parse_proxy, proxy_for
from codedeploy_agent.sources.redact import redact_url

_log = get_logger("codedeploy_agent.sources.http")

USER_AGENT: Final = f"codedeploy-agent/{__version__}"
MAX_REDIRECTS: Final = 5
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
#: How much of an error response is read to find the server's explanation.
_ERROR_BODY_LIMIT: Final = 8192


class DownloadError(BundleError):
    """Raised by `download` when a URL cannot be fetched or what it returned is refused.

    `status` and `reason` are the last HTTP answer (None for network errors); `failures` lists
    every failed attempt in order (`503 'Service Unavailable'`, `connection refused by ...`);
    `transient` is True when the download gave up after retrying failures that retries may fix;
    `detail` is the server's own explanation, when its error body had one.
    """

    def __init__(
        self,
        message: str,
        *,
        url: str,
        status: int | None = None,
        reason: str = "",
        detail: str = "",
        failures: tuple[str, ...] = (),
        transient: bool = False,
    ) -> None:
        super().__init__(message)
        self.url = url
        self.status = status
        self.reason = reason
        self.detail = detail
        self.failures = failures
        self.transient = transient


class Transient(Exception):  # noqa: N818 - a retry signal inside this package, never raised out
    """A failure a retry may fix; `description` goes into the failure list and messages."""

    def __init__(
        self, description: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(description)
        self.description = description
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What every request of one download shares."""

    url: str
    label: str
    config: AgentConfig
    environ: Mapping[str, str]
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def shown_url(self) -> str:
        """The URL as logs and messages show it."""
        return redact_url(self.url)

    def fail(self, text: str, **kwargs: object) -> DownloadError:
        """A DownloadError whose message names the source and the (redacted) URL."""
        return DownloadError(
            f"Cannot download {self.label} from {self.shown_url}: {text}",
            url=self.shown_url,
            **kwargs,  # type: ignore[arg-type]
        )

    def proxy(self, url: str) -> Proxy | None:
        """The proxy used for `url`, if any."""
        chosen = proxy_for(url, self.config, self.environ)
        return parse_proxy(chosen) if chosen else None


@dataclass(slots=True, eq=False)
class Opened:
    """An answered request: its response is 2xx (or 416) and its body not yet read."""

    connection: http.client.HTTPConnection
    response: http.client.HTTPResponse
    url: str

    def header(self, name: str) -> str | None:
        """A response header, or None."""
        return self.response.getheader(name)

    def close(self) -> None:
        """Close the response and its connection."""
        self.response.close()
        self.connection.close()

    def abort(self) -> None:
        """Unblock a read in another thread by shutting the socket down."""
        sock = self.connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def check_url(ctx: RequestContext, url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL; DownloadError for anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ctx.fail("the URL is not valid (check its host and port).") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ctx.fail("only http:// and https:// URLs naming a host can be downloaded.")
    return scheme, parts.hostname.lower().rstrip("."), port or _DEFAULT_PORTS[scheme]


def open_request(ctx: RequestContext, extra: Mapping[str, str]) -> Opened:
    """GET `ctx.url` with `extra` headers (Range, If-Range), following redirects.

    Returns when the final answer is 200, 206 or 416; raises Transient or DownloadError.
    """
    url = ctx.url
    first = check_url(ctx, url)
    own_origin = True
    for _hop in range(MAX_REDIRECTS + 1):
        scheme = check_url(ctx, url)[0]
        headers = {**(ctx.headers if own_origin else {}), **extra}
        connection, response = _send(ctx, url, headers)
        status = response.status
        if status in _REDIRECTS:
            location = response.getheader("Location")
            response.close()
            connection.close()
            if not location:
                raise ctx.fail(f"the server answered {status} without a Location header.")
            target = urljoin(url, location.strip())
            target_scheme, target_host, _ = check_url(ctx, target)
            if scheme == "https" and target_scheme == "http" and not is_loopback(target_host):
                raise ctx.fail(
                    f"the server redirected to {redact_url(target)}, a plain http:// URL; an "
                    "https download is never continued without TLS."
                )
            if check_url(ctx, target) != first:
                own_origin = False
            _log.debug("download redirected", source=ctx.label, location=redact_url(target))
            url = target
            continue
        if status in (200, 206, 416):
            return Opened(connection, response, url)
        _raise_for_status(ctx, connection, response)
    raise ctx.fail(f"more than {MAX_REDIRECTS} redirects; the server is redirecting in a loop.")


def _send(
    ctx: RequestContext, url: str, headers: Mapping[str, str]
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    scheme, host, port = check_url(ctx, url)
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    proxy = ctx.proxy(url)
    connection = _connection(ctx, scheme, host, port, proxy)
    try:
        _connect(ctx, connection, host, port, proxy)
        if proxy is not None and scheme == "http":
            target = url.split("#", 1)[0]  # a plain-HTTP proxy takes the absolute URL
        connection.putrequest("GET", target, skip_host=True, skip_accept_encoding=True)
        shown_host = f"[{host}]" if ":" in host else host
        connection.putheader(
            "Host", shown_host if port == _DEFAULT_PORTS[scheme] else f"{shown_host}:{port}"
        )
        connection.putheader("User-Agent", USER_AGENT)
        connection.putheader("Accept-Encoding", "identity")
        if proxy is not None and scheme == "http" and proxy.authorization:
            connection.putheader("Proxy-Authorization", proxy.authorization)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        return connection, connection.getresponse()
    except (OSError, http.client.HTTPException) as exc:
        connection.close()
        doing = f"waiting for {host}:{port} to answer"
        raise Transient(_describe(exc, doing, ctx.config.http_read_timeout)) from None
    except BaseException:
        connection.close()
        raise


def _connection(
    ctx: RequestContext, scheme: str, host: str, port: int, proxy: Proxy | None
) -> http.client.HTTPConnection:
    timeout = ctx.config.download.connect_timeout_seconds
    peer_host, peer_port = (proxy.host, proxy.port) if proxy is not None else (host, port)
    if scheme == "http":
        return http.client.HTTPConnection(peer_host, peer_port, timeout=timeout)
    connection = http.client.HTTPSConnection(
        peer_host, peer_port, timeout=timeout, context=_tls_context(*_ca_settings(ctx.environ))
    )
    if proxy is not None:
        tunnel_headers = {"Proxy-Authorization": proxy.authorization} if proxy.authorization else {}
        connection.set_tunnel(host, port, headers=tunnel_headers)
    return connection


def _connect(
    ctx: RequestContext,
    connection: http.client.HTTPConnection,
    host: str,
    port: int,
    proxy: Proxy | None,
) -> None:
    """Connect (and tunnel, and shake hands) within the connect timeout, then switch to the
    read timeout for the rest of the exchange."""
    via = f" through the proxy {proxy.display}" if proxy is not None else ""
    try:
        connection.connect()
    except ssl.SSLCertVerificationError as exc:
        raise ctx.fail(
            f"the TLS certificate of {host} was not accepted ({exc.verify_message}). Check the "
            "host name, the system's CA certificates (or SSL_CERT_FILE), and any TLS-inspecting "
            "proxy."
        ) from None
    except OSError as exc:
        tunnel = re.match(r"Tunnel connection failed: (\d{3})\b ?(.*)", str(exc))
        if tunnel and tunnel.group(1) == "407" and proxy is not None:
            raise ctx.fail(
                f"the proxy {proxy.display} answered 407 'Proxy Authentication Required'. Put "
                "the proxy's user name and password in its URL (http://user:password@host:port, "
                "in :proxy_uri: or HTTPS_PROXY)."
            ) from None
        if tunnel:  # a network failure seen by the proxy (502, 504...): the proxy's words
            raise Transient(
                f"the proxy {proxy.display if proxy else ''} could not connect to {host}:{port} "
                f"({tunnel.group(1)} '{tunnel.group(2).strip()}')"
            ) from None
        timeout = ctx.config.download.connect_timeout_seconds
        raise Transient(_describe(exc, f"connecting to {host}:{port}{via}", timeout)) from None
    if connection.sock is not None:
        connection.sock.settimeout(ctx.config.http_read_timeout)


def _raise_for_status(
    ctx: RequestContext, connection: http.client.HTTPConnection, response: http.client.HTTPResponse
) -> None:
    status, reason = response.status, response.reason
    try:
        detail = _error_detail(response)
    finally:
        response.close()
        connection.close()
    code = f"{status} '{reason}'"
    if status in (408, 429) or status >= 500:
        raise Transient(code, status=status, retry_after=_retry_after(response))
    hints = {
        401: "Check the credentials configured for this source.",
        403: "Check the credentials and their permissions on the object; a presigned URL may "
        "also have expired.",
        404: "Check that the object exists (its name, version or commit).",
        407: "The proxy wants credentials: put them in the proxy URL "
        "(http://user:password@host:port).",
        410: "Check that the object exists (its name, version or commit).",
    }
    explained = f" ({detail})" if detail and detail.lower() != reason.lower() else ""
    hint = hints.get(status, "The request was refused; check the URL.")
    raise ctx.fail(
        f"the server answered {code}{explained}. {hint}",
        status=status,
        reason=reason,
        detail=detail,
        failures=(code,),
    )


def _error_detail(response: http.client.HTTPResponse) -> str:
    """The server's own explanation: `message` of a JSON body (GitHub, Bitbucket), or
    `Code: Message` of an XML error (S3). Nothing else of the body is kept: S3 errors also
    carry the string-to-sign and the access key id."""
    try:
        body = response.read(_ERROR_BODY_LIMIT)
    except (OSError, http.client.HTTPException):
        return ""
    text = body.decode("utf-8", "replace")
    detail = ""
    if text.lstrip().startswith("{"):
        try:
            document = json.loads(text)
        except ValueError:
            document = None
        if isinstance(document, dict):
            message = document.get("message") or document.get("error", {})
            if isinstance(message, dict):  # Bitbucket: {"error": {"message": ...}}
                message = message.get("message")
            detail = message if isinstance(message, str) else ""
    elif "<Error>" in text:
        code = re.search(r"<Code>([^<]{1,100})</Code>", text)
        message = re.search(r"<Message>([^<]{1,300})</Message>", text)
        detail = ": ".join(m.group(1) for m in (code, message) if m)
    detail = re.sub(r"https?://\S+", lambda m: redact_url(m.group(0)), " ".join(detail.split()))
    return detail[:300]


def _retry_after(response: http.client.HTTPResponse) -> float | None:
    value = response.getheader("Retry-After", "")
    return float(min(int(value), 60)) if value.strip().isdigit() else None


def _describe(exc: BaseException, doing: str, timeout: float | None = None) -> str:
    """A short, credential-free description of a network failure."""
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name while {doing} ({exc.strerror})"
    if isinstance(exc, TimeoutError):
        limit = f" after {timeout:g} s" if timeout is not None else ""
        return f"timed out{limit} while {doing}"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused while {doing}"
    if isinstance(exc, http.client.RemoteDisconnected | ConnectionResetError):
        return f"the server closed the connection while {doing}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error while {doing} ({exc.reason or exc.__class__.__name__})"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror.lower()} while {doing}"
    return f"{type(exc).__name__} while {doing}"


def describe_read_error(exc: BaseException, done: int) -> str:
    """A description of a failure while reading a body, `done` bytes in."""
    if isinstance(exc, TimeoutError):
        return f"no data received for the read timeout after {done} bytes"
    if isinstance(exc, http.client.IncompleteRead | ConnectionResetError):
        return f"the connection was cut after {done} bytes"
    return _describe(exc, f"reading the body after {done} bytes")


def _ca_settings(environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The CA file and directory: SSL_CERT_FILE / SSL_CERT_DIR of `environ` when set (they
    replace OpenSSL's defaults, as in every OpenSSL program), else OpenSSL's defaults. Read from
    `environ`, not from the process environment OpenSSL itself would consult."""
    defaults = ssl.get_default_verify_paths()
    cafile = environ.get("SSL_CERT_FILE") or defaults.openssl_cafile
    capath = environ.get("SSL_CERT_DIR") or defaults.openssl_capath
    return (
        cafile if cafile and Path(cafile).is_file() else None,
        capath if capath and Path(capath).is_dir() else None,
    )


@functools.lru_cache(maxsize=4)
def _tls_context(cafile: str | None, capath: str | None) -> ssl.SSLContext:
    """A verifying TLS client context trusting `cafile` and `capath`.

    Cached: loading a CA bundle takes milliseconds, and contexts are thread-safe.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the host name
    if cafile is None and capath is None:
        return context  # nothing trusted: every certificate fails with a clear message
    try:
        context.load_verify_locations(cafile=cafile, capath=capath)
    except (OSError, ssl.SSLError) as exc:
        raise BundleError(
            f"Cannot load the CA certificates {cafile or capath} (SSL_CERT_FILE/SSL_CERT_DIR "
            f"or the system's): {exc}. Fix or unset the variable."
        ) from None
    return context

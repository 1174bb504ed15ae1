"""Which HTTP proxy, if any, a download goes through: chosen per URL.

The real agent applied `:proxy_uri:` to every request and ignored `NO_PROXY` (anchors §3,
issues #309, #338, #403): S3 downloads went through a corporate proxy instead of the VPC
endpoint. Here the choice is made per host:

1. Loopback hosts (`localhost`, `*.localhost`, 127.0.0.0/8, ::1) never use a proxy.
2. Hosts matched by `NO_PROXY`/`no_proxy` (both are read) or by `download.no_proxy` in the
   agent config go direct. An entry is `*` (everything), a domain (`example.com` or
   `.example.com`: the domain and every subdomain, as curl and Python read it; `*.example.com`
   is accepted as a spelling of `.example.com`), an IP address, a CIDR block (`10.0.0.0/8`,
   matched against IP-literal hosts only: names are not resolved), any of them with `:port`
   to match one port only. Entries are separated by commas or white space.
3. Otherwise `:proxy_uri:` when it is set, else `https_proxy`/`HTTPS_PROXY` for https URLs and
   `http_proxy`/`HTTP_PROXY` for http URLs (lower case wins, as in Python and curl; the upper
   case `HTTP_PROXY` is ignored when `REQUEST_METHOD` is set, the "httpoxy" CGI attack).

A proxy URL is `http://[user:password@]host[:port]` (a bare `host:port` means http). Like the real
agent and Python's urllib, an `https://` proxy URL is also spoken to in plain HTTP (CONNECT for
https targets): TLS to the proxy itself is not supported. Its credentials go in a
`Proxy-Authorization: Basic` header and are never logged.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from codedeploy_agent.config import AgentConfig
from codedeploy_agent.errors import BundleError
from codedeploy_agent.sources.redact import redact_url

_SEPARATORS = re.compile(r"[\s,]+")
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class Proxy:
    """A decoded proxy URL."""

    host: str
    port: int
    #: The proxy URL with its password masked, for logs and messages.
    display: str
    #: `Basic ...` when the URL carries credentials; never logged.
    authorization: str | None = field(default=None, repr=False)


def proxy_for(url: str, config: AgentConfig, environ: Mapping[str, str]) -> str | None:
    """The proxy URL a request to `url` goes through, or None to connect directly.

    Pure: reads only its arguments (pass `os.environ` for the process's environment).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower().rstrip(".")
    if not host or is_loopback(host):
        return None
    port = port or _DEFAULT_PORTS.get(scheme)
    patterns = [
        *no_proxy_entries(environ.get("no_proxy", "")),
        *no_proxy_entries(environ.get("NO_PROXY", "")),
        *config.download.no_proxy,
    ]
    if bypasses_proxy(host, port, patterns):
        return None
    if config.proxy_uri:
        return config.proxy_uri
    names = ["https_proxy", "HTTPS_PROXY"] if scheme == "https" else ["http_proxy"]
    if scheme == "http" and "REQUEST_METHOD" not in environ:
        names.append("HTTP_PROXY")
    for name in names:
        value = environ.get(name, "").strip()
        if value:
            return value
    return None


def no_proxy_entries(value: str) -> list[str]:
    """The entries of a `NO_PROXY` value."""
    return [entry for entry in _SEPARATORS.split(value) if entry]


def bypasses_proxy(host: str, port: int | None, patterns: Iterable[str]) -> bool:
    """True when any `NO_PROXY`-style pattern matches `host` (and `port`)."""
    host = host.lower().rstrip(".").strip("[]")
    return any(_matches(entry.strip().lower(), host, port) for entry in patterns)


def is_loopback(host: str) -> bool:
    """True for `localhost`, `*.localhost` and loopback IP addresses (v4, v6, v4-mapped v6)."""
    host = host.lower().rstrip(".").strip("[]")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    address = _ip(host)
    if address is None:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def parse_proxy(proxy_url: str) -> Proxy:
    """Decode a proxy URL; raise BundleError naming the (masked) URL when it is unusable."""
    text = proxy_url.strip()
    if "://" not in text:
        text = f"http://{text}"
    shown = redact_url(text)
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise BundleError(
            f"The proxy {shown} is not a valid URL ({exc}). Set :proxy_uri: or HTTPS_PROXY to "
            "http://host:port."
        ) from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise BundleError(
            f"The proxy {shown} is not supported: only HTTP proxies (http://host:port) are. "
            "Set :proxy_uri: or HTTPS_PROXY to an http:// URL."
        )
    authorization = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
    return Proxy(
        host=parts.hostname,
        port=port or _DEFAULT_PORTS[scheme],
        display=shown,
        authorization=authorization,
    )


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _split_port(entry: str) -> tuple[str, int | None]:
    """`host:port`, `[v6]:port`, `v6` or `host` -> (host, port)."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
        return host, int(port_text) if port_text.isdigit() else None
    if entry.count(":") == 1:
        host, _, port_text = entry.partition(":")
        if port_text.isdigit():
            return host, int(port_text)
    return entry, None


def _matches(entry: str, host: str, port: int | None) -> bool:
    if not entry:
        return False
    if entry == "*":
        return True
    entry_host, entry_port = _split_port(entry)
    if entry_port is not None and entry_port != port:
        return False
    if "/" in entry_host:  # a CIDR block: IP-literal hosts only
        address = _ip(host)
        try:
            network = ipaddress.ip_network(entry_host, strict=False)
        except ValueError:
            return False
        return address is not None and address in network
    entry_address = _ip(entry_host)
    if entry_address is not None:
        return entry_address == _ip(host)
    domain = entry_host.removeprefix("*").lstrip(".").rstrip(".")
    return bool(domain) and (host == domain or host.endswith(f".{domain}"))

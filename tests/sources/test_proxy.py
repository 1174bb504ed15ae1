"""Proxy choice per URL (`proxy_for`), and downloads through a local recording proxy."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import replace
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from codedeploy_agent.config import AgentConfig, DownloadSettings
from codedeploy_agent.errors import BundleError
from codedeploy_agent.sources.http import DownloadError, download
from codedeploy_agent.sources.proxy import (
    bypasses_proxy,
    is_loopback,
    parse_proxy,
    proxy_for,
)
from tests.sources.conftest import LocalProxy, LocalServer, make_config, unused_port

DATA = b"bundle bytes " * 50_000
PROXY = "http://proxy.corp:3128"


def config(proxy_uri: str | None = None, no_proxy: tuple[str, ...] = ()) -> AgentConfig:
    return AgentConfig(proxy_uri=proxy_uri, download=DownloadSettings(no_proxy=no_proxy))


# --- proxy_for: a pure function ----------------------------------------------------------------


def test_https_urls_use_https_proxy_and_http_urls_http_proxy() -> None:
    """Each scheme reads its own variable; lower case wins over upper case."""
    environ = {
        "HTTPS_PROXY": "http://upper:1",
        "https_proxy": "http://lower:2",
        "HTTP_PROXY": "http://plain:3",
    }
    assert proxy_for("https://s3.amazonaws.com/b/k", config(), environ) == "http://lower:2"
    assert proxy_for("http://example.com/b", config(), environ) == "http://plain:3"
    assert (
        proxy_for("https://example.com/b", config(), {"HTTPS_PROXY": "http://upper:1"})
        == "http://upper:1"
    )
    assert proxy_for("https://example.com/b", config(), {"HTTP_PROXY": "http://plain:3"}) is None
    assert proxy_for("https://example.com/b", config(), {"https_proxy": ""}) is None


def test_proxy_uri_wins_over_the_environment() -> None:
    """`:proxy_uri:` in the config is used instead of HTTPS_PROXY, for both schemes."""
    environ = {"HTTPS_PROXY": "http://env:1"}
    assert proxy_for("https://example.com/", config(PROXY), environ) == PROXY
    assert proxy_for("http://example.com/", config(PROXY), {}) == PROXY


def test_upper_case_http_proxy_is_ignored_under_cgi() -> None:
    """With REQUEST_METHOD set, HTTP_PROXY may come from a request header (httpoxy): ignored."""
    environ = {"HTTP_PROXY": "http://attacker:1", "REQUEST_METHOD": "GET"}
    assert proxy_for("http://example.com/", config(), environ) is None


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "LOCALHOST.",
        "app.localhost",
        "127.0.0.1",
        "127.8.9.10",
        "::1",
        "[::1]",
        "::ffff:127.0.0.1",
    ],
)
def test_loopback_never_uses_a_proxy(host: str) -> None:
    """Loopback names and addresses go direct whatever the settings say."""
    assert is_loopback(host)
    url = f"https://{host if ':' not in host or host.startswith('[') else f'[{host}]'}:8443/b"
    assert proxy_for(url, config(PROXY), {"HTTPS_PROXY": PROXY}) is None


@pytest.mark.parametrize("host", ["example.com", "10.0.0.1", "::2", "localhost.example.com"])
def test_other_hosts_are_not_loopback(host: str) -> None:
    """Only loopback is exempt by default."""
    assert not is_loopback(host)


@pytest.mark.parametrize(
    ("no_proxy", "host", "port", "bypassed"),
    [
        ("*", "anything.example.com", 443, True),
        ("s3.amazonaws.com", "s3.amazonaws.com", 443, True),
        ("s3.amazonaws.com", "bucket.s3.amazonaws.com", 443, True),
        ("s3.amazonaws.com", "nots3.amazonaws.com", 443, False),
        (".amazonaws.com", "s3.us-east-1.amazonaws.com", 443, True),
        (".amazonaws.com", "amazonaws.com", 443, True),
        ("*.amazonaws.com", "s3.amazonaws.com", 443, True),
        ("AMAZONAWS.COM.", "s3.amazonaws.com", 443, True),
        ("example.com:8443", "example.com", 8443, True),
        ("example.com:8443", "example.com", 443, False),
        ("10.0.0.0/8", "10.1.2.3", 443, True),
        ("10.0.0.0/8", "11.1.2.3", 443, False),
        ("10.0.0.0/8", "ten.example.com", 443, False),
        ("10.1.2.3", "10.1.2.3", 443, True),
        ("fd00::/8", "fd12::1", 443, True),
        ("[fd12::1]:443", "fd12::1", 443, True),
        ("other.com, s3.amazonaws.com", "s3.amazonaws.com", 443, True),
        ("", "s3.amazonaws.com", 443, False),
    ],
)
def test_no_proxy_patterns(no_proxy: str, host: str, port: int, bypassed: bool) -> None:
    """Exact hosts, domains with or without a dot, `*`, host:port, IPs and CIDR blocks."""
    environ = {"NO_PROXY": no_proxy, "HTTPS_PROXY": PROXY}
    shown = f"[{host}]" if ":" in host else host
    expected = None if bypassed else PROXY
    assert proxy_for(f"https://{shown}:{port}/k", config(), environ) == expected
    assert (
        bypasses_proxy(host, port, [no_proxy] if "," not in no_proxy else no_proxy.split(","))
        is bypassed
    )


def test_no_proxy_applies_to_proxy_uri_too() -> None:
    """NO_PROXY and download.no_proxy also exempt hosts from `:proxy_uri:` (the real agent's bug)."""
    assert (
        proxy_for("https://s3.amazonaws.com/k", config(PROXY), {"no_proxy": ".amazonaws.com"})
        is None
    )
    assert proxy_for("https://s3.amazonaws.com/k", config(PROXY, ("s3.amazonaws.com",)), {}) is None
    assert (
        proxy_for("https://codedeploy.amazonaws.com/", config(PROXY, ("s3.amazonaws.com",)), {})
        == PROXY
    )


def test_both_spellings_of_no_proxy_are_read() -> None:
    """Entries of NO_PROXY and no_proxy both count."""
    environ = {"NO_PROXY": "a.example.com", "no_proxy": "b.example.com", "HTTPS_PROXY": PROXY}
    assert proxy_for("https://a.example.com/", config(), environ) is None
    assert proxy_for("https://b.example.com/", config(), environ) is None
    assert proxy_for("https://c.example.com/", config(), environ) == PROXY


def test_parse_proxy_decodes_credentials_and_masks_them() -> None:
    """User and password become a Basic header; the display form masks the password."""
    proxy = parse_proxy("http://alice:p%40ss@proxy.corp:3128")
    assert (proxy.host, proxy.port, proxy.display) == (
        "proxy.corp",
        3128,
        "http://alice:REDACTED@proxy.corp:3128",
    )
    assert proxy.authorization == "Basic " + base64.b64encode(b"alice:p@ss").decode()
    assert "p@ss" not in repr(proxy)
    assert parse_proxy("proxy.corp:8080").port == 8080
    assert parse_proxy("http://proxy.corp").port == 80
    assert parse_proxy("https://proxy.corp").port == 443


def test_parse_proxy_refuses_socks() -> None:
    """Only HTTP proxies are supported; the message says so and masks the password."""
    with pytest.raises(BundleError) as caught:
        parse_proxy("socks5://u:secret@proxy:1080")
    assert str(caught.value) == (
        "The proxy socks5://u:REDACTED@proxy:1080 is not supported: only HTTP proxies "
        "(http://host:port) are. Set :proxy_uri: or HTTPS_PROXY to an http:// URL."
    )


# --- downloads through a real (local) proxy ----------------------------------------------------


def fetch(
    url: str, tmp_path: Path, environ: dict[str, str], agent: AgentConfig | None = None
) -> str:
    agent = agent or make_config(tmp_path)
    result = download(
        url, tmp_path / "b", config=agent, label="test object", environ=environ, retry_delays=(0.0,)
    )
    return result.sha256


def test_https_goes_through_connect_when_https_proxy_is_set(
    https_server: LocalServer,
    proxy_server: LocalProxy,
    test_ca: object,
    trust_test_ca: Path,
    tmp_path: Path,
) -> None:
    """HTTPS_PROXY makes an https download tunnel with CONNECT; TLS is end to end."""
    https_server.serve_bytes("/b", DATA)
    url = f"https://bundles.example.test:{https_server.port}/b"
    environ = {"HTTPS_PROXY": proxy_server.url, "SSL_CERT_FILE": str(trust_test_ca)}
    assert fetch(url, tmp_path, environ) == hashlib.sha256(DATA).hexdigest()
    assert [(r.method, r.target) for r in proxy_server.requests] == [
        ("CONNECT", f"bundles.example.test:{https_server.port}")
    ]
    [seen] = https_server.requests_to("/b")
    assert seen.headers["host"] == f"bundles.example.test:{https_server.port}"


def test_http_goes_to_the_proxy_with_the_absolute_url(
    http_server: LocalServer, proxy_server: LocalProxy, tmp_path: Path
) -> None:
    """A plain http download asks the proxy for the absolute URL."""
    http_server.serve_bytes("/b", DATA)
    url = f"http://bundles.example.test:{http_server.port}/b?versionId=3"
    fetch(url, tmp_path, {"http_proxy": proxy_server.url})
    [request] = proxy_server.requests
    assert (request.method, request.target) == ("GET", url)
    assert http_server.requests_to("/b")[0].target == "/b?versionId=3"


def test_proxy_uri_is_used_and_no_proxy_skips_it(
    http_server: LocalServer, proxy_server: LocalProxy, local_dns: None, tmp_path: Path
) -> None:
    """`:proxy_uri:` carries the download unless NO_PROXY names the host: then it goes direct."""
    http_server.serve_bytes("/b", DATA)
    agent = replace(make_config(tmp_path), proxy_uri=proxy_server.url)
    fetch(f"http://a.example.test:{http_server.port}/b", tmp_path, {}, agent)
    assert len(proxy_server.requests) == 1
    for no_proxy in ("b.example.test", ".example.test", "*", f"b.example.test:{http_server.port}"):
        fetch(
            f"http://b.example.test:{http_server.port}/b", tmp_path, {"NO_PROXY": no_proxy}, agent
        )
    assert len(proxy_server.requests) == 1
    assert len(http_server.requests_to("/b")) == 5


def test_download_no_proxy_setting_skips_the_proxy(
    http_server: LocalServer, proxy_server: LocalProxy, local_dns: None, tmp_path: Path
) -> None:
    """download.no_proxy in the agent config works like NO_PROXY."""
    http_server.serve_bytes("/b", DATA)
    agent = make_config(tmp_path, no_proxy=(".example.test",))
    fetch(
        f"http://direct.example.test:{http_server.port}/b",
        tmp_path,
        {"http_proxy": proxy_server.url},
        agent,
    )
    assert proxy_server.requests == []
    assert len(http_server.requests_to("/b")) == 1


def test_proxy_credentials_are_sent_and_never_logged(
    https_server: LocalServer, trust_test_ca: Path, tmp_path: Path
) -> None:
    """Credentials in the proxy URL go in Proxy-Authorization and appear in no log line."""
    proxy = LocalProxy(credentials="alice:s3cr3t-pw").start()
    try:
        https_server.serve_bytes("/b", DATA)
        url = f"https://bundles.example.test:{https_server.port}/b"
        environ = {
            "HTTPS_PROXY": f"http://alice:s3cr3t-pw@127.0.0.1:{proxy.port}",
            "SSL_CERT_FILE": str(trust_test_ca),
        }
        with capture_logs() as logs:
            fetch(url, tmp_path, environ)
        expected = "Basic " + base64.b64encode(b"alice:s3cr3t-pw").decode()
        assert proxy.requests[0].headers["proxy-authorization"] == expected
        assert "proxy-authorization" not in https_server.requests_to("/b")[0].headers
        started = next(entry for entry in logs if entry["event"] == "download started")
        assert started["proxy"] == f"http://alice:REDACTED@127.0.0.1:{proxy.port}"
        assert "s3cr3t" not in repr(logs)
        assert expected.split()[1] not in repr(logs)
    finally:
        proxy.stop()


def test_wrong_proxy_credentials_fail_with_a_407_hint(
    https_server: LocalServer, trust_test_ca: Path, tmp_path: Path
) -> None:
    """A 407 from the proxy is not retried and says where the credentials go, masked."""
    proxy = LocalProxy(credentials="alice:right").start()
    try:
        url = f"https://bundles.example.test:{https_server.port}/b"
        environ = {"HTTPS_PROXY": f"http://alice:wrong@127.0.0.1:{proxy.port}"}
        with capture_logs() as logs, pytest.raises(DownloadError) as caught:
            fetch(url, tmp_path, environ)
        assert str(caught.value) == (
            f"Cannot download test object from {url}: the proxy "
            f"http://alice:REDACTED@127.0.0.1:{proxy.port} answered 407 'Proxy Authentication "
            "Required'. Put the proxy's user name and password in its URL "
            "(http://user:password@host:port, in :proxy_uri: or HTTPS_PROXY)."
        )
        assert len(proxy.requests) == 1
        assert "wrong" not in repr(logs)
    finally:
        proxy.stop()


def test_an_unreachable_proxy_is_named_in_the_error(tmp_path: Path) -> None:
    """When the proxy cannot be reached the message says the download went through it."""
    port = unused_port()
    url = "https://bundles.example.test/b"
    with pytest.raises(DownloadError) as caught:
        fetch(url, tmp_path, {"HTTPS_PROXY": f"http://u:pw@127.0.0.1:{port}"})
    message = str(caught.value)
    assert message.startswith(
        f"Cannot download test object from {url}: connection refused while connecting to "
        f"bundles.example.test:443 through the proxy http://u:REDACTED@127.0.0.1:{port} (2 failed attempts"
    )
    assert message.endswith(
        f"(this download went through the proxy http://u:REDACTED@127.0.0.1:{port}; see "
        ":proxy_uri:, HTTPS_PROXY, NO_PROXY and download.no_proxy)."
    )
    assert ":pw@" not in message


def test_a_proxy_that_cannot_reach_the_host_is_a_network_failure(
    proxy_server: LocalProxy, tmp_path: Path
) -> None:
    """A 502 answer to CONNECT is retried, then reported as the proxy's failure to connect."""
    port = unused_port()
    url = f"https://bundles.example.test:{port}/b"
    with pytest.raises(DownloadError) as caught:
        fetch(url, tmp_path, {"HTTPS_PROXY": proxy_server.url})
    failure = (
        f"the proxy {proxy_server.url} could not connect to bundles.example.test:{port} "
        "(502 'Bad Gateway')"
    )
    assert str(caught.value).startswith(
        f"Cannot download test object from {url}: {failure} (2 failed attempts: {failure}; {failure})."
    )
    assert caught.value.status is None
    assert len(proxy_server.requests) == 2

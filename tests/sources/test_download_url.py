"""S3 revisions with `Revision.Download` (a presigned link from the control plane): the download
stops with the deployment, and the link must be https (plain http to loopback only), both when
the job document is decoded and when the link is fetched. The same rule holds for URL
revisions' `Url` in the job document."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from codedeploy_agent.errors import BundleError
from codedeploy_agent.host.layout import DeploymentDir
from codedeploy_agent.protocol.errors import JobRejected, RejectReason
from codedeploy_agent.protocol.revisions import is_loopback_host, parse_revision, spec_revision
from codedeploy_agent.sources.proxy import is_loopback
from codedeploy_agent.sources.s3 import fetch_s3
from codedeploy_agent.spec import BundleType, S3Revision, UrlRevision
from tests.sources.conftest import Exchange, LocalServer, make_config

DATA = b"presigned bundle " * 4096
DIGEST = hashlib.sha256(DATA).hexdigest()
#: How long the tests wait for something that must happen (a loaded CI machine is slow).
DEADLINE = 15.0


def deployment(tmp_path: Path) -> DeploymentDir:
    folder = DeploymentDir(tmp_path / "dg" / "d-1")
    folder.path.mkdir(parents=True)
    return folder


def presigned(url: str, **fields: Any) -> S3Revision:
    return S3Revision("bundles", "app.tgz", BundleType.TGZ, download_url=url, **fields)


def names(folder: Path) -> list[str]:
    """The names in `folder`, sorted."""
    return sorted(p.name for p in folder.iterdir())


async def wait_until_empty(folder: Path) -> list[str]:
    """The names left in `folder` once it is empty, or when the deadline passes."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if not (left := await asyncio.to_thread(names, folder)):
            return left
        await asyncio.sleep(0.05)
    return await asyncio.to_thread(names, folder)


# ---------------------------------------------------------------------------------------------
# Cancellation.


@pytest.mark.asyncio
async def test_cancelling_the_task_stops_the_download(
    http_server: LocalServer, tmp_path: Path
) -> None:
    """A cancelled fetch (a stopped deployment, the agent stopping) stops the presigned-URL
    download thread, closes its connection and removes bundle.tar.part; no bundle.tar appears."""
    started = asyncio.Event()
    loop = asyncio.get_running_loop()
    closed = threading.Event()
    chunks = 600  # 30 s of trickle: far longer than the test waits for the connection to close

    def trickle(ex: Exchange) -> None:
        ex.respond_headers(200, {"Content-Length": str(chunks * 65536)})
        loop.call_soon_threadsafe(started.set)
        try:
            for _ in range(chunks):
                ex.write(b"x" * 65536)
                time.sleep(0.05)
        except OSError:
            closed.set()

    url = http_server.route("/bundles/app.tgz", trickle)
    folder = deployment(tmp_path)
    task = asyncio.create_task(fetch_s3(presigned(url), folder, make_config(tmp_path)))
    await asyncio.wait_for(started.wait(), DEADLINE)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(closed.wait, DEADLINE), "the download kept running"
    assert await wait_until_empty(folder.path) == []


# ---------------------------------------------------------------------------------------------
# The scheme rule when the link is fetched.


@pytest.mark.asyncio
async def test_plain_http_link_elsewhere_is_refused_before_connecting(
    http_server: LocalServer, tmp_path: Path, local_dns: None
) -> None:
    """http:// to a host that is not loopback fails without a request (the name would resolve to
    the local server here); the message names the object, masks the signature, says why and what
    to change."""
    http_server.serve_bytes("/bundles/app.tgz", DATA)
    url = (
        f"http://bundles.example.test:{http_server.port}/bundles/app.tgz"
        "?expires=1&signature=SIGVALUE"
    )
    folder = deployment(tmp_path)
    with pytest.raises(BundleError) as caught:
        await fetch_s3(presigned(url, sha256=DIGEST), folder, make_config(tmp_path))
    shown = (
        f"http://bundles.example.test:{http_server.port}/bundles/app.tgz"
        "?expires=1&signature=REDACTED"
    )
    assert str(caught.value) == (
        f"The download URL of s3://bundles/app.tgz ({shown}) uses http://, which is refused: "
        "without TLS anyone on the network path can read the bundle and reuse the link. Have "
        "the control plane hand out https:// links (codedeploy-server: tls_cert and tls_key, or "
        "an https bundle_store.public_url; S3: an https endpoint); plain http:// is accepted "
        "only for loopback addresses (127.0.0.1, ::1, localhost)."
    )
    assert http_server.requests == []
    assert names(folder.path) == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
@pytest.mark.asyncio
async def test_plain_http_link_to_loopback_is_fetched(
    http_server: LocalServer, tmp_path: Path, host: str
) -> None:
    """A control plane on the same host may hand out http:// links."""
    http_server.serve_bytes("/bundles/app.tgz", DATA)
    url = f"http://{host}:{http_server.port}/bundles/app.tgz"
    folder = deployment(tmp_path)
    await fetch_s3(presigned(url, sha256=DIGEST), folder, make_config(tmp_path))
    assert folder.bundle.read_bytes() == DATA


@pytest.mark.asyncio
async def test_https_link_to_another_host_is_fetched(
    https_server: LocalServer, tmp_path: Path, trust_test_ca: Path, local_dns: None
) -> None:
    """https:// to any host is fetched (the name resolves to the local TLS server)."""
    del trust_test_ca
    https_server.serve_bytes("/bundles/app.tgz", DATA)
    url = f"https://bundles.example.test:{https_server.port}/bundles/app.tgz"
    folder = deployment(tmp_path)
    await fetch_s3(presigned(url, sha256=DIGEST), folder, make_config(tmp_path))
    assert folder.bundle.read_bytes() == DATA


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "ftp://bundles.example.com/app.tgz",
            (
                "The download URL of s3://bundles/app.tgz (ftp://bundles.example.com/app.tgz) "
                "must be an https:// URL naming a host (http:// only for loopback)."
            ),
        ),
        (
            "https://bundles.example.com:99999/app.tgz",
            (
                "The download URL of s3://bundles/app.tgz is not a valid URL (check its host and "
                "port)."
            ),
        ),
    ],
)
@pytest.mark.asyncio
async def test_other_links_are_refused(tmp_path: Path, url: str, message: str) -> None:
    """Other schemes and invalid URLs fail with the object named."""
    with pytest.raises(BundleError) as caught:
        await fetch_s3(presigned(url), deployment(tmp_path), make_config(tmp_path))
    assert str(caught.value) == message


# ---------------------------------------------------------------------------------------------
# The scheme rule in the job document.


def _s3_with_download(url: str) -> dict[str, Any]:
    return {
        "Revision": {
            "RevisionType": "S3",
            "S3Revision": {"Bucket": "b", "Key": "app.zip", "BundleType": "zip"},
            "Download": {"Url": url, "Sha256": "a" * 64},
        }
    }


def _url_revision(url: str) -> dict[str, Any]:
    return {
        "Revision": {
            "RevisionType": "URL",
            "UrlRevision": {"Url": url, "BundleType": "zip", "Sha256": "a" * 64},
        }
    }


@pytest.mark.parametrize(
    ("block", "document"), [("Download", _s3_with_download), ("UrlRevision", _url_revision)]
)
@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://bundles.example.com/b/app.zip?X-Amz-Signature=SIGVALUE", "bundles.example.com"),
        ("http://10.0.0.5:8443/bundles/abc?signature=SIGVALUE", "10.0.0.5"),
        ("HTTP://[2001:db8::1]/app.zip?signature=SIGVALUE", "2001:db8::1"),
        ("http://localhost.example.com/app.zip?signature=SIGVALUE", "localhost.example.com"),
    ],
)
def test_plain_http_to_other_hosts_is_rejected_in_the_job_document(
    block: str, document: Any, url: str, host: str
) -> None:
    """The job is rejected as InvalidJobDocument; the message names the host, never the
    signature in the path or query."""
    with pytest.raises(JobRejected) as caught:
        parse_revision(document(url))
    assert caught.value.reason_code is RejectReason.INVALID_JOB_DOCUMENT
    assert str(caught.value) == (
        f"Url in {block} must be an https:// URL: plain http:// is accepted only for loopback "
        "hosts (127.0.0.1, ::1, localhost), since without TLS anyone on the network path can "
        f"read the bundle or swap it; got an http:// URL to {host!r}"
    )
    assert "SIGVALUE" not in str(caught.value)


@pytest.mark.parametrize("document", [_s3_with_download, _url_revision])
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8443/bundles/abc?signature=s",
        "http://127.8.9.10/app.zip",
        "http://localhost:9000/app.zip",
        "http://[::1]:8443/app.zip",
        "https://bundles.example.com/app.zip",
        "https://10.0.0.5:8443/bundles/abc",
    ],
)
def test_https_anywhere_and_plain_http_to_loopback_are_accepted(document: Any, url: str) -> None:
    """https to any host and http to loopback decode into the revision, URL unchanged."""
    revision = spec_revision(parse_revision(document(url)))
    assert isinstance(revision, S3Revision | UrlRevision)
    fetched = revision.download_url if isinstance(revision, S3Revision) else revision.url
    assert fetched == url


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "LOCALHOST.",
        "app.localhost",
        "127.0.0.1",
        "127.255.0.3",
        "::1",
        "[::1]",
        "::ffff:127.0.0.1",
        "0.0.0.0",  # noqa: S104 - a host name to classify, not an address to bind
        "10.0.0.5",
        "::ffff:10.0.0.5",
        "localhost.example.com",
        "example.com",
        "",
    ],
)
def test_the_decoder_and_the_sources_agree_on_loopback(host: str) -> None:
    """The job-document decoder's loopback rule is the fetch-time one (two copies: the protocol
    layer may not import the sources)."""
    assert is_loopback_host(host) is is_loopback(host)

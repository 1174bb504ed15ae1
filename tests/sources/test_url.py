"""URL revisions: https with a mandatory SHA-256, plain http only to loopback."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from codedeploy_agent.errors import BundleError
from codedeploy_agent.host.layout import DeploymentDir
from codedeploy_agent.sources.url import fetch_url
from codedeploy_agent.spec import BundleType, UrlRevision
from tests.sources.conftest import Exchange, LocalServer, make_config

DATA = b"\x1f\x8b url bundle" * 10_000
DIGEST = hashlib.sha256(DATA).hexdigest()
NO_WAIT = (0.0, 0.0)


def deployment(tmp_path: Path) -> DeploymentDir:
    folder = DeploymentDir(tmp_path / "dg" / "d-1")
    folder.path.mkdir(parents=True)
    return folder


@pytest.mark.asyncio
async def test_https_url_is_downloaded_and_verified(
    https_server: LocalServer, trust_test_ca: Path, tmp_path: Path, no_blocking: None
) -> None:
    """An https URL with the right SHA-256 (any case) lands at bundle.tar."""
    url = https_server.serve_bytes("/releases/app.tgz", DATA)
    folder = deployment(tmp_path)
    revision = UrlRevision(url, BundleType.TGZ, DIGEST.upper())
    await fetch_url(revision, folder, make_config(tmp_path), retry_delays=NO_WAIT)
    assert folder.bundle.read_bytes() == DATA


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
@pytest.mark.asyncio
async def test_plain_http_is_allowed_to_loopback(
    http_server: LocalServer, tmp_path: Path, host: str
) -> None:
    """http:// to 127.0.0.1 or localhost is accepted (local artifact servers, tests)."""
    http_server.serve_bytes("/app.tgz", DATA)
    folder = deployment(tmp_path)
    revision = UrlRevision(f"http://{host}:{http_server.port}/app.tgz", BundleType.TGZ, DIGEST)
    await fetch_url(revision, folder, make_config(tmp_path), retry_delays=NO_WAIT)
    assert folder.bundle.read_bytes() == DATA


@pytest.mark.asyncio
async def test_plain_http_elsewhere_is_refused_with_the_reason(tmp_path: Path) -> None:
    """http:// to any other host fails before connecting; the message says why and what to do."""
    revision = UrlRevision(
        "http://artifacts.example.com/app.tgz?token=s3cret", BundleType.TGZ, DIGEST
    )
    with pytest.raises(BundleError) as caught:
        await fetch_url(revision, deployment(tmp_path), make_config(tmp_path))
    assert str(caught.value) == (
        "The URL revision http://artifacts.example.com/app.tgz?token=REDACTED uses http://, "
        "which is refused: without TLS anyone on the network path can read the bundle (secrecy) "
        "or swap it (integrity). Serve it over https://; plain http:// is accepted only for "
        "loopback addresses (127.0.0.1, ::1, localhost)."
    )


@pytest.mark.parametrize("sha", ["", "abc", "g" * 64, DIGEST + "00"])
@pytest.mark.asyncio
async def test_a_valid_sha256_is_mandatory(tmp_path: Path, sha: str) -> None:
    """Without 64 hex digits of SHA-256 nothing is fetched."""
    revision = UrlRevision("https://artifacts.example.com/app.tgz", BundleType.TGZ, sha)
    with pytest.raises(BundleError) as caught:
        await fetch_url(revision, deployment(tmp_path), make_config(tmp_path))
    assert str(caught.value) == (
        f"The URL revision https://artifacts.example.com/app.tgz has no valid Sha256 (64 "
        f"hexadecimal digits, got {sha!r}). A URL revision must name the SHA-256 of its bundle: "
        "compute it with `sha256sum bundle.tgz` and put it in the revision."
    )


@pytest.mark.asyncio
async def test_other_schemes_are_refused(tmp_path: Path) -> None:
    """ftp:// and friends are not URL revisions."""
    revision = UrlRevision("ftp://artifacts.example.com/app.tgz", BundleType.TGZ, DIGEST)
    with pytest.raises(BundleError) as caught:
        await fetch_url(revision, deployment(tmp_path), make_config(tmp_path))
    assert str(caught.value) == (
        "The URL revision ftp://artifacts.example.com/app.tgz must be an https:// URL naming a "
        "host (http:// only for loopback)."
    )


@pytest.mark.asyncio
async def test_a_wrong_sha256_leaves_no_bundle(http_server: LocalServer, tmp_path: Path) -> None:
    """A digest mismatch fails naming both digests; bundle.tar is not created."""
    url = http_server.serve_bytes("/app.tgz", DATA)
    folder = deployment(tmp_path)
    wrong = "0" * 64
    with pytest.raises(BundleError) as caught:
        await fetch_url(UrlRevision(url, BundleType.TGZ, wrong), folder, make_config(tmp_path))
    assert str(caught.value) == (
        f"Cannot download the URL revision from {url}: its SHA-256 is {DIGEST} but {wrong} was "
        "expected. The file changed since the deployment was created, or it was corrupted on the "
        "way; check the Sha256 of the revision."
    )
    assert list(folder.path.iterdir()) == []


@pytest.mark.asyncio
async def test_signed_urls_stay_out_of_errors_and_logs(
    http_server: LocalServer, tmp_path: Path
) -> None:
    """A 403 on a signed URL reports it with the signature masked, in the message and the logs."""
    http_server.route("/app.tgz", lambda ex: ex.respond(403))
    url = f"{http_server.url}/app.tgz?expires=1&signature=SIGVALUE&access_token=TOKVALUE"
    with capture_logs() as logs, pytest.raises(BundleError) as caught:
        await fetch_url(
            UrlRevision(url, BundleType.TGZ, DIGEST), deployment(tmp_path), make_config(tmp_path)
        )
    shown = f"{http_server.url}/app.tgz?expires=1&signature=REDACTED&access_token=REDACTED"
    assert str(caught.value).startswith(
        f"Cannot download the URL revision from {shown}: the server answered 403 'Forbidden'."
    )
    for secret in ("SIGVALUE", "TOKVALUE"):
        assert secret not in str(caught.value)
        assert secret not in repr(logs)


@pytest.mark.asyncio
async def test_cancelling_the_task_stops_the_download(
    http_server: LocalServer, tmp_path: Path
) -> None:
    """A cancelled fetch (the agent stopping) stops its download thread and removes the part."""
    started = asyncio.Event()
    loop = asyncio.get_running_loop()
    closed = threading.Event()

    def trickle(ex: Exchange) -> None:
        ex.respond_headers(200, {"Content-Length": str(100 * 65536)})
        loop.call_soon_threadsafe(started.set)
        try:
            for _ in range(100):
                ex.write(b"x" * 65536)
                time.sleep(0.05)
        except OSError:
            closed.set()

    url = http_server.route("/slow.tgz", trickle)
    folder = deployment(tmp_path)
    task = asyncio.create_task(
        fetch_url(UrlRevision(url, BundleType.TGZ, DIGEST), folder, make_config(tmp_path))
    )
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(closed.wait, 5)
    for _ in range(100):
        if not list(folder.path.iterdir()):
            break
        await asyncio.sleep(0.05)
    assert list(folder.path.iterdir()) == []

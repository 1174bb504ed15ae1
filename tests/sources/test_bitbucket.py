"""Bitbucket revisions against a local server reproducing Cloud and Server archive URLs."""

from __future__ import annotations

import base64
from dataclasses import replace
from pathlib import Path
from typing import Literal

import pytest
from structlog.testing import capture_logs

from codedeploy_agent.config import AgentConfig, BitbucketSettings
from codedeploy_agent.errors import BundleError
from codedeploy_agent.host.layout import DeploymentDir
from codedeploy_agent.sources.bitbucket import archive_url, cloud_archive_base, fetch_bitbucket
from codedeploy_agent.spec import BitbucketRevision, BundleType
from tests.sources.conftest import Exchange, LocalServer, make_config

SHA = "0123456789abcdef0123456789abcdef01234567"
ARCHIVE = b"\x1f\x8b" + b"bitbucket archive bytes" * 1000
PASSWORD = "app-pass-XYZ"  # noqa: S105 - a test credential
TOKEN = "ATCTT3xFfGN0-token"  # noqa: S105 - a test credential
NO_WAIT = (0.0, 0.0)


def revision(kind: BundleType = BundleType.TGZ, workspace: str = "team") -> BitbucketRevision:
    return BitbucketRevision(workspace, "web-app", SHA, kind)


def deployment(tmp_path: Path) -> DeploymentDir:
    folder = DeploymentDir(tmp_path / "dg" / "d-1")
    folder.path.mkdir(parents=True)
    return folder


def bitbucket_config(
    tmp_path: Path,
    api_url: str,
    flavor: Literal["cloud", "server"] = "cloud",
    *,
    username: str | None = None,
    password: str | None = None,
    token: str | None = None,
) -> AgentConfig:
    password_file = token_file = None
    if password is not None:
        password_file = tmp_path / "bitbucket-password"
        password_file.write_text(password + "\n")
    if token is not None:
        token_file = tmp_path / "bitbucket-token"
        token_file.write_text(token)
    settings = BitbucketSettings(
        api_url=api_url,
        flavor=flavor,
        username=username,
        password_file=password_file,
        token_file=token_file,
    )
    return replace(make_config(tmp_path), bitbucket=settings, source=tmp_path / "agent.yml")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("api_url", "base"),
    [
        ("https://api.bitbucket.org/2.0", "https://bitbucket.org"),
        ("https://api.bitbucket.org/2.0/", "https://bitbucket.org"),
        ("http://127.0.0.1:8080/2.0", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("https://mirror.corp/bb/2.0", "https://mirror.corp/bb"),
    ],
)
def test_cloud_archive_base_is_derived_from_api_url(api_url: str, base: str) -> None:
    """`api.` is dropped from the host and `/2.0` from the path."""
    assert cloud_archive_base(api_url) == base


def test_archive_urls_for_both_flavors() -> None:
    """Cloud: /{workspace}/{repo}/get/{commit}.tar.gz|.zip; Server: the REST archive resource."""
    assert archive_url(revision(), BitbucketSettings()) == (
        f"https://bitbucket.org/team/web-app/get/{SHA}.tar.gz"
    )
    assert archive_url(revision(BundleType.ZIP), BitbucketSettings()) == (
        f"https://bitbucket.org/team/web-app/get/{SHA}.zip"
    )
    server = BitbucketSettings(api_url="https://git.corp/bitbucket/", flavor="server")
    assert archive_url(revision(workspace="~alice"), server) == (
        "https://git.corp/bitbucket/rest/api/latest/projects/~alice/repos/web-app/archive"
        f"?at={SHA}&format=tgz"
    )
    assert archive_url(revision(BundleType.TAR), server).endswith("&format=tar")


def test_cloud_refuses_plain_tar() -> None:
    """Bitbucket Cloud has no plain tar archives; the message says which types work."""
    with pytest.raises(BundleError) as caught:
        archive_url(revision(BundleType.TAR), BitbucketSettings())
    assert str(caught.value) == (
        "Bitbucket Cloud serves commit archives as tgz or zip, not tar: set the revision's "
        "BundleType to tgz or zip."
    )


@pytest.mark.asyncio
async def test_cloud_archive_with_an_app_password(
    http_server: LocalServer, tmp_path: Path, no_blocking: None
) -> None:
    """Cloud: Basic user:app-password (newline stripped) to {base}/{ws}/{repo}/get/{sha}.tar.gz."""
    path = f"/team/web-app/get/{SHA}.tar.gz"
    http_server.serve_bytes(path, ARCHIVE)
    config = bitbucket_config(
        tmp_path, f"{http_server.url}/2.0", username="deployer", password=PASSWORD
    )
    folder = deployment(tmp_path)
    with capture_logs() as logs:
        await fetch_bitbucket(revision(), folder, config, retry_delays=NO_WAIT)
    assert folder.bundle.read_bytes() == ARCHIVE
    [seen] = http_server.requests
    assert seen.path == path
    assert seen.headers["authorization"] == basic("deployer", PASSWORD)
    assert PASSWORD not in repr(logs)
    assert basic("deployer", PASSWORD).split()[1] not in repr(logs)


@pytest.mark.asyncio
async def test_cloud_zip_with_a_bearer_token(http_server: LocalServer, tmp_path: Path) -> None:
    """An access token goes as Bearer; zip revisions fetch the .zip archive."""
    path = f"/team/web-app/get/{SHA}.zip"
    http_server.serve_bytes(path, b"PK zip bytes")
    config = bitbucket_config(tmp_path, f"{http_server.url}/2.0", token=TOKEN)
    folder = deployment(tmp_path)
    await fetch_bitbucket(revision(BundleType.ZIP), folder, config, retry_delays=NO_WAIT)
    assert http_server.requests_to(path)[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert folder.bundle.read_bytes() == b"PK zip bytes"


@pytest.mark.asyncio
async def test_server_archive_with_context_path_and_token(
    http_server: LocalServer, tmp_path: Path
) -> None:
    """Server/Data Center: {api_url}/rest/api/latest/projects/{key}/repos/{repo}/archive?at=&format=."""
    path = "/bitbucket/rest/api/latest/projects/PRJ/repos/web-app/archive"
    seen_query: list[dict[str, str]] = []

    def archive(ex: Exchange) -> None:
        seen_query.append(ex.query)
        ex.serve(ARCHIVE, etag=None)

    http_server.route(path, archive)
    config = bitbucket_config(tmp_path, f"{http_server.url}/bitbucket", "server", token=TOKEN)
    folder = deployment(tmp_path)
    await fetch_bitbucket(revision(workspace="PRJ"), folder, config, retry_delays=NO_WAIT)
    assert seen_query == [{"at": SHA, "format": "tgz"}]
    assert http_server.requests_to(path)[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert folder.bundle.read_bytes() == ARCHIVE


@pytest.mark.asyncio
async def test_token_wins_over_username_and_password(
    http_server: LocalServer, tmp_path: Path
) -> None:
    """With both configured, the bearer token is sent."""
    http_server.serve_bytes(f"/team/web-app/get/{SHA}.tar.gz", ARCHIVE)
    config = bitbucket_config(
        tmp_path, http_server.url, username="deployer", password=PASSWORD, token=TOKEN
    )
    await fetch_bitbucket(revision(), deployment(tmp_path), config, retry_delays=NO_WAIT)
    assert http_server.requests[0].headers["authorization"] == f"Bearer {TOKEN}"


@pytest.mark.asyncio
async def test_redirect_to_a_cdn_drops_the_credentials(
    http_server: LocalServer, other_server: LocalServer, tmp_path: Path
) -> None:
    """An archive redirected to another host is fetched there without Authorization."""
    target = other_server.serve_bytes("/cdn/archive.tar.gz", ARCHIVE)
    http_server.route(f"/team/web-app/get/{SHA}.tar.gz", lambda ex: ex.redirect(target))
    config = bitbucket_config(tmp_path, http_server.url, token=TOKEN)
    await fetch_bitbucket(revision(), deployment(tmp_path), config, retry_delays=NO_WAIT)
    assert "authorization" not in other_server.requests[0].headers


@pytest.mark.asyncio
async def test_401_names_the_credentials_settings(http_server: LocalServer, tmp_path: Path) -> None:
    """Refused credentials are named by their settings, never by value."""
    http_server.route(
        f"/team/web-app/get/{SHA}.tar.gz",
        lambda ex: ex.respond(
            401, b'{"type": "error", "error": {"message": "Invalid credentials"}}'
        ),
    )
    config = bitbucket_config(tmp_path, http_server.url, username="deployer", password=PASSWORD)
    with pytest.raises(BundleError) as caught:
        await fetch_bitbucket(revision(), deployment(tmp_path), config, retry_delays=NO_WAIT)
    url = f"{http_server.url}/team/web-app/get/{SHA}.tar.gz"
    assert str(caught.value) == (
        f"Cannot download Bitbucket archive team/web-app@{SHA} from {url}: Bitbucket answered "
        "401 'Unauthorized' (Invalid credentials). Bitbucket refused the credentials in "
        "bitbucket.username and bitbucket.password_file: check that they are valid, not "
        "expired, and allowed to read team/web-app (repository read permission)."
    )
    assert PASSWORD not in str(caught.value)


@pytest.mark.asyncio
async def test_404_anonymous_hints_at_credentials(http_server: LocalServer, tmp_path: Path) -> None:
    """A 404 without credentials says a private repository needs them."""
    config = bitbucket_config(tmp_path, http_server.url)
    with pytest.raises(BundleError) as caught:
        await fetch_bitbucket(revision(), deployment(tmp_path), config, retry_delays=NO_WAIT)
    assert str(caught.value).endswith(
        "Bitbucket answered 404 'Not Found'. Check that the repository team/web-app and the "
        f"commit {SHA} exist; a private repository needs bitbucket.token_file, or "
        "bitbucket.username and bitbucket.password_file, in the agent config."
    )
    assert "authorization" not in http_server.requests[0].headers


@pytest.mark.asyncio
async def test_server_errors_are_retried(http_server: LocalServer, tmp_path: Path) -> None:
    """A 503 then the archive: the download succeeds on the second attempt."""
    path = f"/team/web-app/get/{SHA}.tar.gz"
    http_server.route(path, lambda ex: ex.respond(503) if ex.count == 1 else ex.serve(ARCHIVE))
    folder = deployment(tmp_path)
    await fetch_bitbucket(
        revision(), folder, bitbucket_config(tmp_path, http_server.url), retry_delays=NO_WAIT
    )
    assert folder.bundle.read_bytes() == ARCHIVE
    assert len(http_server.requests_to(path)) == 2


@pytest.mark.asyncio
async def test_password_file_without_username_is_refused(tmp_path: Path) -> None:
    """A password needs its user name; the message names the missing key."""
    config = bitbucket_config(tmp_path, "http://127.0.0.1:9", password=PASSWORD)
    with pytest.raises(BundleError) as caught:
        await fetch_bitbucket(revision(), deployment(tmp_path), config)
    assert str(caught.value) == (
        f"bitbucket.password_file is set but bitbucket.username is not in {tmp_path}/agent.yml: a "
        "Bitbucket app password (or Server access token used as a password) goes with the user "
        "name that owns it. Set bitbucket.username."
    )


@pytest.mark.asyncio
async def test_unreadable_password_file_names_key_and_file(tmp_path: Path) -> None:
    """A missing password file fails before any request, naming bitbucket.password_file."""
    settings = BitbucketSettings(
        api_url="http://127.0.0.1:9", username="deployer", password_file=tmp_path / "missing"
    )
    config = replace(AgentConfig(), bitbucket=settings)
    with pytest.raises(BundleError) as caught:
        await fetch_bitbucket(revision(), deployment(tmp_path), config)
    assert str(caught.value) == (
        f"Cannot read bitbucket.password_file {tmp_path}/missing (No such file or directory). "
        "Create the file with the credential in it, readable by the agent, or change "
        "bitbucket.password_file."
    )


@pytest.mark.asyncio
async def test_empty_token_file_is_refused(tmp_path: Path) -> None:
    """An empty token file is an error, not an anonymous request."""
    config = bitbucket_config(tmp_path, "http://127.0.0.1:9", token="")
    with pytest.raises(BundleError) as caught:
        await fetch_bitbucket(revision(), deployment(tmp_path), config)
    assert str(caught.value) == (
        f"bitbucket.token_file {tmp_path}/bitbucket-token is empty. Write the credential in it, "
        "on one line."
    )

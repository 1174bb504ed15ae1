"""GitHub revisions against a local server reproducing the archive endpoint and codeload."""

from __future__ import annotations

import asyncio
import inspect
import io
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from codedeploy_agent.archive import unpack_bundle
from codedeploy_agent.config import AgentConfig, ArchiveLimits, GitHubSettings
from codedeploy_agent.errors import BundleError
from codedeploy_agent.host.layout import DeploymentDir
from codedeploy_agent.sources.github import GITHUB_RETRY_DELAYS, archive_url, fetch_github
from codedeploy_agent.spec import BundleType, GitHubRevision
from tests.sources.conftest import Exchange, LocalServer, make_config, unused_port

SHA = "4f2c1e8a9b7d6c5e4f3a2b1c0d9e8f7a6b5c4d3e"
TOKEN = "ghp_exampleToken123"  # noqa: S105 - a test credential
CODELOAD_SECRET = "CODELOADTOKEN42"  # noqa: S105 - a test credential
NO_WAIT = (0.0, 0.0, 0.0)
ARCHIVE_PATH = f"/repos/octo/app/tarball/{SHA}"


def tarball() -> bytes:
    """What GitHub serves: one `<owner>-<repo>-<sha7>/` folder holding the tree."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, content in {
            "appspec.yml": b"version: 0.0\nos: linux\n",
            "scripts/start.sh": b"#!/bin/sh\nexit 0\n",
        }.items():
            info = tarfile.TarInfo(f"octo-app-{SHA[:7]}/{name}")
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


TARBALL = tarball()


def github_config(tmp_path: Path, api: LocalServer, token: str | None = TOKEN) -> AgentConfig:
    token_file = None
    if token is not None:
        token_file = tmp_path / "github-token"
        token_file.write_text(token + "\n")
    config = make_config(tmp_path)
    return replace(
        config,
        github=GitHubSettings(api_url=api.url + "/", token_file=token_file),
        source=tmp_path / "codedeployagent.yml",
    )


def deployment(tmp_path: Path) -> DeploymentDir:
    folder = DeploymentDir(tmp_path / "dg" / "d-1")
    folder.path.mkdir(parents=True)
    return folder


def revision(kind: BundleType = BundleType.TAR) -> GitHubRevision:
    return GitHubRevision("octo", "app", SHA, kind)


def codeload(server: LocalServer, data: bytes = TARBALL) -> str:
    """A codeload-like archive host; returns the signed URL the API redirects to."""
    server.serve_bytes(f"/octo/app/legacy.tar.gz/{SHA}", data, etag=None)
    return f"{server.url}/octo/app/legacy.tar.gz/{SHA}?token={CODELOAD_SECRET}"


@pytest.mark.asyncio
async def test_tarball_is_fetched_through_the_redirect_and_unpacks(
    http_server: LocalServer, other_server: LocalServer, tmp_path: Path, no_blocking: None
) -> None:
    """The API redirects to codeload; the bundle lands at bundle.tar and unpacks, top folder
    stripped; the token goes to the API only, and neither secret reaches the logs."""
    target = codeload(other_server)
    http_server.route(ARCHIVE_PATH, lambda ex: ex.redirect(target, 302))
    folder = deployment(tmp_path)
    with capture_logs() as logs:
        await fetch_github(
            revision(), folder, github_config(tmp_path, http_server), retry_delays=NO_WAIT
        )
    assert folder.bundle.read_bytes() == TARBALL
    [api] = http_server.requests_to(ARCHIVE_PATH)
    assert api.headers["authorization"] == f"token {TOKEN}"
    assert api.headers["accept"] == "application/vnd.github+json"
    assert api.headers["x-github-api-version"] == "2022-11-28"
    assert api.headers["user-agent"].startswith("codedeploy-agent/")
    [archive] = other_server.requests_to(f"/octo/app/legacy.tar.gz/{SHA}")
    assert "authorization" not in archive.headers
    await asyncio.to_thread(
        unpack_bundle,
        folder.bundle,
        BundleType.TAR,
        folder.archive,
        limits=ArchiveLimits(),
        temp_dir=folder.archive_temp,
    )
    assert sorted(p.name for p in folder.archive.iterdir()) == ["appspec.yml", "scripts"]
    assert TOKEN not in repr(logs)
    assert CODELOAD_SECRET not in repr(logs)


@pytest.mark.asyncio
async def test_anonymous_download_sends_no_authorization(
    http_server: LocalServer, tmp_path: Path, no_blocking: None
) -> None:
    """Without github.token_file the request is anonymous; zip revisions ask for the zipball."""
    http_server.serve_bytes(f"/repos/octo/app/zipball/{SHA}", b"PK\x05\x06" + bytes(18))
    folder = deployment(tmp_path)
    await fetch_github(
        revision(BundleType.ZIP),
        folder,
        github_config(tmp_path, http_server, token=None),
        retry_delays=NO_WAIT,
    )
    [seen] = http_server.requests
    assert seen.path == f"/repos/octo/app/zipball/{SHA}"
    assert "authorization" not in seen.headers
    assert folder.bundle.read_bytes() == b"PK\x05\x06" + bytes(18)


def test_archive_url_follows_api_url_for_enterprise(tmp_path: Path) -> None:
    """github.api_url is the base (GitHub Enterprise: https://host/api/v3)."""
    config = replace(
        make_config(tmp_path), github=GitHubSettings(api_url="https://ghe.corp/api/v3/")
    )
    assert (
        archive_url(revision(), config) == f"https://ghe.corp/api/v3/repos/octo/app/tarball/{SHA}"
    )
    assert (
        archive_url(revision(), AgentConfig())
        == f"https://api.github.com/repos/octo/app/tarball/{SHA}"
    )


@pytest.mark.asyncio
async def test_other_bundle_types_fail_with_the_real_agents_message(tmp_path: Path) -> None:
    """A tgz GitHub revision is refused with CodeDeploy's text (unclosed bracket included)."""
    with pytest.raises(BundleError) as caught:
        await fetch_github(revision(BundleType.TGZ), deployment(tmp_path), AgentConfig())
    assert str(caught.value) == (
        "GitHub revision specified with bundle_type other than zip or tar [bundle_type=tgz. "
        "GitHub serves only tarballs and zipballs: set the revision's BundleType to tar or zip."
    )


@pytest.mark.asyncio
async def test_server_errors_are_retried_then_succeed(
    http_server: LocalServer, other_server: LocalServer, tmp_path: Path
) -> None:
    """Two 5xx answers, then the redirect: the bundle arrives on the third attempt."""
    target = codeload(other_server)

    def flaky(ex: Exchange) -> None:
        if ex.count <= 2:
            ex.respond(502 if ex.count == 1 else 503)
        else:
            ex.redirect(target)

    http_server.route(ARCHIVE_PATH, flaky)
    folder = deployment(tmp_path)
    await fetch_github(
        revision(), folder, github_config(tmp_path, http_server), retry_delays=NO_WAIT
    )
    assert folder.bundle.read_bytes() == TARBALL
    assert len(http_server.requests_to(ARCHIVE_PATH)) == 3


@pytest.mark.asyncio
async def test_three_retries_then_the_real_agents_message(
    http_server: LocalServer, tmp_path: Path
) -> None:
    """Four failed attempts give `Could not download bundle at ... after 3 retries. Server
    returned codes: ...` with every code, then a hint."""
    codes = iter([500, 502, 503, 500])
    http_server.route(ARCHIVE_PATH, lambda ex: ex.respond(next(codes)))
    config = github_config(tmp_path, http_server)
    folder = deployment(tmp_path)
    with pytest.raises(BundleError) as caught:
        await fetch_github(revision(), folder, config, retry_delays=NO_WAIT)
    url = f"{http_server.url}/repos/octo/app/tarball/{SHA}"
    assert str(caught.value) == (
        f"Could not download bundle at '{url}' after 3 retries. Server returned codes: "
        "500 'Internal Server Error'; 502 'Bad Gateway'; 503 'Service Unavailable'; "
        "500 'Internal Server Error'. GitHub kept failing; try the deployment again later."
    )
    assert list(folder.path.iterdir()) == []


def test_the_real_agents_delays_are_the_default() -> None:
    """Without an override the waits are 10, 30 and 90 seconds, as in the real agent."""
    assert GITHUB_RETRY_DELAYS == (10.0, 30.0, 90.0)
    default = inspect.signature(fetch_github).parameters["retry_delays"].default
    assert default == GITHUB_RETRY_DELAYS


@pytest.mark.asyncio
async def test_404_without_a_token_hints_at_token_file(
    http_server: LocalServer, tmp_path: Path
) -> None:
    """A 404 to an anonymous request fails at once and says private repos need a token."""
    http_server.route(ARCHIVE_PATH, lambda ex: ex.respond(404, b'{"message": "Not Found"}'))
    config = github_config(tmp_path, http_server, token=None)
    with pytest.raises(BundleError) as caught:
        await fetch_github(revision(), deployment(tmp_path), config, retry_delays=NO_WAIT)
    url = f"{http_server.url}/repos/octo/app/tarball/{SHA}"
    assert str(caught.value) == (
        f"Could not download bundle at '{url}'. Server returned code 404 'Not Found'. GitHub "
        "answers 404 for private repositories when no token is sent: if octo/app is private, "
        f"set github.token_file in {tmp_path}/codedeployagent.yml to a file holding a token "
        f"with read access to octo/app. Otherwise check that the repository octo/app and the "
        f"commit {SHA} exist."
    )
    assert len(http_server.requests_to(ARCHIVE_PATH)) == 1


@pytest.mark.asyncio
async def test_404_with_a_token_names_the_token_file(
    http_server: LocalServer, tmp_path: Path
) -> None:
    """A 404 with a token says the repository, the commit or the token's access is wrong."""
    http_server.route(ARCHIVE_PATH, lambda ex: ex.respond(404))
    config = github_config(tmp_path, http_server)
    with pytest.raises(BundleError) as caught:
        await fetch_github(revision(), deployment(tmp_path), config, retry_delays=NO_WAIT)
    assert str(caught.value).endswith(
        f"Server returned code 404 'Not Found'. Check that the repository octo/app and the commit "
        f"{SHA} exist, and that the token in github.token_file ({tmp_path}/github-token) can "
        "read the repository."
    )


@pytest.mark.asyncio
async def test_401_says_the_token_was_refused(http_server: LocalServer, tmp_path: Path) -> None:
    """A refused token is named by its file, never by its value."""
    http_server.route(ARCHIVE_PATH, lambda ex: ex.respond(401, b'{"message": "Bad credentials"}'))
    with pytest.raises(BundleError) as caught:
        await fetch_github(
            revision(),
            deployment(tmp_path),
            github_config(tmp_path, http_server),
            retry_delays=NO_WAIT,
        )
    assert str(caught.value).endswith(
        "Server returned code 401 'Unauthorized' (Bad credentials). GitHub refused the token in "
        f"github.token_file ({tmp_path}/github-token): it is invalid, expired or revoked. Replace it."
    )
    assert TOKEN not in str(caught.value)


@pytest.mark.asyncio
async def test_anonymous_rate_limit_hints_at_a_token(
    http_server: LocalServer, tmp_path: Path
) -> None:
    """GitHub's 403 rate-limit answer explains the anonymous limit and the fix."""
    body = b'{"message": "API rate limit exceeded for 127.0.0.1. (But here\'s the good news...)"}'
    http_server.route(ARCHIVE_PATH, lambda ex: ex.respond(403, body))
    config = github_config(tmp_path, http_server, token=None)
    with pytest.raises(BundleError) as caught:
        await fetch_github(revision(), deployment(tmp_path), config, retry_delays=NO_WAIT)
    message = str(caught.value)
    assert "Server returned code 403 'Forbidden' (API rate limit exceeded for 127.0.0.1." in message
    assert message.endswith(
        "Anonymous requests are limited to 60 an hour per address: set github.token_file in "
        f"{tmp_path}/codedeployagent.yml to a file holding a token with read access to octo/app."
    )


@pytest.mark.asyncio
async def test_missing_token_file_names_the_key_and_the_file(tmp_path: Path) -> None:
    """An unreadable github.token_file fails before any request, naming key and path."""
    config = replace(
        AgentConfig(),
        github=GitHubSettings(api_url="http://127.0.0.1:9", token_file=tmp_path / "nope"),
        source=tmp_path / "agent.yml",
    )
    with pytest.raises(BundleError) as caught:
        await fetch_github(revision(), deployment(tmp_path), config, retry_delays=NO_WAIT)
    assert str(caught.value) == (
        f"Cannot read github.token_file {tmp_path}/nope (No such file or directory). Create the "
        "file with the credential in it, readable by the agent, or change github.token_file in "
        f"{tmp_path}/agent.yml."
    )


@pytest.mark.asyncio
async def test_network_failures_are_retried_with_the_same_message(tmp_path: Path) -> None:
    """Connection errors are retried too (the real agent did not), then reported the same way."""
    port = unused_port()
    config = replace(AgentConfig(), github=GitHubSettings(api_url=f"http://127.0.0.1:{port}"))
    with pytest.raises(BundleError) as caught:
        await fetch_github(revision(), deployment(tmp_path), config, retry_delays=NO_WAIT)
    refused = f"connection refused while connecting to 127.0.0.1:{port}"
    assert str(caught.value) == (
        f"Could not download bundle at 'http://127.0.0.1:{port}/repos/octo/app/tarball/{SHA}' "
        f"after 3 retries. Server returned codes: {refused}; {refused}; {refused}; {refused}. "
        "Check the network, DNS and proxy settings (:proxy_uri:, HTTPS_PROXY, NO_PROXY)."
    )

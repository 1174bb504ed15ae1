"""Bitbucket revisions: the archive of one commit (no CodeDeploy equivalent in the real agent;
the CodeDeploy console's Bitbucket integration uploads to S3 instead).

URL forms:

- Cloud (`bitbucket.flavor: cloud`): `{archive base}/{workspace}/{repository}/get/{commit}.tar.gz`
  (or `.zip`). Archives are not served by the REST API host: the archive base is derived from
  `bitbucket.api_url` by dropping a leading `api.` from the host name and a trailing `/2.0` from
  the path, so the default `https://api.bitbucket.org/2.0` gives `https://bitbucket.org`, and a
  test or mirror base such as `http://127.0.0.1:8080/2.0` gives `http://127.0.0.1:8080`.
- Server / Data Center (`bitbucket.flavor: server`):
  `{api_url}/rest/api/latest/projects/{workspace}/repos/{repository}/archive?at={commit}&format=tgz`
  (or `zip`, `tar`); `api_url` is the server's base URL (with its context path, if any) and the
  workspace is the project key (`~user` for a personal repository).

Authentication, read from files when a download needs it: `bitbucket.token_file` gives
`Authorization: Bearer <token>` (repository, project or workspace access tokens; HTTP access
tokens on Server); otherwise `bitbucket.username` with `bitbucket.password_file` gives Basic
authentication (an app password on Cloud, a password or HTTP access token on Server); otherwise
the request is anonymous (public repositories). When both are configured the token wins.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Final
from urllib.parse import quote, urlsplit, urlunsplit

from codedeploy_agent.config import AgentConfig, BitbucketSettings
from codedeploy_agent.errors import BundleError
from codedeploy_agent.host.layout import DeploymentDir
from codedeploy_agent.log import get_logger
from codedeploy_agent.sources.credentials import read_secret_file
from codedeploy_agent.sources.http import DownloadError, download, run_cancellable
from codedeploy_agent.sources.redact import redact_url
from codedeploy_agent.spec import BitbucketRevision, BundleType

_log = get_logger("codedeploy_agent.sources.bitbucket")

_CLOUD_SUFFIXES: Final = {BundleType.TGZ: ".tar.gz", BundleType.ZIP: ".zip"}
_SERVER_FORMATS: Final = {BundleType.TGZ: "tgz", BundleType.ZIP: "zip", BundleType.TAR: "tar"}


async def fetch_bitbucket(
    revision: BitbucketRevision,
    deployment: DeploymentDir,
    config: AgentConfig,
    *,
    retry_delays: Sequence[float] | None = None,
) -> None:
    """Download the commit's archive to `deployment.bundle` (all blocking work in a thread).

    `retry_delays` replaces the default backoff between attempts (tests pass zeros).
    """
    await run_cancellable(
        lambda cancel: _fetch(revision, deployment.bundle, config, retry_delays, cancel)
    )


def cloud_archive_base(api_url: str) -> str:
    """The Bitbucket Cloud archive base for an API root (see the module docstring)."""
    parts = urlsplit(api_url.rstrip("/"))
    netloc = parts.netloc
    host = parts.hostname or ""
    if host.startswith("api."):
        netloc = netloc.replace(host, host.removeprefix("api."), 1)
    path = parts.path.removesuffix("/2.0")
    return urlunsplit((parts.scheme, netloc, path, "", "")).rstrip("/")


def archive_url(revision: BitbucketRevision, settings: BitbucketSettings) -> str:
    """The archive URL of the commit for the configured flavor; BundleError for a bundle type
    the flavor cannot serve."""
    workspace = quote(revision.workspace, safe="")
    repository = quote(revision.repository, safe="")
    commit = quote(revision.commit_id, safe="")
    if settings.flavor == "cloud":
        suffix = _CLOUD_SUFFIXES.get(revision.bundle_type)
        if suffix is None:
            raise BundleError(
                f"Bitbucket Cloud serves commit archives as tgz or zip, not "
                f"{revision.bundle_type}: set the revision's BundleType to tgz or zip."
            )
        base = cloud_archive_base(settings.api_url)
        return f"{base}/{workspace}/{repository}/get/{commit}{suffix}"
    kind = _SERVER_FORMATS.get(revision.bundle_type)
    if kind is None:
        raise BundleError(
            f"Bitbucket Server serves commit archives as tgz, zip or tar, not "
            f"{revision.bundle_type}: set the revision's BundleType to tgz or zip."
        )
    base = settings.api_url.rstrip("/")
    return (
        f"{base}/rest/api/latest/projects/{workspace}/repos/{repository}/archive"
        f"?at={commit}&format={kind}"
    )


def authorization(config: AgentConfig) -> str | None:
    """The Authorization header for the configured credentials (read now), or None."""
    settings = config.bitbucket
    where = f" in {config.source}" if config.source is not None else " in the agent config"
    if settings.token_file is not None:
        token = read_secret_file(settings.token_file, "bitbucket.token_file", config.source)
        return f"Bearer {token}"
    if settings.password_file is not None:
        if settings.username is None:
            raise BundleError(
                f"bitbucket.password_file is set but bitbucket.username is not{where}: a "
                "Bitbucket app password (or Server access token used as a password) goes with "
                "the user name that owns it. Set bitbucket.username."
            )
        password = read_secret_file(
            settings.password_file, "bitbucket.password_file", config.source
        )
        pair = f"{settings.username}:{password}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")
    if settings.username is not None:
        raise BundleError(
            f"bitbucket.username is set but bitbucket.password_file is not{where}. Set "
            "bitbucket.password_file to a file holding the app password (or access token)."
        )
    return None


def _fetch(
    revision: BitbucketRevision,
    bundle: Path,
    config: AgentConfig,
    retry_delays: Sequence[float] | None,
    cancel: threading.Event,
) -> None:
    url = archive_url(revision, config.bitbucket)
    header = authorization(config)
    headers = {"Authorization": header} if header is not None else {}
    _log.debug(
        "Bitbucket archive requested",
        flavor=config.bitbucket.flavor,
        authentication=header.split(" ", 1)[0].lower() if header else "anonymous",
        url=redact_url(url),
    )
    label = f"Bitbucket archive {revision.workspace}/{revision.repository}@{revision.commit_id}"
    try:
        download(
            url,
            bundle,
            config=config,
            label=label,
            headers=headers,
            retry_delays=retry_delays,
            cancel=cancel,
        )
    except DownloadError as exc:
        raise _explain(
            exc, label, url, revision, config, authenticated=header is not None
        ) from None


def _explain(
    exc: DownloadError,
    label: str,
    url: str,
    revision: BitbucketRevision,
    config: AgentConfig,
    *,
    authenticated: bool,
) -> BundleError:
    if exc.transient or exc.status not in (401, 403, 404):
        return exc
    repository = f"{revision.workspace}/{revision.repository}"
    credentials = (
        "bitbucket.token_file"
        if config.bitbucket.token_file is not None
        else "bitbucket.username and bitbucket.password_file"
    )
    if exc.status == 404:
        hint = (
            f"Check that the repository {repository} and the commit {revision.commit_id} exist"
            + (
                f" and that the credentials in {credentials} can read it."
                if authenticated
                else "; a private repository needs bitbucket.token_file, or bitbucket.username "
                "and bitbucket.password_file, in the agent config."
            )
        )
    elif authenticated:
        hint = (
            f"Bitbucket refused the credentials in {credentials}: check that they are valid, "
            f"not expired, and allowed to read {repository} (repository read permission)."
        )
    else:
        hint = (
            f"{repository} needs credentials: set bitbucket.token_file, or bitbucket.username "
            "and bitbucket.password_file, in the agent config."
        )
    detail = f" ({exc.detail})" if exc.detail and exc.detail.lower() != exc.reason.lower() else ""
    return DownloadError(
        f"Cannot download {label} from {redact_url(url)}: Bitbucket answered {exc.status} "
        f"'{exc.reason}'{detail}. {hint}",
        url=exc.url,
        status=exc.status,
        reason=exc.reason,
        detail=exc.detail,
        failures=exc.failures,
    )

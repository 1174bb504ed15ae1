"""GitHub revisions: the tarball or zipball of one commit (reference §6.1).

`GET {github.api_url}/repos/{account}/{repository}/{tarball|zipball}/{commit}`, which GitHub
answers with a redirect to codeload (followed without our Authorization header: it goes to
another origin). With `github.token_file` set, requests carry `Authorization: token <token>` as
in the real agent; otherwise they are anonymous (public repositories only, 60 requests an hour).
GitHub's REST API wants a User-Agent (the download layer sends `codedeploy-agent/<version>`),
and documents `Accept: application/vnd.github+json` and an API version for this endpoint.

Retries are the real agent's: after 10, 30 and 90 seconds, then
`Could not download bundle at '<uri>' after 3 retries. Server returned codes: <c1>; <c2>...`.
Two changes, on purpose: network errors and timeouts are retried too (the real agent retried
only HTTP errors, one cause of its intermittent "execution expired" failures, anchors §3 #12),
and answers no retry can change (401, 403, 404...) fail at once, with the real agent's per-attempt
log text `Could not download bundle at '<uri>'. Server returned code <c> '<reason>'` and a hint,
instead of after two minutes of pointless waiting.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Final
from urllib.parse import quote, urlsplit

from codedeploy_agent.config import AgentConfig
from codedeploy_agent.errors import BundleError
from codedeploy_agent.host.layout import DeploymentDir
from codedeploy_agent.log import get_logger
from codedeploy_agent.sources.credentials import read_secret_file
from codedeploy_agent.sources.http import DownloadError, download, run_cancellable
from codedeploy_agent.sources.proxy import is_loopback
from codedeploy_agent.spec import BundleType, GitHubRevision

_log = get_logger("codedeploy_agent.sources.github")

#: The real agent's waits before its three retries (10 * 3**n seconds).
GITHUB_RETRY_DELAYS: Final = (10.0, 30.0, 90.0)
_FORMATS: Final = {BundleType.TAR: "tarball", BundleType.ZIP: "zipball"}
API_VERSION: Final = "2022-11-28"


async def fetch_github(
    revision: GitHubRevision,
    deployment: DeploymentDir,
    config: AgentConfig,
    *,
    retry_delays: Sequence[float] = GITHUB_RETRY_DELAYS,
) -> None:
    """Download the commit's archive to `deployment.bundle` (all blocking work in a thread)."""
    await run_cancellable(
        lambda cancel: _fetch(revision, deployment.bundle, config, retry_delays, cancel)
    )


def archive_url(revision: GitHubRevision, config: AgentConfig) -> str:
    """The API URL of the commit's archive; BundleError for a bundle type GitHub cannot serve."""
    kind = _FORMATS.get(revision.bundle_type)
    if kind is None:
        # The real agent's text (its bracket is never closed); the hint follows.
        raise BundleError(
            "GitHub revision specified with bundle_type other than zip or tar "
            f"[bundle_type={revision.bundle_type}. GitHub serves only tarballs and zipballs: "
            "set the revision's BundleType to tar or zip."
        )
    base = config.github.api_url.rstrip("/")
    names = "/".join(quote(name, safe="") for name in (revision.account, revision.repository))
    return f"{base}/repos/{names}/{kind}/{quote(revision.commit_id, safe='')}"


def _fetch(
    revision: GitHubRevision,
    bundle: Path,
    config: AgentConfig,
    retry_delays: Sequence[float],
    cancel: threading.Event,
) -> None:
    url = archive_url(revision, config)
    token_file = config.github.token_file
    headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": API_VERSION}
    if token_file is not None:
        token = read_secret_file(token_file, "github.token_file", config.source)
        headers["Authorization"] = f"token {token}"
        if urlsplit(url).scheme == "http" and not is_loopback(urlsplit(url).hostname or ""):
            _log.warning(
                "GitHub token sent without TLS",
                api_url=config.github.api_url,
                hint="use an https:// github.api_url",
            )
    _log.debug(
        "GitHub repository download requested",
        authenticated=token_file is not None,
        repository=f"{revision.account}/{revision.repository}",
        commit=revision.commit_id,
    )
    label = f"GitHub archive {revision.account}/{revision.repository}@{revision.commit_id}"
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
        raise _explain(exc, url, revision, config, len(retry_delays)) from None


def _explain(
    exc: DownloadError,
    url: str,
    revision: GitHubRevision,
    config: AgentConfig,
    retries: int,
) -> BundleError:
    """Turn a download failure into the real agent's message, with what to check."""
    if exc.transient:
        codes = "; ".join(exc.failures)
        hint = (
            "GitHub kept failing; try the deployment again later."
            if exc.status is not None
            else "Check the network, DNS and proxy settings (:proxy_uri:, HTTPS_PROXY, NO_PROXY)."
        )
        return BundleError(
            f"Could not download bundle at '{url}' after {retries} retries. Server returned "
            f"codes: {codes}. {hint}"
        )
    if exc.status is None:  # TLS, size cap, disk: the download layer's message says it all
        return exc
    where = f" in {config.source}" if config.source is not None else " in the agent config"
    repository = f"{revision.account}/{revision.repository}"
    token_file = config.github.token_file
    set_token = (
        f"set github.token_file{where} to a file holding a token with read access to {repository}"
    )
    detail = f" ({exc.detail})" if exc.detail and exc.detail.lower() != exc.reason.lower() else ""
    if exc.status == 404 and token_file is None:
        hint = (
            f"GitHub answers 404 for private repositories when no token is sent: if {repository} "
            f"is private, {set_token}. Otherwise check that the repository {repository} and the "
            f"commit {revision.commit_id} exist."
        )
    elif exc.status == 404:
        hint = (
            f"Check that the repository {repository} and the commit {revision.commit_id} exist, "
            f"and that the token in github.token_file ({token_file}) can read the repository."
        )
    elif exc.status == 401:
        hint = (
            f"GitHub refused the token in github.token_file ({token_file}): it is invalid, "
            "expired or revoked. Replace it."
            if token_file is not None
            else f"GitHub wants credentials: {set_token}."
        )
    elif exc.status == 403 and "rate limit" in exc.detail.lower():
        hint = (
            f"Anonymous requests are limited to 60 an hour per address: {set_token}."
            if token_file is None
            else "The token's rate limit is used up: wait for it to reset, or use another token."
        )
    elif exc.status == 403:
        hint = (
            f"The token in github.token_file ({token_file}) may not read {repository}: give it "
            "read access to the repository's contents."
            if token_file is not None
            else f"GitHub refused an anonymous request: {set_token}."
        )
    else:
        hint = f"Check the repository {repository}, the commit and github.api_url."
    return BundleError(
        f"Could not download bundle at '{url}'. Server returned code {exc.status} "
        f"'{exc.reason}'{detail}. {hint}"
    )

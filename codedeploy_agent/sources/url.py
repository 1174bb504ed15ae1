"""URL revisions: an archive at an HTTPS URL, verified against its SHA-256 (no CodeDeploy
equivalent; our job documents' `UrlRevision`).

Only https is accepted, except to loopback: a bundle fetched over plain http could be altered
(integrity) or read (secrecy) by anyone on the path, and the job document's Sha256 protects only
the first. The Sha256 is mandatory (the job-document decoder enforces it; checked again here,
since the dataclass can be built by other callers).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import urlsplit

from codedeploy_agent.config import AgentConfig
from codedeploy_agent.errors import BundleError
from codedeploy_agent.host.layout import DeploymentDir
from codedeploy_agent.sources.http import download, run_cancellable
from codedeploy_agent.sources.proxy import is_loopback
from codedeploy_agent.sources.redact import redact_url
from codedeploy_agent.spec import UrlRevision

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


async def fetch_url(
    revision: UrlRevision,
    deployment: DeploymentDir,
    config: AgentConfig,
    *,
    retry_delays: Sequence[float] | None = None,
) -> None:
    """Download the revision's URL to `deployment.bundle`, checking its SHA-256.

    `retry_delays` replaces the default backoff between attempts (tests pass zeros).
    """
    url = check_url_revision(revision)
    await run_cancellable(
        lambda cancel: download(
            url,
            deployment.bundle,
            config=config,
            label="the URL revision",
            expected_sha256=revision.sha256.strip().lower(),
            retry_delays=retry_delays,
            cancel=cancel,
        )
    )


def check_url_revision(revision: UrlRevision) -> str:
    """The revision's URL once it passes the scheme and Sha256 rules; BundleError otherwise."""
    url = revision.url.strip()
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        raise BundleError(f"The URL revision {shown} is not a valid URL.") from None
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if scheme == "http" and not is_loopback(host):
        raise BundleError(
            f"The URL revision {shown} uses http://, which is refused: without TLS anyone on the "
            "network path can read the bundle (secrecy) or swap it (integrity). Serve it over "
            "https://; plain http:// is accepted only for loopback addresses (127.0.0.1, ::1, "
            "localhost)."
        )
    if scheme not in ("http", "https") or not host:
        raise BundleError(
            f"The URL revision {shown} must be an https:// URL naming a host (http:// only for "
            "loopback)."
        )
    if not _SHA256.fullmatch(revision.sha256.strip()):
        raise BundleError(
            f"The URL revision {shown} has no valid Sha256 (64 hexadecimal digits, got "
            f"{revision.sha256.strip()[:80]!r}). A URL revision must name the SHA-256 of its "
            "bundle: compute it with `sha256sum bundle.tgz` and put it in the revision."
        )
    return url

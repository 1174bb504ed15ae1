"""Revision sources: put a revision's bundle where DownloadBundle expects it.

Each source is an async function that fetches one revision type into a deployment directory:
archives go to `bundle.tar` (any format, like the real agent), git checkouts and local
directories straight to `deployment-archive/`. Remote sources are imported only when a job needs
them, so that the resident daemon does not carry their code (or boto3) while it waits.
"""

from __future__ import annotations

from codedeploy_agent.config import AgentConfig
from codedeploy_agent.host.layout import DeploymentDir
from codedeploy_agent.sources.local import fetch_local
from codedeploy_agent.spec import (
    BitbucketRevision,
    CodeCommitRevision,
    GitHubRevision,
    GitRevision,
    LocalRevision,
    Revision,
    S3Revision,
    UrlRevision,
)


async def fetch_revision(
    revision: Revision, deployment: DeploymentDir, config: AgentConfig
) -> None:
    """Fetch `revision` into `deployment` (BundleError saying which source and what to check)."""
    # Lazy imports: each source loads its module (and boto3 for S3) only when a job uses it.
    if isinstance(revision, LocalRevision):
        await fetch_local(revision, deployment, config)
    elif isinstance(revision, S3Revision):
        from codedeploy_agent.sources.s3 import fetch_s3  # noqa: PLC0415

        await fetch_s3(revision, deployment, config)
    elif isinstance(revision, GitHubRevision):
        from codedeploy_agent.sources.github import fetch_github  # noqa: PLC0415

        await fetch_github(revision, deployment, config)
    elif isinstance(revision, BitbucketRevision):
        from codedeploy_agent.sources.bitbucket import fetch_bitbucket  # noqa: PLC0415

        await fetch_bitbucket(revision, deployment, config)
    elif isinstance(revision, UrlRevision):
        from codedeploy_agent.sources.url import fetch_url  # noqa: PLC0415

        await fetch_url(revision, deployment, config)
    elif isinstance(revision, CodeCommitRevision):
        from codedeploy_agent.sources.codecommit import fetch_codecommit  # noqa: PLC0415

        await fetch_codecommit(revision, deployment, config)
    elif isinstance(revision, GitRevision):
        from codedeploy_agent.sources.git import fetch_git  # noqa: PLC0415

        await fetch_git(revision, deployment, config)
    else:  # pragma: no cover - the Revision union is closed; mypy checks exhaustiveness
        raise TypeError(f"unknown revision {revision!r}")

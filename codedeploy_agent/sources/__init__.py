"""Revision sources: put a revision's bundle where DownloadBundle expects it.

Each source is an async function that fetches one revision type into a deployment directory.
Local file and directory revisions live in `local.py`; remote sources (S3, GitHub, ...) import
their heavy dependencies lazily so that the resident daemon stays small.
"""

from __future__ import annotations

from codedeploy_agent.config import AgentConfig
from codedeploy_agent.errors import BundleError
from codedeploy_agent.host.layout import DeploymentDir
from codedeploy_agent.sources.local import fetch_local
from codedeploy_agent.spec import LocalRevision, Revision


async def fetch_revision(
    revision: Revision, deployment: DeploymentDir, config: AgentConfig
) -> None:
    """Fetch `revision` into `deployment`: a bundle file at `bundle.tar`, or, for directory
    revisions, the tree itself at `deployment-archive/`."""
    if isinstance(revision, LocalRevision):
        await fetch_local(revision, deployment, config)
        return
    raise BundleError(
        f"Revisions of type {revision.type} are not supported by this agent version. "
        "Use a local file or directory revision, or upgrade the agent."
    )

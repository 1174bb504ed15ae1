"""Local File and Local Directory revisions (reference §6.1)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from codedeploy_agent.archive import copy_directory_bundle
from codedeploy_agent.config import AgentConfig
from codedeploy_agent.errors import BundleError
from codedeploy_agent.host.layout import DeploymentDir
from codedeploy_agent.spec import BundleType, LocalRevision


async def fetch_local(
    revision: LocalRevision, deployment: DeploymentDir, config: AgentConfig
) -> None:
    """A local archive becomes a symlink at `bundle.tar`; a local directory is copied."""
    if revision.bundle_type is BundleType.DIRECTORY:
        await asyncio.to_thread(_copy_directory, Path(revision.location), deployment, config)
    else:
        await asyncio.to_thread(_link_bundle, Path(revision.location), deployment.bundle)


def _copy_directory(location: Path, deployment: DeploymentDir, config: AgentConfig) -> None:
    location = location.absolute()
    if not location.is_dir():
        raise BundleError(
            f"The revision directory {location} does not exist or is not a directory."
        )
    copy_directory_bundle(location, deployment.archive, limits=config.archive)


def _link_bundle(location: Path, bundle: Path) -> None:
    location = location.absolute()
    if not location.is_file():
        raise BundleError(f"The revision file {location} does not exist or is not a regular file.")
    try:
        bundle.unlink(missing_ok=True)
        # The real agent symlinks the bundle and copies only when symlinking fails.
        try:
            bundle.symlink_to(location)
        except OSError:
            shutil.copyfile(location, bundle)
    except OSError as exc:
        raise BundleError(
            f"Cannot place the revision {location} at {bundle}: {exc.strerror}"
        ) from exc

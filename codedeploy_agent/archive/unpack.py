"""`unpack_bundle`: a downloaded bundle becomes `deployment-archive/` (reference §6.2)."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Final

import structlog

from codedeploy_agent.archive.folder import fresh_folder, remove_tree
from codedeploy_agent.archive.tar import extract_tar
from codedeploy_agent.archive.writer import TreeWriter
from codedeploy_agent.archive.zip import extract_zip
from codedeploy_agent.config import ArchiveLimits
from codedeploy_agent.errors import ArchiveError
from codedeploy_agent.spec import BundleType

_log = structlog.get_logger("codedeploy_agent.archive")

#: The real agent's test for "this folder holds the revision": any name containing "appspec".
_APPSPEC: Final = re.compile("appspec", re.IGNORECASE)


def unpack_bundle(
    bundle: Path,
    bundle_type: BundleType,
    archive_dir: Path,
    *,
    limits: ArchiveLimits,
    temp_dir: Path,
) -> None:
    """Extract `bundle` into a fresh `archive_dir`, then strip a single top-level folder.

    `zip` is read as zip; every other type as tar, like the real agent (with the compression
    found from the bundle's magic bytes). Nothing is written outside `archive_dir` (and, for the
    top-folder move, `temp_dir`, which is `<droot>/deployment-archive-temp` as in the real
    agent). On any failure neither folder is left behind. Raises ArchiveError.
    """
    try:
        bundle_size = bundle.stat().st_size
    except OSError as exc:
        kind = "zip" if bundle_type is BundleType.ZIP else "tar"
        raise ArchiveError(
            f"Error extracting {kind} archive: cannot read the bundle {bundle}: "
            f"{exc.strerror or exc}. Download the revision again."
        ) from exc
    with fresh_folder(archive_dir, also_remove=(temp_dir,)):
        writer = TreeWriter(archive_dir, limits, bundle_size=bundle_size)
        if bundle_type is BundleType.ZIP:
            extract_zip(bundle, writer)
        else:
            extract_tar(bundle, writer)
        stripped = strip_top_folder(archive_dir, temp_dir)
    _log.debug(
        "bundle_unpacked",
        bundle=str(bundle),
        bundle_type=str(bundle_type),
        members=writer.members,
        bytes=writer.written,
        top_folder_stripped=stripped,
    )


def strip_top_folder(archive_dir: Path, temp_dir: Path) -> bool:
    """Apply §6.2's rule; True when the single top-level folder's contents were moved up.

    The rule: the archive root holds exactly one entry, it is a directory (a real one: a link
    is not followed), and that directory holds an entry whose name matches /appspec/i. Then, as
    the real agent does: archive -> temp, temp/<dir> -> archive, remove temp.
    """
    try:
        entries = os.listdir(archive_dir)  # noqa: PTH208 - names, as the real agent's Dir.entries
        if len(entries) != 1:
            return False
        top = archive_dir / entries[0]
        if not stat.S_ISDIR(top.lstat().st_mode):
            return False
        if not any(_APPSPEC.search(name) for name in os.listdir(top)):  # noqa: PTH208
            return False
        _log.info("Stripping leading directory from archive bundle contents.", folder=entries[0])
        remove_tree(temp_dir)
        archive_dir.rename(temp_dir)
        (temp_dir / entries[0]).rename(archive_dir)
        temp_dir.rmdir()
    except OSError as exc:
        raise ArchiveError(
            f"Cannot move the bundle's top-level folder up into {archive_dir}: "
            f"{exc.strerror or exc}. Check that the deployment root is writable by the agent."
        ) from exc
    return True

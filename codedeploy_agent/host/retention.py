"""Revision retention (`max_revisions`, reference §2.3): old deployment directories are deleted.

At the start of DownloadBundle the real agent lists `<root_dir>/<dg>/*` except the current
deployment's directory; with `extra = count - max_revisions + 1 > 0` it drops the
last-successful revision from the candidates, sorts the rest by mtime (oldest first) and
deletes the `extra` oldest. At most `max_revisions` directories remain, the new one included,
and the revision ApplicationStop will run from is never deleted.

Differences, on purpose: only real directories count and are deleted (a stray file or symlink
an operator left in the group folder is not a revision; the Ruby agent counted it and
`rm -rf`ed it); entries that vanish meanwhile are skipped instead of failing the deployment;
the last-successful pointer is compared after resolving symlinks (a pointer written through a
symlinked root still protects its revision); a directory that cannot be deleted is logged as a
warning and the deployment goes on.

Synchronous (it deletes trees); the executor calls it through `asyncio.to_thread`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from codedeploy_agent.errors import HostStateError
from codedeploy_agent.host.layout import DeploymentRoot
from codedeploy_agent.log import get_logger

_log = get_logger(__name__)


def prune_revisions(
    root: DeploymentRoot, group_id: str, current_deployment_id: str, max_revisions: int
) -> list[Path]:
    """Delete the oldest revisions of `group_id` beyond `max_revisions`; return what went.

    Other deployment groups are never touched. Raises ValueError when `max_revisions` < 1
    (the config loader refuses such values, so this is a programming error).
    """
    if max_revisions < 1:
        raise ValueError(f"max_revisions must be >= 1, not {max_revisions}")
    revisions = _revisions(root.group_dir(group_id), exclude=current_deployment_id)
    extra = len(revisions) - max_revisions + 1
    if extra <= 0:
        return []
    try:
        last_successful = root.last_successful(group_id)
    except HostStateError as exc:
        # Without the pointer the protected revision is unknown; deleting nothing is the safe
        # choice, and the next deployment tries again.
        _log.warning("Skipping cleanup of old revisions", group_id=group_id, reason=str(exc))
        return []
    if last_successful is not None:
        protected = _identity(last_successful.path)
        revisions = [rev for rev in revisions if _identity(rev[2]) != protected]
    revisions.sort()  # (mtime, name): oldest first, ties in name order
    removed: list[Path] = []
    for _mtime, _name, path in revisions[:extra]:
        if _remove(path):
            removed.append(path)
    return removed


def _revisions(group_dir: Path, *, exclude: str) -> list[tuple[float, str, Path]]:
    try:
        entries = list(os.scandir(group_dir))
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        _log.warning(
            "Cannot list old revisions", directory=str(group_dir), reason=exc.strerror or str(exc)
        )
        return []
    revisions: list[tuple[float, str, Path]] = []
    for entry in entries:
        if entry.name == exclude:
            continue
        try:
            if not entry.is_dir(follow_symlinks=False):
                continue
            mtime = entry.stat(follow_symlinks=False).st_mtime
        except OSError:  # vanished while listing
            continue
        revisions.append((mtime, entry.name, Path(entry.path)))
    return revisions


def _identity(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symlink loop: compare the spelled path instead
        return Path(os.path.normpath(path.absolute()))


def _remove(path: Path) -> bool:
    _log.info("Deleting old revision", path=str(path))
    try:
        shutil.rmtree(path)
    except OSError as exc:
        if not os.path.lexists(path):
            return True  # removed meanwhile by someone else: gone all the same
        _log.warning(
            "Could not delete old revision; delete it by hand to free the space",
            path=str(path),
            reason=exc.strerror or str(exc),
        )
        return False
    return True

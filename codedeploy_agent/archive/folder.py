"""The archive folder's lifetime: start empty, and on any failure leave nothing behind."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import structlog

from codedeploy_agent.archive.writer import DiskFull, shown
from codedeploy_agent.errors import ArchiveError

_log = structlog.get_logger("codedeploy_agent.archive")


@contextmanager
def fresh_folder(archive_dir: Path, *, also_remove: tuple[Path, ...] = ()) -> Iterator[None]:
    """Replace `archive_dir` with an empty folder; if the body fails, remove it again.

    `also_remove` names scratch folders the body may create (the top-folder move). Running out
    of space becomes the real agent's `The disk is (or was) full during extraction.`, completed
    with where, how much is free once the partial output is gone, and what to do.
    """
    try:
        remove_tree(archive_dir)
        archive_dir.mkdir(parents=True)
    except OSError as exc:
        raise ArchiveError(
            f"Cannot prepare the archive folder {archive_dir}: {exc.strerror or exc}. Check that "
            "the deployment root is writable by the agent's user."
        ) from exc
    try:
        yield
    except DiskFull as full:
        _discard(archive_dir, *also_remove)
        raise ArchiveError(
            _disk_full_message(archive_dir, full), member=shown(full.member)
        ) from None
    except BaseException:
        _discard(archive_dir, *also_remove)
        raise


def remove_tree(path: Path) -> None:
    """`rm -rf path`, even through folders a bundle made read-only; links are not followed."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        path.unlink()
        return
    try:
        shutil.rmtree(path)
    except PermissionError:
        # An agent running as a plain user cannot empty a folder the bundle made 0555 (root can).
        _open_up(path)
        shutil.rmtree(path)


def _open_up(top: Path) -> None:
    """`chmod u+rwx` every folder under `top`, each before it is listed."""
    pending = [os.fspath(top)]
    while pending:
        folder = pending.pop()
        os.chmod(folder, stat.S_IRWXU)  # noqa: PTH101 - str paths from scandir, no Path churn
        with os.scandir(folder) as entries:
            pending.extend(e.path for e in entries if e.is_dir(follow_symlinks=False))


def _discard(*paths: Path) -> None:
    for path in paths:
        try:
            remove_tree(path)
        except OSError as exc:
            # Already failing: report the original error, and say what was left behind.
            _log.warning("archive_cleanup_failed", path=str(path), error=str(exc))


def _disk_full_message(archive_dir: Path, full: DiskFull) -> str:
    try:
        vfs = os.statvfs(archive_dir.parent)
        free = _size(vfs.f_bavail * vfs.f_frsize)
    except OSError:
        free = "an unknown amount"
    return (
        "The disk is (or was) full during extraction. "
        f'Extracting into {archive_dir} stopped at "{shown(full.member)}" after '
        f"{_size(full.written)} of file data; the partial output was removed and {free} is now "
        f"free on that file system. Free some space there (or lower max_revisions in "
        "codedeployagent.yml so fewer old revisions are kept) and retry the deployment."
    )


def _size(count: int) -> str:
    if count < 1024:
        return f"{count:,} bytes"
    value = count / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"

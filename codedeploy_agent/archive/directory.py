"""`copy_directory_bundle`: the Local Directory revision, copied with extraction's safety rules."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from codedeploy_agent.archive.folder import fresh_folder
from codedeploy_agent.archive.tar import CHUNK
from codedeploy_agent.archive.writer import TreeWriter, shown
from codedeploy_agent.config import ArchiveLimits
from codedeploy_agent.errors import ArchiveError, BundleError

_SPECIAL: Final = {
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
    stat.S_IFIFO: "FIFO (named pipe)",
    stat.S_IFSOCK: "socket",
}
#: Read size once a file is past the size it had when listed (it is growing).
_TAIL_READ: Final = 64 * 1024


def copy_directory_bundle(source: Path, archive_dir: Path, *, limits: ArchiveLimits) -> None:
    """`cp -r <source> <archive_dir>`, keeping modes, mtimes and symlinks (as links).

    The same rules as extraction hold (see `writer`): devices, FIFOs and sockets are refused,
    links must resolve inside the copied tree, setuid/setgid are dropped, and the member count and
    total size limits apply (there is no compression, so no ratio). As in the real agent
    (`handle_local_directory`, which never calls `unpack_bundle`), the single top-level folder
    is NOT stripped: the folder given is the revision's root.

    Quirk fixed: the real agent's `FileUtils.cp_r` copies *into* `archive_dir` when it already
    exists (a retried deployment would get `deployment-archive/<name>/`); it is replaced here.
    """
    try:
        top = source.stat()
    except OSError as exc:
        raise BundleError(
            f"The revision directory {source} cannot be read: {exc.strerror or exc}."
        ) from exc
    if not stat.S_ISDIR(top.st_mode):
        raise BundleError(f"The revision directory {source} is not a directory.")
    with fresh_folder(archive_dir):
        writer = TreeWriter(archive_dir, limits, bundle_size=None)
        writer.directory("", stat.S_IMODE(top.st_mode), top.st_mtime)
        _copy_tree(source, writer)
        writer.finish()


def _copy_tree(source: Path, writer: TreeWriter) -> None:
    pending = [("", os.fspath(source))]
    while pending:
        relative, folder = pending.pop()
        for entry in _listing(source, relative, folder):
            name = f"{relative}/{entry.name}" if relative else entry.name
            try:
                info = entry.stat(follow_symlinks=False)
                link = stat.S_ISLNK(info.st_mode)
                target = os.fspath(Path(entry.path).readlink()) if link else ""
            except OSError as exc:
                raise _unreadable(source, name, exc) from exc
            mode = stat.S_IMODE(info.st_mode)
            kind = stat.S_IFMT(info.st_mode)
            if kind == stat.S_IFDIR:
                writer.directory(name, mode, info.st_mtime)
                pending.append((name, entry.path))
            elif kind == stat.S_IFREG:
                chunks = _data(source, name, entry.path, info.st_size)
                writer.file(name, mode, info.st_mtime, chunks, declared_size=info.st_size)
            elif kind == stat.S_IFLNK:
                writer.symlink(name, target, info.st_mtime)
            else:
                writer.refuse_special(name, _SPECIAL.get(kind, "special file"))


def _listing(source: Path, relative: str, folder: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            # Sorted: the same tree always gives the same order (and the same first refusal).
            return sorted(entries, key=lambda entry: entry.name)
    except OSError as exc:
        raise _unreadable(source, relative or ".", exc) from exc


def _data(source: Path, name: str, path: str, size: int) -> Iterator[bytes]:
    """The file's bytes; read errors are the source's, so they become ArchiveError here."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise _unreadable(source, name, exc) from exc
    try:
        done = 0
        while True:
            want = min(CHUNK, size - done) if done < size else _TAIL_READ
            try:
                chunk = os.read(fd, want)
            except OSError as exc:
                raise _unreadable(source, name, exc) from exc
            if not chunk:
                return
            done += len(chunk)
            yield chunk
    finally:
        os.close(fd)


def _unreadable(source: Path, name: str, exc: OSError) -> ArchiveError:
    return ArchiveError(
        f'Cannot read "{shown(name)}" in the revision directory {source}: '
        f"{exc.strerror or exc}. Check that the agent's user can read the whole directory.",
        member=shown(name),
    )

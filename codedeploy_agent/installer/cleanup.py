"""The `<group>-cleanup` file: recording what an install creates, and undoing it (reference §5.3).

Format (the real agent's, byte for byte): one absolute path per line, in creation order;
SELinux registrations are `semanage\\0<realpath>`. Paths are bytes on Linux, so the file is
read and written as bytes and names that are not UTF-8 survive the round trip.

Replaying undoes the previous revision's install, last entry first: a file or symlink is
unlinked, a directory is rmdir'd (a directory that is not empty is left alone, so whatever
else lives there survives), `semanage\\0p` runs `semanage fcontext -d p`. A final line without
`\\n` is a torn write from a crash and is dropped.

Improvements over the real agent (the "missing files during rollback" pain point): a path
that no longer exists is skipped silently, and a path the agent cannot remove (permissions,
immutable attribute, read-only or busy mount, ...) never blocks the deployment: it becomes a
warning that names the path, the OS error and the fix. Such a path is not forgotten either: it
is kept (with the recorded directories that hold it) and carried into the new revision's cleanup
file, so the next deployment tries again. The real agent raises at the first path it cannot
remove, which fails Install and leaves the whole cleanup file in place: every later deployment
replays it again (and fails again) until an operator fixes the path. We retry the same way, but
without failing the deployments in between.
"""

# str paths on purpose: os.path/os.* on str is several times cheaper than pathlib per call,
# and this module handles every file of a revision (20,000+ in the benchmark). Recorded paths
# are bytes, which pathlib cannot hold (hence os.path.dirname).
# ruff: noqa: PTH106, PTH108, PTH120

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO, Final

from codedeploy_agent.errors import InstallError
from codedeploy_agent.installer.tools import display_path, find_tool, run_tool

SEMANAGE_PREFIX: Final = b"semanage\0"

#: rmdir errors that mean "something else lives here": expected, never reported.
_NOT_EMPTY: Final = frozenset({errno.ENOTEMPTY, errno.EEXIST})
#: Errors that mean the path (or one of its parents) is already gone.
_GONE: Final = frozenset({errno.ENOENT, errno.ENOTDIR})

_FIXES: Final = {
    errno.EROFS: "Remount the file system read-write (mount -o remount,rw) or remove it by hand",
    errno.EBUSY: "It is a mount point or in use: unmount it or remove it by hand",
}
_DEFAULT_FIX: Final = "Remove it by hand or fix its permissions (lsattr/chattr -i, mount rw)"


class EntryKind(StrEnum):
    """What a cleanup line undoes."""

    PATH = "path"
    SEMANAGE = "semanage"


@dataclass(frozen=True, slots=True)
class CleanupEntry:
    """One line of a cleanup file; `path` is raw bytes, exactly as recorded."""

    kind: EntryKind
    path: bytes


def parse_cleanup(data: bytes) -> tuple[CleanupEntry, ...]:
    """The entries of a cleanup file in file (creation) order; replay them reversed."""
    lines = data.split(b"\n")
    # After split, the last element is what follows the final newline: empty for a
    # complete file, a torn partial line otherwise. Either way it is dropped.
    del lines[-1]
    entries: list[CleanupEntry] = []
    for line in lines:
        # Only the newline is stripped: the real agent strips all surrounding whitespace and
        # so cleans up "/srv/app/name" for a file recorded as "/srv/app/name ".
        if not line:
            continue
        if line.startswith(SEMANAGE_PREFIX):
            entries.append(CleanupEntry(EntryKind.SEMANAGE, line[len(SEMANAGE_PREFIX) :]))
        else:
            entries.append(CleanupEntry(EntryKind.PATH, line))
    return tuple(entries)


def _remove_path(path: bytes) -> str | None:
    """Remove one recorded path; a warning when it cannot be removed, else None."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        if exc.errno in _GONE:
            return None
        return _warning(path, "path", exc)
    is_dir = stat.S_ISDIR(st.st_mode)
    try:
        if is_dir:
            os.rmdir(path)
        else:
            os.unlink(path)
    except OSError as exc:
        if exc.errno in _GONE or (is_dir and exc.errno in _NOT_EMPTY):
            return None
        return _warning(path, "directory" if is_dir else "file", exc)
    return None


def _warning(path: bytes, what: str, exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    fix = _FIXES.get(exc.errno or 0, _DEFAULT_FIX)
    return (
        f"Could not remove {display_path(path)} (previous revision's {what}) during cleanup: "
        f"{reason}. {fix}; the deployment continues, and the next deployment tries to remove "
        "it again."
    )


def _remove_context(path: bytes) -> str | None:
    """`semanage fcontext -d <path>`; a warning when it is not possible, else None."""
    shown = display_path(path)
    semanage = find_tool("semanage")
    if semanage is None:
        return (
            f"Could not remove the SELinux file context of {shown} during cleanup: semanage is "
            "not installed. Install policycoreutils-python-utils and run "
            f"`semanage fcontext -d {shown}` by hand; the deployment continues."
        )
    result = run_tool([os.fsencode(semanage), b"fcontext", b"-d", path])
    if result.returncode == 0:
        return None
    return (
        f"Could not remove the SELinux file context of {shown} during cleanup: semanage "
        f"fcontext -d exited with {result.returncode}: {result.stderr.strip()}. Run "
        f"`semanage fcontext -d {shown}` by hand; the deployment continues."
    )


@dataclass(frozen=True, slots=True)
class Replay:
    """What undoing a cleanup file did not manage to undo."""

    #: One message per entry that could not be undone: the path, the OS error and the fix.
    warnings: tuple[str, ...] = ()
    #: The paths that could not be removed, and the recorded directories that hold them, in
    #: file (creation) order: the new cleanup file starts with them so the next install retries.
    kept: tuple[CleanupEntry, ...] = ()


def replay_entries(entries: tuple[CleanupEntry, ...]) -> Replay:
    """Undo `entries`, last first (never raises for a path)."""
    warnings: list[str] = []
    failed: set[bytes] = set()
    for entry in reversed(entries):
        if entry.kind is EntryKind.SEMANAGE:
            # Not retried: once an operator has run `semanage fcontext -d` by hand, as the
            # warning says, a retry would fail ("not defined") and warn on every deployment.
            warning = _remove_context(entry.path)
        else:
            warning = _remove_path(entry.path)
            if warning is not None:
                failed.add(entry.path)
        if warning is not None:
            warnings.append(warning)
    return Replay(tuple(warnings), _kept(entries, failed))


def _kept(entries: tuple[CleanupEntry, ...], failed: set[bytes]) -> tuple[CleanupEntry, ...]:
    """The entries of `failed` paths plus the recorded directories above them: such a directory
    was left alone only because it is not empty, and must go once the path inside it can."""
    if not failed:
        return ()
    holders: set[bytes] = set()
    for path in failed:
        parent = os.path.dirname(path.rstrip(b"/"))
        while parent not in holders and parent not in (b"", b"/"):
            holders.add(parent)
            parent = os.path.dirname(parent)
    kept: dict[CleanupEntry, None] = {}  # ordered and without duplicates
    for entry in entries:
        if entry.kind is EntryKind.PATH and (
            entry.path in failed or entry.path.rstrip(b"/") in holders
        ):
            kept[entry] = None
    return tuple(kept)


def replay_cleanup(cleanup_file: Path) -> Replay:
    """Undo the install recorded in `cleanup_file`, then delete it, or rewrite it with only the
    entries `Replay.kept` (so that an install failing before it writes its own cleanup file
    still leaves them for the next one).

    A missing cleanup file means there is nothing to undo. A cleanup file that cannot be read,
    deleted or rewritten is an InstallError (the host's deployment root is broken, nothing to
    skip).
    """
    try:
        data = cleanup_file.read_bytes()
    except FileNotFoundError:
        return Replay()
    except OSError as exc:
        raise _state_error(cleanup_file, "read", exc) from exc
    replay = replay_entries(parse_cleanup(data))
    if replay.kept:
        _rewrite(cleanup_file, replay.kept)
        return replay
    try:
        cleanup_file.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise _state_error(cleanup_file, "delete", exc) from exc
    return replay


def _rewrite(cleanup_file: Path, entries: tuple[CleanupEntry, ...]) -> None:
    """Replace `cleanup_file` atomically with `entries` (a crash leaves the old or the new)."""
    temp = cleanup_file.with_name(cleanup_file.name + ".tmp")
    try:
        with open(temp, "wb") as handle:
            handle.write(b"".join(_line(entry) for entry in entries))
            handle.flush()
            os.fsync(handle.fileno())
        temp.replace(cleanup_file)
    except OSError as exc:
        raise _state_error(cleanup_file, "rewrite", exc) from exc


def _line(entry: CleanupEntry) -> bytes:
    prefix = SEMANAGE_PREFIX if entry.kind is EntryKind.SEMANAGE else b""
    return prefix + entry.path + b"\n"


def _state_error(path: Path, verb: str, exc: OSError) -> InstallError:
    return InstallError(
        f"The deployment failed because the agent could not {verb} the cleanup file {path}: "
        f"{exc.strerror}. Check the permissions of the deployment-instructions directory, "
        "and then try again."
    )


class CleanupWriter:
    """Appends created paths to a new cleanup file as the install creates them."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle

    def record(self, path: str) -> None:
        """Record a created file, symlink or directory."""
        self._write(os.fsencode(path) + b"\n")

    def record_context(self, realpath: str) -> None:
        """Record an SELinux file context registered for `realpath`."""
        self._write(SEMANAGE_PREFIX + os.fsencode(realpath) + b"\n")

    def carry(self, entries: tuple[CleanupEntry, ...]) -> None:
        """Record entries of an earlier cleanup file that could not be undone yet."""
        for entry in entries:
            self._write(_line(entry))

    def _write(self, line: bytes) -> None:
        self._handle.write(line)
        # Flushed per line, not fsync'd: the file exists so that the *next* install can undo a
        # half-finished one. After write() the line is in the page cache and survives the
        # agent crashing or being killed; only a kernel crash or power loss can lose it, and
        # an fsync per line (a journal commit each on ext4/xfs) would make a 20,000-file
        # install take minutes. A torn last line is dropped on replay; the file is fsync'd
        # once when the install ends.
        self._handle.flush()


@contextmanager
def open_cleanup_writer(cleanup_file: Path) -> Iterator[CleanupWriter]:
    """A new, empty cleanup file (one buffered handle), fsync'd and closed on exit."""
    try:
        handle = open(cleanup_file, "wb")  # noqa: SIM115 - closed in the finally below
    except OSError as exc:
        raise _state_error(cleanup_file, "create", exc) from exc
    try:
        yield CleanupWriter(handle)
    finally:
        try:
            handle.flush()
            os.fsync(handle.fileno())
        finally:
            handle.close()


__all__ = [
    "CleanupEntry",
    "CleanupWriter",
    "EntryKind",
    "Replay",
    "open_cleanup_writer",
    "parse_cleanup",
    "replay_cleanup",
    "replay_entries",
]

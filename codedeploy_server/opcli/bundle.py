"""Bundling a source folder into the zip `push` uploads, and checking its appspec first.

The zip is deterministic: the same tree (names, contents, modes, mtimes) gives the same bytes,
so the same sha256, so the bundle store keeps it once and pushing an unchanged tree again
registers the same revision. Decisions:

- Entries are sorted by path; folders get their own entries (empty folders and folder modes
  survive); the Unix mode is kept in the external attributes, so scripts stay executable.
- Timestamps are the files' mtimes, as `aws deploy push` keeps them: the agent restores them,
  and web servers derive Last-Modified/ETag headers from them, so fixed timestamps would let a
  changed file of the same size look unchanged to caches. For bundles that are reproducible
  across checkouts, set `SOURCE_DATE_EPOCH` (reproducible-builds.org): later mtimes are clamped
  to it. Times are written as UTC (DOS field) plus the extended-timestamp field the agent
  reads, so the bytes do not depend on the time zone.
- Symbolic links are stored as links (like `zip --symlinks`), not followed: the agent recreates
  them. A link that points outside the source folder is refused here, since the agent would
  refuse the bundle. FIFOs, sockets and devices are refused.
- `--ignore-hidden-files` leaves out every file and folder whose name starts with `.`, at any
  depth, as `aws deploy push` does.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
import struct
import time
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from codedeploy_agent.appspec import CheckReport, Problem, check_appspec, read_appspec_text
from codedeploy_agent.errors import AppSpecError
from codedeploy_server.opcli.errors import BundleError

#: The appspec names the agent looks for at the root of a revision, in its order.
APPSPEC_NAMES: Final = ("appspec.yml", "appspec.yaml")
_CHUNK: Final = 1024 * 1024
_EXTENDED_TIMESTAMP: Final = 0x5455
_DOS_EPOCH: Final = 315532800  # 1980-01-01T00:00:00Z, the earliest time a zip entry can hold
_DOS_END: Final = 4354819198  # 2107-12-31T23:59:58Z, the latest
_INT32_MAX: Final = 2**31 - 1
_MSDOS_DIRECTORY: Final = 0x10
_UNIX: Final = 3  # "version made by" host system: Unix, so readers honour the mode bits
_SPECIAL: Final = {
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
}


@dataclass(frozen=True, slots=True)
class Entry:
    """One member of the bundle: its archive name and what it is on disk."""

    name: str  # POSIX path relative to the source; folders end with "/"
    path: Path
    mode: int  # st_mode, type bits included
    mtime: int
    link_target: str | None = None


@dataclass(frozen=True, slots=True)
class Bundle:
    """A zip written by `write_bundle`."""

    path: Path
    sha256: str
    size: int
    entries: int


def source_date_epoch(environ: Mapping[str, str] = os.environ) -> int | None:
    """`SOURCE_DATE_EPOCH` as an integer, None when unset; a usage error when invalid."""
    raw = environ.get("SOURCE_DATE_EPOCH")
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise BundleError(
            f"SOURCE_DATE_EPOCH={raw!r} is not a whole number of seconds since 1970; fix or "
            "unset it."
        ) from None


def collect_entries(
    source: Path, *, ignore_hidden_files: bool = False, clamp: int | None = None
) -> list[Entry]:
    """Every member of the bundle of `source`, sorted by name."""
    if not source.is_dir():
        raise BundleError(f"{source} is not a directory. Give --source the revision's folder.")
    entries: list[Entry] = []
    for path, name in _walk(source, "", ignore_hidden_files):
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise BundleError(
                f"{os.fsencode(path)!r} is not a UTF-8 file name; zip bundles store UTF-8 "
                "names. Rename it, and push again."
            ) from None
        try:
            info = path.lstat()
        except OSError as err:
            raise BundleError(
                f"Cannot read {path}: {err.strerror}. Fix it, and push again."
            ) from None
        mtime = int(info.st_mtime) if clamp is None else min(int(info.st_mtime), clamp)
        kind = stat.S_IFMT(info.st_mode)
        if kind == stat.S_IFLNK:
            target = str(path.readlink())
            _check_link(name, target)
            entries.append(Entry(name, path, info.st_mode, mtime, target))
        elif kind in (stat.S_IFREG, stat.S_IFDIR):
            entries.append(
                Entry(name + ("/" if kind == stat.S_IFDIR else ""), path, info.st_mode, mtime)
            )
        else:
            what = _SPECIAL.get(kind, "a special file")
            raise BundleError(
                f"{path} is {what}; a bundle may hold only files, directories and links. "
                "Remove it from the source folder, and push again."
            )
    return entries


def _walk(folder: Path, prefix: str, ignore_hidden: bool) -> Iterator[tuple[Path, str]]:
    try:
        children = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as err:
        raise BundleError(
            f"Cannot list {folder}: {err.strerror}. Fix it, and push again."
        ) from None
    for child in children:
        if ignore_hidden and child.name.startswith("."):
            continue
        name = f"{prefix}{child.name}"
        yield Path(child.path), name
        if child.is_dir(follow_symlinks=False):
            yield from _walk(Path(child.path), f"{name}/", ignore_hidden)


def _check_link(name: str, target: str) -> None:
    # Lexically, as the agent first checks a link (through the bundle's own links it checks
    # again; a link through another link that escapes is refused there).
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
    if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
        raise BundleError(
            f"{name} is a symbolic link to {target!r}, outside the source folder; the agent "
            "refuses bundles with such links. Replace the link with the file itself or a "
            "relative link inside the folder, and push again."
        )


def write_bundle(entries: list[Entry], destination: Path) -> Bundle:
    """Write `entries` as a zip at `destination` and hash it."""
    with zipfile.ZipFile(destination, "w", allowZip64=True) as archive:
        for entry in entries:
            _write_entry(archive, entry)
    digest = hashlib.sha256()
    with destination.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return Bundle(destination, digest.hexdigest(), destination.stat().st_size, len(entries))


def _write_entry(archive: zipfile.ZipFile, entry: Entry) -> None:
    dos_time = min(max(entry.mtime, _DOS_EPOCH), _DOS_END)
    info = zipfile.ZipInfo(entry.name, date_time=time.gmtime(dos_time)[:6])
    info.create_system = _UNIX
    info.external_attr = (entry.mode & 0xFFFF) << 16
    unix_time = min(max(entry.mtime, -_INT32_MAX), _INT32_MAX)
    info.extra = struct.pack("<HHBi", _EXTENDED_TIMESTAMP, 5, 1, unix_time)
    if entry.link_target is not None:
        info.compress_type = zipfile.ZIP_STORED
        archive.writestr(info, os.fsencode(entry.link_target))
    elif entry.name.endswith("/"):
        info.external_attr |= _MSDOS_DIRECTORY
        info.compress_type = zipfile.ZIP_STORED
        archive.writestr(info, b"")
    else:
        info.compress_type = zipfile.ZIP_DEFLATED
        size = entry.path.stat().st_size
        try:
            with (
                entry.path.open("rb") as source,
                archive.open(info, "w", force_zip64=size > zipfile.ZIP64_LIMIT) as target,
            ):
                while chunk := source.read(_CHUNK):
                    target.write(chunk)
        except OSError as err:
            raise BundleError(
                f"Cannot read {entry.path}: {err.strerror}. Fix it, and push again."
            ) from None


def find_appspec(source: Path, entries: list[Entry]) -> Path:
    """The appspec at the root of the bundle (`appspec.yml`, else `appspec.yaml`)."""
    names = {e.name for e in entries}
    for name in APPSPEC_NAMES:
        if name in names:
            return source / name
    # The AWS CLI's text, with the fix.
    raise BundleError(
        f"{source.absolute() / APPSPEC_NAMES[0]} was not found. Put the appspec.yml at the root "
        "of the --source folder."
    )


def check_bundle(source: Path, entries: list[Entry], mirror: Path) -> CheckReport:
    """Check the appspec against exactly what the bundle holds.

    `mirror` (an empty folder) receives the bundle's tree without copying data: folders are
    made, files become links to the source files, links are copied as links. Checking the
    mirror sees what the agent will see, hidden files left out included; the mirror's path is
    replaced by the source's in the messages.
    """
    appspec = find_appspec(source, entries)
    for entry in entries:
        target = mirror / entry.name
        if entry.name.endswith("/"):
            target.mkdir()
        elif entry.link_target is not None:
            target.symlink_to(entry.link_target)
        else:
            target.symlink_to(entry.path.absolute())
    try:
        text = read_appspec_text(appspec)
    except AppSpecError as err:
        raise BundleError(str(err)) from None
    report = check_appspec(text, filename=str(appspec), archive_dir=mirror)
    return _relocate(report, str(mirror), str(source.absolute()))


def _relocate(report: CheckReport, old: str, new: str) -> CheckReport:
    return CheckReport(
        report.filename,
        report.kind,
        [Problem(p.path, p.message.replace(old, new)) for p in report.errors],
        [Problem(p.path, p.message.replace(old, new)) for p in report.warnings],
    )

"""The only code that writes into an archive folder: every safety rule and limit lives here.

Format readers (tar, zip, a local directory) decode their entries and hand each one to a
`TreeWriter`, which refuses anything that could land outside the folder and counts what is
written. The folder starts empty and only this writer puts things in it, so the state of the tree
is known in memory; that lets each member be checked with dictionary lookups instead of a
`realpath()` per member (tar's speed matters: bundles of 20,000 files are common):

- Names are normalised once (`.`, empty components and non-escaping `..` folded away); absolute
  names, names with NUL and names whose `..` climbs above the root are refused.
- Symbolic links are not created while members are being written: they are recorded and created
  by `finish()`, after every link has been resolved through the bundle's own links and found to
  stay inside (GNU tar delays dangerous links the same way). So no write ever goes through a link
  that came from the bundle, and a member whose path goes through a recorded link is refused.
- Hard links may only point to a regular file written earlier from the same bundle.
- Devices, FIFOs and sockets are refused by the readers through `refuse_special`.
- setuid/setgid bits are dropped everywhere and the sticky bit on files; other mode bits and
  mtimes are kept, as `tar -p` does. Ownership is never restored (see `_create_file`).
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Final, NoReturn, ParamSpec, TypeVar

from codedeploy_agent.config import ArchiveLimits
from codedeploy_agent.errors import ArchiveError

#: Linux's own limit on links followed in one path lookup (ELOOP past it).
_MAX_LINK_HOPS: Final = 40
#: Below this many bytes written the compression ratio is not checked: a small bundle holding a
#: blank disk image or a log full of one line legitimately compresses 1000:1, and a few MiB
#: cannot hurt a host. Past it, the ratio catches zip bombs long before the disk fills.
RATIO_FLOOR_BYTES: Final = 16 * 1024**2

_P = ParamSpec("_P")
_R = TypeVar("_R")

_NOFOLLOW_CREATE: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class _Kind(Enum):
    """What a name in the folder currently is."""

    DIR = "directory"
    FILE = "file"
    LINK = "symbolic link"


@dataclass(frozen=True, slots=True)
class _Link:
    """A symbolic link recorded during extraction and created by `finish()`."""

    target: str
    mtime: float | None
    member: str


class DiskFull(Exception):  # noqa: N818 - internal signal, turned into ArchiveError by the caller
    """Raised when the file system ran out of space; the caller removes the output and reports."""

    def __init__(self, member: str, written: int) -> None:
        super().__init__(member)
        self.member = member
        self.written = written


#: Control characters shown as \\xNN in messages, so a hostile name cannot forge log lines.
_CONTROLS: Final = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F)}


def shown(name: str) -> str:
    """`name` as text safe to log: undecodable bytes and control characters become \\xNN."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text.translate(_CONTROLS)


def refusal(member: str, why: str, fix: str) -> ArchiveError:
    """The error for one refused member: which, why, and how to fix the bundle."""
    name = shown(member)
    return ArchiveError(f'Refusing to extract "{name}" from the bundle: {why}. {fix}', member=name)


_REBUILD: Final = "Rebuild the bundle with paths relative to its root."
_LINK_FIX: Final = (
    "Make the link relative and pointing inside the bundle, or create it in an AfterInstall hook."
)


def normalize(member: str) -> str:
    """The member's path relative to the folder root ("" is the root itself), or a refusal."""
    if "\x00" in member:
        raise refusal(member, "its name contains a NUL byte", _REBUILD)
    if member.startswith("/"):
        raise refusal(member, "its path is absolute", _REBUILD)
    parts: list[str] = []
    for part in member.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise refusal(member, "its path leaves the archive folder", _REBUILD)
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)


class TreeWriter:
    """Writes one bundle's entries into an empty folder, safely and within `limits`.

    Call one method per entry in archive order, then `finish()`. Every refusal raises
    `ArchiveError` naming the member; `DiskFull` signals ENOSPC. The caller removes the folder
    after any failure (the writer never leaves its root, so that is the only place to clean).
    Chunk iterators given to `file()` must raise `ArchiveError` for their own read errors: any
    `OSError` seen here is taken to be about the destination.
    """

    def __init__(self, root: Path, limits: ArchiveLimits, *, bundle_size: int | None) -> None:
        self._root = os.fspath(root)
        self._limits = limits
        #: Size of the compressed bundle, for the ratio limit (None: not a compressed source).
        self._bundle_size = bundle_size
        self._kinds: dict[str, _Kind] = {"": _Kind.DIR}
        self._links: dict[str, _Link] = {}
        self._dir_attrs: dict[str, tuple[int | None, float | None]] = {}
        self._members = 0
        self._written = 0
        self._member = ""
        self._now_ns = time.time_ns()

    @property
    def written(self) -> int:
        """Bytes of file data written so far."""
        return self._written

    @property
    def members(self) -> int:
        """Entries seen so far (files, folders, links)."""
        return self._members

    # -- entries -------------------------------------------------------------------------------

    def directory(self, member: str, mode: int | None, mtime: float | None) -> None:
        """A directory; its mode and mtime are applied by `finish()` so children can be added."""
        name = self._begin(member)
        if name:
            path = self._parent_ready(name, member)
            if self._replace(name, member, keep_dir=True) is not _Kind.DIR:
                self._disk(os.mkdir, path, 0o777)  # final mode set in finish(); umask applies
                self._kinds[name] = _Kind.DIR
        # A `./` entry (tar -C dir .) carries the root's own mode, which tar -p applies too.
        self._dir_attrs[name] = (None if mode is None else mode & 0o1777, mtime)

    def file(
        self,
        member: str,
        mode: int | None,
        mtime: float | None,
        chunks: Iterable[bytes],
        *,
        declared_size: int | None = None,
    ) -> None:
        """A regular file; bytes are counted as they are written, whatever the header said."""
        name = self._named(member)
        path = self._parent_ready(name, member)
        self._replace(name, member)
        if declared_size:
            # Only an early exit for honest headers: the real limit is enforced on real bytes.
            self._check_bytes(self._written + declared_size, member)
        self._create_file(path, member, mode, mtime, chunks)
        self._kinds[name] = _Kind.FILE

    def symlink(self, member: str, target: str, mtime: float | None) -> None:
        """A symbolic link, recorded now and created by `finish()` once every link is known."""
        name = self._named(member)
        if not target or "\x00" in target:
            raise refusal(
                member, "it is a symbolic link with an empty or invalid target", _LINK_FIX
            )
        self._check_link(name, member, target)  # fail fast; finish() checks again with all links
        self._parent_ready(name, member)
        self._replace(name, member)
        self._links[name] = _Link(target, mtime, member)
        self._kinds[name] = _Kind.LINK

    def hardlink(self, member: str, target: str) -> None:
        """A hard link to a regular file written earlier from this bundle."""
        name = self._named(member)
        try:
            target_name = normalize(target)
        except ArchiveError:
            target_name = None
        if target_name is None:
            raise refusal(
                member,
                f'it is a hard link to "{shown(target)}", which is outside the archive folder',
                "Store the file itself in the bundle instead of a link to it.",
            )
        if self._kinds.get(target_name) is not _Kind.FILE:
            raise refusal(
                member,
                f'it is a hard link to "{shown(target)}", which is not a regular file stored '
                "before it in the bundle",
                "Rebuild the bundle with tar so that links follow the files they point to.",
            )
        if target_name == name:
            return  # a link to itself: the file is already there
        path = self._parent_ready(name, member)
        self._replace(name, member)
        self._disk(os.link, f"{self._root}/{target_name}", path, follow_symlinks=False)
        self._kinds[name] = _Kind.FILE

    def refuse_special(self, member: str, what: str) -> None:
        """Refuse a device, FIFO, socket or other entry that is not a file, folder or link."""
        self._begin(member)
        raise refusal(
            member,
            f"it is a {what}; a bundle may hold only files, directories and links",
            "Remove it from the bundle.",
        )

    def check_member_count(self, count: int, name_at: Callable[[int], str]) -> None:
        """Refuse up front when a format knows its entry count (zip's central directory)."""
        limit = self._limits.max_members
        if count > limit:
            raise _member_limit(count, limit, name_at(limit), exact=True)

    # -- completion ----------------------------------------------------------------------------

    def finish(self) -> None:
        """Create the recorded links (after checking them all), then set directory attributes."""
        for name, link in self._links.items():
            self._check_link(name, link.member, link.target)
        for name, link in self._links.items():
            path = f"{self._root}/{name}"
            self._member = link.member
            self._disk(os.symlink, link.target, path)
            if link.mtime is not None:
                self._set_mtime(path, link.mtime, follow_symlinks=False)
        # Deepest first: a parent made read-only must not block its children's updates.
        for name in sorted(self._dir_attrs, key=lambda n: n.count("/") if n else -1, reverse=True):
            mode, mtime = self._dir_attrs[name]
            path = f"{self._root}/{name}" if name else self._root
            self._member = name
            if mode is not None:
                self._disk(os.chmod, path, mode)
            if mtime is not None:
                self._set_mtime(path, mtime, follow_symlinks=True)

    # -- internals -----------------------------------------------------------------------------

    def _begin(self, member: str) -> str:
        self._member = member
        self._members += 1
        if self._members > self._limits.max_members:
            raise _member_limit(self._members, self._limits.max_members, member, exact=False)
        return normalize(member)

    def _named(self, member: str) -> str:
        name = self._begin(member)
        if not name:
            raise refusal(
                member, "it names the archive folder itself, not an entry in it", _REBUILD
            )
        return name

    def _parent_ready(self, name: str, member: str) -> str:
        """Make every parent of `name` a real directory of ours; returns the path of `name`."""
        parent = name.rpartition("/")[0]
        # A name is registered as a directory only after its own parents were, so one lookup of
        # the immediate parent vouches for the whole chain (directories are never replaced).
        if self._kinds.get(parent) is not _Kind.DIR:
            prefix = ""
            for part in parent.split("/"):
                prefix = f"{prefix}/{part}" if prefix else part
                kind = self._kinds.get(prefix)
                if kind is _Kind.DIR:
                    continue
                if kind is not None:
                    raise refusal(
                        member,
                        f'its path goes through "{shown(prefix)}", which is a {kind.value} in '
                        "the bundle, not a directory (writing through it could land outside "
                        "the archive folder)",
                        "Rebuild the bundle so that every file is stored under real directories.",
                    )
                # Implicit parents get the default mode, as tar gives them.
                self._disk(os.mkdir, f"{self._root}/{prefix}", 0o777)
                self._kinds[prefix] = _Kind.DIR
        return f"{self._root}/{name}"

    def _replace(self, name: str, member: str, *, keep_dir: bool = False) -> _Kind | None:
        """Clear the way for a later entry of the same name (the last one wins, as in tar)."""
        kind = self._kinds.get(name)
        if kind is _Kind.FILE:
            # Unlink rather than truncate: the old name may be hard-linked to another member.
            self._disk(os.unlink, f"{self._root}/{name}")
            del self._kinds[name]
        elif kind is _Kind.LINK:
            del self._links[name]  # never created on disk yet
            del self._kinds[name]
        elif kind is _Kind.DIR and not keep_dir:
            raise refusal(
                member,
                "a directory of the same name was extracted before it",
                "Rebuild the bundle so that each path is stored once.",
            )
        return kind

    def _create_file(
        self,
        path: str,
        member: str,
        mode: int | None,
        mtime: float | None,
        chunks: Iterable[bytes],
    ) -> None:
        # O_EXCL + O_NOFOLLOW: a new inode at exactly this name, never an existing file or link.
        # Ownership is deliberately not restored: files belong to the agent's user and the
        # appspec's `permissions` section sets owners. Restoring the archive's uid/gid (what
        # `tar -p` does as root, and so what the real agent does) would let a hostile bundle
        # plant root-owned or other users' files on the host.
        fd = self._disk(os.open, path, _NOFOLLOW_CREATE, 0o600 if mode is not None else 0o666)
        try:
            for chunk in chunks:
                self._written += len(chunk)
                self._check_bytes(self._written, member)
                view = memoryview(chunk)
                while view:
                    view = view[self._disk(os.write, fd, view) :]
            if mode is not None:
                # Files never keep setuid, setgid or sticky: a bundle must not ship privileges.
                self._disk(os.fchmod, fd, mode & 0o777)
            if mtime is not None:
                self._set_mtime(fd, mtime, follow_symlinks=True)
        finally:
            os.close(fd)

    def _check_bytes(self, total: int, member: str) -> None:
        limits = self._limits
        if total > limits.max_total_bytes:
            raise ArchiveError(
                f"The bundle expands to more than {limits.max_total_bytes:,} bytes (at least "
                f'{total:,} when extracting "{shown(member)}"), over the limit '
                "archive.max_total_bytes in codedeployagent.yml. Make the bundle smaller, or "
                "raise archive.max_total_bytes if the bundle is genuine.",
                member=shown(member),
            )
        size = self._bundle_size
        if size is not None and total > RATIO_FLOOR_BYTES:
            ratio = total / max(size, 1)
            if ratio > limits.max_compression_ratio:
                raise ArchiveError(
                    f"The bundle expands more than {limits.max_compression_ratio:g}:1 (at least "
                    f"{total:,} bytes from a {size:,}-byte bundle, {ratio:,.0f}:1, when extracting "
                    f'"{shown(member)}"), over the limit archive.max_compression_ratio in '
                    "codedeployagent.yml; it looks like a decompression bomb. Raise "
                    "archive.max_compression_ratio if the bundle is genuine.",
                    member=shown(member),
                )

    def _check_link(self, name: str, member: str, target: str) -> None:
        inside = _stays_inside(name, target, self._links)
        if inside is None:
            raise refusal(
                member,
                f'it is a symbolic link to "{shown(target)}" that loops through other links',
                "Fix the links in the bundle.",
            )
        if not inside:
            raise refusal(
                member,
                f'it is a symbolic link to "{shown(target)}", which points outside the archive '
                "folder",
                _LINK_FIX,
            )

    def _set_mtime(self, where: int | str, mtime: float, *, follow_symlinks: bool) -> None:
        try:
            ns = (self._now_ns, int(mtime * 1_000_000_000))
            os.utime(where, ns=ns, follow_symlinks=follow_symlinks)
        except (OverflowError, ValueError):
            pass  # an absurd timestamp in a header: keep "now", as tar does after its warning
        except OSError as exc:
            self._disk_error(exc)

    def _disk(self, call: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return call(*args, **kwargs)
        except OSError as exc:
            self._disk_error(exc)

    def _disk_error(self, exc: OSError) -> NoReturn:
        if exc.errno == errno.ENOSPC:
            raise DiskFull(self._member, self._written) from exc
        where = self._root
        reason = exc.strerror or str(exc)
        if exc.errno == errno.ENAMETOOLONG:
            raise refusal(self._member, "its name is too long for this file system", _REBUILD)
        raise ArchiveError(
            f'Cannot extract "{shown(self._member)}" into {where}: {reason}. Check that the '
            "agent's user can write there.",
            member=shown(self._member),
        ) from exc


def _member_limit(count: int, limit: int, member: str, *, exact: bool) -> ArchiveError:
    found = f"{count:,}" if exact else f"more than {limit:,}"
    return ArchiveError(
        f'The bundle has {found} entries (stopped at "{shown(member)}"), over the limit '
        f"archive.max_members ({limit:,}) in codedeployagent.yml. Make the bundle smaller, or "
        "raise archive.max_members if the bundle is genuine.",
        member=shown(member),
    )


def _stays_inside(name: str, target: str, links: dict[str, _Link]) -> bool | None:
    """Whether link `name` -> `target` resolves inside the root, following the bundle's links.

    The walk is the kernel's: each component is looked up, links among the bundle's own are
    expanded relative to their folder, `..` climbs. Lexical normalisation alone is not enough
    (`a/b/s/../..` with `s -> ../..` climbs out). None means a loop past Linux's 40 hops.
    Components that are files or missing are treated as folders: at worst a false refusal.
    """
    if target.startswith("/"):
        return False
    stack = name.split("/")[:-1]
    work = target.split("/")
    work.reverse()
    hops = 0
    while work:
        part = work.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if not stack:
                return False
            stack.pop()
            continue
        stack.append(part)
        link = links.get("/".join(stack))
        if link is None:
            continue
        hops += 1
        if hops > _MAX_LINK_HOPS:
            return None
        stack.pop()
        if link.target.startswith("/"):
            return False
        more = link.target.split("/")
        more.reverse()
        work.extend(more)
    return True

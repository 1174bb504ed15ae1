"""Builders for test bundles (tar, tgz, zip) from a list of entries, and tree snapshots."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import stat
import tarfile
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from codedeploy_agent.archive import unpack_bundle
from codedeploy_agent.config import ArchiveLimits
from codedeploy_agent.spec import BundleType

Kind = Literal["file", "dir", "symlink", "hardlink", "chr", "blk", "fifo"]
MTIME = 1_600_000_000  # 2020-09-13, whole seconds: zip and tar both keep it exactly

_TAR_TYPES: dict[Kind, bytes] = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "chr": tarfile.CHRTYPE,
    "blk": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}
_ZIP_TYPES: dict[Kind, int] = {
    "file": stat.S_IFREG,
    "dir": stat.S_IFDIR,
    "symlink": stat.S_IFLNK,
    "chr": stat.S_IFCHR,
    "blk": stat.S_IFBLK,
    "fifo": stat.S_IFIFO,
}


@dataclass(frozen=True)
class Entry:
    """One archive member."""

    name: str
    data: bytes = b""
    kind: Kind = "file"
    target: str = ""
    mode: int | None = None  # None: 0o755 for directories, 0o644 otherwise
    mtime: int = MTIME
    uid: int = 0


def file(name: str, data: bytes | str = b"", mode: int = 0o644, mtime: int = MTIME) -> Entry:
    """A regular file entry."""
    raw = data.encode() if isinstance(data, str) else data
    return Entry(name, raw, "file", mode=mode, mtime=mtime)


def folder(name: str, mode: int = 0o755, mtime: int = MTIME) -> Entry:
    """A directory entry."""
    return Entry(name, kind="dir", mode=mode, mtime=mtime)


def symlink(name: str, target: str) -> Entry:
    """A symbolic link entry."""
    return Entry(name, kind="symlink", target=target, mode=0o777)


def hardlink(name: str, target: str) -> Entry:
    """A hard link entry (tar only)."""
    return Entry(name, kind="hardlink", target=target)


def _mode(entry: Entry) -> int:
    if entry.mode is not None:
        return entry.mode
    return 0o755 if entry.kind == "dir" else 0o644


def write_tar(path: Path, entries: Sequence[Entry], compression: str = "") -> Path:
    """Write `entries` in order as a tar (`compression`: "", "gz", "bz2" or "xz")."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.type = _TAR_TYPES[entry.kind]
            info.mode = _mode(entry)
            info.mtime = entry.mtime
            info.uid = info.gid = entry.uid
            info.linkname = entry.target
            if entry.kind == "file":
                info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
            else:
                tar.addfile(info)
    compress: dict[str, Callable[[bytes], bytes]] = {
        "": bytes,
        "gz": gzip.compress,
        "bz2": bz2.compress,
        "xz": lzma.compress,
    }
    path.write_bytes(compress[compression](buffer.getvalue()))
    return path


def write_zip(path: Path, entries: Sequence[Entry], *, unix: bool = True) -> Path:
    """Write `entries` as a deflated zip; `unix=False` leaves the Unix mode bits out."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for entry in entries:
            name = (
                entry.name + "/"
                if entry.kind == "dir" and not entry.name.endswith("/")
                else entry.name
            )
            info = zipfile.ZipInfo(name, time.localtime(entry.mtime)[:6])
            info.compress_type = zipfile.ZIP_DEFLATED
            if unix:
                info.create_system = 3
                info.external_attr = (_ZIP_TYPES[entry.kind] | _mode(entry)) << 16
            else:
                info.create_system = 0
                info.external_attr = 0x10 if entry.kind == "dir" else 0x20  # DOS attributes only
            payload = entry.target.encode() if entry.kind == "symlink" else entry.data
            archive.writestr(info, payload)
    return path


@dataclass
class Site:
    """`<tmp>/droot/deployment-archive` (+ temp) with bundles kept in `<tmp>/bundles`."""

    tmp: Path
    droot: Path
    bundles: Path

    @property
    def archive(self) -> Path:
        """The archive folder extraction writes into."""
        return self.droot / "deployment-archive"

    @property
    def temp(self) -> Path:
        """The folder used while a top-level folder is moved up."""
        return self.droot / "deployment-archive-temp"

    def unpack(
        self, bundle: Path, bundle_type: BundleType, limits: ArchiveLimits | None = None
    ) -> None:
        """Run `unpack_bundle` the way the executor does."""
        unpack_bundle(
            bundle,
            bundle_type,
            self.archive,
            limits=limits or ArchiveLimits(),
            temp_dir=self.temp,
        )


Snapshot = dict[str, tuple[str, int, int, str]]


def snapshot(root: Path) -> Snapshot:
    """Every path under `root` (links not followed) with its type, mode, size and content hash."""
    result: Snapshot = {}
    for folder_path, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder_path, name)
            info = path.lstat()
            kind = stat.S_IFMT(info.st_mode)
            digest = ""
            if stat.S_ISREG(info.st_mode):
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            elif stat.S_ISLNK(info.st_mode):
                digest = str(path.readlink())
            result[str(path.relative_to(root))] = (
                oct(kind),
                stat.S_IMODE(info.st_mode),
                info.st_size if not stat.S_ISDIR(info.st_mode) else 0,
                digest,
            )
    return result


def listing(root: Path) -> list[str]:
    """Relative paths under `root`, sorted, folders with a trailing slash, links with -> target."""
    found = []
    for folder_path, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder_path, name)
            relative = str(path.relative_to(root))
            if path.is_symlink():
                found.append(f"{relative} -> {path.readlink()}")
            elif path.is_dir():
                found.append(relative + "/")
            else:
                found.append(relative)
    return sorted(found)

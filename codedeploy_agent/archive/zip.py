"""Reading zip bundles into a `TreeWriter`, honouring Unix modes and symlinks like `unzip`."""

from __future__ import annotations

import lzma
import stat
import struct
import time
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from codedeploy_agent.archive.tar import CHUNK, Packing, sniff
from codedeploy_agent.archive.writer import TreeWriter, refusal, shown
from codedeploy_agent.errors import ArchiveError

#: What a damaged or unsupported entry can raise while being read (encryption, an unknown
#: compression method, bad CRC, truncated data). OSError is bz2's "Invalid data stream".
_READ_ERRORS: Final = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    NotImplementedError,
    RuntimeError,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    OSError,
    ValueError,
)
_UTF8_FLAG: Final = 0x800
_ENCRYPTED_FLAG: Final = 0x1
_EXTENDED_TIMESTAMP: Final = 0x5455
#: Linux's PATH_MAX: a longer link target cannot be created anyway.
_MAX_LINK_TARGET: Final = 4096


def corrupt(reason: object, member: str = "") -> ArchiveError:
    """`Error extracting zip archive: ...` (the tar message's shape), the cause and the fix."""
    at = f' (at "{shown(member)}")' if member else ""
    return ArchiveError(
        f"Error extracting zip archive: {reason}{at}. The bundle is damaged, truncated or not a "
        "zip archive; rebuild it and upload it again.",
        member=shown(member),
    )


def extract_zip(bundle: Path, writer: TreeWriter) -> None:
    """Extract every entry of `bundle` through `writer`, counting real bytes, not headers."""
    try:
        archive = zipfile.ZipFile(bundle)
    except zipfile.BadZipFile as exc:
        with open(bundle, "rb") as handle:
            packing = sniff(handle.read(6))
        if packing in (Packing.GZIP, Packing.BZIP2, Packing.XZ) or _looks_like_tar(bundle):
            raise ArchiveError(
                "Error extracting zip archive: the bundle is a tar archive. Set the revision's "
                "bundle type to tar or tgz, or upload a zip archive."
            ) from exc
        raise corrupt(exc) from exc
    except (OSError, *_READ_ERRORS) as exc:
        raise corrupt(exc) from exc
    with archive:
        entries = archive.infolist()
        if not entries:
            raise ArchiveError(
                "Error extracting zip archive: the bundle is empty (it has no entries). Rebuild "
                "it from the folder that holds appspec.yml, for example with "
                "`cd <folder> && zip -r --symlinks ../bundle.zip .`."
            )
        writer.check_member_count(len(entries), lambda index: _name(entries[index]))
        for info in entries:
            _extract_one(archive, info, writer)
    writer.finish()


def _extract_one(archive: zipfile.ZipFile, info: zipfile.ZipInfo, writer: TreeWriter) -> None:
    # Python cuts names at a NUL byte ("tricks by viruses"); the original keeps it to refuse.
    name = _name(info)
    if info.flag_bits & _ENCRYPTED_FLAG:
        raise refusal(
            name, "it is encrypted", "Build the bundle without a password (the agent has none)."
        )
    # Unix modes live in the high 16 bits of the external attributes; zips made elsewhere leave
    # them 0, and then (as unzip does) the umask decides.
    unix = info.external_attr >> 16
    kind = stat.S_IFMT(unix)
    perms = stat.S_IMODE(unix) or None
    mtime = _mtime(info)
    if name.endswith("/") or kind == stat.S_IFDIR:
        writer.directory(name, perms, mtime)
    elif kind == stat.S_IFLNK:
        writer.symlink(name, _link_target(archive, info, name), mtime)
    elif kind in (0, stat.S_IFREG):
        writer.file(name, perms, mtime, _data(archive, info, name), declared_size=info.file_size)
    else:
        writer.refuse_special(name, _SPECIAL.get(kind, f"special file (type {kind:o})"))


_SPECIAL: Final = {
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
    stat.S_IFIFO: "FIFO (named pipe)",
    stat.S_IFSOCK: "socket",
}


def _name(info: zipfile.ZipInfo) -> str:
    """The entry's name as Linux bytes, as unzip writes it."""
    name = info.orig_filename
    if not info.flag_bits & _UTF8_FLAG:
        # Without the UTF-8 flag zipfile decodes cp437; on Linux, zip tools store the raw bytes
        # of the file system's names, and unzip writes them back unchanged. Undo the decoding.
        name = name.encode("cp437").decode("utf-8", "surrogateescape")
    return name


def _data(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> Iterator[bytes]:
    """The entry's bytes; zipfile stops at the declared size and checks the CRC at the end."""
    try:
        with archive.open(info) as source:
            while chunk := source.read(CHUNK):
                yield chunk
    except _READ_ERRORS as exc:
        raise corrupt(exc, name) from exc


def _link_target(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> str:
    try:
        with archive.open(info) as source:
            data = source.read(_MAX_LINK_TARGET + 1)
    except _READ_ERRORS as exc:
        raise corrupt(exc, name) from exc
    if len(data) > _MAX_LINK_TARGET:
        raise refusal(
            name,
            f"it is a symbolic link whose target is longer than {_MAX_LINK_TARGET} bytes",
            "Fix the link in the bundle.",
        )
    return data.decode("utf-8", "surrogateescape")


def _mtime(info: zipfile.ZipInfo) -> float | None:
    """The extended-timestamp field's UTC mtime when present (Info-ZIP writes it), else the
    DOS date and time read as local time, as unzip does."""
    extra = info.extra
    offset = 0
    while offset + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, offset)
        body = offset + 4
        if tag == _EXTENDED_TIMESTAMP and size >= 5 and body + 5 <= len(extra):
            if extra[body] & 1:
                return float(struct.unpack_from("<i", extra, body + 1)[0])
            break
        offset = body + size
    try:
        return time.mktime((*info.date_time, 0, 0, -1))
    except (OverflowError, ValueError):
        return None


def _looks_like_tar(bundle: Path) -> bool:
    """A ustar header says `ustar` at offset 257."""
    try:
        with open(bundle, "rb") as handle:
            handle.seek(257)
            return handle.read(5) == b"ustar"
    except OSError:
        return False

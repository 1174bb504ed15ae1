"""Reading tar bundles (plain, gzip, bzip2 or xz) into a `TreeWriter`, one member at a time."""

from __future__ import annotations

import bz2
import io
import lzma
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Final

from codedeploy_agent.archive.gunzip import ThreadedGunzip
from codedeploy_agent.archive.writer import TreeWriter, shown
from codedeploy_agent.errors import ArchiveError

#: Read size for file data and the bundle's buffer: large reads keep Python out of the loop.
CHUNK: Final = 1024 * 1024

#: Everything a damaged stream can raise while being read (gzip and bz2 use OSError subclasses;
#: every OSError raised while *reading* is about the bundle, never the destination).
_READ_ERRORS: Final = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError)


class Packing(StrEnum):
    """What a bundle's first bytes say it is."""

    GZIP = "gzip"
    BZIP2 = "bzip2"
    XZ = "xz"
    ZIP = "zip"
    OTHER = "other"  # a plain tar, or garbage that tarfile will reject


def sniff(head: bytes) -> Packing:
    """Identify a bundle from its magic bytes (at least 6 bytes of its start)."""
    if head.startswith(b"\x1f\x8b"):
        return Packing.GZIP
    if head.startswith(b"BZh"):
        return Packing.BZIP2
    if head.startswith(b"\xfd7zXZ\x00"):
        return Packing.XZ
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return Packing.ZIP
    return Packing.OTHER


def corrupt(reason: object, member: str = "") -> ArchiveError:
    """The real agent's `Error extracting tar archive: ...` prefix, then the cause and the fix."""
    at = f' (at "{shown(member)}")' if member else ""
    return ArchiveError(
        f"Error extracting tar archive: {reason}{at}. The bundle is damaged, truncated or not a "
        "tar archive; rebuild it and upload it again.",
        member=shown(member),
    )


def extract_tar(bundle: Path, writer: TreeWriter) -> None:
    """Extract every member of `bundle` through `writer` (which enforces the safety rules).

    Compression is recognised by magic bytes whatever the declared bundle type: the real agent
    runs GNU tar, which detects compression on its own when reading a file, so a `tar` bundle
    that is gzipped (GitHub's tarballs are) works there and must work here.
    """
    with _reading(bundle) as raw, _decompressed(raw) as stream:
        _extract_members(_open(stream), stream, writer)


@contextmanager
def _reading(bundle: Path) -> Iterator[io.BufferedReader[io.FileIO]]:
    try:
        handle = io.BufferedReader(io.FileIO(bundle, "rb"), buffer_size=CHUNK)
    except OSError as exc:
        raise corrupt(f"cannot open {bundle}: {exc.strerror}") from exc
    with handle:
        yield handle


def _decompressed(raw: io.BufferedReader[io.FileIO]) -> io.BufferedIOBase:
    packing = sniff(raw.peek(6)[:6])
    if packing is Packing.ZIP:
        raise ArchiveError(
            "Error extracting tar archive: the bundle is a zip file. Set the revision's "
            "bundle type to zip, or upload a tar archive."
        )
    if packing is Packing.GZIP:
        return io.BufferedReader(ThreadedGunzip(raw), buffer_size=CHUNK)
    if packing is Packing.BZIP2:
        return bz2.BZ2File(raw)
    if packing is Packing.XZ:
        return lzma.LZMAFile(raw)
    return raw


def _open(stream: io.BufferedIOBase) -> tarfile.TarFile:
    try:
        # Seekable mode over the (decompressing) stream: every seek tarfile makes is forward, so
        # this reads the bundle once, like streaming mode, without its small-buffer copies.
        # Names are raw bytes on Linux: surrogateescape keeps any encoding byte-exact.
        return tarfile.TarFile(
            fileobj=stream,
            mode="r",
            tarinfo=_StrictTarInfo,
            encoding="utf-8",
            errors="surrogateescape",
        )
    except tarfile.ReadError as exc:
        if str(exc) == "empty file":
            raise _empty() from exc
        raise corrupt(exc) from exc
    except _READ_ERRORS as exc:
        raise corrupt(exc) from exc


#: Header errors that mean "no more members": zero blocks, or the data simply ends.
_END_OF_ARCHIVE: Final = (tarfile.EOFHeaderError, tarfile.EmptyHeaderError)  # type: ignore[attr-defined]


class _StrictTarInfo(tarfile.TarInfo):
    """A header parser that makes a damaged header past the first one an error.

    tarfile takes a bad checksum or a cut header anywhere after the first member for the end
    of the archive and silently returns what came before; GNU tar (so the real agent) fails.
    A partial revision must never deploy: turn those into read errors. Zero blocks (the real
    end) and a file that simply ends after a member are still the end, as in both tools.
    """

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> _StrictTarInfo:
        """Parse one 512-byte header; damage raises ReadError instead of ending the archive."""
        try:
            return super().frombuf(buf, encoding, errors)
        except _END_OF_ARCHIVE:
            raise
        except tarfile.HeaderError as exc:  # bad checksum, invalid number, cut header
            raise tarfile.ReadError(str(exc)) from None


def _extract_members(tar: tarfile.TarFile, stream: io.BufferedIOBase, writer: TreeWriter) -> None:
    previous = ""
    seen_any = False
    with tar:
        while True:
            try:
                member = tar.next()
            except _READ_ERRORS as exc:
                raise corrupt(exc, previous) from exc
            if member is None:
                break
            # tarfile keeps every header it reads; a million-member bundle would pin hundreds of
            # MB. Nothing needs them: hard links are made from the files already on disk.
            tar.members.clear()  # type: ignore[attr-defined]  # public attribute, untyped
            seen_any = True
            previous = member.name
            _extract_one(tar, stream, member, writer)
    if not seen_any:
        raise _empty()
    writer.finish()


def _extract_one(
    tar: tarfile.TarFile, stream: io.BufferedIOBase, member: tarfile.TarInfo, writer: TreeWriter
) -> None:
    name = member.name
    mode = member.mode & 0o7777
    if member.isreg():
        writer.file(name, mode, member.mtime, _data(tar, stream, member), declared_size=member.size)
    elif member.isdir():
        writer.directory(name, mode, member.mtime)
    elif member.issym():
        writer.symlink(name, member.linkname, member.mtime)
    elif member.islnk():
        writer.hardlink(name, member.linkname)
    elif member.ischr():
        writer.refuse_special(name, "character device")
    elif member.isblk():
        writer.refuse_special(name, "block device")
    elif member.isfifo():
        writer.refuse_special(name, "FIFO (named pipe)")
    elif member.type == b"V":
        return  # a GNU volume label names the archive, not a file; GNU tar skips it too
    else:
        # Unknown types are extracted as regular files, as GNU tar and tarfile do.
        writer.file(name, mode, member.mtime, _data(tar, stream, member), declared_size=member.size)


def _data(
    tar: tarfile.TarFile, stream: io.BufferedIOBase, member: tarfile.TarInfo
) -> Iterator[bytes]:
    """The member's bytes in large chunks; read errors become ArchiveError (see TreeWriter)."""
    remaining = member.size
    if remaining <= 0:
        return
    try:
        if member.sparse is None:
            # Straight from the stream: tarfile's file object adds two layers per member.
            source: io.BufferedIOBase = stream
            stream.seek(member.offset_data)
        else:
            source = tar.extractfile(member)  # type: ignore[assignment]  # sparse map applied
    except _READ_ERRORS as exc:
        raise corrupt(exc, member.name) from exc
    while remaining > 0:
        try:
            chunk = source.read(min(remaining, CHUNK))
        except _READ_ERRORS as exc:
            raise corrupt(exc, member.name) from exc
        if not chunk:
            raise corrupt("unexpected end of data", member.name)
        remaining -= len(chunk)
        yield chunk


def _empty() -> ArchiveError:
    return ArchiveError(
        "Error extracting tar archive: the bundle is empty (it has no entries). Rebuild it "
        "from the folder that holds appspec.yml, for example with "
        "`tar -czf bundle.tgz -C <folder> .`."
    )

"""Hostile bundles: each is refused with a message naming the member, and nothing is written
outside the archive folder (the whole temporary tree is compared before and after)."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from codedeploy_agent.errors import ArchiveError
from codedeploy_agent.spec import BundleType
from tests.archive.bundles import (
    Entry,
    Site,
    file,
    folder,
    hardlink,
    snapshot,
    symlink,
    write_tar,
    write_zip,
)

REBUILD = "Rebuild the bundle with paths relative to its root."
LINK_FIX = (
    "Make the link relative and pointing inside the bundle, or create it in an AfterInstall hook."
)
THROUGH_FIX = "Rebuild the bundle so that every file is stored under real directories."


@dataclass(frozen=True)
class Case:
    """A hostile bundle, how it is declared, and the exact refusal."""

    entries: Callable[[Path], list[Entry]]  # given the temporary root (for absolute paths)
    member: str | Callable[[Path], str]
    why: str | Callable[[Path], str]
    fix: str
    kind: str = "tar"

    def expected(self, tmp: Path) -> tuple[str, str]:
        member = self.member(tmp) if callable(self.member) else self.member
        why = self.why(tmp) if callable(self.why) else self.why
        return member, f'Refusing to extract "{member}" from the bundle: {why}. {self.fix}'


def _devices(kind: str, what: str) -> Case:
    return Case(
        lambda _: [file("ok.txt", "x"), Entry("dev/thing", kind=kind)],  # type: ignore[arg-type]
        "dev/thing",
        f"it is a {what}; a bundle may hold only files, directories and links",
        "Remove it from the bundle.",
    )


CASES: dict[str, Case] = {
    "dotdot-traversal": Case(
        lambda _: [file("appspec.yml", "x"), file("../../outside/passwd", "pwned")],
        "../../outside/passwd",
        "its path leaves the archive folder",
        REBUILD,
    ),
    "dotdot-after-folder": Case(
        lambda _: [file("a/../../../outside/passwd", "pwned")],
        "a/../../../outside/passwd",
        "its path leaves the archive folder",
        REBUILD,
    ),
    "absolute-path": Case(
        lambda tmp: [file(f"{tmp}/outside/passwd", "pwned")],
        lambda tmp: f"{tmp}/outside/passwd",
        "its path is absolute",
        REBUILD,
    ),
    "symlink-absolute": Case(
        lambda tmp: [symlink("etc", f"{tmp}/outside")],
        "etc",
        lambda tmp: (
            f'it is a symbolic link to "{tmp}/outside", which points outside the archive folder'
        ),
        LINK_FIX,
    ),
    "symlink-relative": Case(
        lambda _: [folder("a"), symlink("a/up", "../../../outside")],
        "a/up",
        'it is a symbolic link to "../../../outside", which points outside the archive folder',
        LINK_FIX,
    ),
    "symlink-then-write-through": Case(
        lambda tmp: [symlink("a", f"{tmp}/outside"), file("a/passwd", "pwned")],
        "a",
        lambda tmp: (
            f'it is a symbolic link to "{tmp}/outside", which points outside the archive folder'
        ),
        LINK_FIX,
    ),
    "write-through-inner-link": Case(
        # Even a link that stays inside is never written through.
        lambda _: [folder("real"), symlink("a", "real"), file("a/passwd", "pwned")],
        "a/passwd",
        'its path goes through "a", which is a symbolic link in the bundle, not a directory '
        "(writing through it could land outside the archive folder)",
        THROUGH_FIX,
    ),
    "link-through-link-climbs-out": Case(
        # Lexically a/b/s/../.. is "a", but s -> ../.. makes the kernel climb above the root.
        lambda _: [folder("a/b"), symlink("a/b/s", "../.."), symlink("x", "a/b/s/../..")],
        "x",
        'it is a symbolic link to "a/b/s/../..", which points outside the archive folder',
        LINK_FIX,
    ),
    "link-escapes-through-later-link": Case(
        # When x arrives, s is not a link yet and x looks harmless; s makes it escape.
        lambda _: [symlink("x", "s/../q"), symlink("s", "d/e/f/../../..")],
        "x",
        'it is a symbolic link to "s/../q", which points outside the archive folder',
        LINK_FIX,
    ),
    "symlink-loop": Case(
        lambda _: [symlink("a", "b"), symlink("b", "a")],
        "a",
        'it is a symbolic link to "b" that loops through other links',
        "Fix the links in the bundle.",
    ),
    "hardlink-escape": Case(
        lambda _: [hardlink("h", "../../outside/passwd")],
        "h",
        'it is a hard link to "../../outside/passwd", which is outside the archive folder',
        "Store the file itself in the bundle instead of a link to it.",
    ),
    "hardlink-absolute": Case(
        lambda tmp: [hardlink("h", f"{tmp}/outside/passwd")],
        "h",
        lambda tmp: (
            f'it is a hard link to "{tmp}/outside/passwd", which is outside the archive folder'
        ),
        "Store the file itself in the bundle instead of a link to it.",
    ),
    "hardlink-to-later-member": Case(
        lambda _: [hardlink("h", "later.txt"), file("later.txt", "x")],
        "h",
        'it is a hard link to "later.txt", which is not a regular file stored before it in '
        "the bundle",
        "Rebuild the bundle with tar so that links follow the files they point to.",
    ),
    "hardlink-to-symlink": Case(
        lambda _: [symlink("s", "x"), hardlink("h", "s")],
        "h",
        'it is a hard link to "s", which is not a regular file stored before it in the bundle',
        "Rebuild the bundle with tar so that links follow the files they point to.",
    ),
    "file-under-a-file": Case(
        lambda _: [file("f", "x"), file("f/passwd", "pwned")],
        "f/passwd",
        'its path goes through "f", which is a file in the bundle, not a directory (writing '
        "through it could land outside the archive folder)",
        THROUGH_FIX,
    ),
    "link-over-folder": Case(
        lambda _: [file("d/keep", "x"), symlink("d", "elsewhere")],
        "d",
        "a directory of the same name was extracted before it",
        "Rebuild the bundle so that each path is stored once.",
    ),
    "char-device": _devices("chr", "character device"),
    "block-device": _devices("blk", "block device"),
    "fifo": _devices("fifo", "FIFO (named pipe)"),
    "zip-dotdot": Case(
        lambda _: [file("appspec.yml", "x"), file("../../outside/passwd", "pwned")],
        "../../outside/passwd",
        "its path leaves the archive folder",
        REBUILD,
        kind="zip",
    ),
    "zip-absolute": Case(
        lambda tmp: [file(f"{tmp}/outside/passwd", "pwned")],
        lambda tmp: f"{tmp}/outside/passwd",
        "its path is absolute",
        REBUILD,
        kind="zip",
    ),
    "zip-symlink-escape": Case(
        lambda _: [symlink("up", "../../outside"), file("up/passwd", "pwned")],
        "up",
        'it is a symbolic link to "../../outside", which points outside the archive folder',
        LINK_FIX,
        kind="zip",
    ),
    "zip-symlink-absolute": Case(
        lambda tmp: [symlink("etc", f"{tmp}/outside")],
        "etc",
        lambda tmp: (
            f'it is a symbolic link to "{tmp}/outside", which points outside the archive folder'
        ),
        LINK_FIX,
        kind="zip",
    ),
    "zip-fifo": Case(
        lambda _: [Entry("pipe", kind="fifo")],
        "pipe",
        "it is a FIFO (named pipe); a bundle may hold only files, directories and links",
        "Remove it from the bundle.",
        kind="zip",
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_hostile_member_is_refused_and_nothing_escapes(site: Site, case: Case) -> None:
    """The bundle is refused naming the member; the tree around the archive folder is unchanged."""
    entries = case.entries(site.tmp)
    if case.kind == "zip":
        bundle = write_zip(site.bundles / "hostile.zip", entries)
        bundle_type = BundleType.ZIP
    else:
        bundle = write_tar(site.bundles / "hostile.tgz", entries, "gz")
        bundle_type = BundleType.TGZ
    before = snapshot(site.tmp)
    with pytest.raises(ArchiveError) as caught:
        site.unpack(bundle, bundle_type)
    member, message = case.expected(site.tmp)
    assert str(caught.value) == message
    assert caught.value.member == member
    assert snapshot(site.tmp) == before  # no partial archive folder, nothing outside it


def test_nul_byte_in_a_zip_name_is_refused(site: Site) -> None:
    """A zip entry named `ok.txt<NUL>../../xyz` (which Python would silently cut) is refused."""
    bundle = write_zip(site.bundles / "nul.zip", [file("ok.txtAAAAAAAAAA", "x")])
    raw = bundle.read_bytes().replace(b"ok.txtAAAAAAAAAA", b"ok.txt\x00../../xyz")
    bundle.write_bytes(raw)
    before = snapshot(site.tmp)
    with pytest.raises(ArchiveError) as caught:
        site.unpack(bundle, BundleType.ZIP)
    assert str(caught.value) == (
        'Refusing to extract "ok.txt\\x00../../xyz" from the bundle: its name contains a NUL byte. '
        + REBUILD
    )
    assert snapshot(site.tmp) == before


def test_encrypted_zip_entry_is_refused(site: Site) -> None:
    """An entry flagged as encrypted is refused with a fix (no password is ever available)."""
    bundle = write_zip(site.bundles / "enc.zip", [file("secret.txt", "x")])
    with zipfile.ZipFile(bundle) as archive:
        info = archive.infolist()[0]
    raw = bytearray(bundle.read_bytes())
    # Set bit 0 of the general purpose flags in the local header (offset 6) and the central
    # directory entry (offset 8 from its signature).
    raw[info.header_offset + 6] |= 1
    central = raw.rfind(b"PK\x01\x02")
    raw[central + 8] |= 1
    bundle.write_bytes(bytes(raw))
    before = snapshot(site.tmp)
    with pytest.raises(ArchiveError) as caught:
        site.unpack(bundle, BundleType.ZIP)
    assert str(caught.value) == (
        'Refusing to extract "secret.txt" from the bundle: it is encrypted. Build the bundle '
        "without a password (the agent has none)."
    )
    assert snapshot(site.tmp) == before

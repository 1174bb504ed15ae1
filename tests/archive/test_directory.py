"""Local Directory revisions: a safe `cp -r` into the archive folder."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from codedeploy_agent.archive import copy_directory_bundle
from codedeploy_agent.config import ArchiveLimits
from codedeploy_agent.errors import ArchiveError, BundleError
from tests.archive.bundles import MTIME, Site, listing, snapshot


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A revision folder with nested files, modes, mtimes, an empty folder and an inner link."""
    root = tmp_path / "revision"
    (root / "scripts").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "appspec.yml").write_text("version: 0.0\nos: linux\n")
    (root / "scripts" / "start.sh").write_text("#!/bin/sh\n")
    (root / "scripts" / "start.sh").chmod(0o750)
    (root / "scripts" / "latest").symlink_to("start.sh")
    os.utime(root / "scripts" / "start.sh", (MTIME, MTIME))
    (root / "scripts").chmod(0o700)
    os.utime(root / "scripts", (MTIME - 7, MTIME - 7))
    return root


def test_tree_is_copied_with_modes_mtimes_and_links(site: Site, source: Path) -> None:
    """Files, folders (even empty), modes, mtimes and symlinks (as links) are reproduced."""
    copy_directory_bundle(source, site.archive, limits=ArchiveLimits())
    archive = site.archive
    assert listing(archive) == [
        "appspec.yml",
        "empty/",
        "scripts/",
        "scripts/latest -> start.sh",
        "scripts/start.sh",
    ]
    assert (archive / "scripts" / "start.sh").read_text() == "#!/bin/sh\n"
    assert stat.S_IMODE((archive / "scripts" / "start.sh").stat().st_mode) == 0o750
    assert (archive / "scripts" / "start.sh").stat().st_mtime == MTIME
    assert stat.S_IMODE((archive / "scripts").stat().st_mode) == 0o700
    assert (archive / "scripts").stat().st_mtime == MTIME - 7


def test_single_top_folder_is_not_stripped(site: Site, tmp_path: Path) -> None:
    """As in the real agent, a directory revision is copied as given (no top-folder rule)."""
    root = tmp_path / "rev"
    (root / "app").mkdir(parents=True)
    (root / "app" / "appspec.yml").write_text("version: 0.0\n")
    copy_directory_bundle(root, site.archive, limits=ArchiveLimits())
    assert listing(site.archive) == ["app/", "app/appspec.yml"]


def test_existing_archive_folder_is_replaced(site: Site, source: Path) -> None:
    """A retry replaces the folder instead of copying into it (FileUtils.cp_r's nesting)."""
    (site.archive / "old").mkdir(parents=True)
    copy_directory_bundle(source, site.archive, limits=ArchiveLimits())
    assert not (site.archive / "old").exists()
    assert not (site.archive / source.name).exists()


def test_setuid_is_dropped(site: Site, source: Path) -> None:
    """A setuid script in the revision folder is copied without the bit."""
    (source / "suid").write_text("x")
    (source / "suid").chmod(0o4755)
    copy_directory_bundle(source, site.archive, limits=ArchiveLimits())
    assert stat.S_IMODE((site.archive / "suid").stat().st_mode) == 0o755


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _socket(path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))


def _link_out(path: Path) -> None:
    path.symlink_to("../../outside")


def _link_abs(path: Path) -> None:
    path.symlink_to("/etc")


@pytest.mark.parametrize(
    ("make", "why", "fix"),
    [
        (
            _fifo,
            "it is a FIFO (named pipe); a bundle may hold only files, directories and links",
            "Remove it from the bundle.",
        ),
        (
            _socket,
            "it is a socket; a bundle may hold only files, directories and links",
            "Remove it from the bundle.",
        ),
        (
            _link_out,
            'it is a symbolic link to "../../outside", which points outside the archive folder',
            (
                "Make the link relative and pointing inside the bundle, or create it in an "
                "AfterInstall hook."
            ),
        ),
        (
            _link_abs,
            'it is a symbolic link to "/etc", which points outside the archive folder',
            (
                "Make the link relative and pointing inside the bundle, or create it in an "
                "AfterInstall hook."
            ),
        ),
    ],
    ids=["fifo", "socket", "link-relative-escape", "link-absolute"],
)
def test_unsafe_entries_are_refused(
    site: Site, source: Path, make: Callable[[Path], None], why: str, fix: str
) -> None:
    """Special files and escaping links are refused by name; nothing is left anywhere."""
    make(source / "scripts" / "bad")
    before = snapshot(site.tmp)
    with pytest.raises(ArchiveError) as caught:
        copy_directory_bundle(source, site.archive, limits=ArchiveLimits())
    assert str(caught.value) == f'Refusing to extract "scripts/bad" from the bundle: {why}. {fix}'
    assert caught.value.member == "scripts/bad"
    assert snapshot(site.tmp) == before


@pytest.mark.root
def test_device_file_is_refused(site: Site, source: Path) -> None:
    """A character device node (mknod needs root) is refused."""
    os.mknod(source / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    with pytest.raises(ArchiveError) as caught:
        copy_directory_bundle(source, site.archive, limits=ArchiveLimits())
    assert str(caught.value).startswith(
        'Refusing to extract "null" from the bundle: it is a character device;'
    )
    assert not site.archive.exists()


def test_member_and_size_limits_apply(site: Site, source: Path) -> None:
    """archive.max_members and archive.max_total_bytes hold (appspec.yml, 23 bytes, comes first)."""
    with pytest.raises(ArchiveError) as caught:
        copy_directory_bundle(source, site.archive, limits=ArchiveLimits(max_members=3))
    assert str(caught.value).startswith("The bundle has more than 3 entries")
    (source / "big.bin").write_bytes(bytes(200_000))
    with pytest.raises(ArchiveError) as caught:
        copy_directory_bundle(source, site.archive, limits=ArchiveLimits(max_total_bytes=100_000))
    assert str(caught.value).startswith(
        'The bundle expands to more than 100,000 bytes (at least 200,023 when extracting "big.bin")'
    )
    assert not site.archive.exists()


def test_missing_source_folder(site: Site, tmp_path: Path) -> None:
    """A revision folder that does not exist is a BundleError naming it."""
    missing = tmp_path / "nope"
    with pytest.raises(BundleError) as caught:
        copy_directory_bundle(missing, site.archive, limits=ArchiveLimits())
    assert str(caught.value) == (
        f"The revision directory {missing} cannot be read: No such file or directory."
    )

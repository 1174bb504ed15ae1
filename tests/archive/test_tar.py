"""Extracting well-formed tar bundles: content, modes, mtimes, links and the top-folder rule."""

from __future__ import annotations

import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from codedeploy_agent.config import ArchiveLimits
from codedeploy_agent.spec import BundleType
from tests.archive.bundles import (
    MTIME,
    Entry,
    Site,
    file,
    folder,
    hardlink,
    listing,
    symlink,
    write_tar,
)

APP = [
    folder("scripts", mode=0o750, mtime=MTIME - 100),
    file("appspec.yml", "version: 0.0\nos: linux\n"),
    file("scripts/start.sh", "#!/bin/sh\necho start\n", mode=0o755, mtime=MTIME + 5),
    file("scripts/readonly.txt", "keep\n", mode=0o400),
    symlink("scripts/current", "start.sh"),
    hardlink("scripts/start-again.sh", "scripts/start.sh"),
    file("web/index.html", "<html></html>\n"),  # its folder has no entry of its own
]


@pytest.mark.parametrize("compression", ["", "gz", "bz2", "xz"])
def test_content_modes_mtimes_and_links_are_kept(site: Site, compression: str) -> None:
    """Every kind of member comes out with its bytes, mode bits and mtime, links as links."""
    bundle = write_tar(site.bundles / "app.tar", APP, compression)
    site.unpack(bundle, BundleType.TGZ if compression == "gz" else BundleType.TAR)
    archive = site.archive
    assert listing(archive) == [
        "appspec.yml",
        "scripts/",
        "scripts/current -> start.sh",
        "scripts/readonly.txt",
        "scripts/start-again.sh",
        "scripts/start.sh",
        "web/",
        "web/index.html",
    ]
    assert (archive / "scripts/start.sh").read_text() == "#!/bin/sh\necho start\n"
    assert stat.S_IMODE((archive / "scripts/start.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((archive / "scripts/readonly.txt").stat().st_mode) == 0o400
    assert stat.S_IMODE((archive / "scripts").stat().st_mode) == 0o750
    assert (archive / "scripts/start.sh").stat().st_mtime == MTIME + 5
    assert (archive / "scripts").stat().st_mtime == MTIME - 100
    assert (archive / "scripts/current").lstat().st_mtime == MTIME
    assert (archive / "scripts/start-again.sh").stat().st_ino == (
        archive / "scripts/start.sh"
    ).stat().st_ino


def test_gzip_is_detected_whatever_the_declared_type(site: Site) -> None:
    """A gzipped tar declared `tar` (GitHub tarballs) and a plain tar declared `tgz` both work."""
    gzipped = write_tar(site.bundles / "a.tgz", [file("appspec.yml", "a")], "gz")
    site.unpack(gzipped, BundleType.TAR)
    assert (site.archive / "appspec.yml").read_text() == "a"
    plain = write_tar(site.bundles / "b.tar", [file("appspec.yml", "b")])
    site.unpack(plain, BundleType.TGZ)
    assert (site.archive / "appspec.yml").read_text() == "b"


def test_unknown_bundle_types_are_read_as_tar(site: Site) -> None:
    """A bundle type other than zip (here `directory`) is extracted as tar, as the real agent does."""
    bundle = write_tar(site.bundles / "a.tar", [file("appspec.yml", "x")], "gz")
    site.unpack(bundle, BundleType.DIRECTORY)
    assert listing(site.archive) == ["appspec.yml"]


def test_gnu_tar_bundle_with_dot_prefix(site: Site, tmp_path: Path) -> None:
    """A bundle made by `tar -czf b.tgz -C dir .` unpacks flat, and `./` sets the root's mode."""
    source = tmp_path / "src"
    (source / "bin").mkdir(parents=True)
    (source / "appspec.yml").write_text("version: 0.0\n")
    (source / "bin" / "run").write_text("#!/bin/sh\n")
    (source / "bin" / "run").chmod(0o750)
    source.chmod(0o751)
    bundle = site.bundles / "b.tgz"
    subprocess.run(["tar", "-czf", str(bundle), "-C", str(source), "."], check=True)
    site.unpack(bundle, BundleType.TGZ)
    assert listing(site.archive) == ["appspec.yml", "bin/", "bin/run"]
    assert stat.S_IMODE(site.archive.stat().st_mode) == 0o751
    assert stat.S_IMODE((site.archive / "bin" / "run").stat().st_mode) == 0o750


@pytest.mark.parametrize("appspec_name", ["appspec.yml", "AppSpec.YAML", "my-appspec-notes"])
def test_single_top_folder_with_an_appspec_is_stripped(site: Site, appspec_name: str) -> None:
    """One top-level folder holding a name matching /appspec/i: its contents move up."""
    bundle = write_tar(
        site.bundles / "gh.tgz",
        [
            folder("owner-repo-0123abc", mode=0o755),
            file(f"owner-repo-0123abc/{appspec_name}", "version: 0.0\n"),
            file("owner-repo-0123abc/src/app.py", "print()\n"),
        ],
        "gz",
    )
    site.unpack(bundle, BundleType.TAR)
    assert listing(site.archive) == sorted([appspec_name, "src/", "src/app.py"])
    assert not site.temp.exists()


@pytest.mark.parametrize(
    "entries",
    [
        [file("top/appspec.yml", "x"), file("README", "x")],  # two entries at the root
        [file("top/app.py", "x"), file("top/config.yml", "x")],  # no appspec inside
        [file("top/sub/appspec.yml", "x")],  # appspec deeper than the single folder
        [file("appspec.yml", "x")],  # a single entry that is a file
    ],
    ids=["two-entries", "no-appspec", "appspec-deeper", "single-file"],
)
def test_top_folder_is_kept_otherwise(site: Site, entries: list[Entry]) -> None:
    """Without exactly one folder holding an appspec name, the tree is left as extracted."""
    bundle = write_tar(site.bundles / "b.tar", entries)
    site.unpack(bundle, BundleType.TAR)
    expected = {e.name for e in entries}
    assert {p for p in listing(site.archive) if not p.endswith("/")} == expected


def test_a_single_top_level_link_is_not_followed(site: Site) -> None:
    """A lone top-level symlink to a folder is not 'a directory' for the strip rule."""
    bundle = write_tar(site.bundles / "b.tar", [symlink("top", "."), folder("x")])
    site.unpack(bundle, BundleType.TAR)
    assert listing(site.archive) == ["top -> .", "x/"]


def test_previous_archive_folder_is_replaced(site: Site) -> None:
    """An existing archive folder (a retried deployment) is removed before extracting."""
    (site.archive / "stale").mkdir(parents=True)
    (site.archive / "stale" / "old.txt").write_text("old")
    (site.archive / "stale").chmod(0o555)
    bundle = write_tar(site.bundles / "b.tar", [file("appspec.yml", "new")])
    site.unpack(bundle, BundleType.TAR)
    assert listing(site.archive) == ["appspec.yml"]


def test_later_member_of_the_same_name_wins_without_touching_hard_links(site: Site) -> None:
    """A repeated name replaces the earlier file (unlinked, not truncated: its links keep it)."""
    bundle = write_tar(
        site.bundles / "b.tar",
        [
            file("a.txt", "first"),
            hardlink("b.txt", "a.txt"),
            file("a.txt", "second"),
            symlink("c", "a.txt"),
            file("c", "not a link"),
        ],
    )
    site.unpack(bundle, BundleType.TAR)
    assert (site.archive / "a.txt").read_text() == "second"
    assert (site.archive / "b.txt").read_text() == "first"
    assert not (site.archive / "c").is_symlink()
    assert (site.archive / "c").read_text() == "not a link"


def test_setuid_setgid_and_sticky_bits_are_stripped(site: Site) -> None:
    """Files lose setuid, setgid and sticky; directories lose setuid/setgid but keep sticky."""
    bundle = write_tar(
        site.bundles / "b.tar",
        [
            file("suid", "x", mode=0o4755),
            file("sgid", "x", mode=0o2755),
            file("sticky", "x", mode=0o1644),
            folder("shared", mode=0o3777),
        ],
    )
    site.unpack(bundle, BundleType.TAR)
    modes = {
        name: stat.S_IMODE((site.archive / name).stat().st_mode)
        for name in ("suid", "sgid", "sticky", "shared")
    }
    assert modes == {"suid": 0o755, "sgid": 0o755, "sticky": 0o644, "shared": 0o1777}


def test_ownership_from_the_archive_is_not_restored(site: Site) -> None:
    """Members owned by uid 4242 in the tar belong to the agent's user once extracted."""
    entries = [Entry("owned.txt", b"x", uid=4242), Entry("dir", kind="dir", uid=4242)]
    bundle = write_tar(site.bundles / "b.tar", entries)
    site.unpack(bundle, BundleType.TAR)
    assert (site.archive / "owned.txt").stat().st_uid == os.getuid()
    assert (site.archive / "dir").stat().st_uid == os.getuid()


def test_sparse_and_long_name_members(site: Site, tmp_path: Path) -> None:
    """GNU sparse files and names longer than 100 bytes (GNU tar's own output) extract exactly."""
    source = tmp_path / "src"
    deep = source / ("d" * 120)
    deep.mkdir(parents=True)
    with open(deep / "sparse.bin", "wb") as handle:
        handle.seek(3 * 1024 * 1024)
        handle.write(b"end")
    bundle = site.bundles / "b.tar"
    subprocess.run(
        ["tar", "--sparse", "--format=gnu", "-cf", str(bundle), "-C", str(source), "."],
        check=True,
    )
    with tarfile.open(bundle) as tar:
        assert any(m.issparse() for m in tar.getmembers())
    site.unpack(bundle, BundleType.TAR)
    data = (site.archive / ("d" * 120) / "sparse.bin").read_bytes()
    assert len(data) == 3 * 1024 * 1024 + 3
    assert data.endswith(b"end")
    assert data[:-3] == bytes(3 * 1024 * 1024)


def test_names_that_are_not_utf8_are_kept_byte_for_byte(site: Site, tmp_path: Path) -> None:
    """A Latin-1 file name in the tar is written with the same bytes."""
    source = tmp_path / "src"
    source.mkdir()
    raw_name = b"caf\xe9.txt"
    (source / os.fsdecode(raw_name)).write_text("x")
    bundle = site.bundles / "b.tar"
    subprocess.run(["tar", "-cf", str(bundle), "-C", str(source), "."], check=True)
    site.unpack(bundle, BundleType.TAR)
    assert [os.fsencode(path.name) for path in site.archive.iterdir()] == [raw_name]


def test_many_members_extract_identically_to_gnu_tar(site: Site, tmp_path: Path) -> None:
    """A 600-file GNU tar tgz gives what tar -x gives: names, bytes, modes, mtimes, links."""
    source = tmp_path / "src"
    for index in range(600):
        folder_path = source / f"pkg{index % 7}" / f"mod{index % 5}"
        folder_path.mkdir(parents=True, exist_ok=True)
        path = folder_path / f"f{index}.txt"
        path.write_bytes(os.urandom(index * 7))
        path.chmod(0o600 + (index % 3) * 0o11)
        os.utime(path, (MTIME + index, MTIME + index))
    (source / "pkg0" / "linked.txt").hardlink_to(source / "pkg0" / "mod0" / "f0.txt")
    (source / "pkg1" / "alias").symlink_to("mod1")
    bundle = site.bundles / "b.tgz"
    subprocess.run(["tar", "-czf", str(bundle), "-C", str(source), "."], check=True)
    reference = tmp_path / "ref"
    reference.mkdir()
    subprocess.run(["tar", "-xzf", str(bundle), "-C", str(reference)], check=True)
    site.unpack(bundle, BundleType.TGZ)

    def describe(root: Path) -> list[str]:
        out = subprocess.run(
            ["find", ".", "-printf", "%p %y %m %n %T@ %s %l\\n"],
            cwd=root,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return sorted(out.splitlines())

    assert describe(site.archive) == describe(reference)
    subprocess.run(["diff", "-r", str(reference), str(site.archive)], check=True)


def test_member_data_larger_than_one_read_chunk(site: Site) -> None:
    """A file spanning several 1 MiB chunks (and gzip blocks) is written whole."""
    data = os.urandom(3 * 1024 * 1024 + 17)
    bundle = write_tar(site.bundles / "b.tgz", [file("big.bin", data)], "gz")
    site.unpack(bundle, BundleType.TGZ, ArchiveLimits(max_compression_ratio=2))
    assert (site.archive / "big.bin").read_bytes() == data

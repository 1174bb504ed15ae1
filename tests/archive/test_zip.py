"""Extracting well-formed zip bundles the way `unzip` does, plus the top-folder rule."""

from __future__ import annotations

import os
import stat
import subprocess
import warnings
import zipfile
from pathlib import Path

from codedeploy_agent.spec import BundleType
from tests.archive.bundles import MTIME, Site, file, folder, listing, symlink, write_zip


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_unix_modes_mtimes_and_symlinks(site: Site) -> None:
    """Unix mode bits in the external attributes are applied; S_IFLNK entries become links."""
    bundle = write_zip(
        site.bundles / "b.zip",
        [
            folder("bin", mode=0o750, mtime=MTIME - 10),
            file("appspec.yml", "version: 0.0\n"),
            file("bin/run", "#!/bin/sh\n", mode=0o755, mtime=MTIME + 20),
            file("bin/suid", "#!/bin/sh\n", mode=0o4755),
            symlink("bin/latest", "run"),
        ],
    )
    site.unpack(bundle, BundleType.ZIP)
    archive = site.archive
    assert listing(archive) == ["appspec.yml", "bin/", "bin/latest -> run", "bin/run", "bin/suid"]
    assert stat.S_IMODE((archive / "bin/run").stat().st_mode) == 0o755
    assert stat.S_IMODE((archive / "bin/suid").stat().st_mode) == 0o755
    assert stat.S_IMODE((archive / "bin").stat().st_mode) == 0o750
    assert (archive / "bin/run").stat().st_mtime == MTIME + 20
    assert (archive / "bin").stat().st_mtime == MTIME - 10
    assert (archive / "bin/run").read_text() == "#!/bin/sh\n"


def test_zip_without_unix_modes_uses_the_umask(site: Site) -> None:
    """Entries from a non-Unix zip get 0666/0777 minus the umask, as unzip gives them."""
    bundle = write_zip(
        site.bundles / "win.zip", [folder("conf"), file("conf/app.ini", "a=1")], unix=False
    )
    site.unpack(bundle, BundleType.ZIP)
    mask = _umask()
    assert stat.S_IMODE((site.archive / "conf/app.ini").stat().st_mode) == 0o666 & ~mask
    assert stat.S_IMODE((site.archive / "conf").stat().st_mode) == 0o777 & ~mask
    assert (site.archive / "conf/app.ini").stat().st_mtime == MTIME  # DOS time, read as local


def test_zip_made_by_info_zip(site: Site, tmp_path: Path) -> None:
    """`zip -r --symlinks` output: links kept, exact mtimes from the extended timestamp field."""
    source = tmp_path / "src"
    (source / "lib").mkdir(parents=True)
    (source / "appspec.yml").write_text("version: 0.0\n")
    (source / "lib" / "tool").write_text("#!/bin/sh\n")
    (source / "lib" / "tool").chmod(0o711)
    (source / "lib" / "alias").symlink_to("tool")
    os.utime(source / "lib" / "tool", (MTIME + 3, MTIME + 3))  # odd: DOS time cannot hold it
    bundle = site.bundles / "b.zip"
    subprocess.run(["zip", "-q", "-r", "--symlinks", str(bundle), "."], cwd=source, check=True)
    site.unpack(bundle, BundleType.ZIP)
    assert listing(site.archive) == ["appspec.yml", "lib/", "lib/alias -> tool", "lib/tool"]
    assert (site.archive / "lib" / "tool").stat().st_mtime == MTIME + 3
    assert stat.S_IMODE((site.archive / "lib" / "tool").stat().st_mode) == 0o711


def test_zipball_top_folder_is_stripped(site: Site) -> None:
    """A GitHub zipball (`<owner>-<repo>-<sha>/...`) unpacks with appspec.yml at the root."""
    bundle = write_zip(
        site.bundles / "gh.zip",
        [
            folder("acme-web-1a2b3c4"),
            file("acme-web-1a2b3c4/appspec.yml", "version: 0.0\n"),
            file("acme-web-1a2b3c4/scripts/start.sh", "#!/bin/sh\n", mode=0o755),
        ],
    )
    site.unpack(bundle, BundleType.ZIP)
    assert listing(site.archive) == ["appspec.yml", "scripts/", "scripts/start.sh"]
    assert not site.temp.exists()


def test_names_are_written_as_stored(site: Site, tmp_path: Path) -> None:
    """Raw (non-UTF-8) names from Info-ZIP keep their bytes; UTF-8-flagged names decode as UTF-8."""
    source = tmp_path / "src"
    source.mkdir()
    (source / os.fsdecode(b"caf\xe9.txt")).write_text("latin-1")
    raw_zip = site.bundles / "raw.zip"
    subprocess.run(["zip", "-q", "-r", str(raw_zip), "."], cwd=source, check=True)
    site.unpack(raw_zip, BundleType.ZIP)
    assert [os.fsencode(p.name) for p in site.archive.iterdir()] == [b"caf\xe9.txt"]

    utf8_zip = write_zip(site.bundles / "utf8.zip", [file("café.txt", "utf-8")])
    site.unpack(utf8_zip, BundleType.ZIP)
    assert [p.name for p in site.archive.iterdir()] == ["café.txt"]


def test_duplicate_entries_last_one_wins(site: Site) -> None:
    """Two entries with the same name: the later overwrites, as `unzip -o` does."""
    bundle = site.bundles / "dup.zip"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about duplicate names
        with zipfile.ZipFile(bundle, "w") as archive:
            archive.writestr("a.txt", "first")
            archive.writestr("a.txt", "second")
    site.unpack(bundle, BundleType.ZIP)
    assert (site.archive / "a.txt").read_text() == "second"


def test_large_entry_spanning_many_chunks(site: Site) -> None:
    """An entry of several MiB is written whole and byte-exact."""
    data = os.urandom(5 * 1024 * 1024 + 3)
    bundle = write_zip(site.bundles / "big.zip", [file("big.bin", data)])
    site.unpack(bundle, BundleType.ZIP)
    assert (site.archive / "big.bin").read_bytes() == data

"""`push`'s bundle: deterministic zip, modes, mtimes, links, hidden files, appspec checks."""

from __future__ import annotations

import hashlib
import os
import stat
import zipfile
from pathlib import Path

import pytest

from codedeploy_agent.archive import unpack_bundle
from codedeploy_agent.config import ArchiveLimits
from codedeploy_agent.spec import BundleType
from codedeploy_server.opcli.bundle import (
    check_bundle,
    collect_entries,
    source_date_epoch,
    write_bundle,
)
from codedeploy_server.opcli.errors import BundleError

APPSPEC = """\
version: 0.0
os: linux
files:
  - source: app
    destination: /opt/app
hooks:
  ApplicationStart:
    - location: scripts/start.sh
      timeout: 30
"""
MTIME = 1_700_000_000


def make_source(root: Path) -> Path:
    """A revision folder: appspec, an executable script, app files, a link, hidden files."""
    (root / "scripts").mkdir(parents=True)
    (root / "app" / "empty").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "appspec.yml").write_text(APPSPEC)
    (root / "scripts" / "start.sh").write_text("#!/bin/sh\necho started\n")
    (root / "scripts" / "start.sh").chmod(0o755)
    (root / "app" / "index.html").write_text("<h1>hello</h1>\n")
    (root / "app" / "index.html").chmod(0o640)
    (root / "app" / "empty").chmod(0o750)
    (root / "app" / "current.html").symlink_to("index.html")
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / "app" / ".env").write_text("SECRET=1\n")
    for path in [*root.rglob("*"), root]:
        os.utime(path, (MTIME, MTIME), follow_symlinks=False)
    return root


def build(source: Path, out: Path, **options: object) -> Path:
    entries = collect_entries(source, **options)  # type: ignore[arg-type]
    return write_bundle(entries, out).path


def test_entries_are_sorted_with_folders_modes_and_links(tmp_path: Path) -> None:
    """The zip lists every entry sorted, folders included, with Unix modes and links as links."""
    bundle = build(make_source(tmp_path / "src"), tmp_path / "b.zip")
    with zipfile.ZipFile(bundle) as archive:
        infos = archive.infolist()
        names = [i.filename for i in infos]
        modes = {i.filename: i.external_attr >> 16 for i in infos}
        link = archive.read("app/current.html")
    assert names == [
        ".git/",
        ".git/HEAD",
        "app/",
        "app/.env",
        "app/current.html",
        "app/empty/",
        "app/index.html",
        "appspec.yml",
        "scripts/",
        "scripts/start.sh",
    ]
    assert stat.S_IMODE(modes["scripts/start.sh"]) == 0o755
    assert stat.S_ISREG(modes["scripts/start.sh"])
    assert stat.S_IMODE(modes["app/index.html"]) == 0o640
    assert stat.S_ISDIR(modes["app/empty/"])
    assert stat.S_IMODE(modes["app/empty/"]) == 0o750
    assert stat.S_ISLNK(modes["app/current.html"])
    assert link == b"index.html"
    assert all(i.create_system == 3 for i in infos)


def test_the_agent_unpacks_the_bundle_with_modes_mtimes_and_links(tmp_path: Path) -> None:
    """The agent's own extraction restores modes, mtimes, the link and the empty folder."""
    bundle = build(make_source(tmp_path / "src"), tmp_path / "b.zip")
    target = tmp_path / "deployment-archive"
    unpack_bundle(
        bundle, BundleType.ZIP, target, limits=ArchiveLimits(), temp_dir=tmp_path / "temp"
    )
    script = target / "scripts" / "start.sh"
    assert script.read_text() == "#!/bin/sh\necho started\n"
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    assert script.stat().st_mtime == MTIME
    assert stat.S_IMODE((target / "app" / "index.html").stat().st_mode) == 0o640
    assert (target / "app" / "current.html").is_symlink()
    assert (target / "app" / "current.html").readlink() == Path("index.html")
    assert (target / "app" / "empty").is_dir()


def test_same_tree_gives_the_same_bytes(tmp_path: Path) -> None:
    """Two bundles of one tree are byte-identical; a changed mtime changes the bundle."""
    source = make_source(tmp_path / "src")
    first = write_bundle(collect_entries(source), tmp_path / "1.zip")
    second = write_bundle(collect_entries(source), tmp_path / "2.zip")
    assert first.sha256 == second.sha256
    assert first.sha256 == hashlib.sha256(first.path.read_bytes()).hexdigest()
    assert first.size == first.path.stat().st_size
    assert first.entries == 10
    os.utime(source / "appspec.yml", (MTIME + 60, MTIME + 60))
    third = write_bundle(collect_entries(source), tmp_path / "3.zip")
    assert third.sha256 != first.sha256


def test_source_date_epoch_makes_checkouts_reproducible(tmp_path: Path) -> None:
    """With SOURCE_DATE_EPOCH, two copies of a tree with different mtimes bundle identically."""
    one = make_source(tmp_path / "one")
    two = make_source(tmp_path / "two")
    for path in two.rglob("*"):
        os.utime(path, (MTIME + 3600, MTIME + 3600), follow_symlinks=False)
    clamp = source_date_epoch({"SOURCE_DATE_EPOCH": str(MTIME - 100)})
    assert clamp == MTIME - 100
    a = write_bundle(collect_entries(one, clamp=clamp), tmp_path / "a.zip")
    b = write_bundle(collect_entries(two, clamp=clamp), tmp_path / "b.zip")
    assert a.sha256 == b.sha256
    with zipfile.ZipFile(a.path) as archive:
        assert archive.getinfo("appspec.yml").date_time == (2023, 11, 14, 22, 11, 40)


def test_invalid_source_date_epoch_is_refused() -> None:
    """A SOURCE_DATE_EPOCH that is not a number is a clear error."""
    with pytest.raises(BundleError) as caught:
        source_date_epoch({"SOURCE_DATE_EPOCH": "yesterday"})
    assert str(caught.value) == (
        "SOURCE_DATE_EPOCH='yesterday' is not a whole number of seconds since 1970; fix or "
        "unset it."
    )


def test_ignore_hidden_files_leaves_out_dotfiles_at_any_depth(tmp_path: Path) -> None:
    """--ignore-hidden-files drops `.git/` and `app/.env` but keeps everything else."""
    entries = collect_entries(make_source(tmp_path / "src"), ignore_hidden_files=True)
    assert [e.name for e in entries] == [
        "app/",
        "app/current.html",
        "app/empty/",
        "app/index.html",
        "appspec.yml",
        "scripts/",
        "scripts/start.sh",
    ]


def test_link_out_of_the_source_is_refused(tmp_path: Path) -> None:
    """A symbolic link that leaves the source folder is refused with the fix."""
    source = make_source(tmp_path / "src")
    (source / "app" / "passwd").symlink_to("../../../etc/passwd")
    with pytest.raises(BundleError) as caught:
        collect_entries(source)
    assert str(caught.value) == (
        "app/passwd is a symbolic link to '../../../etc/passwd', outside the source folder; the "
        "agent refuses bundles with such links. Replace the link with the file itself or a "
        "relative link inside the folder, and push again."
    )


def test_fifo_is_refused(tmp_path: Path) -> None:
    """A named pipe in the source cannot be bundled."""
    source = make_source(tmp_path / "src")
    os.mkfifo(source / "app" / "pipe")
    with pytest.raises(BundleError) as caught:
        collect_entries(source)
    assert str(caught.value) == (
        f"{source}/app/pipe is a FIFO (named pipe); a bundle may hold only files, directories "
        "and links. Remove it from the source folder, and push again."
    )


def test_missing_appspec_is_reported_like_the_aws_cli(tmp_path: Path) -> None:
    """Without appspec.yml (or appspec.yaml) at the root, the AWS CLI's message and the fix."""
    source = make_source(tmp_path / "src")
    (source / "appspec.yml").unlink()
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with pytest.raises(BundleError) as caught:
        check_bundle(source, collect_entries(source), mirror)
    assert str(caught.value) == (
        f"{source}/appspec.yml was not found. Put the appspec.yml at the root of the --source "
        "folder."
    )


def test_appspec_yaml_is_accepted(tmp_path: Path) -> None:
    """`appspec.yaml` is found when there is no `appspec.yml`, as the agent finds it."""
    source = make_source(tmp_path / "src")
    (source / "appspec.yml").rename(source / "appspec.yaml")
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    report = check_bundle(source, collect_entries(source), mirror)
    assert report.ok
    assert report.filename == f"{source}/appspec.yaml"


def test_check_sees_what_the_bundle_holds(tmp_path: Path) -> None:
    """A script under a hidden folder is missing from the bundle with --ignore-hidden-files."""
    source = make_source(tmp_path / "src")
    (source / ".hooks").mkdir()
    (source / ".hooks" / "stop.sh").write_text("#!/bin/sh\n")
    (source / ".hooks" / "stop.sh").chmod(0o755)
    (source / "appspec.yml").write_text(
        APPSPEC + "  ApplicationStop:\n    - location: .hooks/stop.sh\n"
    )
    kept = tmp_path / "kept"
    kept.mkdir()
    assert check_bundle(source, collect_entries(source), kept).errors == []
    dropped = tmp_path / "dropped"
    dropped.mkdir()
    report = check_bundle(source, collect_entries(source, ignore_hidden_files=True), dropped)
    assert [(p.path, p.message) for p in report.errors] == [
        (
            "hooks.ApplicationStop[0].location",
            f"Script does not exist at specified location: {source}/.hooks/stop.sh",
        )
    ]


def test_non_utf8_file_name_is_refused(tmp_path: Path) -> None:
    """A file name that is not UTF-8 cannot go into the zip: say which, and the fix."""
    source = make_source(tmp_path / "src")
    bad = os.fsencode(source / "app") + b"/caf\xe9.txt"
    with open(bad, "wb"):
        pass
    with pytest.raises(BundleError) as caught:
        collect_entries(source)
    assert str(caught.value) == (
        f"{bad!r} is not a UTF-8 file name; zip bundles store UTF-8 names. Rename it, and push "
        "again."
    )

"""Cleanup files: parsing and replaying (reference §5.3, §10.3 item 22)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from codedeploy_agent.installer import Replay, replay_cleanup
from codedeploy_agent.installer.cleanup import CleanupEntry, EntryKind, _kept, parse_cleanup

if TYPE_CHECKING:
    from tests.installer.conftest import FakeTools


def lines(*paths: str | Path) -> bytes:
    return b"".join(os.fsencode(p) + b"\n" for p in paths)


def test_empty_cleanup_file_has_no_entries() -> None:
    """An empty file (or one holding only a torn line) gives no commands."""
    assert parse_cleanup(b"") == ()
    assert parse_cleanup(b"/srv/half-writ") == ()


def test_entries_keep_file_order_and_drop_the_torn_last_line() -> None:
    """Lines become entries in order; `semanage\\0` lines are contexts; a torn tail is dropped."""
    data = b"/srv/app\n/srv/app/a b \nsemanage\x00/srv/app/a b \n\n/srv/app/man"
    assert parse_cleanup(data) == (
        CleanupEntry(EntryKind.PATH, b"/srv/app"),
        CleanupEntry(EntryKind.PATH, b"/srv/app/a b "),
        CleanupEntry(EntryKind.SEMANAGE, b"/srv/app/a b "),
    )


def test_non_utf8_paths_survive_parsing() -> None:
    """Paths are bytes: a name that is not UTF-8 is kept exactly."""
    assert parse_cleanup(b"/srv/caf\xe9\n") == (CleanupEntry(EntryKind.PATH, b"/srv/caf\xe9"),)


def test_replay_removes_files_links_and_empty_directories_last_first(tmp_path: Path) -> None:
    """Files and symlinks are unlinked, directories rmdir'd after their content, file deleted."""
    app = tmp_path / "app"
    (app / "sub").mkdir(parents=True)
    (app / "sub" / "f").write_text("x")
    target_dir = tmp_path / "elsewhere"
    target_dir.mkdir()
    (target_dir / "keep").write_text("k")
    (app / "link").symlink_to(target_dir)
    cleanup = tmp_path / "dg-cleanup"
    cleanup.write_bytes(lines(app, app / "sub", app / "sub" / "f", app / "link"))

    assert replay_cleanup(cleanup) == Replay()

    assert not app.exists()
    assert (target_dir / "keep").read_text() == "k"  # the link went, not what it pointed to
    assert not cleanup.exists()


def test_replay_keeps_directories_with_foreign_content_silently(tmp_path: Path) -> None:
    """A recorded directory that is not empty (someone else's files) is left, no warning."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "ours").write_text("o")
    (app / "theirs").write_text("t")
    cleanup = tmp_path / "dg-cleanup"
    cleanup.write_bytes(lines(app, app / "ours"))

    assert replay_cleanup(cleanup) == Replay()

    assert sorted(p.name for p in app.iterdir()) == ["theirs"]


def test_replay_skips_missing_paths_silently(tmp_path: Path) -> None:
    """Paths already gone (or under a parent that became a file) are skipped without warning."""
    (tmp_path / "was-a-dir").write_text("now a file")
    present = tmp_path / "present"
    present.write_text("p")
    cleanup = tmp_path / "dg-cleanup"
    cleanup.write_bytes(lines(tmp_path / "gone", tmp_path / "was-a-dir" / "child", present))

    assert replay_cleanup(cleanup) == Replay()

    assert not present.exists()
    assert (tmp_path / "was-a-dir").exists()


def test_replay_of_missing_cleanup_file_does_nothing(tmp_path: Path) -> None:
    """No cleanup file (first deployment of a group) means nothing to undo."""
    assert replay_cleanup(tmp_path / "dg-cleanup") == Replay()


def test_replay_drops_the_torn_last_line(tmp_path: Path) -> None:
    """A final line without newline is not acted on (it may be a truncated path)."""
    whole = tmp_path / "whole"
    whole.write_text("w")
    prefix = tmp_path / "pre"
    prefix.write_text("a file whose name is a prefix of the torn line")
    cleanup = tmp_path / "dg-cleanup"
    cleanup.write_bytes(lines(whole) + os.fsencode(prefix))

    assert replay_cleanup(cleanup) == Replay()

    assert not whole.exists()
    assert prefix.exists()


def test_replay_removes_non_utf8_paths(tmp_path: Path) -> None:
    """A recorded name that is not UTF-8 is removed by its exact bytes."""
    raw = os.fsencode(tmp_path) + b"/caf\xe9"
    Path(os.fsdecode(raw)).write_text("x")
    cleanup = tmp_path / "dg-cleanup"
    cleanup.write_bytes(raw + b"\n")

    assert replay_cleanup(cleanup) == Replay()

    assert not os.path.lexists(raw)


@pytest.fixture
def immutable_file(tmp_path: Path) -> Iterator[Path]:
    """A file with the immutable attribute (chattr +i), cleared again afterwards."""
    path = tmp_path / "app" / "locked"
    path.parent.mkdir()
    path.write_text("l")
    if subprocess.run(["chattr", "+i", str(path)], check=False, capture_output=True).returncode:
        pytest.skip("chattr +i is not supported here")
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=False)


@pytest.mark.root
def test_unremovable_file_becomes_a_warning_and_cleanup_continues(
    tmp_path: Path, immutable_file: Path
) -> None:
    """An immutable file is reported (path, error, fix) and everything else is still removed;
    the file and the recorded directory holding it stay in the cleanup file, to retry."""
    app = immutable_file.parent
    other = app / "other"
    other.write_text("o")
    cleanup = tmp_path / "dg-cleanup"
    cleanup.write_bytes(lines(app, immutable_file, other))

    replay = replay_cleanup(cleanup)

    assert replay.warnings == (
        (
            f"Could not remove {immutable_file} (previous revision's file) during cleanup: "
            "Operation not permitted. Remove it by hand or fix its permissions (lsattr/chattr -i, "
            "mount rw); the deployment continues, and the next deployment tries to remove it "
            "again."
        ),
    )
    assert replay.kept == (
        CleanupEntry(EntryKind.PATH, os.fsencode(app)),
        CleanupEntry(EntryKind.PATH, os.fsencode(immutable_file)),
    )
    assert not other.exists()
    assert immutable_file.exists()
    assert app.exists()  # not empty: kept
    # Rewritten with only what is left, so an install that fails before writing its own
    # cleanup file does not lose them.
    assert cleanup.read_bytes() == lines(app, immutable_file)

    subprocess.run(["chattr", "-i", str(immutable_file)], check=True)
    assert replay_cleanup(cleanup) == Replay()
    assert not app.exists()
    assert not cleanup.exists()


def test_only_recorded_directories_holding_a_kept_path_are_kept(tmp_path: Path) -> None:
    """Of the recorded entries, a path that could not be removed is kept with the recorded
    directories above it (in file order, once each); siblings and other directories are not."""
    entries = (
        CleanupEntry(EntryKind.PATH, b"/srv/app"),
        CleanupEntry(EntryKind.PATH, b"/srv/app/sub/"),
        CleanupEntry(EntryKind.PATH, b"/srv/app/sub/locked"),
        CleanupEntry(EntryKind.PATH, b"/srv/app/sub/other"),
        CleanupEntry(EntryKind.PATH, b"/srv/apple"),
        CleanupEntry(EntryKind.SEMANAGE, b"/srv/app/sub/locked"),
        CleanupEntry(EntryKind.PATH, b"/srv/app/sub/locked"),
    )
    assert _kept(entries, {b"/srv/app/sub/locked"}) == entries[:3]
    assert _kept(entries, set()) == ()


@pytest.fixture
def read_only_mount(tmp_path: Path) -> Iterator[Path]:
    """A directory bind-mounted read-only over itself, holding one file; unmounted afterwards."""
    mnt = tmp_path / "ro"
    mnt.mkdir()
    (mnt / "f").write_text("f")
    if subprocess.run(
        ["mount", "--bind", "-o", "ro", str(mnt), str(mnt)], check=False, capture_output=True
    ).returncode:
        pytest.skip("cannot bind-mount here")
    try:
        if os.access(mnt, os.W_OK) and _writable(mnt):
            pytest.skip("the bind mount is not read-only here")
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def _writable(directory: Path) -> bool:
    try:
        (directory / "probe").write_text("p")
    except OSError:
        return False
    (directory / "probe").unlink()
    return True


@pytest.mark.root
def test_file_on_read_only_mount_becomes_a_warning(tmp_path: Path, read_only_mount: Path) -> None:
    """EROFS is reported with the remount fix; the deployment is not blocked, and the file
    stays in the cleanup file."""
    cleanup = tmp_path / "dg-cleanup"
    cleanup.write_bytes(lines(read_only_mount / "f"))

    replay = replay_cleanup(cleanup)

    assert replay.warnings == (
        (
            f"Could not remove {read_only_mount}/f (previous revision's file) during cleanup: "
            "Read-only file system. Remount the file system read-write (mount -o remount,rw) or "
            "remove it by hand; the deployment continues, and the next deployment tries to remove "
            "it again."
        ),
    )
    assert cleanup.read_bytes() == lines(read_only_mount / "f")


def test_semanage_entries_delete_the_file_context(tmp_path: Path, fake_tools: FakeTools) -> None:
    """`semanage\\0p` runs `semanage fcontext -d p` (fake semanage: SELinux is not enabled
    on this machine, so the real tool cannot run here)."""
    fake_tools.add("semanage")
    cleanup = tmp_path / "dg-cleanup"
    cleanup.write_bytes(b"semanage\x00/srv/app/a\nsemanage\x00/srv/app/b\n")

    assert replay_cleanup(cleanup) == Replay()

    assert fake_tools.calls() == [
        "semanage fcontext -d /srv/app/b",
        "semanage fcontext -d /srv/app/a",
    ]


def test_failing_semanage_becomes_a_warning(tmp_path: Path, fake_tools: FakeTools) -> None:
    """A failing `semanage fcontext -d` is a warning with its stderr, not a failure."""
    fake_tools.add(
        "semanage", exit_code=1, stderr="ValueError: File context for /srv/a is not defined"
    )
    cleanup = tmp_path / "dg-cleanup"
    cleanup.write_bytes(b"semanage\x00/srv/a\n")

    assert replay_cleanup(cleanup).warnings == (
        (
            "Could not remove the SELinux file context of /srv/a during cleanup: semanage "
            "fcontext -d exited with 1: ValueError: File context for /srv/a is not defined. "
            "Run `semanage fcontext -d /srv/a` by hand; the deployment continues."
        ),
    )
    # Not retried: after the fix by hand, `semanage fcontext -d` fails ("not defined").
    assert not cleanup.exists()


@pytest.mark.usefixtures("empty_path")
def test_missing_semanage_during_cleanup_becomes_a_warning(tmp_path: Path) -> None:
    """Without semanage, a recorded context cannot be removed: a warning names the fix."""
    cleanup = tmp_path / "dg-cleanup"
    cleanup.write_bytes(b"semanage\x00/srv/a\n")

    assert replay_cleanup(cleanup).warnings == (
        (
            "Could not remove the SELinux file context of /srv/a during cleanup: semanage is not "
            "installed. Install policycoreutils-python-utils and run `semanage fcontext -d /srv/a` "
            "by hand; the deployment continues."
        ),
    )

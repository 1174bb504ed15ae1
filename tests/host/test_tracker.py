"""The ongoing-deployment markers: atomic writes, EACCES retries, newest-first, staleness."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from codedeploy_agent.errors import HostStateError
from codedeploy_agent.host.tracker import OngoingDeployments

RunUnprivileged = Callable[[Callable[[], Any]], Any]  # conftest.py's run_unprivileged


def _listing(directory: Path) -> list[str]:
    return sorted(entry.name for entry in directory.iterdir())


def _age(path: Path, seconds: float) -> None:
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))


def test_mark_writes_the_command_id_atomically(tmp_path: Path) -> None:
    """mark creates the directory and a file named after the deployment holding the id only."""
    tracker = OngoingDeployments(tmp_path / "ongoing-deployment")
    tracker.mark("d-ABC", "job-1")
    tracker.mark("d-ABC", "job-2")
    assert _listing(tmp_path / "ongoing-deployment") == ["d-ABC"]
    assert (tmp_path / "ongoing-deployment" / "d-ABC").read_bytes() == b"job-2"


def test_clear_removes_the_marker(tmp_path: Path) -> None:
    """clear deletes the deployment's marker and leaves the others."""
    tracker = OngoingDeployments(tmp_path)
    tracker.mark("d-1", "a")
    tracker.mark("d-2", "b")
    tracker.clear("d-1")
    assert _listing(tmp_path) == ["d-2"]


def test_clear_of_a_missing_marker_is_only_logged(tmp_path: Path) -> None:
    """A marker that is already gone logs the real agent's warning and does not raise."""
    with capture_logs() as logs:
        OngoingDeployments(tmp_path).clear("d-1")
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("the tracking file does not exist", "warning")
    ]


def test_most_recent_is_the_newest_by_mtime(tmp_path: Path) -> None:
    """most_recent returns the marker with the newest mtime, whatever the names' order."""
    tracker = OngoingDeployments(tmp_path)
    for name, age in (("d-a", 30), ("d-b", 10), ("d-c", 20)):
        tracker.mark(name, f"cmd-{name}")
        _age(tmp_path / name, age)
    assert tracker.most_recent() == ("d-b", "cmd-d-b")


def test_stale_markers_are_deleted_when_checked(tmp_path: Path) -> None:
    """Markers older than 24 h are ignored and deleted; a fresh one is still returned."""
    tracker = OngoingDeployments(tmp_path)
    tracker.mark("d-old", "x")
    tracker.mark("d-new", "y")
    _age(tmp_path / "d-old", 86401)
    _age(tmp_path / "d-new", 86399)
    assert tracker.most_recent() == ("d-new", "y")
    assert _listing(tmp_path) == ["d-new"]


def test_only_stale_markers_means_none_active(tmp_path: Path) -> None:
    """With only stale markers nothing is active and the directory ends up empty."""
    tracker = OngoingDeployments(tmp_path, stale_after=60)
    tracker.mark("d-1", "x")
    _age(tmp_path / "d-1", 61)
    assert tracker.any_active() is False
    assert _listing(tmp_path) == []


def test_any_active(tmp_path: Path) -> None:
    """any_active is true while a fresh marker exists."""
    tracker = OngoingDeployments(tmp_path / "ongoing")
    assert tracker.any_active() is False
    tracker.mark("d-1", "x")
    assert tracker.any_active() is True


def test_missing_directory_has_no_marker(tmp_path: Path) -> None:
    """Before any deployment the directory does not exist: nothing is in progress."""
    assert OngoingDeployments(tmp_path / "absent").most_recent() is None


def test_directories_and_temporary_files_are_not_markers(tmp_path: Path) -> None:
    """Sub-directories and dot-files (interrupted writes) are skipped."""
    (tmp_path / "d-dir").mkdir()
    (tmp_path / ".d-1.123.tmp").write_text("partial", encoding="utf-8")
    tracker = OngoingDeployments(tmp_path)
    assert tracker.most_recent() is None
    tracker.mark("d-2", "cmd")
    _age(tmp_path / "d-2", 100)
    assert tracker.most_recent() == ("d-2", "cmd")


def test_content_written_by_hand_is_stripped(tmp_path: Path) -> None:
    """A marker an operator wrote with `echo` (trailing newline) reads back without it."""
    (tmp_path / "d-1").write_text("cmd-7\n", encoding="utf-8")
    assert OngoingDeployments(tmp_path).most_recent() == ("d-1", "cmd-7")


def test_clear_all_empties_the_directory(tmp_path: Path) -> None:
    """clear_all removes every file and sub-directory but keeps the directory itself."""
    tracker = OngoingDeployments(tmp_path / "ongoing")
    tracker.mark("d-1", "x")
    (tmp_path / "ongoing" / "sub").mkdir()
    (tmp_path / "ongoing" / "sub" / "f").write_text("", encoding="utf-8")
    tracker.clear_all()
    assert _listing(tmp_path / "ongoing") == []
    OngoingDeployments(tmp_path / "absent").clear_all()  # nothing to clear: no error


@pytest.mark.parametrize("deployment_id", ["", ".", "..", "../d-1", "a/b", ".hidden"])
def test_unsafe_deployment_ids_are_refused(tmp_path: Path, deployment_id: str) -> None:
    """A deployment id that is not a plain file name cannot write outside the directory."""
    with pytest.raises(HostStateError, match=r"^Invalid deployment id "):
        OngoingDeployments(tmp_path).mark(deployment_id, "x")
    assert _listing(tmp_path) == []


def test_write_failure_other_than_eacces_is_not_retried(tmp_path: Path) -> None:
    """A failure that retrying cannot fix (the directory is a file) raises at once."""
    (tmp_path / "ongoing").write_text("", encoding="utf-8")
    sleeps: list[float] = []
    tracker = OngoingDeployments(tmp_path / "ongoing", sleep=sleeps.append)
    with pytest.raises(HostStateError, match=r"^Cannot write the deployment tracking file "):
        tracker.mark("d-1", "x")
    assert sleeps == []


def test_eacces_is_retried_until_the_write_succeeds(
    shared_dir: Path, unprivileged_uid: int, run_unprivileged: RunUnprivileged
) -> None:
    """EACCES is retried after 1 s; here the directory becomes writable during the wait."""
    directory = shared_dir / "ongoing"
    directory.mkdir(mode=0o555)
    os.chown(directory, unprivileged_uid, -1)

    def mark() -> tuple[list[float], bytes]:
        sleeps: list[float] = []

        def sleep(seconds: float) -> None:
            sleeps.append(seconds)
            directory.chmod(0o755)  # the transient cause goes away

        OngoingDeployments(directory, sleep=sleep).mark("d-1", "cmd")
        return sleeps, (directory / "d-1").read_bytes()

    assert run_unprivileged(mark) == ([1.0], b"cmd")


def test_eacces_retries_are_exhausted_after_1_2_5_seconds(
    shared_dir: Path, unprivileged_uid: int, run_unprivileged: RunUnprivileged
) -> None:
    """A directory that stays unwritable fails after the real agent's 1, 2 and 5 s retries."""
    directory = shared_dir / "ongoing"
    directory.mkdir(mode=0o555)
    os.chown(directory, unprivileged_uid, -1)

    def mark() -> tuple[list[float], str]:
        sleeps: list[float] = []
        try:
            OngoingDeployments(directory, sleep=sleeps.append).mark("d-1", "cmd")
        except HostStateError as exc:
            return sleeps, str(exc)
        return sleeps, "no error"

    assert run_unprivileged(mark) == (
        [1.0, 2.0, 5.0],
        (
            f"Cannot write the deployment tracking file {directory / 'd-1'}: Permission denied. "
            f"Check that {directory} is writable by the agent's user and the disk is not full."
        ),
    )

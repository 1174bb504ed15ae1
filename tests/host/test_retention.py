"""Revision retention: `max_revisions` per deployment group, oldest by mtime deleted first."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from codedeploy_agent.host.layout import DeploymentRoot
from codedeploy_agent.host.retention import prune_revisions

RunUnprivileged = Callable[[Callable[[], Any]], Any]  # conftest.py's run_unprivileged


def _listing(directory: Path) -> list[str]:
    return sorted(entry.name for entry in directory.iterdir())


def _revisions(root: DeploymentRoot, group: str, count: int, *, prefix: str = "d-") -> list[Path]:
    """`count` deployment directories, the first the oldest (one minute apart)."""
    paths = []
    now = time.time()
    for index in range(count):
        path = root.create_deployment_dir(group, f"{prefix}{index}").path
        (path / "bundle.tar").write_bytes(b"x")
        stamp = now - 60 * (count - index)
        os.utime(path, (stamp, stamp))
        paths.append(path)
    return paths


def _names(root: DeploymentRoot, group: str) -> list[str]:
    return _listing(root.group_dir(group))


@pytest.fixture
def root(tmp_path: Path) -> DeploymentRoot:
    """An empty deployment root."""
    return DeploymentRoot(tmp_path / "deployment-root")


def test_nothing_removed_below_the_limit(root: DeploymentRoot) -> None:
    """With max_revisions - 1 old revisions plus the new one, nothing is deleted."""
    _revisions(root, "dg", 4)
    root.create_deployment_dir("dg", "d-new")
    assert prune_revisions(root, "dg", "d-new", 5) == []
    assert len(_names(root, "dg")) == 5


def test_oldest_removed_to_make_room_for_the_new_one(root: DeploymentRoot) -> None:
    """extra = count - max + 1: with 5 old revisions and max 5, the oldest one goes."""
    old = _revisions(root, "dg", 5)
    root.create_deployment_dir("dg", "d-new")
    assert prune_revisions(root, "dg", "d-new", 5) == [old[0]]
    assert _names(root, "dg") == ["d-1", "d-2", "d-3", "d-4", "d-new"]


def test_order_is_by_mtime_not_by_name(root: DeploymentRoot) -> None:
    """The oldest by modification time go first, whatever their names."""
    old = _revisions(root, "dg", 4)
    stamp = time.time() - 10_000
    os.utime(old[3], (stamp, stamp))  # d-3 is now the oldest
    assert prune_revisions(root, "dg", "d-new", 3) == [old[3], old[0]]


def test_last_successful_revision_is_never_removed(root: DeploymentRoot) -> None:
    """The revision `<dg>_last_successful_install` points at survives even when oldest."""
    old = _revisions(root, "dg", 5)
    root.set_last_successful("dg", root.deployment("dg", "d-0"))
    assert prune_revisions(root, "dg", "d-new", 5) == [old[1]]
    assert prune_revisions(root, "dg", "d-new", 1) == [old[2], old[3], old[4]]
    assert _names(root, "dg") == ["d-0"]


def test_current_deployment_is_never_removed(root: DeploymentRoot) -> None:
    """The current deployment's directory is not a candidate even with the oldest mtime."""
    old = _revisions(root, "dg", 3)
    assert prune_revisions(root, "dg", "d-0", 1) == [old[1], old[2]]
    assert _names(root, "dg") == ["d-0"]


def test_other_groups_are_untouched(root: DeploymentRoot) -> None:
    """Only the deployment group being deployed is cleaned."""
    _revisions(root, "dg-a", 3)
    _revisions(root, "dg-b", 3)
    prune_revisions(root, "dg-a", "d-new", 1)
    assert _names(root, "dg-a") == []
    assert _names(root, "dg-b") == ["d-0", "d-1", "d-2"]


def test_files_and_symlinks_are_not_revisions(root: DeploymentRoot, tmp_path: Path) -> None:
    """A stray file or symlink in the group folder is neither counted nor deleted."""
    old = _revisions(root, "dg", 2)
    group = root.group_dir("dg")
    (group / "notes.txt").write_text("operator's", encoding="utf-8")
    (tmp_path / "elsewhere").mkdir()
    (group / "link").symlink_to(tmp_path / "elsewhere")
    assert prune_revisions(root, "dg", "d-new", 2) == [old[0]]
    assert _names(root, "dg") == ["d-1", "link", "notes.txt"]
    assert (tmp_path / "elsewhere").is_dir()


def test_missing_group_directory(root: DeploymentRoot) -> None:
    """A first deployment of a group (no folder yet) removes nothing."""
    assert prune_revisions(root, "dg", "d-new", 5) == []


def test_unreadable_pointer_skips_cleanup(root: DeploymentRoot) -> None:
    """If the last-successful pointer cannot be read, nothing is deleted and a warning says so."""
    _revisions(root, "dg", 3)
    root.last_successful_file("dg").mkdir(parents=True)  # a directory: reading it fails
    with capture_logs() as logs:
        assert prune_revisions(root, "dg", "d-new", 1) == []
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("Skipping cleanup of old revisions", "warning")
    ]
    assert _names(root, "dg") == ["d-0", "d-1", "d-2"]


def test_invalid_max_revisions_is_a_programming_error(root: DeploymentRoot) -> None:
    """max_revisions < 1 never reaches here from a config file; it raises ValueError."""
    with pytest.raises(ValueError, match="max_revisions must be >= 1, not 0"):
        prune_revisions(root, "dg", "d-new", 0)


def test_removal_failure_is_a_warning(
    shared_dir: Path, unprivileged_uid: int, run_unprivileged: RunUnprivileged
) -> None:
    """A revision the agent cannot delete is logged as a warning; the others still go."""
    root = DeploymentRoot(shared_dir / "root")
    old = _revisions(root, "dg", 3)
    for path in (root.group_dir("dg"), old[1], old[2], old[1] / "bundle.tar"):
        os.chown(path, unprivileged_uid, -1)
    # old[0] and its bundle stay root's: the unprivileged agent cannot empty it.

    def prune() -> tuple[list[Path], list[tuple[str, str]]]:
        with capture_logs() as logs:
            removed = prune_revisions(root, "dg", "d-new", 1)
        return removed, [(e["event"], e["log_level"]) for e in logs]

    removed, events = run_unprivileged(prune)
    assert removed == [old[1], old[2]]
    assert events == [
        ("Deleting old revision", "info"),
        ("Could not delete old revision; delete it by hand to free the space", "warning"),
        ("Deleting old revision", "info"),
        ("Deleting old revision", "info"),
    ]
    assert _names(root, "dg") == ["d-0"]

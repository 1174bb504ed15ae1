"""The archive folder's lifetime: replaced at the start, removed after any failure."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from codedeploy_agent.archive.folder import fresh_folder, remove_tree


def test_remove_tree_removes_a_link_not_its_target(tmp_path: Path) -> None:
    """An archive path that is a symlink is unlinked; the folder it points to is untouched."""
    target = tmp_path / "precious"
    target.mkdir()
    (target / "keep.txt").write_text("keep")
    link = tmp_path / "deployment-archive"
    link.symlink_to(target)
    remove_tree(link)
    assert not link.is_symlink()
    assert (target / "keep.txt").read_text() == "keep"


def test_fresh_folder_removes_output_after_any_failure(tmp_path: Path) -> None:
    """An unexpected exception in the body still leaves neither folder behind, and propagates."""
    archive, temp = tmp_path / "a", tmp_path / "t"

    def fail_midway() -> None:
        with fresh_folder(archive, also_remove=(temp,)):
            (archive / "partial.txt").write_text("x")
            temp.mkdir()
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_midway()
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder a plain user can reach (pytest's tmp folders are private to root)."""
    path = Path(tempfile.mkdtemp(prefix="cda-archive-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.root
def test_remove_tree_as_a_plain_user_through_read_only_folders(shared_dir: Path) -> None:
    """An agent running as a plain user can remove a previous archive with 0555/0000 folders."""
    nobody = pwd.getpwnam("nobody")
    archive = shared_dir / "deployment-archive"
    (archive / "ro" / "deeper").mkdir(parents=True)
    (archive / "ro" / "deeper" / "f.txt").write_text("x")
    (archive / "closed").mkdir()
    (archive / "closed" / "g.txt").write_text("y")
    for path in [shared_dir, *archive.rglob("*"), archive]:
        os.chown(path, nobody.pw_uid, nobody.pw_gid)
    (archive / "ro" / "deeper").chmod(0o555)
    (archive / "ro").chmod(0o555)
    (archive / "closed").chmod(0o000)
    # A forked child drops to nobody (the venv's interpreter may not be executable by nobody).
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        status = 1
        try:
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            remove_tree(archive)
            status = 0
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert not archive.exists()

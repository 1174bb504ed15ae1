"""A previous revision's file that Install cannot remove: `local` shows the warning, and the
next deployment removes the file once it can."""

from __future__ import annotations

import asyncio
import io
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from codedeploy_agent.diagnostics import Diagnostics
from codedeploy_agent.executor import EventResult, EventStatus
from codedeploy_agent.local import ConsoleReporter
from tests.local.conftest import RunCli


def write_bundle(root: Path, dest: Path, files: dict[str, str]) -> Path:
    """A directory bundle that installs `app/` (the given files) into `dest`, without hooks."""
    (root / "app").mkdir(parents=True, exist_ok=True)
    for old in (root / "app").iterdir():
        old.unlink()
    for name, content in files.items():
        (root / "app" / name).write_text(content)
    (root / "appspec.yml").write_text(
        f"version: 0.0\nos: linux\nfiles:\n  - source: app\n    destination: {dest}\n"
    )
    return root


@pytest.fixture
def immutable(tmp_path: Path) -> Iterator[Path]:
    """The path a test makes immutable; made mutable again afterwards (if it exists)."""
    path = tmp_path / "dest" / "locked.txt"
    yield path
    if path.exists():
        subprocess.run(["chattr", "-i", str(path)], check=False)


@pytest.mark.root
def test_unremovable_previous_file_is_shown_and_removed_next_time(
    tmp_path: Path, run_cli: RunCli, immutable: Path
) -> None:
    """`chattr +i` on a file of the previous revision: Install succeeds and the warning (path,
    error, fix) is printed under its line and counted in the summary; after `chattr -i`, the
    next deployment removes the file without a warning."""
    dest = tmp_path / "dest"
    bundle = write_bundle(tmp_path / "bundle", dest, {"locked.txt": "v1"})
    first = run_cli("-l", str(bundle))
    assert first.status == 0, first.out + first.err
    assert immutable.read_text() == "v1"
    if subprocess.run(["chattr", "+i", str(immutable)], check=False).returncode:
        pytest.skip("chattr +i is not supported here")
    write_bundle(bundle, dest, {"new.txt": "v2"})

    second = run_cli("-l", str(bundle))

    assert second.status == 0, second.out + second.err
    lines = second.out.splitlines()
    install = next(i for i, line in enumerate(lines) if line.startswith("  Install "))
    assert re.fullmatch(r"  Install +Succeeded +\d+\.\d\d s", lines[install])
    assert lines[install + 1] == (
        f"      warning: Could not remove {immutable} (previous revision's file) during cleanup: "
        "Operation not permitted. Remove it by hand or fix its permissions (lsattr/chattr -i, "
        "mount rw); the deployment continues, and the next deployment tries to remove it again."
    )
    assert re.match(r"  \w", lines[install + 2])  # the next event's line
    assert sum("warning:" in line for line in lines) == 1
    summary = next(line for line in lines if line.startswith("Summary: "))
    assert re.fullmatch(
        r"Summary: 11 succeeded \(9 without scripts\), 0 failed, 0 not run, 1 warning in "
        r"\d+\.\d\d s",
        summary,
    )
    assert lines[-1] == "AppSpec file valid. Local deployment successful"
    assert immutable.exists()
    assert (dest / "new.txt").read_text() == "v2"

    subprocess.run(["chattr", "-i", str(immutable)], check=True)
    third = run_cli("-l", str(bundle))

    assert third.status == 0, third.out + third.err
    assert "warning" not in third.out
    assert not immutable.exists()
    assert (dest / "new.txt").read_text() == "v2"


def test_a_flood_of_warnings_is_cut_short_on_the_console() -> None:
    """An event with more than ten warnings (a read-only mount: one per file) shows the first
    ten and how many more the agent log holds, not thousands of lines."""
    now = datetime.now(UTC)
    warnings = tuple(f"Could not remove /srv/app/f{i}" for i in range(25))
    result = EventResult(
        "Install", EventStatus.SUCCEEDED, now, now, Diagnostics.succeeded(), warnings=warnings
    )
    out = io.StringIO()

    asyncio.run(ConsoleReporter(out).event_finished(result))

    assert out.getvalue().splitlines()[1:] == [
        *(f"      warning: Could not remove /srv/app/f{i}" for i in range(10)),
        "      warning: ... and 15 more (the agent log lists every one)",
    ]

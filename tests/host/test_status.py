"""The status snapshot: atomic JSON file, tolerant reader, and the text `status` prints."""

from __future__ import annotations

import dataclasses
import json
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from codedeploy_agent.errors import HostStateError
from codedeploy_agent.host.status import (
    AgentState,
    AgentStatus,
    LastResult,
    ResultStatus,
    format_status,
    read_status,
    status_path,
    try_read_status,
    write_status,
)

T0 = datetime(2026, 2, 19, 15, 12, 11, tzinfo=UTC)

DEPLOYING = AgentStatus(
    pid=4242,
    started_at=T0,
    state=AgentState.DEPLOYING,
    broker_connected=True,
    broker_endpoint="mqtts://broker.example:8883",
    thing_name="web-1",
    current_deployment_id="d-ABCDEFGH2",
    current_job_id="d-ABCDEFGH2-web-1",
    current_event="AfterInstall",
    last_result=LastResult(
        deployment_id="d-ZYXWVUTS1",
        job_id="d-ZYXWVUTS1-web-1",
        status=ResultStatus.FAILED,
        finished_at=T0 + timedelta(minutes=5),
        message="Script at specified location: scripts/start.sh run as user root failed with "
        "exit code 1",
    ),
    clock_skew_seconds=-0.4216,
    clock_checked_at=T0 + timedelta(seconds=1),
    agent_version="0.1.0",
    updated_at=T0 + timedelta(minutes=10),
)

IDLE = AgentStatus(
    pid=4242,
    started_at=T0,
    state=AgentState.IDLE,
    agent_version="0.1.0",
    updated_at=T0 + timedelta(seconds=30),
)


def minimal(**changes: object) -> bytes:
    """A snapshot with only the required keys, some replaced by `changes`."""
    data: dict[str, object] = {
        "pid": 1,
        "started_at": "2026-02-19T15:12:11Z",
        "state": "idle",
        "agent_version": "0.1.0",
        "updated_at": "2026-02-19T15:12:11Z",
    }
    return json.dumps(data | changes).encode()


def test_minimal_snapshot_reads(tmp_path: Path) -> None:
    """Only pid, started_at, state, agent_version and updated_at are required."""
    path = tmp_path / "status.json"
    path.write_bytes(minimal())
    assert read_status(path) == dataclasses.replace(
        IDLE, pid=1, updated_at=datetime(2026, 2, 19, 15, 12, 11, tzinfo=UTC)
    )


def test_round_trip(tmp_path: Path) -> None:
    """What write_status writes, read_status reads back equal; the file is 0644 JSON."""
    path = status_path(tmp_path / "state", "codedeploy-agent")
    assert path == tmp_path / "state" / "codedeploy-agent.status.json"
    write_status(path, DEPLOYING)
    assert read_status(path) == DEPLOYING
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert json.loads(path.read_text()) == {
        "pid": 4242,
        "started_at": "2026-02-19T15:12:11Z",
        "state": "deploying",
        "broker_connected": True,
        "broker_endpoint": "mqtts://broker.example:8883",
        "thing_name": "web-1",
        "current_deployment_id": "d-ABCDEFGH2",
        "current_job_id": "d-ABCDEFGH2-web-1",
        "current_event": "AfterInstall",
        "last_result": {
            "deployment_id": "d-ZYXWVUTS1",
            "job_id": "d-ZYXWVUTS1-web-1",
            "status": "FAILED",
            "finished_at": "2026-02-19T15:17:11Z",
            "message": "Script at specified location: scripts/start.sh run as user root failed "
            "with exit code 1",
        },
        "clock_skew_seconds": -0.4216,
        "clock_checked_at": "2026-02-19T15:12:12Z",
        "agent_version": "0.1.0",
        "updated_at": "2026-02-19T15:22:11Z",
    }


def test_rewrite_replaces_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    """A second write replaces the snapshot and nothing else stays in the directory."""
    path = tmp_path / "status.json"
    write_status(path, DEPLOYING)
    write_status(path, IDLE)
    assert read_status(path) == IDLE
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_readers_never_see_a_partial_snapshot(tmp_path: Path) -> None:
    """While the daemon rewrites the file, a concurrent reader always gets a whole snapshot."""
    path = tmp_path / "status.json"
    write_status(path, IDLE)
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            write_status(path, DEPLOYING)
            write_status(path, IDLE)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        reads = [try_read_status(path) for _ in range(500)]
    finally:
        stop.set()
        thread.join()
    assert all(status in (IDLE, DEPLOYING) and reason is None for status, reason in reads)


def test_unwritable_directory(tmp_path: Path) -> None:
    """A status directory that cannot be created raises HostStateError naming the setting."""
    (tmp_path / "file").write_text("")
    path = tmp_path / "file" / "state" / "status.json"
    with pytest.raises(HostStateError) as info:
        write_status(path, IDLE)
    assert str(info.value) == (
        f"Cannot write the agent status file {path}: Not a directory. Check that :state_dir: in "
        "the agent config is writable by the agent's user."
    )


def test_missing_file(tmp_path: Path) -> None:
    """A missing snapshot reads as None with the reason."""
    path = tmp_path / "status.json"
    assert read_status(path) is None
    assert try_read_status(path) == (None, f"{path} does not exist")


def test_unreadable_file(tmp_path: Path) -> None:
    """A path that cannot be read (a directory here) reads as None with the OS reason."""
    assert try_read_status(tmp_path) == (None, f"cannot read {tmp_path}: Is a directory")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "is not valid JSON: Input data was truncated"),
        (b'{"pid": 42', "is not valid JSON: Input data was truncated"),
        (b"\x00\xff garbage", "is not valid JSON: JSON is malformed: invalid character (byte 0)"),
        (b"[]", "is not a valid status snapshot: Expected `object`, got `array`"),
        (
            minimal(state="sleeping"),
            "is not a valid status snapshot: Invalid enum value 'sleeping' - at `$.state`",
        ),
        (
            minimal(started_at="2026-02-19T15:12:11"),
            (
                "is not a valid status snapshot: Expected `datetime` with a timezone component "
                "- at `$.started_at`"
            ),
        ),
        (
            minimal(pid="4242"),
            "is not a valid status snapshot: Expected `int`, got `str` - at `$.pid`",
        ),
        (
            b'{"pid": 1, "state": "idle", "agent_version": "0.1.0"}',
            "is not a valid status snapshot: Object missing required field `started_at`",
        ),
    ],
)
def test_corrupt_file(tmp_path: Path, content: bytes, reason: str) -> None:
    """A truncated, garbled or wrongly typed snapshot reads as None with the reason."""
    path = tmp_path / "status.json"
    path.write_bytes(content)
    status, problem = try_read_status(path)
    assert status is None
    assert problem is not None
    assert problem.startswith(f"{path} {reason}")
    assert read_status(path) is None


def test_unknown_keys_are_ignored(tmp_path: Path) -> None:
    """A snapshot from a newer daemon with extra keys still reads."""
    path = tmp_path / "status.json"
    write_status(path, IDLE)
    data = json.loads(path.read_text())
    data["future_field"] = {"x": 1}
    path.write_text(json.dumps(data))
    assert read_status(path) == IDLE


def test_format_running_agent() -> None:
    """A running agent's snapshot prints the real first line, then one fact per line."""
    text = format_status(DEPLOYING, running_pid=4242, now=T0 + timedelta(minutes=10, seconds=12))
    assert text == (
        "The AWS CodeDeploy agent is running as PID 4242\n"
        "state: deploying\n"
        "started_at: 2026-02-19T15:12:11Z\n"
        "updated_at: 2026-02-19T15:22:11Z (12 s ago)\n"
        "agent_version: 0.1.0\n"
        "thing_name: web-1\n"
        "broker_endpoint: mqtts://broker.example:8883\n"
        "broker_connected: yes\n"
        "current_deployment_id: d-ABCDEFGH2\n"
        "current_job_id: d-ABCDEFGH2-web-1\n"
        "current_event: AfterInstall\n"
        "last_result: FAILED d-ZYXWVUTS1 (job d-ZYXWVUTS1-web-1) at 2026-02-19T15:17:11Z\n"
        "last_result_message: Script at specified location: scripts/start.sh run as user root "
        "failed with exit code 1\n"
        "clock_skew_seconds: -0.422\n"
        "clock_checked_at: 2026-02-19T15:12:12Z"
    )


def test_format_idle_agent_with_nothing_known() -> None:
    """Unknown values print as `-` (or `unknown` for the skew)."""
    text = format_status(IDLE, running_pid=4242, now=T0 + timedelta(minutes=5, seconds=30))
    assert text == (
        "The AWS CodeDeploy agent is running as PID 4242\n"
        "state: idle\n"
        "started_at: 2026-02-19T15:12:11Z\n"
        "updated_at: 2026-02-19T15:12:41Z (5 min ago)\n"
        "agent_version: 0.1.0\n"
        "thing_name: -\n"
        "broker_endpoint: -\n"
        "broker_connected: no\n"
        "current_deployment_id: -\n"
        "current_job_id: -\n"
        "current_event: -\n"
        "last_result: -\n"
        "clock_skew_seconds: unknown\n"
        "clock_checked_at: -"
    )


def test_format_stale_snapshot_of_a_dead_agent() -> None:
    """With no agent running, a leftover snapshot is shown, marked stale."""
    text = format_status(DEPLOYING, running_pid=None, now=T0 + timedelta(hours=3, minutes=10))
    lines = text.splitlines()
    assert lines[:3] == [
        "No AWS CodeDeploy agent running",
        "snapshot: stale (written by PID 4242, which is not running)",
        "state: deploying",
    ]
    assert lines[4] == "updated_at: 2026-02-19T15:22:11Z (3 h ago)"


def test_format_snapshot_of_another_pid() -> None:
    """A snapshot written by a pid other than the running agent's is marked stale."""
    lines = format_status(IDLE, running_pid=5000, now=T0).splitlines()
    assert lines[:2] == [
        "The AWS CodeDeploy agent is running as PID 5000",
        "snapshot: stale (written by PID 4242, not the running agent)",
    ]
    assert lines[3] == "started_at: 2026-02-19T15:12:11Z"


def test_format_without_snapshot() -> None:
    """Without a snapshot only the first line prints, plus the reason when one is given."""
    assert format_status(None, running_pid=None) == "No AWS CodeDeploy agent running"
    assert format_status(None, running_pid=7, problem="/x/status.json does not exist") == (
        "The AWS CodeDeploy agent is running as PID 7\n"
        "snapshot: unavailable (/x/status.json does not exist)"
    )


def test_format_keeps_one_fact_per_line() -> None:
    """A multi-line failure message is flattened so each fact stays on one line."""
    result = LastResult(
        deployment_id="d-1",
        job_id="j-1",
        status=ResultStatus.FAILED,
        finished_at=T0,
        message="first line\nsecond line\r\nthird",
    )
    status = dataclasses.replace(IDLE, last_result=result)
    lines = format_status(status, running_pid=4242, now=T0).splitlines()
    assert "last_result_message: first line second line third" in lines
    assert "updated_at: 2026-02-19T15:12:41Z (0 s ago)" in lines  # a clock behind never goes < 0

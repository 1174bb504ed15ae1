"""The daemon's status snapshot, written for `codedeploy-agent status` to read and print.

The daemon rewrites `<state_dir>/<program_name>.status.json` whenever something worth showing
changes (state, broker connection, current event, a finished deployment, a clock check). The file
is JSON, replaced atomically, world-readable. Whether an agent runs is decided by the pid lock
(`host.pidfile.read_running_pid`), never by this file: a snapshot whose writer is gone is shown
as stale, so the last result of a crashed agent is still visible.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import msgspec

from codedeploy_agent.errors import HostStateError

#: Timestamps are stored as RFC 3339 with a zone; a naive one in the file makes it invalid.
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]


class AgentState(StrEnum):
    """What the daemon is doing."""

    STARTING = "starting"
    IDLE = "idle"
    DEPLOYING = "deploying"
    STOPPING = "stopping"


class ResultStatus(StrEnum):
    """How a job execution ended (the Jobs terminal statuses)."""

    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    REJECTED = "REJECTED"
    CANCELED = "CANCELED"
    REMOVED = "REMOVED"
    TIMED_OUT = "TIMED_OUT"


@dataclass(frozen=True, slots=True, kw_only=True)
class LastResult:
    """The most recent deployment this agent finished."""

    deployment_id: str
    job_id: str
    status: ResultStatus
    finished_at: AwareDatetime
    #: The failure message (diagnostics `message`), empty on success.
    message: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentStatus:
    """One snapshot of the daemon's state; build the next one with `dataclasses.replace`."""

    pid: int
    started_at: AwareDatetime
    state: AgentState
    broker_connected: bool = False
    broker_endpoint: str | None = None
    thing_name: str | None = None
    current_deployment_id: str | None = None
    current_job_id: str | None = None
    #: The lifecycle event running now (`AfterInstall`, ...).
    current_event: str | None = None
    last_result: LastResult | None = None
    #: Server minus local clock (positive: local behind), from `clock.ClockMonitor`.
    clock_skew_seconds: float | None = None
    clock_checked_at: AwareDatetime | None = None
    agent_version: str
    updated_at: AwareDatetime


def status_path(state_dir: Path, program_name: str) -> Path:
    """`<state_dir>/<program_name>.status.json`."""
    return state_dir / f"{program_name}.status.json"


def write_status(path: Path, status: AgentStatus) -> None:
    """Replace `path` with `status` as JSON (temporary file + rename; mode 0644; blocking).

    Readers see the old snapshot or the new one, never a mix. No fsync: after a power cut a
    stale or unreadable snapshot is harmless (`read_status` copes, the daemon rewrites it).
    Raises HostStateError when the directory cannot be written.
    """
    data = msgspec.json.format(msgspec.json.encode(status), indent=2) + b"\n"
    try:
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                os.fchmod(out.fileno(), 0o644)  # `status` may run as another user
                out.write(data)
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as err:
        raise HostStateError(
            f"Cannot write the agent status file {path}: {err.strerror or err}. "
            "Check that :state_dir: in the agent config is writable by the agent's user."
        ) from err


def try_read_status(path: Path) -> tuple[AgentStatus | None, str | None]:
    """`(status, None)`, or `(None, reason)` when the file is missing, unreadable or invalid."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, f"{path} does not exist"
    except OSError as err:
        return None, f"cannot read {path}: {err.strerror or err}"
    try:
        return msgspec.json.decode(data, type=AgentStatus), None
    except msgspec.ValidationError as err:
        return None, f"{path} is not a valid status snapshot: {err}"
    except msgspec.DecodeError as err:
        return None, f"{path} is not valid JSON: {err}"


def read_status(path: Path) -> AgentStatus | None:
    """The snapshot at `path`, or None when it is missing or corrupt (see `try_read_status`)."""
    status, _reason = try_read_status(path)
    return status


def _time(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _age(then: datetime, now: datetime) -> str:
    seconds = max((now - then).total_seconds(), 0.0)
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.0f} h ago"


def _text(value: str | None) -> str:
    """One line: None shows as `-`, newlines (script output in messages) become spaces."""
    return " ".join(value.splitlines()) if value else "-"


def format_status(
    status: AgentStatus | None,
    *,
    running_pid: int | None,
    problem: str | None = None,
    now: datetime | None = None,
) -> str:
    """The text `codedeploy-agent status` prints (no trailing newline).

    The first line is the real agent's: `The AWS CodeDeploy agent is running as PID <pid>` or
    `No AWS CodeDeploy agent running`. Then one `key: value` line per fact of the snapshot
    (`-` for none); a `snapshot:` line says when the snapshot is stale (its writer no longer
    runs) or missing (`problem`, from `try_read_status`). `now` is for tests.
    """
    if running_pid is not None:
        lines = [f"The AWS CodeDeploy agent is running as PID {running_pid}"]
    else:
        lines = ["No AWS CodeDeploy agent running"]
    if status is None:
        if problem is not None:
            lines.append(f"snapshot: unavailable ({problem})")
        return "\n".join(lines)
    now = now or datetime.now(UTC)
    if running_pid is None:
        lines.append(f"snapshot: stale (written by PID {status.pid}, which is not running)")
    elif status.pid != running_pid:
        lines.append(f"snapshot: stale (written by PID {status.pid}, not the running agent)")
    skew = status.clock_skew_seconds
    lines += [
        f"state: {status.state}",
        f"started_at: {_time(status.started_at)}",
        f"updated_at: {_time(status.updated_at)} ({_age(status.updated_at, now)})",
        f"agent_version: {status.agent_version}",
        f"thing_name: {_text(status.thing_name)}",
        f"broker_endpoint: {_text(status.broker_endpoint)}",
        f"broker_connected: {'yes' if status.broker_connected else 'no'}",
        f"current_deployment_id: {_text(status.current_deployment_id)}",
        f"current_job_id: {_text(status.current_job_id)}",
        f"current_event: {_text(status.current_event)}",
    ]
    result = status.last_result
    if result is None:
        lines.append("last_result: -")
    else:
        lines += [
            (
                f"last_result: {result.status} {result.deployment_id} (job {result.job_id}) "
                f"at {_time(result.finished_at)}"
            ),
            f"last_result_message: {_text(result.message)}",
        ]
    lines += [
        f"clock_skew_seconds: {'unknown' if skew is None else f'{skew:+.3f}'}",
        f"clock_checked_at: {_time(status.clock_checked_at)}",
    ]
    return "\n".join(lines)

"""The pid file and start lock, with real separate processes holding the lock."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from codedeploy_agent.errors import AgentError, HostStateError
from codedeploy_agent.host.pidfile import (
    AgentAlreadyRunning,
    PidFile,
    lock_file_path,
    pid_file_path,
    read_running_pid,
)

PROGRAM = "codedeploy-agent"
CONFIG = Path("/etc/codedeploy-agent/conf/codedeployagent.yml")

#: A separate agent process: takes the PidFile, says so, holds it until stdin gets a line.
AGENT = """
import sys, time
from pathlib import Path
from codedeploy_agent.host.pidfile import AgentAlreadyRunning, PidFile

pid_dir, program, gate = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
pid_file = PidFile(pid_dir, program)
if gate:
    print("waiting", flush=True)
    while not Path(gate).exists():
        time.sleep(0.0005)
try:
    pid_file.acquire()
except AgentAlreadyRunning as err:
    print("busy", err.pid, flush=True)
    sys.exit(3)
print("locked", flush=True)
sys.stdin.readline()
pid_file.release()
"""

#: A process that only flocks the lock file (mode LOCK_EX or LOCK_SH) and never writes a pid.
LOCKER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, getattr(fcntl, sys.argv[2]))
print("locked", flush=True)
sys.stdin.readline()
"""


class Child:
    """A Python child process that reports on its first stdout line and waits on stdin."""

    def __init__(self, code: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.pid = self.proc.pid

    def first_line(self) -> str:
        """The child's first line of output (`locked` or `busy <pid>`)."""
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def finish(self) -> int:
        """Let the child go on (one line on stdin) and wait for its exit status."""
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):  # it may have exited already
            self.proc.stdin.write("\n")
            self.proc.stdin.close()
        return self.proc.wait(timeout=10)

    def kill(self) -> None:
        """SIGKILL the child: no cleanup runs, as in a crash or an OOM kill."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def close(self) -> None:
        """Make sure nothing is left running."""
        if self.proc.poll() is None:
            self.kill()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None and not stream.closed:
                stream.close()


@pytest.fixture
def children() -> Iterator[list[Child]]:
    """Children started by a test; any still running are killed afterwards."""
    started: list[Child] = []
    yield started
    for child in started:
        child.close()


def start_agent(children: list[Child], pid_dir: Path, gate: Path | None = None) -> Child:
    """Start a separate agent process that takes the lock in `pid_dir`."""
    child = Child(AGENT, str(pid_dir), PROGRAM, "" if gate is None else str(gate))
    children.append(child)
    return child


def start_locker(children: list[Child], lock: Path, mode: str = "LOCK_EX") -> Child:
    """Start a process that holds `lock` with flock but writes no pid file."""
    child = Child(LOCKER, str(lock), mode)
    children.append(child)
    assert child.first_line() == "locked"
    return child


def test_acquire_writes_pid_and_release_removes_it(tmp_path: Path) -> None:
    """acquire() creates pid_dir and writes `<pid>\\n` (0644); release() keeps the lock file."""
    pid_dir = tmp_path / "state" / ".pid"
    with PidFile(pid_dir, PROGRAM) as pid_file:
        assert read_running_pid(pid_dir, PROGRAM) == os.getpid()
        assert pid_file.path == pid_dir / "codedeploy-agent.pid"
        assert pid_file.lock_path == pid_dir / "codedeploy-agent.pid.lock"
        assert pid_file.path.read_bytes() == f"{os.getpid()}\n".encode()
        assert stat.S_IMODE(pid_file.path.stat().st_mode) == 0o644
        assert sorted(p.name for p in pid_dir.iterdir()) == [
            "codedeploy-agent.pid",
            "codedeploy-agent.pid.lock",
        ]
    assert not pid_file.held
    assert [p.name for p in pid_dir.iterdir()] == ["codedeploy-agent.pid.lock"]
    pid_file.release()  # a second release is harmless


def test_second_agent_is_refused_with_the_holders_pid(
    tmp_path: Path, children: list[Child]
) -> None:
    """While another process holds the lock, start aborts with the real text, its pid and a hint."""
    holder = start_agent(children, tmp_path)
    assert holder.first_line() == "locked"
    lock = lock_file_path(tmp_path, PROGRAM)
    pid_file = pid_file_path(tmp_path, PROGRAM)
    with pytest.raises(AgentAlreadyRunning) as info:
        PidFile(tmp_path, PROGRAM, config_path=CONFIG).acquire()
    assert isinstance(info.value, AgentError)
    assert info.value.pid == holder.pid
    assert str(info.value) == (
        f"Could not acquire lock on {lock} - aborting start! Another agent holds it: "
        f"PID {holder.pid} (from {pid_file}). Check it with "
        "`codedeploy-agent status -c /etc/codedeploy-agent/conf/codedeployagent.yml`; stop that "
        "agent first, or give this one its own :pid_dir: (and its own state_dir and :root_dir: "
        "too: two agents must never share them)."
    )
    # The refused start left the running agent's pid file alone.
    assert pid_file.read_text() == f"{holder.pid}\n"
    assert holder.finish() == 0
    with PidFile(tmp_path, PROGRAM):
        assert pid_file.read_text() == f"{os.getpid()}\n"


def test_holder_without_pid_file(tmp_path: Path, children: list[Child]) -> None:
    """A lock holder that wrote no pid file is reported as unknown, without a -c hint by default."""
    lock = lock_file_path(tmp_path, PROGRAM)
    start_locker(children, lock)
    with pytest.raises(AgentAlreadyRunning) as info:
        PidFile(tmp_path, PROGRAM).acquire()
    assert info.value.pid is None
    assert str(info.value) == (
        f"Could not acquire lock on {lock} - aborting start! Another process holds it "
        f"({pid_file_path(tmp_path, PROGRAM)} is missing or unreadable). Check it with "
        "`codedeploy-agent status`; stop that agent first, or give this one its own :pid_dir: "
        "(and its own state_dir and :root_dir: too: two agents must never share them)."
    )


def test_stale_pid_file_after_a_crash_is_replaced(tmp_path: Path, children: list[Child]) -> None:
    """After the holder is SIGKILLed its pid file stays, status sees no agent, start cleans up."""
    holder = start_agent(children, tmp_path)
    assert holder.first_line() == "locked"
    assert read_running_pid(tmp_path, PROGRAM) == holder.pid
    holder.kill()
    pid_file = pid_file_path(tmp_path, PROGRAM)
    assert pid_file.read_text() == f"{holder.pid}\n"
    assert read_running_pid(tmp_path, PROGRAM) is None
    with capture_logs() as logs, PidFile(tmp_path, PROGRAM):
        assert pid_file.read_text() == f"{os.getpid()}\n"
    assert logs == [
        {
            "event": f"Pidfile {pid_file} present but no matching process running - cleaning up",
            "log_level": "info",
            "component": "codedeploy_agent.host.pidfile",
            "stale_pid": holder.pid,
        }
    ]


def test_read_running_pid(tmp_path: Path, children: list[Child]) -> None:
    """The pid counts only while the lock is held: never started, running, released."""
    assert read_running_pid(tmp_path, PROGRAM) is None  # no lock file at all
    holder = start_agent(children, tmp_path)
    assert holder.first_line() == "locked"
    assert read_running_pid(tmp_path, PROGRAM) == holder.pid
    # The probe did not take the lock: the holder still has it.
    with pytest.raises(AgentAlreadyRunning):
        PidFile(tmp_path, PROGRAM).acquire()
    assert holder.finish() == 0
    assert lock_file_path(tmp_path, PROGRAM).exists()
    assert read_running_pid(tmp_path, PROGRAM) is None


def test_read_running_pid_sees_its_own_process(tmp_path: Path) -> None:
    """An agent asking about its own pid_dir finds itself."""
    with PidFile(tmp_path, PROGRAM):
        assert read_running_pid(tmp_path, PROGRAM) == os.getpid()


def test_leftover_pid_of_a_dead_process_is_not_reported(
    tmp_path: Path, children: list[Child]
) -> None:
    """A held lock with a pid file naming a dead process (or none) gives None."""
    start_locker(children, lock_file_path(tmp_path, PROGRAM))
    assert read_running_pid(tmp_path, PROGRAM) is None  # no pid file
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    pid_file_path(tmp_path, PROGRAM).write_text(f"{dead.pid}\n")
    assert read_running_pid(tmp_path, PROGRAM) is None
    pid_file_path(tmp_path, PROGRAM).write_text("garbage\n")
    assert read_running_pid(tmp_path, PROGRAM) is None


def test_start_waits_out_a_status_probe(tmp_path: Path, children: list[Child]) -> None:
    """A brief shared lock (a concurrent `status` probe) does not make a start fail."""
    lock = lock_file_path(tmp_path, PROGRAM)
    prober = start_locker(children, lock, "LOCK_SH")
    assert prober.proc.stdin is not None
    prober.proc.stdin.write("\n")
    prober.proc.stdin.flush()  # the prober exits (dropping its lock) a moment from now
    with PidFile(tmp_path, PROGRAM) as pid_file:
        assert pid_file.held


def test_two_agents_with_different_pid_dirs(tmp_path: Path, children: list[Child]) -> None:
    """Agents with their own pid_dir run side by side, and status finds each."""
    first = start_agent(children, tmp_path / "a")
    second = start_agent(children, tmp_path / "b")
    assert [first.first_line(), second.first_line()] == ["locked", "locked"]
    assert read_running_pid(tmp_path / "a", PROGRAM) == first.pid
    assert read_running_pid(tmp_path / "b", PROGRAM) == second.pid
    assert [first.finish(), second.finish()] == [0, 0]


def test_simultaneous_starts_leave_exactly_one_agent(tmp_path: Path, children: list[Child]) -> None:
    """Four agents starting at the same instant: one gets the lock, three abort naming it."""
    gate = tmp_path / "go"
    racers = [start_agent(children, tmp_path / "pid", gate) for _ in range(4)]
    assert [racer.first_line() for racer in racers] == ["waiting"] * 4
    gate.touch()
    lines = [racer.first_line() for racer in racers]
    winners = [racer for racer, line in zip(racers, lines, strict=True) if line == "locked"]
    assert len(winners) == 1
    assert sorted(lines) == [f"busy {winners[0].pid}"] * 3 + ["locked"]
    assert read_running_pid(tmp_path / "pid", PROGRAM) == winners[0].pid
    assert sorted(racer.finish() for racer in racers) == [0, 3, 3, 3]


def test_lock_is_not_inherited_by_programs_we_start(tmp_path: Path) -> None:
    """A program started by the agent (even without close_fds) does not keep the lock alive."""
    pid_file = PidFile(tmp_path, PROGRAM)
    pid_file.acquire()
    leftover = subprocess.Popen(["sleep", "30"], close_fds=False)
    try:
        pid_file.release()
        assert read_running_pid(tmp_path, PROGRAM) is None
        with PidFile(tmp_path, PROGRAM) as again:
            assert again.held
    finally:
        leftover.kill()
        leftover.wait()


def test_acquire_is_not_reentrant(tmp_path: Path) -> None:
    """Acquiring a held PidFile again is a programming error."""
    with PidFile(tmp_path, PROGRAM) as pid_file, pytest.raises(RuntimeError):
        pid_file.acquire()


def test_release_keeps_a_pid_file_that_is_not_ours(tmp_path: Path) -> None:
    """release() removes the pid file only when it still names this process."""
    with PidFile(tmp_path, PROGRAM) as pid_file:
        pid_file.path.write_text("1\n")
    assert pid_file.path.read_text() == "1\n"


def test_unwritable_pid_dir(tmp_path: Path) -> None:
    """A pid_dir that cannot be created raises HostStateError saying which setting to change."""
    (tmp_path / "file").write_text("")
    pid_dir = tmp_path / "file" / ".pid"
    with pytest.raises(HostStateError) as info:
        PidFile(pid_dir, PROGRAM).acquire()
    assert str(info.value) == (
        f"Cannot write the pid file or lock in {pid_dir}: Not a directory. Set :pid_dir: in the "
        "agent config to a directory the agent's user can write."
    )

"""The state_dir / root_dir lock: one agent per directory, with real separate processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from codedeploy_agent.errors import AgentError, HostStateError
from codedeploy_agent.host.pidfile import STATE_DIR_HARM, DirectoryInUse, DirectoryLock

#: A separate agent: takes the lock on argv[1], says so, holds it until stdin gets a line.
HOLDER = """
import sys
from pathlib import Path
from codedeploy_agent.host.pidfile import STATE_DIR_HARM, DirectoryInUse, DirectoryLock

lock = DirectoryLock(Path(sys.argv[1]), "state_dir", STATE_DIR_HARM)
try:
    lock.acquire()
except DirectoryInUse as err:
    print("busy", err.pid, flush=True)
    sys.exit(3)
print("locked", flush=True)
sys.stdin.readline()
lock.release()
"""

#: Only flocks the file, never writes a pid (a foreign holder).
LOCKER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.readline()
"""


class Child:
    """A Python child that reports on its first stdout line and waits on stdin."""

    def __init__(self, code: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.pid = self.proc.pid

    def first_line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def finish(self) -> int:
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.write("\n")
            self.proc.stdin.close()
        return self.proc.wait(timeout=10)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None and not stream.closed:
                stream.close()


@pytest.fixture
def children() -> Iterator[list[Child]]:
    started: list[Child] = []
    yield started
    for child in started:
        child.close()


def start(children: list[Child], code: str, path: Path) -> Child:
    child = Child(code, str(path))
    children.append(child)
    assert child.first_line() == "locked"
    return child


def state_lock(directory: Path) -> DirectoryLock:
    return DirectoryLock(directory, "state_dir", STATE_DIR_HARM)


def test_second_holder_is_refused_naming_the_directory_and_pid(
    tmp_path: Path, children: list[Child]
) -> None:
    """While another agent holds `<dir>/.lock`, acquire() fails naming the directory, the
    other agent's pid, what sharing would break and the fix; the holder is left alone."""
    state = tmp_path / "state"
    holder = start(children, HOLDER, state)
    with pytest.raises(DirectoryInUse) as info:
        state_lock(state).acquire()
    assert isinstance(info.value, AgentError)
    assert info.value.pid == holder.pid
    assert str(info.value) == (
        f"Could not acquire lock on {state}/.lock - aborting start! The state_dir {state} is in "
        f"use: another agent (PID {holder.pid}) uses it. Two agents sharing a state_dir would "
        "run and report each other's jobs (they share jobs.json and outbox/). Stop that agent "
        "first, or give this one its own state_dir."
    )
    assert (state / ".lock").read_text() == f"{holder.pid}\n"
    assert holder.finish() == 0
    with state_lock(state) as lock:
        assert lock.held
        assert (state / ".lock").read_text() == f"{os.getpid()}\n"
    assert (state / ".lock").read_text() == ""  # a stopped agent's pid is not left behind


def test_holder_that_wrote_no_pid(tmp_path: Path, children: list[Child]) -> None:
    """A process holding the lock without a pid in it is reported as unknown."""
    tmp_path.joinpath("state").mkdir()
    start(children, LOCKER, tmp_path / "state" / ".lock")
    with pytest.raises(DirectoryInUse) as info:
        state_lock(tmp_path / "state").acquire()
    assert info.value.pid is None
    assert "another process uses it (its PID is unknown)." in str(info.value)


def test_lock_dies_with_its_holder(tmp_path: Path, children: list[Child]) -> None:
    """SIGKILL: the kernel drops the lock, the next agent starts although the pid is left."""
    holder = start(children, HOLDER, tmp_path)
    holder.kill()
    assert (tmp_path / ".lock").read_text() == f"{holder.pid}\n"
    with state_lock(tmp_path) as lock:
        assert lock.held


def test_lock_is_not_inherited_by_programs_we_start(tmp_path: Path) -> None:
    """A program left behind by a hook (started without close_fds) does not keep the lock."""
    lock = state_lock(tmp_path)
    lock.acquire()
    leftover = subprocess.Popen(["sleep", "30"], close_fds=False)
    try:
        lock.release()
        with state_lock(tmp_path) as again:
            assert again.held
    finally:
        leftover.kill()
        leftover.wait()


def test_two_locks_in_one_process_conflict(tmp_path: Path) -> None:
    """Two daemons in one process (the fleet benchmark) cannot share a directory either."""
    with state_lock(tmp_path), pytest.raises(DirectoryInUse) as info:
        state_lock(tmp_path).acquire()
    assert info.value.pid == os.getpid()


def test_acquire_creates_the_directory_and_is_not_reentrant(tmp_path: Path) -> None:
    """The directory is created; acquiring a held lock again is a programming error."""
    directory = tmp_path / "a" / "b"
    with state_lock(directory) as lock:
        assert directory.is_dir()
        with pytest.raises(RuntimeError):
            lock.acquire()
    lock.release()  # a second release is harmless


def test_unwritable_directory(tmp_path: Path) -> None:
    """A directory that cannot be created says which setting to change."""
    (tmp_path / "file").write_text("")
    with pytest.raises(HostStateError) as info:
        state_lock(tmp_path / "file" / "state").acquire()
    assert str(info.value) == (
        f"Cannot write the lock file {tmp_path}/file/state/.lock: Not a directory. Set state_dir "
        "in the agent config to a directory the agent's user can write."
    )

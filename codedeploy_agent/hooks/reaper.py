"""The agent as a child subreaper, and the orphans it adopts.

Being a subreaper (`enable_subreaper`) makes orphans of a script come back to the agent instead
of init, so a timed-out script's escaped descendants stay findable and killable. The cost:
adopted orphans that exit later (an application started by ApplicationStart, stopped by the
next deployment's ApplicationStop) become the agent's zombies, and `kill -0 <pid>` or `pgrep`
in an operator's stop script would still see them. `ChildReaper` reaps them within half a
second. It only ever waits for specific pids it adopted from a script's tree; never
`os.waitpid(-1)`, which would steal exit statuses from asyncio's child watcher.

Contract for other code of the agent: a subprocess started in a *new session* while a script
runs must be started inside `spawn_guard()`, so it is never mistaken for an adopted orphan.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final, NamedTuple

import psutil
import structlog

_PR_SET_CHILD_SUBREAPER: Final = 36
_REAP_INTERVAL: Final = 0.5
_TICKS_PER_SECOND: Final = os.sysconf("SC_CLK_TCK")

_log = structlog.get_logger(__name__)


class _SubreaperState:
    """Whether prctl succeeded (None: not tried yet)."""

    enabled: bool | None = None
    lock = threading.Lock()


def enable_subreaper() -> bool:
    """Make this process a child subreaper (once); True when it is one.

    False on systems without `prctl(PR_SET_CHILD_SUBREAPER)`: escaped descendants then go to
    init and only the script's process group and current descendants are stopped on timeout.
    """
    with _SubreaperState.lock:
        if _SubreaperState.enabled is None:
            _SubreaperState.enabled = _prctl_subreaper()
        return _SubreaperState.enabled


def _prctl_subreaper() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def proc_pids() -> list[str]:
    """The pids of every process on the host, as /proc names them."""
    with os.scandir("/proc") as entries:
        return [entry.name for entry in entries if entry.name.isdigit()]


class ProcStat(NamedTuple):
    """The fields of /proc/<pid>/stat the agent needs."""

    state: str
    ppid: int
    sid: int
    starttime: int


def read_stat(pid: int) -> ProcStat | None:
    """State, parent, session and start time of `pid` (zombies too); None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2 :].split()
    return ProcStat(fields[0].decode(), int(fields[1]), int(fields[3]), int(fields[19]))


def our_children() -> list[int]:
    """Our direct children, from the kernel's per-thread child lists (fast), else psutil."""
    if not _HAVE_PROC_CHILDREN:
        return [p.pid for p in psutil.Process().children()]
    pids: list[int] = []
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # the thread ended meanwhile
            pids.extend(int(pid) for pid in (task / "children").read_text().split())
    return pids


_HAVE_PROC_CHILDREN: Final = Path(f"/proc/self/task/{os.getpid()}/children").exists()


def boot_ticks() -> int:
    """Now, in the unit of /proc/<pid>/stat's starttime (clock ticks since boot)."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * _TICKS_PER_SECOND)


class ChildReaper:
    """Reaps orphans of scripts that were adopted by this (subreaper) process.

    A child is adopted when it is not a script we started, lives in another session than the
    agent (a script's descendants always do), and was started while a script ran, or shares a
    session with a process adopted earlier (an application's workers, orphaned when it exits).
    A thread scans our children every half second while a script runs or adopted ones remain.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scan_lock = threading.Lock()
        self._in_flight: dict[int, int] = {}  # script pid -> start ticks
        self._adopted: dict[int, ProcStat] = {}
        self._spawning = 0
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()

    @contextlib.contextmanager
    def spawning(self) -> Iterator[None]:
        """While held, new children are never adopted (they may be someone's direct child)."""
        with self._lock:
            self._spawning += 1
        try:
            yield
        finally:
            with self._lock:
                self._spawning -= 1

    def begin(self, pid: int, start_ticks: int) -> None:
        """A script with this pid started (before `start_ticks` ended)."""
        with self._lock:
            self._in_flight[pid] = start_ticks
            if _SubreaperState.enabled and self._thread is None:
                self._thread = threading.Thread(target=self._run, name="hook-reaper", daemon=True)
                self._thread.start()

    def end(self, pid: int) -> None:
        """The script with this pid has been waited for: adopt its orphans, then forget it."""
        if _SubreaperState.enabled:
            self.scan()
        with self._lock:
            self._in_flight.pop(pid, None)

    def is_in_flight(self, pid: int) -> bool:
        """True for a script's own pid (asyncio's child watcher waits for it, never us)."""
        with self._lock:
            return pid in self._in_flight

    def adopted(self) -> set[int]:
        """The pids currently adopted (for tests and diagnostics)."""
        with self._lock:
            return set(self._adopted)

    def scan(self) -> None:
        """Adopt new orphans and reap adopted ones that have exited."""
        with self._scan_lock:
            own_sid = os.getsid(0)
            with self._lock:
                in_flight = dict(self._in_flight)
                adopted = dict(self._adopted)
                may_adopt = self._spawning == 0
            children = {pid: read_stat(pid) for pid in our_children()}
            adopted = {
                pid: stat
                for pid, stat in adopted.items()
                if (now := children.get(pid)) is not None and now.starttime == stat.starttime
            }
            sessions = {stat.sid for stat in adopted.values()}
            for pid, stat in children.items():
                if stat is None or pid in in_flight or stat.sid == own_sid:
                    continue
                if (
                    pid not in adopted
                    and may_adopt
                    and (
                        stat.sid in sessions or any(stat.starttime >= t for t in in_flight.values())
                    )
                ):
                    adopted[pid] = stat
                    sessions.add(stat.sid)
            for pid in list(adopted):
                now = children.get(pid)
                if now is not None and now.state == "Z":
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(pid, os.WNOHANG)
                    del adopted[pid]
            with self._lock:
                self._adopted = adopted

    def _run(self) -> None:
        while True:
            try:
                self.scan()
            except Exception:  # noqa: BLE001 - a thread's last resort: log, keep reaping
                _log.exception("hook reaper scan failed")
            with self._lock:
                if not self._in_flight and not self._adopted:
                    self._thread = None
                    return
            self._wake.wait(_REAP_INTERVAL)


REAPER: Final = ChildReaper()


@contextlib.contextmanager
def spawn_guard() -> Iterator[None]:
    """Hold while starting a subprocess in a new session, so it is never taken for an orphan."""
    with REAPER.spawning():
        yield


def adopted_pids() -> set[int]:
    """The pids of scripts' orphans this process currently looks after."""
    return REAPER.adopted()

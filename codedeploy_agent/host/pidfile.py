"""The agent's pid file and start lock (reference §7.3): one agent per `pid_dir`.

```
<pid_dir>/<program_name>.pid        our pid and a newline, written atomically after locking
<pid_dir>/<program_name>.pid.lock   flock(LOCK_EX | LOCK_NB), held for the process lifetime
```

The lock, not the pid file, says whether an agent runs: the kernel drops it when the holder dies,
however it dies. The real agent decides from the pid file and `ps` output (Quirk: a recycled pid
or a leftover pid file can make `status` report an agent that is not there); we trust the pid
file only while someone holds the lock. Two agents with different `pid_dir`s run side by side.

The pid lock alone would let two agents with different `pid_dir`s share a `state_dir` (one
ledger, one outbox: each would run and report the other's jobs) or a `:root_dir:` (each would
overwrite the other's revisions and pointers). So the daemon also holds `DirectoryLock`s:

```
<state_dir>/.lock    flock(LOCK_EX | LOCK_NB) for the daemon's lifetime; holds its pid
<root_dir>/.lock     the same, for the deployment root
```
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from types import TracebackType
from typing import Final

from codedeploy_agent.errors import AgentError, HostStateError
from codedeploy_agent.log import get_logger

_log = get_logger(__name__)

#: `codedeploy-agent status` probes the lock with a shared flock for a few microseconds; a start
#: that collides with a probe retries for this long before it concludes another agent runs.
_LOCK_RETRY_SECONDS: Final = 0.25
_LOCK_RETRY_STEP: Final = 0.01


class AgentAlreadyRunning(AgentError):  # noqa: N818 - the name the brief and CLI use
    """Raised by `PidFile.acquire` when another process holds the lock; `pid` is its pid or None."""

    def __init__(
        self, lock_file: Path, pid_file: Path, pid: int | None, config_path: Path | None
    ) -> None:
        check = "codedeploy-agent status" + (f" -c {config_path}" if config_path else "")
        holder = (
            f"Another agent holds it: PID {pid} (from {pid_file})."
            if pid is not None
            else f"Another process holds it ({pid_file} is missing or unreadable)."
        )
        super().__init__(
            f"Could not acquire lock on {lock_file} - aborting start! {holder} Check it with "
            f"`{check}`; stop that agent first, or give this one its own :pid_dir: (and its "
            "own state_dir and :root_dir: too: two agents must never share them)."
        )
        self.lock_file = lock_file
        self.pid = pid


class DirectoryInUse(AgentError):  # noqa: N818 - named like AgentAlreadyRunning
    """Raised by `DirectoryLock.acquire` when another agent uses the directory; `pid` is its pid
    or None when unknown."""

    def __init__(
        self, setting: str, directory: Path, lock_file: Path, pid: int | None, harm: str
    ) -> None:
        holder = (
            f"another agent (PID {pid}) uses it"
            if pid is not None
            else "another process uses it (its PID is unknown)"
        )
        super().__init__(
            f"Could not acquire lock on {lock_file} - aborting start! The {setting} {directory} "
            f"is in use: {holder}. Two agents sharing a {setting} {harm}. Stop that agent "
            f"first, or give this one its own {setting}."
        )
        self.directory = directory
        self.lock_file = lock_file
        self.pid = pid


def pid_file_path(pid_dir: Path, program_name: str) -> Path:
    """`<pid_dir>/<program_name>.pid`."""
    return pid_dir / f"{program_name}.pid"


def lock_file_path(pid_dir: Path, program_name: str) -> Path:
    """`<pid_dir>/<program_name>.pid.lock`."""
    return pid_dir / f"{program_name}.pid.lock"


def _read_pid(path: Path) -> int | None:
    """The pid a pid file names, or None when it is missing, empty or not a positive number."""
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


class PidFile:
    """Holds `<pid_dir>/<program_name>.pid.lock` and keeps our pid in the pid file.

    Use as a context manager, or call `acquire()` at start and `release()` at exit. Not reentrant.
    `config_path` only feeds the hint in AgentAlreadyRunning.
    """

    def __init__(
        self, pid_dir: Path, program_name: str, *, config_path: Path | None = None
    ) -> None:
        self.pid_dir = pid_dir
        self.path = pid_file_path(pid_dir, program_name)
        self.lock_path = lock_file_path(pid_dir, program_name)
        self._config_path = config_path
        self._lock_fd: int | None = None
        self._pid: int | None = None

    @property
    def held(self) -> bool:
        """True between a successful acquire() and release()."""
        return self._lock_fd is not None

    def acquire(self) -> None:
        """Take the lock and write our pid; raise AgentAlreadyRunning if another agent runs.

        Creates `pid_dir` if needed. A pid file left by an agent that died (nobody holds the lock)
        is replaced, with the real agent's message. Raises HostStateError when the directory or
        files cannot be written. Blocking (at most a quarter second), like all file work.
        """
        if self._lock_fd is not None:
            raise RuntimeError(f"{self.lock_path} is already held by this PidFile")
        try:
            self.pid_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
            # O_CLOEXEC: lifecycle scripts must never inherit the lock, or a daemon a script
            # leaves behind would keep it and block every later start of the agent.
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as err:
            raise self._io_error(err) from err
        if not self._lock(fd):
            os.close(fd)
            raise AgentAlreadyRunning(
                self.lock_path, self.path, _read_pid(self.path), self._config_path
            )
        self._lock_fd = fd
        stale = self.path.exists()
        if stale:
            _log.info(
                f"Pidfile {self.path} present but no matching process running - cleaning up",
                stale_pid=_read_pid(self.path),
            )
        try:
            self._write_pid()
        except OSError as err:
            self.release()
            raise self._io_error(err) from err

    @staticmethod
    def _lock(fd: int) -> bool:
        deadline = time.monotonic() + _LOCK_RETRY_SECONDS
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(_LOCK_RETRY_STEP)
            else:
                return True

    def _write_pid(self) -> None:
        """Write `<pid>\\n` through a temporary file and a rename: readers never see half."""
        pid = os.getpid()
        tmp = self.path.with_name(f".{self.path.name}.{pid}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            try:
                os.fchmod(fd, 0o644)  # the umask must not hide the pid from `status` run by others
                os.write(fd, f"{pid}\n".encode())
            finally:
                os.close(fd)
            tmp.replace(self.path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        self._pid = pid

    def release(self) -> None:
        """Remove the pid file (if it still names us) and drop the lock; the lock file stays."""
        if self._lock_fd is None:
            return
        if self._pid is not None and _read_pid(self.path) == self._pid:
            try:
                self.path.unlink()
            except OSError as err:
                _log.warning("Could not remove pid file", path=str(self.path), reason=str(err))
        self._pid = None
        os.close(self._lock_fd)  # closing the only descriptor releases the flock
        self._lock_fd = None

    def _io_error(self, err: OSError) -> HostStateError:
        return HostStateError(
            f"Cannot write the pid file or lock in {self.pid_dir}: {err.strerror or err}. "
            "Set :pid_dir: in the agent config to a directory the agent's user can write."
        )

    def __enter__(self) -> PidFile:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def read_running_pid(pid_dir: Path, program_name: str) -> int | None:
    """The running agent's pid for `status`, or None when no agent runs.

    An agent runs when someone holds the lock: probed with a shared non-blocking flock on a
    separate descriptor, released at once (never taking the lock a starting agent needs for
    longer than that, and never conflicting with another `status`). The pid comes from the pid
    file and counts only if that process exists. Never writes anything.
    """
    lock_path = lock_file_path(pid_dir, program_name)
    try:
        fd = os.open(lock_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None  # no lock file: no agent ever started with this pid_dir
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        held = True
    else:
        held = False
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
    if not held:
        return None
    pid = _read_pid(pid_file_path(pid_dir, program_name))
    return pid if pid is not None and _process_exists(pid) else None


#: What goes wrong when two agents share each directory the daemon locks (DirectoryInUse).
STATE_DIR_HARM: Final = "would run and report each other's jobs (they share jobs.json and outbox/)"
ROOT_DIR_HARM: Final = (
    "would deploy into the same deployment root and overwrite each other's revisions, "
    "pointers and ongoing-deployment markers"
)


class DirectoryLock:
    """`<directory>/.lock`, flocked exclusively while one agent uses `directory`.

    The kernel drops the lock when the holder dies, however it dies, so a crash never blocks the
    next start. The holder writes its pid into the lock file so that a refused start can name
    it. `setting` is the config key shown in the refusal (`state_dir`, `:root_dir:`) and `harm`
    says what sharing the directory would break. Not reentrant.
    """

    NAME: Final = ".lock"

    def __init__(self, directory: Path, setting: str, harm: str) -> None:
        self.directory = directory
        self.path = directory / self.NAME
        self.setting = setting
        self.harm = harm
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """True between a successful acquire() and release()."""
        return self._fd is not None

    def acquire(self) -> None:
        """Create `directory` if needed and take the lock; raise DirectoryInUse when another
        process holds it, HostStateError when the directory or the file cannot be written."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this DirectoryLock")
        try:
            self.directory.mkdir(mode=0o755, parents=True, exist_ok=True)
            # O_CLOEXEC: a daemon a lifecycle script leaves behind must not keep the lock.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as err:
            raise self._io_error(err) from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(self.path)
            os.close(fd)
            raise DirectoryInUse(
                self.setting,
                self.directory,
                self.path,
                pid if pid is not None and _process_exists(pid) else None,
                self.harm,
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as err:
            os.close(fd)
            raise self._io_error(err) from err
        self._fd = fd

    def release(self) -> None:
        """Empty the lock file (no pid names a stopped agent) and drop the lock."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing the only descriptor releases the flock
        self._fd = None

    def _io_error(self, err: OSError) -> HostStateError:
        return HostStateError(
            f"Cannot write the lock file {self.path}: {err.strerror or err}. Set {self.setting} "
            "in the agent config to a directory the agent's user can write."
        )

    def __enter__(self) -> DirectoryLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

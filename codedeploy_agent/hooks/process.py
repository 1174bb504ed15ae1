"""Starting a lifecycle script as a process, and stopping it with everything it started.

A script runs in its own session and process group, as the `runas` account when one is given
(uid, gid and supplementary groups are set by the child before exec: no `su -c` string, no
preexec_fn), stdin on /dev/null and both outputs on pipes drained by an `OutputPump`.

Stopping a script means SIGTERM, a grace period, then SIGKILL, sent to its process group *and*
to every descendant that left the group with `setsid`. Those are found because the agent is a
child subreaper (see `reaper`): orphans of a script come back to the agent, so they are its
children, in another session, started after the script.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final, TypeVar

import psutil
import structlog

from codedeploy_agent.hooks.pump import OutputPump, Stream
from codedeploy_agent.hooks.reaper import (
    REAPER,
    boot_ticks,
    enable_subreaper,
    our_children,
    proc_pids,
    read_stat,
)

__all__ = [
    "Account",
    "HookResult",
    "HookStatus",
    "enable_subreaper",
    "lookup_account",
    "run_hook_process",
]

_KILL_WAIT: Final = 5.0  # after SIGKILL; only a process stuck in the kernel (D state) outlives it
_DRAIN_AFTER_KILL: Final = 1.0  # lets the output of a killed tree reach the logs
_POLL: Final = 0.02

_log = structlog.get_logger(__name__)
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Account:
    """A local user a script runs as, with the environment `su` would give it."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str
    shell: str

    def environment(self) -> dict[str, str]:
        """HOME, USER, LOGNAME and SHELL of this user (the child does not switch them itself)."""
        return {"HOME": self.home, "USER": self.name, "LOGNAME": self.name, "SHELL": self.shell}


def lookup_account(name: str) -> Account | None:
    """The account called `name` with its supplementary groups, or None when there is none."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return Account(
        name=entry.pw_name,
        uid=entry.pw_uid,
        gid=entry.pw_gid,
        groups=tuple(os.getgrouplist(entry.pw_name, entry.pw_gid)),
        home=entry.pw_dir,
        shell=entry.pw_shell or "/bin/sh",
    )


class HookStatus(StrEnum):
    """How a script's process ended."""

    EXITED = "exited"  # exited and both outputs were closed
    TIMED_OUT = "timed_out"  # still running at the deadline; its tree was stopped
    OUTPUT_LEFT_OPEN = "output_left_open"  # exited, but something still held an output


@dataclass(frozen=True, slots=True)
class HookResult:
    """The end of a script's process: `returncode` is negative for a signal (as asyncio's)."""

    status: HookStatus
    returncode: int | None = None
    open_stream: Stream | None = None
    #: For OUTPUT_LEFT_OPEN: the processes holding the output, e.g. `pid 42 (sleep)`.
    holders: tuple[str, ...] = ()


async def run_hook_process(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    account: Account | None,
    time_limit: float,
    kill_grace: float,
    sink: Callable[[Sequence[str]], None],
) -> HookResult:
    """Run `argv` to completion, streaming its output entries to `sink` (from another thread).

    The deadline (`time_limit` seconds from now) covers the process and both outputs. Raises
    OSError when the process cannot be started. When the awaiting task is cancelled, the
    script's tree is stopped (TERM, grace, KILL) before CancelledError propagates.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + time_limit
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    inodes = {Stream.STDOUT: os.fstat(out_r).st_ino, Stream.STDERR: os.fstat(err_r).st_ino}
    start_ticks = boot_ticks()
    # Apps adopted from earlier scripts are never this script's to kill, even when they were
    # started within the same clock tick (10 ms) as this script.
    earlier = frozenset(REAPER.adopted())
    try:
        with REAPER.spawning():
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out_w,
                stderr=err_w,
                cwd=cwd,
                env=dict(env),
                start_new_session=True,
                user=None if account is None else account.uid,
                group=None if account is None else account.gid,
                extra_groups=None if account is None else list(account.groups),
            )
            REAPER.begin(proc.pid, start_ticks)
    except BaseException:
        os.close(out_r)
        os.close(err_r)
        raise
    finally:
        os.close(out_w)
        os.close(err_w)

    closed: dict[Stream, asyncio.Future[None]] = {s: loop.create_future() for s in Stream}

    def on_closed(stream: Stream) -> None:
        def mark() -> None:
            if not closed[stream].done():
                closed[stream].set_result(None)

        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting anymore
            loop.call_soon_threadsafe(mark)

    pump = OutputPump(out_r, err_r, sink, on_closed)
    pump.start()
    try:
        try:
            async with asyncio.timeout_at(deadline):
                await proc.wait()
        except TimeoutError:
            await _terminate(proc, start_ticks, earlier, kill_grace)
            await asyncio.wait(closed.values(), timeout=_DRAIN_AFTER_KILL)
            return HookResult(HookStatus.TIMED_OUT)
        await asyncio.wait(closed.values(), timeout=max(0.0, deadline - loop.time()))
        for stream, done in closed.items():
            if not done.done():
                holders = await asyncio.to_thread(_pipe_holders, inodes[stream])
                return HookResult(
                    HookStatus.OUTPUT_LEFT_OPEN, proc.returncode, stream, tuple(holders)
                )
        return HookResult(HookStatus.EXITED, proc.returncode)
    except asyncio.CancelledError:
        await _uninterruptible(_terminate(proc, start_ticks, earlier, kill_grace))
        raise
    finally:
        await _uninterruptible(asyncio.to_thread(_finish, pump, proc.pid))


def _finish(pump: OutputPump, pid: int) -> None:
    pump.stop()
    if not pump.join(timeout=_KILL_WAIT):
        _log.warning("hook output pump did not stop", pid=pid)
    pump.close()
    REAPER.end(pid)


async def _uninterruptible(awaitable: Awaitable[_T]) -> _T:
    """Await to completion even if cancelled meanwhile (cleanup is bounded), then re-raise."""
    task = asyncio.ensure_future(awaitable)
    interrupted = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():  # the cleanup itself was cancelled (event loop shutting down)
                raise
            interrupted = True
    if interrupted:
        raise asyncio.CancelledError
    return result


async def _terminate(
    proc: asyncio.subprocess.Process, start_ticks: int, earlier: frozenset[int], grace: float
) -> None:
    """SIGTERM the script's group and escaped descendants, wait `grace`, then SIGKILL them."""
    loop = asyncio.get_running_loop()
    targets = await asyncio.to_thread(_snapshot, proc.pid, start_ticks, earlier)
    # psutil reads /proc to check each pid was not reused: off the loop, like the snapshot.
    await asyncio.to_thread(_signal_all, proc.pid, targets, signal.SIGTERM)
    # A stopped process keeps SIGTERM pending until it is continued.
    await asyncio.to_thread(_signal_all, proc.pid, targets, signal.SIGCONT)
    end = loop.time() + grace
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), grace)
    alive = await asyncio.to_thread(_wait_gone, targets, max(0.0, end - loop.time()))
    if proc.returncode is None or alive:
        # Processes forked during the grace period (a TERM handler's cleanup) are caught too.
        more = await asyncio.to_thread(_snapshot, proc.pid, start_ticks, earlier)
        targets = list({p.pid: p for p in (*targets, *more)}.values())
        await asyncio.to_thread(_signal_all, proc.pid, targets, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), _KILL_WAIT)
        alive = await asyncio.to_thread(_wait_gone, targets, _KILL_WAIT)
    if proc.returncode is None or alive:
        _log.warning("hook processes survived SIGKILL", pid=proc.pid, alive=[p.pid for p in alive])


def _signal_all(group: int, targets: Sequence[psutil.Process], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, sig)
    for target in targets:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            target.send_signal(sig)  # psutil checks the pid was not reused


def _snapshot(hook_pid: int, start_ticks: int, earlier: frozenset[int]) -> list[psutil.Process]:
    """The script's descendants plus adopted processes started since the script started."""
    own_sid = os.getsid(0)
    parents: dict[int, list[int]] = {}
    for pid in map(int, proc_pids()):
        stat = read_stat(pid)
        if stat is not None:
            parents.setdefault(stat.ppid, []).append(pid)
    roots = [hook_pid]
    for pid in our_children():
        stat = read_stat(pid)
        if (
            stat is not None
            and pid != hook_pid
            and pid not in earlier
            and not REAPER.is_in_flight(pid)
            and stat.sid != own_sid  # a script's descendants can never join the agent's session
            and stat.starttime >= start_ticks
        ):
            roots.append(pid)
    found: dict[int, psutil.Process] = {}
    queue = list(roots)
    while queue:
        pid = queue.pop()
        if pid != hook_pid and pid not in found:
            with contextlib.suppress(psutil.NoSuchProcess):
                found[pid] = psutil.Process(pid)
        queue.extend(child for child in parents.get(pid, ()) if child not in found)
    return list(found.values())


def _wait_gone(targets: Sequence[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until every target is gone (reaping those that are our children); return the rest."""
    end = time.monotonic() + timeout
    pending = list(targets)
    while True:
        pending = [p for p in pending if not _gone(p)]
        if not pending or time.monotonic() >= end:
            return pending
        time.sleep(_POLL)


def _gone(proc: psutil.Process) -> bool:
    try:
        if not proc.is_running():
            return True
        if proc.status() != psutil.STATUS_ZOMBIE:
            return False
        if proc.ppid() == os.getpid():
            with contextlib.suppress(ChildProcessError):
                os.waitpid(proc.pid, os.WNOHANG)  # an adopted orphan: ours to reap
    except psutil.NoSuchProcess:
        pass
    return True  # a zombie is dead; its own parent reaps it


def _pipe_holders(inode: int, limit: int = 3) -> list[str]:
    """The processes (other than us) holding the pipe `inode`, as `pid N (comm)`."""
    target = f"pipe:[{inode}]"
    me = str(os.getpid())
    holders: list[str] = []
    for pid in proc_pids():
        if pid == me:
            continue
        with contextlib.suppress(OSError), os.scandir(f"/proc/{pid}/fd") as fds:
            if any(os.readlink(fd.path) == target for fd in fds):  # noqa: PTH115
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
                holders.append(f"pid {pid} ({comm})")
        if len(holders) >= limit:
            break
    return holders

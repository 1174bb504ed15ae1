"""SystemdNotifier against real datagram sockets.

Never `systemd-notify`: against a stand-in socket it waits for a barrier reply that only a real
systemd sends (platform notes).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest
from structlog.testing import capture_logs

from codedeploy_agent.systemd import (
    MAX_STATUS_CHARS,
    SystemdNotifier,
    watchdog_interval,
)
from tests.systemd.notify_socket import NotifyReceiver


@pytest.fixture(params=["path", "abstract"])
def receiver(
    request: pytest.FixtureRequest,
    path_receiver: NotifyReceiver,
    abstract_receiver: NotifyReceiver,
) -> NotifyReceiver:
    """Each notification test runs against a path socket and an abstract-namespace socket."""
    return path_receiver if request.param == "path" else abstract_receiver


class NotifierFactory(Protocol):
    """Builds a notifier from the environment, as the daemon does, aimed at `receiver`."""

    def __call__(self, receiver: NotifyReceiver, **env: str) -> SystemdNotifier: ...


@pytest.fixture
def notifier_for(monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifierFactory]:
    """Notifiers built from NOTIFY_SOCKET (and `env`); their sockets close after the test."""
    made: list[SystemdNotifier] = []

    def make(receiver: NotifyReceiver, **env: str) -> SystemdNotifier:
        monkeypatch.setenv("NOTIFY_SOCKET", receiver.notify_socket)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        made.append(SystemdNotifier.from_environment())
        return made[-1]

    yield make
    for notifier in made:
        notifier.close()


def test_ready(receiver: NotifyReceiver, notifier_for: NotifierFactory) -> None:
    """ready() sends exactly `READY=1`."""
    notifier = notifier_for(receiver)
    assert notifier.enabled
    assert notifier.ready() is True
    assert receiver.receive() == b"READY=1"


def test_ready_with_status(receiver: NotifyReceiver, notifier_for: NotifierFactory) -> None:
    """ready(status) sends both assignments in one datagram."""
    notifier = notifier_for(receiver)
    notifier.ready("Idle, connected to mqtt://127.0.0.1:1883")
    assert receiver.receive() == b"READY=1\nSTATUS=Idle, connected to mqtt://127.0.0.1:1883"


def test_status_stopping_watchdog(receiver: NotifyReceiver, notifier_for: NotifierFactory) -> None:
    """status(), stopping(), watchdog() and extend_timeout() send their exact assignments."""
    notifier = notifier_for(receiver)
    notifier.status("Deploying d-ABCDEF123 (AfterInstall)")
    notifier.watchdog()
    notifier.stopping()
    notifier.extend_timeout(90)
    assert [receiver.receive() for _ in range(4)] == [
        b"STATUS=Deploying d-ABCDEF123 (AfterInstall)",
        b"WATCHDOG=1",
        b"STOPPING=1",
        b"EXTEND_TIMEOUT_USEC=90000000",
    ]


def test_status_cannot_inject_assignments(
    path_receiver: NotifyReceiver, notifier_for: NotifierFactory
) -> None:
    """Newlines in a status text are flattened, so it cannot smuggle in `READY=1`."""
    notifier = notifier_for(path_receiver)
    notifier.status("Failed: script said\nREADY=1\nMAINPID=1")
    assert path_receiver.receive() == b"STATUS=Failed: script said READY=1 MAINPID=1"


def test_long_status_is_cut(path_receiver: NotifyReceiver, notifier_for: NotifierFactory) -> None:
    """A status longer than MAX_STATUS_CHARS is cut so systemd does not drop the datagram."""
    notifier = notifier_for(path_receiver)
    notifier.status("x" * 10_000)
    assert path_receiver.receive() == b"STATUS=" + b"x" * MAX_STATUS_CHARS


def test_no_notify_socket_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without NOTIFY_SOCKET every call does nothing and reports that nothing was sent."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    notifier = SystemdNotifier.from_environment()
    assert not notifier.enabled
    assert notifier.watchdog_seconds is None
    assert [notifier.ready(), notifier.status("x"), notifier.watchdog(), notifier.stopping()] == [
        False,
        False,
        False,
        False,
    ]


def test_environment_is_unset_for_children(
    path_receiver: NotifyReceiver, notifier_for: NotifierFactory
) -> None:
    """from_environment() removes the variables so lifecycle scripts never inherit them."""
    notifier = notifier_for(path_receiver, WATCHDOG_USEC="20000000", WATCHDOG_PID=str(os.getpid()))
    assert notifier.watchdog_seconds == 10.0
    assert {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"}.isdisjoint(os.environ)
    notifier.ready()
    assert path_receiver.receive() == b"READY=1"


def test_environment_kept_on_request(
    path_receiver: NotifyReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With unset=False the variables stay."""
    monkeypatch.setenv("NOTIFY_SOCKET", path_receiver.notify_socket)
    SystemdNotifier.from_environment(unset=False)
    assert os.environ["NOTIFY_SOCKET"] == path_receiver.notify_socket


@pytest.mark.parametrize("value", ["relative/notify", "vsock:2:1234", "@"])
def test_unsupported_socket_values_disable_notifications(value: str) -> None:
    """A NOTIFY_SOCKET we cannot use turns notifications off with a warning, not an error."""
    with capture_logs() as logs, SystemdNotifier(value) as notifier:
        assert notifier.ready() is False
    assert not notifier.enabled
    assert [(e["event"], e["log_level"], e["notify_socket"]) for e in logs] == [
        ("notify_socket_unsupported", "warning", value)
    ]


def test_missing_socket_is_logged_once() -> None:
    """Sending to a socket that does not exist logs one warning, then debug lines; never raises."""
    with (
        tempfile.TemporaryDirectory(prefix="sdn-") as folder,
        SystemdNotifier(str(Path(folder) / "gone")) as notifier,
        capture_logs() as logs,
    ):
        results = [notifier.watchdog() for _ in range(3)]
    assert results == [False, False, False]
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("systemd_notify_failed", "warning"),
        ("systemd_notify_failed", "debug"),
        ("systemd_notify_failed", "debug"),
    ]
    assert logs[0]["message"] == "WATCHDOG=1"
    assert logs[0]["error"].startswith("FileNotFoundError: ")


def test_full_receiver_never_blocks(path_receiver: NotifyReceiver) -> None:
    """When systemd stops reading, sends fail at once (non-blocking) and are logged once."""
    started = time.monotonic()
    with SystemdNotifier(path_receiver.notify_socket) as notifier, capture_logs() as logs:
        results = [notifier.watchdog() for _ in range(5000)]
    assert time.monotonic() - started < 2.0
    assert results[0] is True
    assert results[-1] is False
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 1
    assert warnings[0]["error"].startswith("BlockingIOError: ")
    queued = path_receiver.pending()
    assert queued == [b"WATCHDOG=1"] * results.count(True)


def test_closed_socket_reopens(path_receiver: NotifyReceiver) -> None:
    """After close() the next notification opens a new socket."""
    with SystemdNotifier(path_receiver.notify_socket) as notifier:
        notifier.ready()
        notifier.close()
        notifier.stopping()
    assert [path_receiver.receive(), path_receiver.receive()] == [b"READY=1", b"STOPPING=1"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4243"}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "x"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "500000"}, 0.25),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    """The ping interval is half of WATCHDOG_USEC, only when WATCHDOG_PID (if set) is ours."""
    assert watchdog_interval(env, pid=4242) == expected


def test_watchdog_interval_defaults_to_our_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an explicit pid, WATCHDOG_PID is compared with os.getpid()."""
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 2.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert watchdog_interval() is None


@pytest.mark.asyncio
async def test_watchdog_pings_only_while_healthy(path_receiver: NotifyReceiver) -> None:
    """run_watchdog pings after each healthy check and withholds pings while unhealthy."""
    notifier = SystemdNotifier(path_receiver.notify_socket, watchdog_seconds=0.01)
    # Health per check: 3 healthy, 3 unhealthy (one raising), 2 healthy, then the test stops.
    plan: list[bool | None] = [True, True, True, False, None, False, True, True]
    done = asyncio.Event()

    def is_healthy() -> bool:
        if not plan:
            done.set()
            return False
        answer = plan.pop(0)
        if answer is None:
            raise RuntimeError("health check broke")
        return answer

    with notifier, capture_logs() as logs:
        task = asyncio.create_task(notifier.run_watchdog(is_healthy))
        try:
            async with asyncio.timeout(5):
                await done.wait()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert path_receiver.pending() == [b"WATCHDOG=1"] * 5
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("watchdog_withheld", "warning"),
        ("watchdog_health_check_failed", "error"),
        ("watchdog_resumed", "info"),
        ("watchdog_withheld", "warning"),
    ]


@pytest.mark.asyncio
async def test_watchdog_off_returns_at_once(path_receiver: NotifyReceiver) -> None:
    """Without WatchdogSec, run_watchdog returns immediately and sends nothing."""
    notifier = SystemdNotifier(path_receiver.notify_socket)
    await asyncio.wait_for(notifier.run_watchdog(lambda: True), timeout=1)
    assert path_receiver.pending() == []

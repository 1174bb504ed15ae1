"""sd_notify without libsystemd: readiness, status text and watchdog pings for a Type=notify unit.

systemd passes `$NOTIFY_SOCKET`, the path of an AF_UNIX datagram socket (a leading `@` means the
abstract namespace), and, when the unit has `WatchdogSec=`, `$WATCHDOG_USEC` (and
`$WATCHDOG_PID`). A notification is one datagram of newline-separated `KEY=value` assignments.
Outside systemd (a terminal, a test, a container) the variables are unset and every call is a
no-op. Sending never blocks and never raises into the daemon: the socket is non-blocking, and
a failure is logged once as a warning (later ones at debug level), because a broken notify
socket must not stop deployments.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Mapping, MutableMapping
from typing import Final

from codedeploy_agent.log import get_logger

_log = get_logger(__name__)

NOTIFY_SOCKET: Final = "NOTIFY_SOCKET"
WATCHDOG_USEC: Final = "WATCHDOG_USEC"
WATCHDOG_PID: Final = "WATCHDOG_PID"

#: systemd drops notification datagrams larger than its buffer (PIPE_BUF, 4096 bytes); a status
#: line is for humans (`systemctl status`), so a long one is cut well below that.
MAX_STATUS_CHARS: Final = 1024


def watchdog_interval(
    environ: Mapping[str, str] | None = None, *, pid: int | None = None
) -> float | None:
    """Seconds between watchdog pings, or None when systemd's watchdog is not on for us.

    Reads `WATCHDOG_USEC` (the period after which systemd kills the unit without a ping) and
    returns half of it: a ping every half period survives one late wake-up of the event loop
    (a busy host, a long GC pause) without a spurious restart, which is what sd_watchdog_enabled(3)
    recommends. When `WATCHDOG_PID` is set it must be our pid (`pid`, default os.getpid()): the
    variables may have leaked from a parent that is the real watched service.
    """
    env = os.environ if environ is None else environ
    usec_text = env.get(WATCHDOG_USEC)
    if usec_text is None:
        return None
    try:
        usec = int(usec_text)
    except ValueError:
        _log.debug("watchdog_usec_invalid", value=usec_text)
        return None
    if usec <= 0:
        return None
    pid_text = env.get(WATCHDOG_PID)
    if pid_text is not None:
        expected = os.getpid() if pid is None else pid
        if not pid_text.isdigit() or int(pid_text) != expected:
            return None
    return usec / 1_000_000 / 2


def _socket_address(value: str) -> str | None:
    """The sendto() address for a NOTIFY_SOCKET value; None for forms we do not speak."""
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None  # relative paths are invalid; `vsock:` (VMs) is not for a host agent


class SystemdNotifier:
    """Sends sd_notify messages to `notify_socket` (a NOTIFY_SOCKET value; None: do nothing)."""

    def __init__(self, notify_socket: str | None, *, watchdog_seconds: float | None = None) -> None:
        self._socket_name = notify_socket
        self._address = None if not notify_socket else _socket_address(notify_socket)
        if notify_socket and self._address is None:
            _log.warning(
                "notify_socket_unsupported",
                notify_socket=notify_socket,
                hint="expected an absolute path or @abstract-name; systemd notifications are off",
            )
        self._watchdog_seconds = watchdog_seconds if self._address is not None else None
        self._sock: socket.socket | None = None
        self._failed_before = False

    @classmethod
    def from_environment(
        cls, environ: MutableMapping[str, str] | None = None, *, unset: bool = True
    ) -> SystemdNotifier:
        """A notifier for this process's `NOTIFY_SOCKET` and watchdog settings.

        With `unset` (the default, like sd_notify's `unset_environment`) the three variables are
        removed from the environment, so lifecycle scripts and the programs they start never
        inherit the agent's notify socket or watchdog.
        """
        env = os.environ if environ is None else environ
        notifier = cls(env.get(NOTIFY_SOCKET), watchdog_seconds=watchdog_interval(env))
        if unset:
            for name in (NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID):
                env.pop(name, None)
        return notifier

    @property
    def enabled(self) -> bool:
        """True when there is a socket to notify."""
        return self._address is not None

    @property
    def watchdog_seconds(self) -> float | None:
        """The ping interval (half of WatchdogSec), or None when the watchdog is off."""
        return self._watchdog_seconds

    def ready(self, status: str | None = None) -> bool:
        """Tell systemd start-up is complete (`READY=1`), optionally with a status line."""
        return self.notify("READY=1", *self._status_lines(status))

    def status(self, text: str) -> bool:
        """Set the line `systemctl status` shows (`STATUS=...`)."""
        return self.notify(*self._status_lines(text))

    def stopping(self) -> bool:
        """Tell systemd a graceful stop has begun (`STOPPING=1`)."""
        return self.notify("STOPPING=1")

    def watchdog(self) -> bool:
        """Ping the watchdog (`WATCHDOG=1`)."""
        return self.notify("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for `seconds` more before the start or stop timeout hits (`EXTEND_TIMEOUT_USEC`).

        A graceful stop waits for the running lifecycle script; this keeps systemd from killing
        the agent mid-script while it is still making progress.
        """
        return self.notify(f"EXTEND_TIMEOUT_USEC={max(int(seconds * 1_000_000), 0)}")

    @staticmethod
    def _status_lines(text: str | None) -> tuple[str, ...]:
        if text is None:
            return ()
        # A newline would start a new assignment: a deployment id or error message must never
        # be able to inject `READY=1` or `MAINPID=`.
        flat = " ".join(text.splitlines())
        return (f"STATUS={flat[:MAX_STATUS_CHARS]}",)

    def notify(self, *assignments: str) -> bool:
        """Send `KEY=value` assignments in one datagram; True when it was handed to the kernel."""
        if self._address is None or not assignments:
            return False
        payload = "\n".join(assignments).encode("utf-8", "replace")
        try:
            if self._sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                sock.setblocking(False)  # a full receive queue must not stall the event loop
                self._sock = sock
            self._sock.sendto(payload, self._address)
        except OSError as err:
            log = _log.debug if self._failed_before else _log.warning
            log(
                "systemd_notify_failed",
                notify_socket=self._socket_name,
                message=payload.decode(),
                error=f"{type(err).__name__}: {err}",
            )
            self._failed_before = True
            return False
        return True

    async def run_watchdog(self, is_healthy: Callable[[], bool]) -> None:
        """Ping the watchdog every `watchdog_seconds` while `is_healthy()` says so.

        Returns at once when the watchdog is off. While unhealthy (or when `is_healthy` raises)
        pings are withheld, so systemd restarts the agent once WatchdogSec passes; a warning is
        logged when that starts and an info line when health returns. Cancel to stop.
        """
        interval = self._watchdog_seconds
        if interval is None:
            return
        withheld = False
        while True:
            try:
                healthy = bool(is_healthy())
            except Exception:  # noqa: BLE001 - a broken health check counts as unhealthy
                _log.exception("watchdog_health_check_failed")
                healthy = False
            if healthy:
                self.watchdog()
                if withheld:
                    _log.info("watchdog_resumed")
            elif not withheld:
                _log.warning("watchdog_withheld", restart_after_seconds=interval * 2)
            withheld = not healthy
            await asyncio.sleep(interval)

    def close(self) -> None:
        """Close the socket (later notifications open a new one)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> SystemdNotifier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

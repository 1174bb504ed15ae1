"""Where hook output goes: a deployment's scripts.log, the agent-wide deployments log, and the
2,048-character tail sent with diagnostics (reference §4.5, §4.9, §4.10).

Every entry is redacted (each secret value becomes `***`) before it reaches any of the three,
because the tail travels over the network and the logs are readable by operators.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Final

import structlog

#: The real agent's ScriptLog budget: the tail keeps entries whose total stays below this.
TAIL_LIMIT: Final = 2048
#: Ruby `Logger.new(path, 8, 64 * 1024 * 1024)`: rotate past 64 MiB, 8 files in all.
DEPLOYMENTS_LOG_MAX_BYTES: Final = 64 * 1024 * 1024
DEPLOYMENTS_LOG_GENERATIONS: Final = 8
REDACTED: Final = "***"
#: Ruby's String#strip removes exactly these (Python's str.strip() also removes Unicode spaces).
_RUBY_WHITESPACE: Final = " \t\n\v\f\r\0"

_log = structlog.get_logger(__name__)


class ScriptTail:
    """The newest entries of one lifecycle event whose total length stays below `limit` chars.

    Entries are raw messages with their newline (`"[stdout]hello\\n"`); an entry of `limit` chars
    or more empties the tail, as in the real agent (100-char entries keep 20, 1000-char keep 2,
    a 3000-char entry keeps none). Quirk fixed: Ruby's trimming loop subtracts the length of the
    *next older* entry instead of the one it just kept, so with mixed lengths its tail could grow
    to almost twice the budget; we keep the documented "total below 2048" exactly.
    """

    def __init__(self, limit: int = TAIL_LIMIT) -> None:
        self._limit = limit
        self._entries: deque[str] = deque()
        self._total = 0
        self._lock = threading.Lock()

    def extend(self, entries: Iterable[str]) -> None:
        """Append entries in order, then drop the oldest until the total is below the limit."""
        with self._lock:
            for entry in entries:
                if len(entry) >= self._limit:
                    self._entries.clear()
                    self._total = 0
                    continue
                self._entries.append(entry)
                self._total += len(entry)
                while self._total >= self._limit:
                    self._total -= len(self._entries.popleft())

    def text(self) -> str:
        """The entries joined, as the `log` field of the diagnostics payload."""
        with self._lock:
            return "".join(self._entries)


class _RotatingFile:
    """One append-only log file shared by every writer in this process, rotated like Ruby's Logger.

    Rotation happens before a write once the file is larger than `max_bytes`: `name.5` ->
    `name.6`, ..., `name.0` -> `name.1`, `name` -> `name.0`; with 8 generations the oldest kept is
    `name.6` (Ruby's `shift_age` counts the live file).
    """

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.users = 0
        self._lock = threading.Lock()
        self._file: BinaryIO | None = None
        self._size = 0

    def write(self, data: bytes) -> None:
        with self._lock:
            if self._file is not None and self._size > self.max_bytes:
                self._file.close()
                self._file = None
                self._rotate()
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = _open_append(self.path)
                self._size = self._file.tell()
            self._file.write(data)
            self._file.flush()
            self._size += len(data)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def _rotate(self) -> None:
        for index in range(DEPLOYMENTS_LOG_GENERATIONS - 3, -1, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                older.rename(self.path.with_name(f"{self.path.name}.{index + 1}"))
        self.path.rename(self.path.with_name(f"{self.path.name}.0"))


_shared_lock = threading.Lock()
_shared: dict[Path, _RotatingFile] = {}


def _acquire_shared(path: Path, max_bytes: int) -> _RotatingFile:
    # The deployments log is agent-wide: one handle per path keeps rotation and size accounting
    # right when two DeploymentLogs overlap (a rollback starting while a report is written).
    key = path.absolute()
    with _shared_lock:
        shared = _shared.get(key)
        if shared is None:
            shared = _shared[key] = _RotatingFile(key, max_bytes)
        shared.users += 1
        return shared


def _release_shared(shared: _RotatingFile) -> None:
    with _shared_lock:
        shared.users -= 1
        if shared.users == 0:
            _shared.pop(shared.path, None)
            shared.close()


class DeploymentLogs:
    """Writes a deployment's scripts.log and the agent-wide deployments log.

    scripts.log lines are `YYYY-MM-DD HH:MM:SS <message>` in local time; deployments-log lines
    are `[YYYY-MM-DD HH:MM:SS.mmm] [<deployment-id>]<message stripped>`. Files are opened on the
    first write, so a deployment without scripts gets no scripts.log (as the real agent). Quirk
    fixed: every entry ends with a newline (the real agent writes a final partial output line
    without one, so it runs into the next entry). A failing write (disk full) is reported once in
    the agent log and does not fail the script: the output still reaches the tail.
    """

    def __init__(
        self,
        scripts_log: Path,
        deployments_log: Path | None,
        deployment_id: str,
        secrets: Sequence[str] = (),
        *,
        deployments_log_max_bytes: int = DEPLOYMENTS_LOG_MAX_BYTES,
        listener: Callable[[Sequence[str]], None] | None = None,
    ) -> None:
        """`listener`, when given, receives every batch of entries as written (redacted, without
        newlines), from whichever thread wrote them: it must be thread-safe and quick (the daemon
        hands them to its event loop for the live logs topic)."""
        self._listener = listener
        self._scripts_path = scripts_log
        self._deployments_path = deployments_log
        self._max_bytes = deployments_log_max_bytes
        self._prefix = f"[{deployment_id}]"
        self._secrets = _secret_values(secrets)
        self._lock = threading.Lock()
        self._scripts: BinaryIO | None = None
        self._shared: _RotatingFile | None = None
        self._closed = False
        self._write_failed = False

    def redact(self, text: str) -> str:
        """`text` with every occurrence of every secret replaced by `***`."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def write(self, message: str) -> None:
        """Write one entry (e.g. `LifecycleEvent - ApplicationStart`) to both logs."""
        self.write_lines((message,))

    def write_lines(self, messages: Sequence[str]) -> list[str]:
        """Write entries with one timestamp; return them as written (redacted, no newline)."""
        entries = [self.redact(m.removesuffix("\n")) for m in messages]
        if not entries:
            return entries
        now = time.time()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
        scripts = "".join(f"{stamp} {entry}\n" for entry in entries)
        deployments = None
        if self._deployments_path is not None:
            head = f"[{stamp}.{int(now * 1000) % 1000:03d}] {self._prefix}"
            deployments = "".join(f"{head}{e.strip(_RUBY_WHITESPACE)}\n" for e in entries)
        with self._lock:
            if self._closed:
                return entries
            try:
                if self._scripts is None:
                    self._scripts_path.parent.mkdir(parents=True, exist_ok=True)
                    self._scripts = _open_append(self._scripts_path)
                self._scripts.write(scripts.encode("utf-8", "replace"))
                self._scripts.flush()
                if deployments is not None and self._deployments_path is not None:
                    if self._shared is None:
                        self._shared = _acquire_shared(self._deployments_path, self._max_bytes)
                    self._shared.write(deployments.encode("utf-8", "replace"))
            except OSError as exc:
                if not self._write_failed:
                    self._write_failed = True
                    _log.warning(
                        "script log write failed", path=str(self._scripts_path), error=str(exc)
                    )
        if self._listener is not None:
            try:
                self._listener(entries)
            except Exception:  # noqa: BLE001 - live streaming is best effort, never fatal
                _log.exception("script log listener failed")
        return entries

    def close(self) -> None:
        """Close both files; later writes are ignored."""
        with self._lock:
            self._closed = True
            if self._scripts is not None:
                self._scripts.close()
                self._scripts = None
            if self._shared is not None:
                _release_shared(self._shared)
                self._shared = None

    def __enter__(self) -> DeploymentLogs:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class EventLog:
    """One lifecycle event's sink: entries go to the deployment's logs and to the event's tail."""

    def __init__(self, logs: DeploymentLogs) -> None:
        self._logs = logs
        self.tail = ScriptTail()

    def write(self, message: str) -> None:
        """Write one entry."""
        self.write_lines((message,))

    def write_lines(self, messages: Sequence[str]) -> None:
        """Write entries in order (called from the output pump's thread, too)."""
        entries = self._logs.write_lines(messages)
        self.tail.extend(f"{entry}\n" for entry in entries)

    def text(self) -> str:
        """The diagnostics tail so far."""
        return self.tail.text()


def _open_append(path: Path) -> BinaryIO:
    # Created if missing, else appended to (the real agent's `w`/`a`); kept open between writes.
    return open(path, "ab")


def _secret_values(secrets: Sequence[str]) -> tuple[str, ...]:
    values: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        values.add(secret)
        # Output is split into lines before redaction, so a multi-line secret (a PEM key) can
        # only be matched line by line; blank lines are skipped (they would match everything).
        if "\n" in secret:
            values.update(line.rstrip("\r") for line in secret.split("\n") if line.strip())
    # Longest first, so a secret that contains another is replaced whole.
    return tuple(sorted(values, key=len, reverse=True))

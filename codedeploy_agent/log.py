"""The agent's own log (reference §4.11): structlog, configured once per process.

Text lines are the real agent's, so operators' greps keep working:

    2026-02-19 15:12:11 INFO  [codedeploy-agent(4242)]: codedeploy_agent.daemon: Started job_id=j1

(local time, level padded to five like the logging gem's `%-5l`, then the component, the event
and every bound key as `key=value`). JSON lines carry the same data as one object per line with
an RFC 3339 UTC `timestamp`. Lines go to the log file and to stderr (journald keeps it); a line
the file cannot take (disk full) goes to stderr instead, so logging never stops the agent.

Context is bound with `structlog.contextvars.bound_contextvars(deployment_id=..., ...)`. The
lifecycle event is rendered as `lifecycle_event`: structlog's own `event` key is the message, so
a context variable bound as `event` is renamed to `lifecycle_event` rather than lost.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, cast

import structlog  # rich stays unloaded: see codedeploy_agent/__init__.py
from structlog.typing import (
    EventDict,
    FilteringBoundLogger,
    Processor,
    WrappedLogger,
)

#: structlog's level names -> the logging gem's (`WARN`, not `WARNING`; `FATAL` for critical).
_GEM_LEVELS = {
    "debug": "DEBUG",
    "info": "INFO",
    "warning": "WARN",
    "error": "ERROR",
    "critical": "FATAL",
}

_PLAIN_VALUE = re.compile(r"[^\s\"'=\\]+")


def get_logger(component: str) -> FilteringBoundLogger:
    """A logger whose lines name `component` (a module path such as `codedeploy_agent.executor`).

    The logger is lazy: it follows the configuration current when it logs, so module-level
    loggers created before `configure_logging` (and tests' `capture_logs`) see every line.
    """
    return cast(FilteringBoundLogger, structlog.get_logger(component=component))


def merge_context(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Add the context bound with structlog.contextvars; `event` becomes `lifecycle_event`."""
    context = {
        ("lifecycle_event" if key == "event" else key): value
        for key, value in structlog.contextvars.get_contextvars().items()
    }
    # Context first, in a fixed order (contextvars iterate in the order structlog first created
    # each variable in this process, which varies), so that one deployment's lines start alike;
    # the call's own keys follow and win.
    merged: EventDict = {key: context[key] for key in sorted(context, key=_context_rank)}
    merged.update(event_dict)
    return merged


_CONTEXT_ORDER = {"deployment_id": 0, "lifecycle_event": 1, "job_id": 2}


def _context_rank(key: str) -> tuple[int, str]:
    return _CONTEXT_ORDER.get(key, len(_CONTEXT_ORDER)), key


def _render_value(value: object) -> str:
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return text if _PLAIN_VALUE.fullmatch(text) else json.dumps(text, ensure_ascii=False)


class _TextRenderer:
    """`YYYY-MM-DD HH:MM:SS LEVEL [program(pid)]: component: event key=value ...`."""

    def __init__(self, program_name: str) -> None:
        self._program_name = program_name

    def __call__(self, _logger: WrappedLogger, method: str, event_dict: EventDict) -> str:
        level = str(event_dict.pop("level", method))
        component = event_dict.pop("component", None)
        event = event_dict.pop("event", "")
        trailers = [event_dict.pop(key, None) for key in ("stack", "exception")]
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
        line = f"{stamp} {_GEM_LEVELS.get(level, level.upper()):<5} "
        line += f"[{self._program_name}({os.getpid()})]: "
        if component:
            line += f"{component}: "
        line += str(event)
        for key, value in event_dict.items():
            line += f" {key}={_render_value(value)}"
        for trailer in trailers:
            if trailer:
                line += "\n" + str(trailer).rstrip("\n")
        return line


def _render_json(_logger: WrappedLogger, method: str, event_dict: EventDict) -> str:
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    record: dict[str, Any] = {
        "timestamp": stamp,
        "level": event_dict.pop("level", method),
        "component": event_dict.pop("component", None),
        "event": event_dict.pop("event", ""),
    }
    record.update(event_dict)
    return json.dumps(record, default=str, ensure_ascii=False)


class _Output:
    """The log file and stderr; thread-safe, never raises.

    Each line is one write(2) to an O_APPEND descriptor: the kernel copies it into the page
    cache and returns (no fsync), which costs microseconds, so writing from the event loop is
    acceptable and no line waits in a user-space buffer when the process dies.
    """

    def __init__(self, path: Path | None, stderr: bool) -> None:
        self._path = path
        self._stderr = stderr
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._failing = False
        if path is not None:
            self._open(path)

    @property
    def file_failing(self) -> bool:
        """Whether the last attempt to open or write the log file failed."""
        return self._failing

    def write(self, line: str) -> None:
        """Write one rendered line; lines the file cannot take go to stderr."""
        with self._lock:
            to_stderr = self._stderr
            if self._path is not None:
                if self._fd is None:
                    self._open(self._path)
                if self._fd is None:
                    to_stderr = True
                else:
                    try:
                        _write_all(self._fd, (line + "\n").encode("utf-8", "backslashreplace"))
                        self._failing = False
                    except OSError as exc:
                        self._report(exc)
                        to_stderr = True
            if to_stderr:
                _write_stderr(line + "\n")

    def reopen(self) -> None:
        """Close and reopen the file by name (after logrotate moved it)."""
        with self._lock:
            self._close()
            self._failing = False
            if self._path is not None:
                self._open(self._path)

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._close()

    def _open(self, path: Path) -> None:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o644)
                os.fchmod(fd, 0o644)  # whatever the umask: operators and their tools read it
            except FileExistsError:
                fd = os.open(path, flags)
        except OSError as exc:
            self._report(exc)
            return
        self._fd = fd

    def _close(self) -> None:
        if self._fd is not None:
            # Closing a descriptor whose device failed can fail too; nothing is left to do then.
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def _report(self, exc: OSError) -> None:
        # Said once per failure streak, not once per line, so that a full disk does not double
        # the volume written to the journal.
        if not self._failing:
            self._failing = True
            _write_stderr(
                f"Cannot write the log file {self._path}: {exc.strerror or exc}; "
                "the log goes to stderr until the file can be written again\n"
            )


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError("log file write made no progress")
        view = view[written:]


def _write_stderr(text: str) -> None:
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass  # stderr closed or gone (daemonised without one): there is nowhere left to say it


class _OutputLogger:
    """The structlog "wrapped logger": receives rendered lines."""

    def __init__(self, output: _Output) -> None:
        self._output = output

    def msg(self, message: str) -> None:
        """Write one rendered line."""
        self._output.write(message)

    debug = info = warning = warn = error = critical = fatal = exception = log = msg


class _StdlibBridge(logging.Handler):
    """Sends records of the stdlib `logging` tree (aiomqtt, botocore, ...) through structlog."""

    _busy = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        """Log the record with the library's logger name as the component."""
        if getattr(self._busy, "active", False):
            return  # a library logging from inside our own pipeline: drop, never recurse
        self._busy.active = True
        try:
            level = next(
                (n for n in (50, 40, 30, 20) if record.levelno >= n),
                logging.DEBUG,
            )
            extra: dict[str, Any] = {}
            if record.exc_info and record.exc_info[0] is not None:
                extra["exc_info"] = record.exc_info
            get_logger(record.name).log(level, record.getMessage(), **extra)
        except Exception:  # noqa: BLE001 (logging.Handler's contract: report, never raise)
            self.handleError(record)
        finally:
            self._busy.active = False


class _State:
    output: _Output | None = None
    bridge: _StdlibBridge | None = None


_STATE = _State()


def configure_logging(
    *,
    log_file: Path | None,
    fmt: Literal["text", "json"],
    verbose: bool,
    program_name: str = "codedeploy-agent",
    stderr: bool = True,
) -> None:
    """Send every log line of this process to `log_file` and/or stderr, in `fmt`.

    Called once at startup (a second call replaces the first: the CLI may log to stderr only
    until the config file names the log file). The level is debug when `verbose`, else info;
    stdlib `logging` records of third-party libraries join the same output at WARNING and up.
    The log file and its directory are created (file mode 0644); if it cannot be opened the
    lines go to stderr and a warning says why.
    """
    output = _Output(log_file, stderr)
    renderer: Processor = _TextRenderer(program_name) if fmt == "text" else _render_json
    structlog.configure(
        processors=[
            merge_context,
            structlog.processors.add_log_level,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.DEBUG if verbose else logging.INFO
        ),
        logger_factory=_factory(output),
        context_class=dict,
        cache_logger_on_first_use=False,
    )
    _replace(output)
    if output.file_failing:
        get_logger(__name__).warning(
            "Cannot open the log file; logging to stderr only", log_file=str(log_file)
        )


def _factory(output: _Output) -> Callable[..., _OutputLogger]:
    def make(*_args: object) -> _OutputLogger:
        return _OutputLogger(output)

    return make


def _replace(output: _Output | None) -> None:
    root = logging.getLogger()
    if _STATE.bridge is not None:
        root.removeHandler(_STATE.bridge)
        _STATE.bridge = None
    if _STATE.output is not None:
        _STATE.output.close()
    _STATE.output = output
    if output is not None:
        _STATE.bridge = _StdlibBridge(level=logging.WARNING)
        root.addHandler(_STATE.bridge)
        root.setLevel(logging.WARNING)


def reopen_log_files() -> None:
    """Reopen the log file by name (on SIGHUP, after logrotate moved it away)."""
    if _STATE.output is not None:
        _STATE.output.reopen()


def shutdown_logging() -> None:
    """Close the log file, detach from stdlib `logging` and restore structlog's defaults."""
    _replace(None)
    structlog.reset_defaults()

"""Reads a script's stdout and stderr pipes on one thread and hands out log entries.

One thread and one `selectors` loop for both pipes keeps the order in which stdout and stderr
lines were written (as far as the pipes tell) and never touches the event loop. Memory stays
flat whatever the script prints: pipes are read 64 KiB at a time, split on `\\n`, and a line
longer than `MAX_ENTRY_BYTES` is cut into several entries (at a UTF-8 character boundary), so
a 200 MB line without a newline costs no more than a short one. Bytes are decoded as UTF-8 with
replacement characters. The pump can be stopped at any time through a wake-up pipe.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import selectors
import threading
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Final

import structlog

MAX_ENTRY_BYTES: Final = 64 * 1024
_READ_BYTES: Final = 64 * 1024
_F_SETPIPE_SZ: Final = 1031  # Linux fcntl; not exported by Python 3.11's fcntl module

_log = structlog.get_logger(__name__)


class Stream(StrEnum):
    """The two outputs of a script; the value is the prefix the real agent logs."""

    STDOUT = "stdout"
    STDERR = "stderr"


class _Splitter:
    """Turns a byte stream into entries: complete lines, and long lines in bounded pieces."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._partial = b""

    def feed(self, data: bytes) -> list[str]:
        pieces = (self._partial + data).split(b"\n")
        self._partial = pieces.pop()
        entries: list[str] = []
        for piece in pieces:
            self._emit(piece, entries, final=True)
        if len(self._partial) >= MAX_ENTRY_BYTES:
            self._partial = self._emit(self._partial, entries, final=False)
        return entries

    def finish(self) -> list[str]:
        entries: list[str] = []
        if self._partial:
            self._emit(self._partial, entries, final=True)
            self._partial = b""
        return entries

    def _emit(self, data: bytes, out: list[str], *, final: bool) -> bytes:
        """Append `data` as entries of at most MAX_ENTRY_BYTES; return the unemitted rest."""
        while len(data) >= MAX_ENTRY_BYTES and (len(data) > MAX_ENTRY_BYTES or not final):
            cut = MAX_ENTRY_BYTES
            # Back up over UTF-8 continuation bytes so a character is not split in two.
            while cut > MAX_ENTRY_BYTES - 3 and cut < len(data) and data[cut] & 0xC0 == 0x80:
                cut -= 1
            out.append(self._prefix + data[:cut].decode("utf-8", "replace"))
            data = data[cut:]
        if final or len(data) >= MAX_ENTRY_BYTES:
            out.append(self._prefix + data.decode("utf-8", "replace"))
            return b""
        return data


class OutputPump:
    """Drains a script's two pipe read ends until both reach end-of-file or `stop()` is called.

    `sink` receives each read's entries (`"[stdout]line"`, no newline) in order; `on_closed` is
    called, on the pump's thread, when a pipe reaches end-of-file (every writer closed it). The
    pump owns the read ends and closes them when it ends; after a stop, a process still writing
    to the pipe gets EPIPE, as it would with the real agent, which closes its pipes too.
    """

    def __init__(
        self,
        stdout_fd: int,
        stderr_fd: int,
        sink: Callable[[Sequence[str]], None],
        on_closed: Callable[[Stream], None],
    ) -> None:
        self._fds = {stdout_fd: Stream.STDOUT, stderr_fd: Stream.STDERR}
        self._sink = sink
        self._on_closed = on_closed
        self._wake_r, self._wake_w = os.pipe()
        self._wake_lock = threading.Lock()
        self._wake_closed = False
        self._thread = threading.Thread(target=self._run, name="hook-output", daemon=True)
        for fd in self._fds:
            # A larger pipe buffer means fewer wake-ups for chatty scripts; best effort.
            with contextlib.suppress(OSError):
                fcntl.fcntl(fd, _F_SETPIPE_SZ, 1024 * 1024)

    def start(self) -> None:
        """Start the pumping thread."""
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to stop reading (idempotent, callable from any thread)."""
        with self._wake_lock:
            if not self._wake_closed:
                with contextlib.suppress(OSError):
                    os.write(self._wake_w, b"x")

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end; True when it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def close(self) -> None:
        """Release the wake-up pipe once the thread has ended (it is kept if it still runs)."""
        if self._thread.is_alive():
            return
        with self._wake_lock:
            if not self._wake_closed:
                self._wake_closed = True
                os.close(self._wake_r)
                os.close(self._wake_w)

    def _run(self) -> None:
        splitters = {fd: _Splitter(f"[{stream}]") for fd, stream in self._fds.items()}
        open_fds = set(self._fds)
        try:
            self._pump(splitters, open_fds)
        except Exception:  # noqa: BLE001 - a thread's last resort, logged
            # A bug here must not pass silently: the script then shows as "failed to close".
            _log.exception("hook output pump failed")
        finally:
            for fd in open_fds:
                os.close(fd)

    def _pump(self, splitters: dict[int, _Splitter], open_fds: set[int]) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._wake_r, selectors.EVENT_READ)
            # stdout first, in `_fds` order, not the set's: when both pipes are already readable
            # (a quick script), epoll reports them in registration order, and a set's order
            # follows the fd numbers (stderr first when stdout's fd is 7 mod 8).
            for fd in self._fds:
                selector.register(fd, selectors.EVENT_READ)
            while open_fds:
                for key, _ in selector.select():
                    fd = int(key.fd)
                    if fd == self._wake_r:
                        return
                    data = os.read(fd, _READ_BYTES)
                    if data:
                        entries = splitters[fd].feed(data)
                    else:
                        entries = splitters[fd].finish()
                        selector.unregister(fd)
                        open_fds.discard(fd)
                        os.close(fd)
                    if entries:
                        self._sink(entries)
                    if not data:
                        self._on_closed(self._fds[fd])

"""The byte ranges of one download and the thread that hashes them in file order.

Parts are written concurrently, each from its start; the hasher reads back (from the page
cache) the run of bytes written contiguously from offset zero, so the SHA-256 of the whole file
is ready when the last byte lands instead of after a second pass over the file.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from typing import Final

#: Bytes per read from the network and per hash update.
CHUNK_SIZE: Final = 1 << 20


@dataclass(slots=True)
class Part:
    """A byte range of the file, `[start, end)`; `end` is None until the size is known."""

    index: int
    start: int
    end: int | None
    done: int = 0
    #: The most bytes this part ever had: progress past it resets the attempt count.
    best: int = 0

    @property
    def position(self) -> int:
        """The file offset of the next byte this part needs."""
        return self.start + self.done

    @property
    def complete(self) -> bool:
        """True when every byte of the part is written."""
        return self.end is not None and self.position >= self.end


class OrderedHasher:
    """Hashes the file in order, in its own thread, as parts are written.

    The hashed prefix is the run of bytes from offset zero that are written: the earliest
    unfinished part's progress bounds it. Writers update `Part.done` under `condition` and
    notify; `reset()` (a restart from zero) makes the thread start over.
    """

    def __init__(self, fd: int, parts: list[Part]) -> None:
        self.fd = fd
        self.parts = parts
        self.condition = threading.Condition()
        self._generation = 0
        self._target: int | None = None
        self._stopped = False
        self._digest: str | None = None
        self._hashed = 0
        self._error: OSError | None = None
        #: Parts before this one are complete (they never become incomplete, except on reset).
        self._index = 0
        self._thread = threading.Thread(target=self._run, name="download-hash", daemon=True)

    def start(self) -> None:
        """Start the hashing thread."""
        self._thread.start()

    def reset(self) -> None:
        """Start over from byte zero (call with `condition` held)."""
        self._generation += 1
        self._index = 0
        self.condition.notify_all()

    def finish(self, size: int) -> str:
        """Wait until `size` bytes are hashed; return the hex digest."""
        with self.condition:
            self._target = size
            self.condition.notify_all()
        self._thread.join()
        if self._error is not None:
            raise self._error
        if self._digest is None or self._hashed != size:
            raise RuntimeError(f"hashed {self._hashed} of {size} bytes")  # a bug, not a user's
        return self._digest

    def stop(self) -> None:
        """Stop the thread without a result (after a failure); idempotent."""
        with self.condition:
            self._stopped = True
            self.condition.notify_all()
        if self._thread.is_alive():
            self._thread.join()

    def _written(self) -> int:
        """Bytes written contiguously from offset zero (call with `condition` held)."""
        while self._index < len(self.parts) - 1 and self.parts[self._index].complete:
            self._index += 1
        return self.parts[self._index].position

    def _run(self) -> None:
        digest = hashlib.sha256()
        hashed = 0
        generation = self._generation
        buffer = bytearray(CHUNK_SIZE)
        view = memoryview(buffer)
        while True:
            with self.condition:
                while True:
                    if self._stopped:
                        return
                    if generation != self._generation:
                        digest, hashed, generation = hashlib.sha256(), 0, self._generation
                    written = self._written()
                    if written > hashed:
                        break
                    if self._target is not None and hashed >= self._target:
                        self._digest, self._hashed = digest.hexdigest(), hashed
                        return
                    self.condition.wait()
            try:
                count = os.preadv(self.fd, [view[: min(CHUNK_SIZE, written - hashed)]], hashed)
            except OSError as exc:
                self._error = exc
                return
            digest.update(view[:count])
            hashed += count

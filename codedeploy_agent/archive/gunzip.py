"""A gzip reader that decompresses in a helper thread, overlapping inflate with file writes.

`tar -xzf` pipes through a gzip child process, so decompression runs on another core while tar
writes files. zlib releases the GIL while inflating, so a thread gives us the same overlap
(about a third of the work for a typical bundle). The reader only moves forward, which is all
tarfile needs; memory stays bounded by a short queue of 1 MiB blocks whatever the ratio.
"""

from __future__ import annotations

import io
import queue
import threading
import zlib
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

_BLOCK: Final = 1024 * 1024
_QUEUE_BLOCKS: Final = 8
#: zlib's "gzip wrapper only" window bits: header, trailer and CRC-32 are checked by zlib.
_GZIP_WBITS: Final = 16 + zlib.MAX_WBITS
_END: Final = b""


class ThreadedGunzip(io.RawIOBase):
    """Forward-only, seekable-forward raw stream of the decompressed bytes of `source`.

    Damaged data raises in the reader at the point where it is reached (zlib.error, EOFError
    for a truncated stream), as gzip.GzipFile would. Close it to stop the helper thread.
    """

    def __init__(self, source: io.BufferedIOBase) -> None:
        super().__init__()
        self._source = source
        self._blocks: queue.Queue[bytes | BaseException] = queue.Queue(_QUEUE_BLOCKS)
        self._stop = threading.Event()
        self._current = memoryview(b"")
        self._pos = 0
        self._done = False
        self._thread = threading.Thread(target=self._inflate, name="gunzip", daemon=True)
        self._thread.start()

    # -- consumer side (the extracting thread) ---------------------------------------------

    def readable(self) -> bool:
        """Always true."""
        return True

    def seekable(self) -> bool:
        """True: forward seeks are served by reading ahead (tarfile seeks only forward)."""
        return True

    def tell(self) -> int:
        """Offset in the decompressed stream."""
        return self._pos

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        """Fill `buffer` from the next decompressed block; 0 at the end of the stream."""
        if not self._current and not self._next_block():
            return 0
        target = memoryview(buffer).cast("B")
        count = min(len(target), len(self._current))
        target[:count] = self._current[:count]
        self._current = self._current[count:]
        self._pos += count
        return count

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move forward to `offset` by skipping data; backward seeks are unsupported."""
        target = offset if whence == io.SEEK_SET else self._pos + offset
        if whence not in (io.SEEK_SET, io.SEEK_CUR) or target < self._pos:
            raise io.UnsupportedOperation("a gzip stream is read forward only")
        while self._pos < target:
            if not self._current and not self._next_block():
                break
            count = min(target - self._pos, len(self._current))
            self._current = self._current[count:]
            self._pos += count
        return self._pos

    def close(self) -> None:
        """Stop the helper thread (it notices within one queue timeout) and close."""
        if not self.closed:
            self._stop.set()
            self._thread.join()
        super().close()

    def _next_block(self) -> bool:
        if self._done:
            return False
        item = self._blocks.get()
        if isinstance(item, BaseException):
            self._done = True
            raise item
        if item is _END:
            self._done = True
            return False
        self._current = memoryview(item)
        return True

    # -- producer side (the helper thread) -------------------------------------------------

    def _inflate(self) -> None:
        try:
            self._produce()
        except (zlib.error, EOFError, OSError) as exc:
            self._put(exc)
        else:
            self._put(_END)

    def _produce(self) -> None:
        inflater = zlib.decompressobj(_GZIP_WBITS)
        pending = b""
        while not self._stop.is_set():
            if not pending:
                pending = self._source.read(_BLOCK)
                if not pending:
                    if not inflater.eof:
                        raise EOFError(
                            "Compressed file ended before the end-of-stream marker was reached"
                        )
                    return
            # max_length bounds each block: a bomb cannot balloon memory between checks.
            block = inflater.decompress(pending, _BLOCK)
            pending = inflater.unconsumed_tail
            if block and not self._put(block):
                return
            if inflater.eof:
                pending = inflater.unused_data
                if pending:
                    if not pending.startswith(b"\x1f\x8b"):
                        return  # trailing padding after the last member: gzip ignores it too
                    inflater = zlib.decompressobj(_GZIP_WBITS)  # concatenated gzip members

    def _put(self, item: bytes | BaseException) -> bool:
        while not self._stop.is_set():
            try:
                self._blocks.put(item, timeout=0.05)
            except queue.Full:
                continue
            return True
        return False

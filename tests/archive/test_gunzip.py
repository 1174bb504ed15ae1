"""The threaded gzip reader: same bytes as gzip, errors where gzip raises, no leaked thread."""

from __future__ import annotations

import gzip
import io
import os
import threading
import zlib

import pytest

from codedeploy_agent.archive.gunzip import ThreadedGunzip


def _reader(data: bytes) -> io.BufferedReader:
    return io.BufferedReader(ThreadedGunzip(io.BufferedReader(io.BytesIO(data))))


def test_same_bytes_as_gzip_including_concatenated_members() -> None:
    """Several gzip members back to back decompress to their concatenation, as `gzip -d` does."""
    first, second = os.urandom(3 * 1024 * 1024), b"second member\n" * 100_000
    with _reader(gzip.compress(first) + gzip.compress(second)) as stream:
        assert stream.read() == first + second


def test_trailing_padding_is_ignored() -> None:
    """Zero padding after the last member (tape-style blocking) ends the stream quietly."""
    with _reader(gzip.compress(b"payload") + bytes(4096)) as stream:
        assert stream.read() == b"payload"


def test_truncated_stream_raises_eof_error() -> None:
    """A stream cut short raises gzip's own EOFError text once the reader gets there."""
    data = gzip.compress(os.urandom(100_000))
    with _reader(data[:-100]) as stream, pytest.raises(EOFError) as caught:
        stream.read()
    assert str(caught.value) == "Compressed file ended before the end-of-stream marker was reached"


def test_damaged_stream_raises_zlib_error() -> None:
    """Corrupted deflate data raises zlib.error (mapped to the tar message by the caller)."""
    data = bytearray(gzip.compress(b"abc" * 100_000))
    data[len(data) // 2 : len(data) // 2 + 32] = bytes(32)
    with _reader(bytes(data)) as stream, pytest.raises(zlib.error):
        stream.read()


def test_forward_seek_skips_and_backward_seek_is_refused() -> None:
    """Seeking forward lands on the right byte; seeking back is unsupported."""
    payload = bytes(range(256)) * 8192
    raw = ThreadedGunzip(io.BufferedReader(io.BytesIO(gzip.compress(payload))))
    try:
        assert raw.seek(1_000_003) == 1_000_003
        buffer = bytearray(4)
        assert raw.readinto(buffer) == 4
        assert bytes(buffer) == payload[1_000_003:1_000_007]
        assert raw.tell() == 1_000_007
        with pytest.raises(io.UnsupportedOperation):
            raw.seek(0)
    finally:
        raw.close()


def test_closing_early_stops_the_helper_thread() -> None:
    """Closing before the end (an extraction that failed) leaves no gunzip thread running."""
    before = {t.ident for t in threading.enumerate() if t.name == "gunzip"}
    stream = _reader(gzip.compress(bytes(64 * 1024 * 1024), compresslevel=1))
    assert stream.read(10) == bytes(10)
    stream.close()
    after = {t.ident for t in threading.enumerate() if t.name == "gunzip"}
    assert after <= before

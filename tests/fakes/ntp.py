"""A fake NTP server on 127.0.0.1 that answers with a chosen clock offset.

Tests use it instead of any real time server (none is reachable here, and tests must never try
public ones):

    with FakeNtpServer(offset_seconds=600.0) as server:
        reading = ntplib.NTPClient().request("127.0.0.1", version=4, port=server.port)
        # reading.offset is 600 s, give or take the loopback round trip

The server clock is the local clock plus `offset_seconds`, read when each request arrives, so a
client measures the offset within a millisecond or so. `offset_seconds`, `stratum` and `leap`
may be changed while the server runs (a clock that gets fixed, a server that loses sync).
Import-only: the pytest fixture that builds servers lives in `tests/clock/conftest.py`.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from types import TracebackType
from typing import Protocol

#: Seconds between the NTP epoch (1900-01-01) and the Unix epoch (1970-01-01).
NTP_UNIX_DELTA = 2_208_988_800

_PACKET = struct.Struct("!B B b b I I 4s Q Q Q Q")
_MODE_CLIENT = 3
_MODE_SERVER = 4


def to_ntp_timestamp(unix_seconds: float) -> int:
    """The 64-bit NTP timestamp (32.32 fixed point since 1900) of a Unix time."""
    return round((unix_seconds + NTP_UNIX_DELTA) * 2**32) & 0xFFFF_FFFF_FFFF_FFFF


class FakeNtpServer:
    """An NTPv4 server on a free UDP port of 127.0.0.1, serving `local clock + offset_seconds`.

    Answers every well-formed client (mode 3) request: the reply echoes the request's transmit
    timestamp as its originate timestamp (as RFC 5905 requires, so clients compute offset and
    delay), with receive and transmit timestamps from the shifted clock. Other packets are
    ignored. Use it as a context manager; `port` is valid once it is entered.
    """

    def __init__(
        self, offset_seconds: float, *, stratum: int = 2, leap: int = 0, answer: bool = True
    ) -> None:
        self.offset_seconds = offset_seconds
        #: 0 is a kiss-o'-death packet, 16 "unsynchronised"; 1-15 are normal servers.
        self.stratum = stratum
        #: 3 is "alarm: clock not synchronised".
        self.leap = leap
        #: False: receive requests but never reply (a server that times out).
        self.answer = answer
        #: How many client requests arrived (answered or not).
        self.requests = 0
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def port(self) -> int:
        """The UDP port the server listens on."""
        if self._sock is None:
            raise RuntimeError("FakeNtpServer is not running; use it as a context manager")
        port: int = self._sock.getsockname()[1]
        return port

    @property
    def address(self) -> str:
        """`127.0.0.1:<port>`, the form the agent's `clock.ntp_servers` setting takes."""
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> FakeNtpServer:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name="fake-ntp", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _serve(self) -> None:
        sock = self._sock
        assert sock is not None
        while not self._stop.is_set():
            # A short select timeout lets __exit__ stop the thread promptly.
            ready, _, _ = select.select([sock], [], [], 0.05)
            if not ready:
                continue
            try:
                data, peer = sock.recvfrom(1024)
            except OSError:
                return
            arrived = time.time() + self.offset_seconds
            reply = self._reply(data, arrived)
            if reply is not None:
                sock.sendto(reply, peer)

    def _reply(self, data: bytes, arrived: float) -> bytes | None:
        if len(data) < _PACKET.size:
            return None
        first, *_rest, client_transmit = _PACKET.unpack_from(data)
        version, mode = (first >> 3) & 0x7, first & 0x7
        if mode != _MODE_CLIENT:
            return None
        self.requests += 1
        if not self.answer:
            return None
        receive = to_ntp_timestamp(arrived)
        transmit = to_ntp_timestamp(time.time() + self.offset_seconds)
        return _PACKET.pack(
            (self.leap << 6) | (version << 3) | _MODE_SERVER,
            self.stratum,
            6,  # poll: 64 s
            -20,  # precision: about a microsecond
            0,  # root delay
            0,  # root dispersion
            b"FAKE",  # reference id
            receive,  # reference timestamp: "last set" just now
            client_transmit,  # originate = the client's transmit timestamp, echoed
            receive,
            transmit,
        )


class NtpServerFactory(Protocol):
    """The type of `tests/clock/conftest.py`'s `ntp_server` fixture: starts a server, stopped
    when the test ends."""

    def __call__(
        self, offset_seconds: float = 0.0, *, stratum: int = 2, leap: int = 0, answer: bool = True
    ) -> FakeNtpServer: ...

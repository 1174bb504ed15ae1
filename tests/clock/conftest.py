"""Fake NTP servers on 127.0.0.1 for the clock tests (never a real time server)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.fakes.ntp import FakeNtpServer, NtpServerFactory


@pytest.fixture
def ntp_server() -> Iterator[NtpServerFactory]:
    """Start `FakeNtpServer(offset_seconds, ...)` servers; all stop when the test ends."""
    started: list[FakeNtpServer] = []

    def start(
        offset_seconds: float = 0.0, *, stratum: int = 2, leap: int = 0, answer: bool = True
    ) -> FakeNtpServer:
        server = FakeNtpServer(offset_seconds, stratum=stratum, leap=leap, answer=answer)
        server.__enter__()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.__exit__(None, None, None)


@pytest.fixture
def closed_udp_port() -> int:
    """A UDP port on 127.0.0.1 that nothing listens on (bound once, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port

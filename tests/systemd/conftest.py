"""Real AF_UNIX datagram sockets standing in for systemd's notify socket."""

from __future__ import annotations

import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.systemd.notify_socket import NotifyReceiver


@pytest.fixture
def path_receiver() -> Iterator[NotifyReceiver]:
    """A notify socket at a filesystem path (short: sun_path holds 108 bytes)."""
    with tempfile.TemporaryDirectory(prefix="sdn-") as folder:
        path = Path(folder) / "notify"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(path))
        with sock:
            yield NotifyReceiver(sock, str(path))


@pytest.fixture
def abstract_receiver() -> Iterator[NotifyReceiver]:
    """A notify socket in the abstract namespace (`@name`), as systemd uses for containers."""
    name = f"codedeploy-agent-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    with sock:
        yield NotifyReceiver(sock, "@" + name)

"""A real AF_UNIX datagram socket standing in for systemd's notify socket."""

from __future__ import annotations

import socket
from dataclasses import dataclass


@dataclass
class NotifyReceiver:
    """A bound datagram socket and the NOTIFY_SOCKET value that reaches it."""

    sock: socket.socket
    notify_socket: str

    def receive(self, timeout: float = 2.0) -> bytes:
        """The next datagram (fails the test if none arrives within `timeout`)."""
        self.sock.settimeout(timeout)
        return self.sock.recv(65536)

    def pending(self) -> list[bytes]:
        """Every datagram already queued, without waiting."""
        self.sock.setblocking(False)
        messages: list[bytes] = []
        while True:
            try:
                messages.append(self.sock.recv(65536))
            except BlockingIOError:
                return messages

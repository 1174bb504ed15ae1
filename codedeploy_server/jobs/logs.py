"""Live script log lines (`{events_root}/{thing}/logs/{deploymentId}`, QoS 0, best effort).

Lines go to the registered listeners as they arrive (`codedeploy logs --follow` through the API
server) and the last `lines_per_stream` of each (thing, deployment) stay in memory, for a
follower that joins late. Only the `max_streams` most recently written streams are kept, so a
server that runs for months does not grow.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Final

import structlog

log = structlog.get_logger("codedeploy_server.jobs")

LogListener = Callable[[str, str, list[str]], None]

DEFAULT_LINES: Final = 200
DEFAULT_STREAMS: Final = 2000


class LogLines:
    """Recent lines per (thing, deployment id), and the listeners of new ones."""

    def __init__(
        self, *, lines_per_stream: int = DEFAULT_LINES, max_streams: int = DEFAULT_STREAMS
    ) -> None:
        self._lines_per_stream = lines_per_stream
        self._max_streams = max_streams
        self._streams: OrderedDict[tuple[str, str], deque[str]] = OrderedDict()
        self._listeners: list[LogListener] = []

    def add_listener(self, listener: LogListener) -> None:
        """Call `listener(thing, deployment_id, lines)` for every message from now on."""
        self._listeners.append(listener)

    def remove_listener(self, listener: LogListener) -> None:
        """Stop calling `listener` (no error when it was not registered)."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def received(self, thing: str, deployment_id: str, payload: bytes) -> None:
        """Keep the lines of one message and hand them to the listeners."""
        lines = payload.decode("utf-8", errors="replace").splitlines()
        if not lines:
            return
        key = (thing, deployment_id)
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = deque(maxlen=self._lines_per_stream)
            while len(self._streams) > self._max_streams:
                self._streams.popitem(last=False)
        else:
            self._streams.move_to_end(key)
        stream.extend(lines)
        for listener in list(self._listeners):
            try:
                listener(thing, deployment_id, lines)
            except Exception:
                log.exception("log line listener failed", thing=thing, deployment_id=deployment_id)

    def recent(self, thing: str, deployment_id: str) -> list[str]:
        """The last lines received for (thing, deployment), oldest first."""
        return list(self._streams.get((thing, deployment_id), ()))

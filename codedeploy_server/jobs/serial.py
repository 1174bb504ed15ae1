"""Per-key ordering for the Jobs service: work queues and locks keyed by thing name.

A thing's requests must be handled in arrival order and its changes reported in commit order,
while different things proceed concurrently; both helpers keep memory only for keys in use.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import structlog

log = structlog.get_logger("codedeploy_server.jobs")

Work = Callable[[], Coroutine[Any, Any, None]]


class SerialQueues:
    """Work items per key, run one at a time in order; different keys run concurrently."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._queues: dict[str, deque[Work]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def put(self, key: str, work: Work) -> None:
        """Run `work()` after the work already queued for `key` (errors are logged)."""
        self._queues.setdefault(key, deque()).append(work)
        if key not in self._tasks:
            self._tasks[key] = asyncio.create_task(self._drain(key), name=f"{self._name}-{key}")

    async def _drain(self, key: str) -> None:
        queue = self._queues[key]
        try:
            while queue:
                work = queue.popleft()
                try:
                    await work()
                except Exception:
                    log.exception("jobs service work failed", queue=self._name, thing=key)
        finally:
            del self._tasks[key]
            if not queue:
                del self._queues[key]

    async def join(self, timeout: float) -> None:  # noqa: ASYNC109
        """Wait for queued work, then cancel what is left after `timeout` seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self._tasks:
                    await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._queues.clear()


class KeyedLocks:
    """One asyncio lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Hold the lock of `key` (FIFO among waiters)."""
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = (asyncio.Lock(), [0])
        lock, users = entry
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._locks[key]

"""Helpers for the transport tests: a recording handler, a running session, a peer client."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt

from codedeploy_agent.config import MqttSettings
from codedeploy_agent.transport import Backoff, Message, MqttSession


class Inbox:
    """A message handler that records what it receives, for `await inbox.next()`."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._queue: asyncio.Queue[Message] = asyncio.Queue()

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)
        self._queue.put_nowait(message)

    async def next(self, within: float = 3.0) -> Message:
        """The next message not yet taken; fails the test after `within` seconds."""
        async with asyncio.timeout(within):
            return await self._queue.get()

    async def take(self, count: int, within: float = 3.0) -> list[Message]:
        """The next `count` messages, each within `within` seconds."""
        return [await self.next(within) for _ in range(count)]

    async def assert_quiet(self, seconds: float) -> None:
        """Wait `seconds` and check that nothing more arrived."""
        await asyncio.sleep(seconds)
        assert self._queue.empty(), f"unexpected messages: {self.messages}"


def fast_backoff(*, base: float = 0.05, cap: float = 0.2) -> Backoff:
    """Short waits between reconnections, so tests see a reconnection within ~0.2 s."""
    return Backoff(base=base, cap=cap, rng=random.Random(7))  # noqa: S311 - jitter


def settings(endpoint: str, **options: Any) -> MqttSettings:
    """MqttSettings for a test broker."""
    return MqttSettings(endpoint=endpoint, **options)


@contextlib.asynccontextmanager
async def running(
    session: MqttSession,
    handler: Callable[[Message], Any],
    *,
    connected: bool = True,
    within: float = 5.0,
) -> AsyncIterator[asyncio.Task[None]]:
    """Run `session.run(handler)` in a task (connected, unless told not to wait); cancel it at the end."""
    task = asyncio.create_task(session.run(handler))
    try:
        if connected and not await session.wait_connected(within):
            if task.done():
                task.result()  # the reason it stopped
            raise AssertionError(f"not connected within {within} s: {session.last_error}")
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def eventually(predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Wait until `predicate()` holds; fail the test after `within` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@dataclass
class Peer:
    """Another MQTT client (the control plane's side): publishes and records what it receives."""

    client: aiomqtt.Client
    inbox: Inbox

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish at QoS 1 and wait for the broker's PUBACK."""
        await self.client.publish(topic, payload, qos=1, retain=retain)


@contextlib.asynccontextmanager
async def peer(
    port: int, topics: tuple[str, ...] = (), *, username: str | None = "control-plane"
) -> AsyncIterator[Peer]:
    """A plain MQTT 3.1.1 client on 127.0.0.1:`port` subscribed (QoS 1) to `topics`."""
    inbox = Inbox()
    async with aiomqtt.Client(
        "127.0.0.1", port, username=username, protocol=aiomqtt.ProtocolVersion.V311
    ) as client:
        for topic in topics:
            await client.subscribe(topic, qos=1)

        async def pump() -> None:
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                await inbox(Message(message.topic.value, message.payload, bool(message.retain)))

        reader = asyncio.create_task(pump())
        try:
            yield Peer(client, inbox)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await reader

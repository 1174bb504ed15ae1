"""The last will: published by the broker when the agent dies, not when it stops cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from codedeploy_agent.transport import Message, MqttSession, Will
from tests.fakes.brokers import MosquittoBroker
from tests.transport.helpers import Inbox, peer, running, settings
from tests.transport.will_agent import TOPIC

pytestmark = [pytest.mark.broker, pytest.mark.asyncio, pytest.mark.timeout(30)]

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_will_is_published_when_the_agent_is_killed(
    mosquitto: MosquittoBroker, protocol: str
) -> None:
    """SIGKILL of the agent process makes the broker publish the retained will."""
    agent = await asyncio.create_subprocess_exec(
        sys.executable,
        str(REPO / "tests/transport/will_agent.py"),
        mosquitto.endpoint,
        protocol,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert agent.stdout is not None
        async with asyncio.timeout(10):
            # Its log lines come first (structlog's default output is stdout).
            while (line := await agent.stdout.readline()) != b"online\n":
                assert line, "the agent exited before it was online"
        async with peer(mosquitto.port, (TOPIC,)) as watcher:
            assert await watcher.inbox.next() == Message(TOPIC, b"online", retain=True)
            agent.send_signal(signal.SIGKILL)
            # Live delivery to an existing subscriber carries no retain flag.
            assert await watcher.inbox.next() == Message(TOPIC, b"offline-by-will")
    finally:
        if agent.returncode is None:
            agent.kill()
        await agent.wait()
    async with peer(mosquitto.port, (TOPIC,)) as late_watcher:
        assert await late_watcher.inbox.next() == Message(TOPIC, b"offline-by-will", retain=True)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_clean_stop_publishes_no_will(mosquitto: MosquittoBroker, protocol: str) -> None:
    """Stopping cleanly: the daemon's own `offline` is the last word, the will never comes."""
    session = MqttSession(
        settings(mosquitto.endpoint, protocol=protocol),
        client_id="thing-1",
        subscriptions=[],
        will=Will(TOPIC, b"offline-by-will"),
    )
    async with peer(mosquitto.port, (TOPIC,)) as watcher:
        async with running(session, Inbox()):
            await session.publish(TOPIC, b"online", retain=True)
            assert await watcher.inbox.next() == Message(TOPIC, b"online")
            await session.publish(TOPIC, b"offline", retain=True)
        assert not session.connected
        assert await watcher.inbox.next() == Message(TOPIC, b"offline")
        await watcher.inbox.assert_quiet(0.5)
    async with peer(mosquitto.port, (TOPIC,)) as late_watcher:
        assert await late_watcher.inbox.next() == Message(TOPIC, b"offline", retain=True)

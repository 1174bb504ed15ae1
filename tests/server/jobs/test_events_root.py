"""The server side of the events root (topics.py, "Topics under AWS IoT Core"): with
`topic_root: $aws/things` the Jobs service answers requests on the reserved topics and reads
presence and live logs under the events root; the pickup-deadline message names that topic."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import aiomqtt
import msgspec
import pytest

from codedeploy_agent.protocol.topics import JobsTopics
from codedeploy_server.jobs import JobsService
from codedeploy_server.mqtt import ServerMqtt
from codedeploy_server.rollout.deadlines import offline_message
from codedeploy_server.store import Store
from tests.fakes.brokers import MosquittoBroker

THING = "host-1"
AWS_ROOT = "$aws/things"
ONLINE = (
    b'{"state":"online","agentVersion":"0.1.0","hostname":"h","startedAt":"2026-01-01T00:00:00Z"}'
)


@contextlib.asynccontextmanager
async def jobs_service(
    store: Store, port: int, events_root: str | None
) -> AsyncIterator[JobsService]:
    """A started JobsService on `$aws/things` (stopped on exit)."""
    mqtt = ServerMqtt(
        endpoint=f"mqtt://127.0.0.1:{port}",
        client_id=f"server-{uuid.uuid4().hex[:8]}",
        protocol=5,
    )
    service = JobsService(store, mqtt, topic_root=AWS_ROOT, events_root=events_root)
    await service.start()
    try:
        assert await mqtt.wait_connected(10), mqtt.last_error
        yield service
    finally:
        await service.stop()


async def eventually(
    check: Callable[[], Awaitable[bool]],
    timeout: float = 10.0,  # noqa: ASYNC109
) -> None:
    """Poll the async predicate `check` until it is true."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("events_root", "expected"), [(None, "codedeploy/things"), ("fleet/events", "fleet/events")]
)
async def test_service_on_the_aws_root_reads_presence_and_logs_under_the_events_root(
    store: Store, mosquitto: MosquittoBroker, events_root: str | None, expected: str
) -> None:
    """Presence and log lines published under the events root reach the service, and a
    start-next on `$aws/things/<thing>/jobs/` is answered there."""
    topics = JobsTopics(AWS_ROOT, THING, events_root=events_root)
    assert topics.presence == f"{expected}/{THING}/presence"
    async with (
        jobs_service(store, mosquitto.port, events_root) as service,
        aiomqtt.Client(
            "127.0.0.1", mosquitto.port, identifier=THING, protocol=aiomqtt.ProtocolVersion.V5
        ) as client,
    ):
        assert service.events_root == expected
        await client.subscribe([(f, 1) for f in topics.agent_filters])
        await client.publish(topics.presence, ONLINE, qos=1, retain=True)
        await client.publish(topics.logs("d-1"), b"[stdout]hello", qos=1)
        await client.publish(topics.start_next, b'{"clientToken":"s1"}', qos=1)
        async with asyncio.timeout(10):
            message = await anext(aiter(client.messages))
        assert message.topic.value == f"{AWS_ROOT}/{THING}/jobs/start-next/accepted"
        assert isinstance(message.payload, bytes)
        assert msgspec.json.decode(message.payload)["clientToken"] == "s1"

        async def seen() -> bool:
            info = await service.presence(THING)
            return info is not None and service.recent_log_lines(THING, "d-1") == ["[stdout]hello"]

        await eventually(seen)
        info = await service.presence(THING)
        assert info is not None
        assert (info.online, info.presence.hostname) == (True, "h")


@pytest.mark.parametrize(
    ("topic_root", "events_root", "topic"),
    [
        ("codedeploy/things", None, "codedeploy/things/host-3/presence"),
        (AWS_ROOT, None, "codedeploy/things/host-3/presence"),
        (AWS_ROOT, "fleet/events", "fleet/events/host-3/presence"),
    ],
)
def test_offline_message_names_the_presence_topic_under_the_events_root(
    topic_root: str, events_root: str | None, topic: str
) -> None:
    """An agent never seen is reported with the topic its presence would be on."""
    message = offline_message(
        "host-3", None, deadline_seconds=300, topic_root=topic_root, events_root=events_root
    )
    assert message.startswith(
        "The agent on host-3 did not start the deployment within 300 seconds and has never "
        f"reported its presence (no message on {topic}): it is not installed, not running, or "
        "cannot reach the broker."
    )

"""The Jobs service on a private Mosquitto and a store (SQLite and PostgreSQL), a bare MQTT client
playing the agent, and the real agent process."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Literal

import aiomqtt
import msgspec
import pytest
import pytest_asyncio
from blockbuster import blockbuster_ctx

from codedeploy_agent.protocol.messages import JobStatus
from codedeploy_agent.protocol.topics import JobsTopics
from codedeploy_server.jobs import ExecutionChange, JobsService
from codedeploy_server.mqtt import ServerMqtt
from codedeploy_server.store import Store
from tests.fakes.broker_fixtures import mosquitto, mosquitto_factory  # noqa: F401 - fixtures
from tests.fakes.brokers import MosquittoBroker

THING = "host-1"
TOPIC_ROOT = "codedeploy/things"
DOC_1 = {"DeploymentId": "d-1", "n": 1}
DOC_2 = {"DeploymentId": "d-2", "n": 2}


@pytest.fixture(autouse=True)
def no_blocking_calls_on_the_loop() -> Iterator[None]:
    """Fail any test in which the Jobs service, its MQTT session or the embedded broker's
    manager blocks the event loop (the store is another module's: its close() joins a thread)."""
    with blockbuster_ctx(
        ["codedeploy_server.jobs", "codedeploy_server.mqtt", "codedeploy_server.broker"]
    ) as buster:
        # Rendering a logged traceback reads the source files: the logger's business.
        for function in buster.functions.values():
            function.can_block_in("rich/traceback.py", {"_render_stack"})
            function.can_block_in("linecache.py", {"checkcache", "updatecache"})
        yield


class Recorder:
    """A listener that keeps every ExecutionChange, in order."""

    def __init__(self) -> None:
        self.changes: list[ExecutionChange] = []
        self._changed = asyncio.Event()

    async def __call__(self, change: ExecutionChange) -> None:
        self.changes.append(change)
        self._changed.set()

    def of(self, job_id: str) -> list[ExecutionChange]:
        """The changes of one job, in order."""
        return [c for c in self.changes if c.job_id == job_id]

    async def wait_for(
        self,
        job_id: str,
        status: JobStatus,
        timeout: float = 30.0,  # noqa: ASYNC109
    ) -> ExecutionChange:
        """The first change of `job_id` to `status` (waits for it)."""
        async with asyncio.timeout(timeout):
            while True:
                for change in self.of(job_id):
                    if change.status is status:
                        return change
                self._changed.clear()
                await self._changed.wait()


ServiceFactory = Callable[..., Awaitable[JobsService]]


@pytest_asyncio.fixture
async def service_factory(
    store: Store,
    mosquitto: MosquittoBroker,  # noqa: F811 - the fixture imported above
) -> AsyncIterator[ServiceFactory]:
    """Start JobsServices on the test's store and Mosquitto (stopped when the test ends)."""
    started: list[JobsService] = []

    async def start(
        *,
        target: Store | None = None,
        port: int | None = None,
        client_id: str | None = None,
        protocol: Literal[5, "3.1.1"] = 5,
        **options: Any,
    ) -> JobsService:
        mqtt = ServerMqtt(
            endpoint=f"mqtt://127.0.0.1:{port or mosquitto.port}",
            client_id=client_id or f"server-{uuid.uuid4().hex[:8]}",
            protocol=protocol,
            shared_group=options.pop("shared_group", None),
            username=options.pop("username", None),
            password=options.pop("password", None),
        )
        service = JobsService(target or store, mqtt, topic_root=TOPIC_ROOT, **options)
        await service.start()
        started.append(service)
        assert await mqtt.wait_connected(10), mqtt.last_error
        return service

    yield start
    for service in reversed(started):
        await service.stop()


@pytest_asyncio.fixture
async def service(service_factory: ServiceFactory) -> JobsService:
    """The service with 1 job minute = 0.2 s."""
    return await service_factory(time_scale=0.2)


class BareAgent:
    """A plain MQTT client subscribed to one thing's agent topics, recording what it receives."""

    def __init__(self, client: aiomqtt.Client, thing: str) -> None:
        self.client = client
        self.topics = JobsTopics(TOPIC_ROOT, thing)
        self.received: list[tuple[str, Any]] = []
        self._changed = asyncio.Event()

    async def read(self) -> None:
        async for message in self.client.messages:
            assert isinstance(message.payload, bytes)
            self.received.append((message.topic.value, msgspec.json.decode(message.payload)))
            self._changed.set()

    async def send(self, topic: str, payload: dict[str, Any] | bytes) -> None:
        data = payload if isinstance(payload, bytes) else msgspec.json.encode(payload)
        await self.client.publish(topic, data, qos=1)

    def on(self, topic: str) -> list[Any]:
        """Payloads received on `topic`, in order."""
        return [payload for t, payload in self.received if t == topic]

    async def wait(self, topic: str, count: int = 1, timeout: float = 5.0) -> Any:  # noqa: ASYNC109
        """The `count`-th payload received on `topic`."""
        async with asyncio.timeout(timeout):
            while len(self.on(topic)) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.on(topic)[count - 1]

    async def call(self, topic: str, payload: dict[str, Any] | bytes, reply: str) -> Any:
        """Publish a request and return the next payload on `reply`."""
        count = len(self.on(reply)) + 1
        await self.send(topic, payload)
        return await self.wait(reply, count)

    async def start_next(self, request_id: str = "s1", **fields: Any) -> Any:
        return await self.call(
            self.topics.start_next,
            {"clientToken": request_id, **fields},
            self.topics.start_next_accepted,
        )

    async def update(
        self, job_id: str, reply: Literal["accepted", "rejected"], **fields: Any
    ) -> Any:
        topic = self.topics.update(job_id)
        return await self.call(topic, fields, f"{topic}/{reply}")

    async def get(self, job_id: str, reply: Literal["accepted", "rejected"], **fields: Any) -> Any:
        return await self.call(
            self.topics.get(job_id), fields, f"{self.topics.get(job_id)}/{reply}"
        )


@contextlib.asynccontextmanager
async def open_agent(port: int, thing: str = THING) -> AsyncIterator[BareAgent]:
    """A bare agent client on the broker at `port` (MQTT 5)."""
    async with aiomqtt.Client(
        "127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5, identifier=f"agent-{thing}"
    ) as client:
        agent = BareAgent(client, thing)
        extra = (agent.topics.get_pending_accepted, agent.topics.get_pending_rejected)
        await client.subscribe([(f, 1) for f in (*agent.topics.agent_filters, *extra)])
        reader = asyncio.create_task(agent.read())
        try:
            yield agent
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await reader


@pytest_asyncio.fixture
async def agent(mosquitto: MosquittoBroker) -> AsyncIterator[BareAgent]:  # noqa: F811
    """A plain client playing the agent of `host-1`."""
    async with open_agent(mosquitto.port) as started:
        yield started


def without_timestamp(payload: dict[str, Any]) -> dict[str, Any]:
    """`payload` minus its `timestamp`, after checking it is the current epoch second."""
    stamp = payload["timestamp"]
    assert isinstance(stamp, int)
    assert abs(stamp - time.time()) < 5
    return {k: v for k, v in payload.items() if k != "timestamp"}


def times_set(execution: dict[str, Any], *keys: str) -> dict[str, Any]:
    """`execution` with the given epoch-second fields checked and replaced by "set"."""
    result = dict(execution)
    for key in keys:
        assert abs(result[key] - time.time()) < 5
        result[key] = "set"
    return result


async def wait_until(
    predicate: Callable[[], Awaitable[bool]],
    timeout: float = 10.0,  # noqa: ASYNC109
) -> None:
    """Poll an async predicate every 20 ms until it is true (store reads have no event)."""
    async with asyncio.timeout(timeout):
        while not await predicate():  # noqa: ASYNC110 - polling the store is the point
            await asyncio.sleep(0.02)


async def poll(predicate: Callable[[], bool], timeout: float = 60.0) -> None:  # noqa: ASYNC109
    """Check a condition on files or processes every 50 ms until it is true."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - files and processes have no event to await
            await asyncio.sleep(0.05)


async def status_of(service: JobsService, thing: str, job_id: str) -> JobStatus | None:
    """The stored status of the latest execution of `job_id` on `thing`."""
    execution = await service.execution(thing, job_id)
    return None if execution is None else execution.status


@pytest.fixture
def recorder() -> Recorder:
    """A listener to register on the service."""
    return Recorder()

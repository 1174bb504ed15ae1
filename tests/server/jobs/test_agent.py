"""The real `codedeploy-agent run` process driven by the Jobs service (both store backends), on
Mosquitto and on the embedded broker; two servers sharing one PostgreSQL database."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import msgspec
import psutil
import pytest

from codedeploy_agent.protocol.messages import JobStatus, PresenceState, restore_newlines
from codedeploy_server.broker import EmbeddedBroker, load_users
from codedeploy_server.jobs import ExecutionChange, JobsService
from codedeploy_server.mqtt import ServerMqtt
from codedeploy_server.store import Store, open_store
from tests.daemon.conftest import KEY_ID, Agent
from tests.fakes.brokers import MosquittoBroker
from tests.fakes.bundles import make_keys, signed_job_document, write_bundle
from tests.server.jobs.conftest import (
    THING,
    TOPIC_ROOT,
    Recorder,
    ServiceFactory,
    poll,
    wait_until,
)

pytestmark = [pytest.mark.broker, pytest.mark.asyncio, pytest.mark.timeout(90)]

IN_PLACE = [
    "ApplicationStop",
    "DownloadBundle",
    "BeforeInstall",
    "Install",
    "AfterInstall",
    "ApplicationStart",
    "ValidateService",
]


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    """The server's signing key pair; the agent trusts the public half."""
    return make_keys(tmp_path / "agent" / "keys")


@pytest.fixture
def real_agent(
    tmp_path: Path, mosquitto: MosquittoBroker, keys: tuple[Path, Path]
) -> Iterator[Agent]:
    """A real agent configured for the test's Mosquitto (not started); its output after."""
    del keys
    agent = Agent(tmp_path / "agent", mosquitto.endpoint)
    yield agent
    agent.stop()
    print("---- agent output ----\n" + agent.output())


def document(keys: tuple[Path, Path], bundle: Path, deployment_id: str) -> dict[str, Any]:
    """A signed job document for a directory bundle."""
    return signed_job_document(
        keys[0],
        KEY_ID,
        deployment_id=deployment_id,
        group_id="dg-web",
        location=bundle,
        bundle_type="directory",
    )


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def events(changes: list[ExecutionChange]) -> list[tuple[str, str]]:
    """(lifecycleEvent, eventStatus) of every IN_PROGRESS change that reports an event's end.

    An update that only extends the step timer keeps the previous details: skipped here.
    """
    reported: list[tuple[str, str]] = []
    previous: dict[str, str] | None = None
    for change in changes:
        details = change.status_details
        if change.status is JobStatus.IN_PROGRESS and "endTime" in details and details != previous:
            reported.append((details["lifecycleEvent"], details["eventStatus"]))
        previous = details
    return reported


async def test_a_job_succeeds_with_every_lifecycle_event_reported_in_order(
    service_factory: ServiceFactory,
    recorder: Recorder,
    real_agent: Agent,
    keys: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    """A queued job runs every in-place event; the listener gets start-next, each event's
    outcome in order, then SUCCEEDED, with versions increasing by one; presence is online and
    the live log lines arrive."""
    service = await service_factory()
    service.add_listener(recorder)
    bundle = write_bundle(
        tmp_path / "bundle", {"BeforeInstall": "echo before", "ApplicationStart": "echo started"}
    )
    job = "d-SUCCESS01"
    await service.queue_job("host-1", job, document(keys, bundle, job))
    started = time.perf_counter()
    real_agent.start()
    await recorder.wait_for(job, JobStatus.SUCCEEDED, timeout=60)
    print(f"agent start -> SUCCEEDED: {(time.perf_counter() - started) * 1000:.0f} ms")

    changes = recorder.of(job)
    assert events(changes) == [
        ("ApplicationStop", "Succeeded"),
        ("DownloadBundle", "Succeeded"),
        ("BeforeInstall", "Succeeded"),
        ("Install", "Succeeded"),
        ("AfterInstall", "Succeeded"),
        ("ApplicationStart", "Succeeded"),
        ("ValidateService", "Succeeded"),
    ]
    assert (changes[0].status, changes[0].version_number) == (JobStatus.IN_PROGRESS, 2)
    assert changes[-1].status is JobStatus.SUCCEEDED
    assert [c.version_number for c in changes] == list(range(2, 2 + len(changes)))
    assert all(c.by_agent for c in changes)
    execution = await service.execution("host-1", job)
    assert execution is not None
    assert execution.status is JobStatus.SUCCEEDED
    presence = await service.presence("host-1")
    assert presence is not None
    assert presence.online
    assert presence.presence.state is PresenceState.ONLINE
    await poll(
        lambda: any("[stdout]started" in line for line in service.recent_log_lines(THING, job)),
        timeout=10,
    )
    await service.mqtt.flush(5)  # the agent gets its last reply before it is stopped


async def test_a_failing_hook_fails_the_job_with_its_diagnostics(
    service_factory: ServiceFactory,
    recorder: Recorder,
    real_agent: Agent,
    keys: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    """A hook exiting 7 ends the job FAILED with ScriptFailed, the script and its output."""
    service = await service_factory()
    service.add_listener(recorder)
    bundle = write_bundle(tmp_path / "bundle", {"AfterInstall": "echo line one\nexit 7"})
    job = "d-FAILED001"
    await service.queue_job(THING, job, document(keys, bundle, job))
    real_agent.start()
    failed = await recorder.wait_for(job, JobStatus.FAILED, timeout=60)
    details = failed.status_details
    assert (details["lifecycleEvent"], details["errorCode"], details["scriptName"]) == (
        "AfterInstall",
        "ScriptFailed",
        "scripts/AfterInstall.sh",
    )
    assert details["message"] == (
        "Script at specified location: scripts/AfterInstall.sh failed with exit code 7"
    )
    assert "[stdout]line one" in restore_newlines(details["logTail"])
    assert [e for e, _ in events(recorder.of(job))] == IN_PLACE[:4]
    await service.mqtt.flush(5)


async def test_cancel_mid_hook_kills_it_and_the_next_job_runs(
    service_factory: ServiceFactory,
    recorder: Recorder,
    real_agent: Agent,
    keys: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    """cancel_job while a hook runs: the agent kills the hook's process tree, reports nothing
    more for that job, and runs the next one."""
    service = await service_factory()
    service.add_listener(recorder)
    pid_file = tmp_path / "hook.pid"
    slow = write_bundle(
        tmp_path / "slow",
        {"ApplicationStart": f"echo $$ > {pid_file}\nsleep 300 &\necho $! >> {pid_file}\nwait"},
    )
    quick = write_bundle(tmp_path / "quick", {"ApplicationStart": "true"})
    await service.queue_job(THING, "d-CANCEL001", document(keys, slow, "d-CANCEL001"))
    await service.queue_job(THING, "d-NEXT00001", document(keys, quick, "d-NEXT00001"))
    real_agent.start()
    await poll(lambda: pid_file.exists() and len(pid_file.read_text().split()) == 2)
    pids = [int(p) for p in pid_file.read_text().split()]
    assert all(psutil.pid_exists(p) for p in pids)

    assert await service.cancel_job(THING, "d-CANCEL001")
    await recorder.wait_for("d-NEXT00001", JobStatus.SUCCEEDED, timeout=60)

    assert all(_gone(pid) for pid in pids)
    cancel_changes = recorder.of("d-CANCEL001")
    assert cancel_changes[-1].status is JobStatus.CANCELED
    assert not cancel_changes[-1].by_agent
    execution = await service.execution(THING, "d-CANCEL001")
    assert execution is not None
    assert execution.status is JobStatus.CANCELED
    await service.mqtt.flush(5)


async def test_a_step_timeout_times_the_job_out_and_the_agent_stops_the_hook(
    service_factory: ServiceFactory,
    recorder: Recorder,
    real_agent: Agent,
    keys: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    """With 1 job minute = 1 s, a hook outlasting the step timer the agent asked for
    (ceil(60 s / 60) + 1 = 2 minutes) makes the execution TIMED_OUT; the agent kills the hook."""
    service = await service_factory(time_scale=1.0)
    service.add_listener(recorder)
    pid_file = tmp_path / "hook.pid"
    bundle = write_bundle(
        tmp_path / "bundle", {"BeforeInstall": f"echo $$ > {pid_file}\nsleep 300"}
    )
    job = "d-TIMEOUT01"
    await service.queue_job(THING, job, document(keys, bundle, job), step_timeout_minutes=30)
    real_agent.start()
    await poll(lambda: pid_file.exists() and pid_file.read_text().strip() != "")
    hook_started = time.perf_counter()
    pid = int(pid_file.read_text())

    timed_out = await recorder.wait_for(job, JobStatus.TIMED_OUT, timeout=10)
    elapsed = time.perf_counter() - hook_started
    print(f"hook start -> TIMED_OUT: {elapsed * 1000:.0f} ms")
    assert not timed_out.by_agent
    assert 1.0 < elapsed < 4.0
    await poll(lambda: _gone(pid), timeout=15)
    assert recorder.of(job)[-1] == timed_out


@pytest.mark.slow
async def test_a_server_restart_mid_job_lets_the_job_complete(
    database: str,
    service_factory: ServiceFactory,
    real_agent: Agent,
    keys: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    """The Jobs service and its store stop while a hook runs and open again: the agent's
    updates sent meanwhile are applied once each and the job completes."""
    store = await open_store(database)
    first_changes, second_changes = Recorder(), Recorder()
    try:
        first = await service_factory(target=store, client_id="server-restart")
        first.add_listener(first_changes)
        started = tmp_path / "started"
        bundle = write_bundle(
            tmp_path / "bundle",
            {"AfterInstall": f"touch {started}; sleep 2", "ValidateService": "true"},
        )
        job = "d-RESTART01"
        await first.queue_job(THING, job, document(keys, bundle, job))
        real_agent.start()
        await poll(started.exists)
        await first.stop()
        await store.close()
        await asyncio.sleep(3)  # the hook ends and the agent reports while no server runs

        store = await open_store(database)
        restarted = time.perf_counter()
        second = await service_factory(target=store, client_id="server-restart")
        second.add_listener(second_changes)
        await second_changes.wait_for(job, JobStatus.SUCCEEDED, timeout=60)
        print(f"server back -> SUCCEEDED: {(time.perf_counter() - restarted) * 1000:.0f} ms")
        changes = first_changes.of(job) + second_changes.of(job)
        assert [e for e, _ in events(changes)] == IN_PLACE
        assert [c.version_number for c in changes] == list(range(2, 2 + len(changes)))
        await second.mqtt.flush(5)
        real_agent.stop()
        await second.stop()
    finally:
        await store.close()


async def test_the_embedded_broker_carries_a_job_over_mqtt_3_1_1(
    store: Store, recorder: Recorder, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """With the embedded broker (amqtt, MQTT 3.1.1, users with generated passwords) the service
    and a real agent logged in as `agent` run a job to SUCCEEDED."""
    users = await asyncio.to_thread(
        load_users, tmp_path / "server" / "mqtt-users.json", ["codedeploy-server", "agent"]
    )
    password_file = tmp_path / "agent-mqtt-password"
    password_file.write_text(users["agent"] + "\n")
    async with EmbeddedBroker(users=users, port=0, log_file=tmp_path / "amqtt.log") as broker:
        mqtt = ServerMqtt(
            endpoint=broker.endpoint,
            client_id="codedeploy-server",
            protocol="3.1.1",
            username="codedeploy-server",
            password=users["codedeploy-server"],
        )
        service = JobsService(store, mqtt, topic_root=TOPIC_ROOT)
        service.add_listener(recorder)
        await service.start()
        agent = Agent(tmp_path / "agent", broker.endpoint, protocol="3.1.1")
        agent.extra["mqtt"] = {"username": "agent", "password_file": str(password_file)}
        try:
            assert await mqtt.wait_connected(10)
            bundle = write_bundle(tmp_path / "bundle", {"ApplicationStart": "echo hi"})
            job = "d-EMBEDDED1"
            await service.queue_job(THING, job, document(keys, bundle, job))
            started = time.perf_counter()
            agent.start()
            await recorder.wait_for(job, JobStatus.SUCCEEDED, timeout=60)
            print(
                f"embedded broker, agent start -> SUCCEEDED: {(time.perf_counter() - started) * 1000:.0f} ms"
            )
            assert [e for e, _ in events(recorder.of(job))] == IN_PLACE
            await wait_until(lambda: _online(service), timeout=10)
            await mqtt.flush(5)
        finally:
            agent.stop()
            await service.stop()
            print("---- agent output ----\n" + agent.output())


async def _online(service: JobsService) -> bool:
    presence = await service.presence(THING)
    return presence is not None and presence.online


@contextlib.asynccontextmanager
async def watch_jobs_topics(port: int) -> AsyncIterator[list[tuple[str, Any]]]:
    """Every message on `codedeploy/things/+/jobs/#` while the block runs."""
    seen: list[tuple[str, Any]] = []
    async with aiomqtt.Client("127.0.0.1", port, identifier="observer") as client:
        await client.subscribe(f"{TOPIC_ROOT}/+/jobs/#", qos=1)

        async def read() -> None:
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                seen.append((message.topic.value, msgspec.json.decode(message.payload)))

        reader = asyncio.create_task(read())
        try:
            yield seen
        finally:
            await asyncio.sleep(0.3)  # the last replies
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def test_two_servers_share_one_database_and_answer_each_request_once(
    postgres_url: str,
    mosquitto: MosquittoBroker,
    recorder: Recorder,
    keys: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    """Two Jobs services on one PostgreSQL database and one Mosquitto with shared subscriptions:
    every agent request gets exactly one reply, both servers serve some, and the job completes."""
    stores = [await open_store(postgres_url), await open_store(postgres_url)]
    services = [
        JobsService(
            stores[n],
            ServerMqtt(
                endpoint=mosquitto.endpoint,
                client_id=f"server-{n}",
                protocol=5,
                shared_group="codedeploy-server",
            ),
            topic_root=TOPIC_ROOT,
        )
        for n in (0, 1)
    ]
    agent = Agent(tmp_path / "agent", mosquitto.endpoint)
    for service in services:
        service.add_listener(recorder)
        await service.start()
    try:
        for service in services:
            assert await service.mqtt.wait_connected(10)
        bundle = write_bundle(
            tmp_path / "bundle", {"BeforeInstall": "echo a", "ApplicationStart": "echo b"}
        )
        job = "d-SHARED001"
        async with watch_jobs_topics(mosquitto.port) as seen:
            await services[1].queue_job(THING, job, document(keys, bundle, job))
            started = time.perf_counter()
            agent.start()
            await recorder.wait_for(job, JobStatus.SUCCEEDED, timeout=60)
            print(
                f"two servers, agent start -> SUCCEEDED: {(time.perf_counter() - started) * 1000:.0f} ms"
            )
        requests = [
            (topic, payload["clientToken"])
            for topic, payload in seen
            if topic.endswith(("/start-next", "/get", "/update"))
        ]
        replies = [
            (topic.rsplit("/", 1)[0], payload.get("clientToken"))
            for topic, payload in seen
            if topic.endswith(("/accepted", "/rejected"))
        ]
        assert Counter(replies) == Counter(requests)
        assert len(set(requests)) == len(requests)
        served = [service.requests_served for service in services]
        print(f"requests served per server: {served}")
        assert sum(served) == len(requests)
        assert all(count > 0 for count in served)
        assert [e for e, _ in events(recorder.of(job))] == IN_PLACE
        for service in services:
            await service.mqtt.flush(5)
    finally:
        agent.stop()
        for service in services:
            await service.stop()
        for opened in stores:
            await opened.close()
        print("---- agent output ----\n" + agent.output())

"""The Jobs service beyond the wire: listeners, timers across restarts, the sweep, bulk queueing."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiomqtt
import msgspec
import pytest

from codedeploy_agent.protocol.messages import JobStatus
from codedeploy_server.jobs import ExecutionChange, JobsError, JobsService
from codedeploy_server.jobs import state as job_state
from codedeploy_server.store import Store, open_store
from tests.fakes.brokers import MosquittoBroker
from tests.server.jobs.conftest import (
    DOC_1,
    DOC_2,
    THING,
    BareAgent,
    Recorder,
    ServiceFactory,
    open_agent,
    status_of,
    wait_until,
)

pytestmark = [pytest.mark.broker, pytest.mark.asyncio, pytest.mark.timeout(60)]


def summary(changes: list[ExecutionChange]) -> list[tuple[str, str, int, bool]]:
    """(job id, status, version, by_agent) of each change."""
    return [(c.job_id, c.status.value, c.version_number, c.by_agent) for c in changes]


async def test_listeners_get_every_change_in_order(
    service: JobsService, agent: BareAgent, recorder: Recorder
) -> None:
    """start-next, each accepted update and each service verdict reach the listener after the
    commit, in order, with the details and who changed it; replays and rejections do not."""
    service.add_listener(recorder)
    await service.queue_job(THING, "job-1", DOC_1)
    await service.queue_job(THING, "job-2", DOC_2)
    await service.queue_job(THING, "job-3", DOC_2, step_timeout_minutes=1)  # 0.2 s once started
    await agent.start_next("s1")
    details = {"lifecycleEvent": "Install", "eventStatus": "Succeeded"}
    await agent.update(
        "job-1", "accepted", status="IN_PROGRESS", statusDetails=details, clientToken="u1"
    )
    await agent.update("job-1", "accepted", status="SUCCEEDED", clientToken="u2")
    await agent.update("job-1", "accepted", status="SUCCEEDED", clientToken="u2")  # a replay
    await agent.update("job-1", "rejected", status="FAILED", clientToken="u3")
    await service.cancel_job(THING, "job-2")
    await agent.start_next("s2")  # job-3, which then times out
    await recorder.wait_for("job-3", JobStatus.TIMED_OUT, timeout=5)

    assert summary(recorder.changes) == [
        ("job-1", "IN_PROGRESS", 2, True),
        ("job-1", "IN_PROGRESS", 3, True),
        ("job-1", "SUCCEEDED", 4, True),
        ("job-2", "CANCELED", 2, False),
        ("job-3", "IN_PROGRESS", 2, True),
        ("job-3", "TIMED_OUT", 3, False),
    ]
    assert recorder.changes[1].status_details == details
    assert recorder.changes[2].status_details == details  # absent details are kept
    assert recorder.changes[0].thing == THING
    assert all(abs(c.changed_at - time.time()) < 5 for c in recorder.changes)


async def test_a_listener_may_call_back_and_a_failing_one_does_not_stop_others(
    service: JobsService, agent: BareAgent, recorder: Recorder
) -> None:
    """A listener that cancels the job it hears about does not deadlock the service, and a
    listener that raises does not keep the others from their changes."""

    async def cancel_on_start(change: ExecutionChange) -> None:
        if change.status is JobStatus.IN_PROGRESS:
            await service.cancel_job(change.thing, change.job_id)

    async def broken(change: ExecutionChange) -> None:
        raise RuntimeError(f"listener bug on {change.job_id}")

    service.add_listener(broken)
    service.add_listener(cancel_on_start)
    service.add_listener(recorder)
    await service.queue_job(THING, "job-1", DOC_1)
    await agent.start_next()
    await recorder.wait_for("job-1", JobStatus.CANCELED, timeout=5)
    assert summary(recorder.changes) == [
        ("job-1", "IN_PROGRESS", 2, True),
        ("job-1", "CANCELED", 3, False),
    ]


async def test_invalid_names_are_refused_by_queue_job(service: JobsService) -> None:
    """queue_job refuses a thing name or job id that cannot be a topic level."""
    with pytest.raises(JobsError, match="Invalid thing name 'bad/thing'"):
        await service.queue_job("bad/thing", "job-1", DOC_1)
    with pytest.raises(JobsError, match=r"Invalid job id 'job\+1'"):
        await service.queue_job(THING, "job+1", DOC_1)


async def test_timers_survive_a_restart_of_the_service_and_the_store(
    database: str, mosquitto: MosquittoBroker, service_factory: ServiceFactory
) -> None:
    """A step timer armed before the server stopped fires after it started again from the
    same database; one that expired while it was down fires at once."""
    store = await open_store(database)
    try:
        first = await service_factory(target=store, client_id="server-r", time_scale=0.2)
        await first.queue_job(THING, "job-late", DOC_1, step_timeout_minutes=1)  # 0.2 s
        await first.queue_job("host-2", "job-soon", DOC_2, step_timeout_minutes=30)  # 6 s
        async with (
            open_agent(mosquitto.port) as agent,
            open_agent(mosquitto.port, "host-2") as other,
        ):
            await agent.start_next()
            await other.start_next()
            await first.stop()
            await store.close()
            await asyncio.sleep(0.5)  # job-late's deadline passes while nothing runs

            store = await open_store(database)
            second = await service_factory(target=store, client_id="server-r", time_scale=0.2)
            await wait_until(lambda: _timed_out(second, THING, "job-late"), timeout=5)
            assert await status_of(second, "host-2", "job-soon") is JobStatus.IN_PROGRESS
            await wait_until(lambda: _timed_out(second, "host-2", "job-soon"), timeout=10)
            notify = await other.wait(other.topics.notify, timeout=10)
            assert notify["jobs"] == {}
            await second.stop()
    finally:
        await store.close()


async def _timed_out(service: JobsService, thing: str, job_id: str) -> bool:
    return await status_of(service, thing, job_id) is JobStatus.TIMED_OUT


async def test_the_sweep_arms_timers_of_executions_started_elsewhere(
    service_factory: ServiceFactory, store: Store, recorder: Recorder
) -> None:
    """An IN_PROGRESS execution written by another server (which then went away) is timed out
    by this one once its periodic sweep finds the deadline."""
    service = await service_factory(time_scale=0.2, sweep_seconds=0.1)
    service.add_listener(recorder)
    now = time.time()
    record = job_state.ExecutionRecord(
        thing=THING,
        job_id="job-elsewhere",
        execution_number=1,
        document=DOC_1,
        queued_at=now,
        last_updated_at=now,
        status=JobStatus.IN_PROGRESS,
        version=2,
        started_at=now,
        step_deadline=now + 0.3,
    )
    async with store.transaction() as tx:
        await job_state.insert(tx, record)
    change = await recorder.wait_for("job-elsewhere", JobStatus.TIMED_OUT, timeout=10)
    assert (change.version_number, change.by_agent) == (3, False)


async def test_queueing_for_a_fleet_is_cheap(
    service: JobsService, mosquitto: MosquittoBroker
) -> None:
    """200 executions queued at once (one call per thing, concurrently) are stored and each
    thing gets its notify-next; prints the time taken."""
    things = [f"host-{i:03d}" for i in range(200)]
    received: dict[str, Any] = {}
    async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="fleet-watch") as watcher:
        await watcher.subscribe("codedeploy/things/+/jobs/notify-next", qos=1)
        started = time.perf_counter()
        results = await asyncio.gather(
            *(service.queue_job(thing, "d-FLEET0001", DOC_1) for thing in things)
        )
        queued = time.perf_counter() - started
        async with asyncio.timeout(10):
            async for message in watcher.messages:
                assert isinstance(message.payload, bytes)
                received[message.topic.value.split("/")[2]] = msgspec.json.decode(message.payload)
                if len(received) == len(things):
                    break
        delivered = time.perf_counter() - started
    print(
        f"queue_job x200: {queued * 1000:.0f} ms; all notify-next delivered: {delivered * 1000:.0f} ms"
    )
    assert all(results)
    assert sorted(received) == things
    assert {r["execution"]["jobId"] for r in received.values()} == {"d-FLEET0001"}
    assert queued < 5

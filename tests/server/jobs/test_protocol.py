"""The Jobs service on the wire, driven by a plain MQTT client playing the agent: the reference
fake's own tests (`tests/fakes/test_jobs_service.py`) ported, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time

import pytest

from codedeploy_agent.protocol.messages import JobStatus
from codedeploy_server.jobs import JobsService
from tests.fakes.brokers import MosquittoBroker
from tests.server.jobs.conftest import (
    DOC_1,
    DOC_2,
    THING,
    BareAgent,
    ServiceFactory,
    open_agent,
    status_of,
    times_set,
    wait_until,
    without_timestamp,
)

pytestmark = [pytest.mark.broker, pytest.mark.asyncio, pytest.mark.timeout(60)]


# --- queueing and start-next ----------------------------------------------------------------


async def test_queue_publishes_notify_and_notify_next_only_when_next_changes(
    service: JobsService, agent: BareAgent
) -> None:
    """Queueing publishes notify each time but notify-next only when `$next` changed."""
    topics = agent.topics
    assert await service.queue_job(THING, "job-1", DOC_1)
    notify_next = await agent.wait(topics.notify_next)
    first_notify = await agent.wait(topics.notify)
    await service.queue_job(THING, "job-2", DOC_2)
    second_notify = await agent.wait(topics.notify, 2)
    await asyncio.sleep(0.2)

    execution = without_timestamp(notify_next)["execution"]
    assert times_set(execution, "queuedAt", "lastUpdatedAt") == {
        "jobId": "job-1",
        "status": "QUEUED",
        "queuedAt": "set",
        "lastUpdatedAt": "set",
        "versionNumber": 1,
        "executionNumber": 1,
        "jobDocument": DOC_1,
    }
    assert [s["jobId"] for s in without_timestamp(first_notify)["jobs"]["QUEUED"]] == ["job-1"]
    assert list(second_notify["jobs"]) == ["QUEUED"]
    assert [times_set(s, "queuedAt", "lastUpdatedAt") for s in second_notify["jobs"]["QUEUED"]] == [
        {
            "jobId": "job-1",
            "queuedAt": "set",
            "lastUpdatedAt": "set",
            "versionNumber": 1,
            "executionNumber": 1,
        },
        {
            "jobId": "job-2",
            "queuedAt": "set",
            "lastUpdatedAt": "set",
            "versionNumber": 1,
            "executionNumber": 2,
        },
    ]
    assert len(agent.on(topics.notify_next)) == 1


async def test_queueing_a_pending_job_again_changes_nothing(
    service: JobsService, agent: BareAgent
) -> None:
    """queue_job of a job already pending on the thing returns False and publishes nothing."""
    assert await service.queue_job(THING, "job-1", DOC_1)
    await agent.wait(agent.topics.notify)
    assert not await service.queue_job(THING, "job-1", DOC_2)
    await asyncio.sleep(0.2)
    assert len(agent.on(agent.topics.notify)) == 1
    execution = await service.execution(THING, "job-1")
    assert execution is not None
    assert execution.job_document == DOC_1


async def test_start_next_returns_the_queued_job_in_progress(
    service: JobsService, agent: BareAgent
) -> None:
    """start-next moves the QUEUED execution to IN_PROGRESS (version 2) with the request's
    statusDetails and echoes the clientToken; nothing pending gives no `execution`."""
    empty = await agent.start_next("tok-0")
    assert without_timestamp(empty) == {"clientToken": "tok-0"}

    await service.queue_job(THING, "job-1", DOC_1)
    reply = await agent.start_next("tok-1", statusDetails={"phase": "starting"})

    body = without_timestamp(reply)
    assert body["clientToken"] == "tok-1"
    assert times_set(body["execution"], "queuedAt", "startedAt", "lastUpdatedAt") == {
        "jobId": "job-1",
        "thingName": THING,
        "status": "IN_PROGRESS",
        "statusDetails": {"phase": "starting"},
        "queuedAt": "set",
        "startedAt": "set",
        "lastUpdatedAt": "set",
        "versionNumber": 2,
        "executionNumber": 1,
        "jobDocument": DOC_1,
    }
    assert await status_of(service, THING, "job-1") is JobStatus.IN_PROGRESS
    again = await agent.start_next("tok-2", statusDetails={"phase": "other"})
    assert again["execution"]["versionNumber"] == 2
    assert again["execution"]["statusDetails"] == {"phase": "starting"}


async def test_two_queued_jobs_are_served_in_order(service: JobsService, agent: BareAgent) -> None:
    """The second job becomes `$next` (notify-next) once the first ends, and start-next runs it."""
    topics = agent.topics
    await service.queue_job(THING, "job-1", DOC_1)
    await service.queue_job(THING, "job-2", DOC_2)
    first = await agent.start_next("a")
    assert first["execution"]["jobId"] == "job-1"

    await agent.update("job-1", "accepted", status="SUCCEEDED", clientToken="u1", expectedVersion=2)
    notify_next = await agent.wait(topics.notify_next, 2)
    notify = await agent.wait(topics.notify, 3)
    assert notify_next["execution"]["jobId"] == "job-2"
    assert notify_next["execution"]["status"] == "QUEUED"
    assert "thingName" not in notify_next["execution"]
    assert [s["jobId"] for s in notify["jobs"]["QUEUED"]] == ["job-2"]
    assert "IN_PROGRESS" not in notify["jobs"]

    second = await agent.start_next("b")
    assert second["execution"]["jobId"] == "job-2"
    assert second["execution"]["status"] == "IN_PROGRESS"


# --- update ---------------------------------------------------------------------------------


async def test_update_with_a_wrong_expected_version_is_rejected_with_the_state(
    service: JobsService, agent: BareAgent
) -> None:
    """A stale expectedVersion gives VersionMismatch with executionState; nothing changes."""
    await service.queue_job(THING, "job-1", DOC_1)
    await agent.start_next()
    accepted = await agent.update(
        "job-1",
        "accepted",
        status="IN_PROGRESS",
        statusDetails={"lifecycleEvent": "BeforeInstall"},
        expectedVersion=2,
        includeJobExecutionState=True,
        clientToken="u1",
    )
    assert without_timestamp(accepted) == {
        "clientToken": "u1",
        "executionState": {
            "status": "IN_PROGRESS",
            "statusDetails": {"lifecycleEvent": "BeforeInstall"},
            "versionNumber": 3,
        },
    }

    rejected = await agent.update(
        "job-1", "rejected", status="SUCCEEDED", expectedVersion=2, clientToken="u2"
    )

    body = without_timestamp(rejected)
    assert body.pop("message") == (
        "expectedVersion 2 does not match the current version 3 of job execution job-1"
    )
    assert body == {
        "code": "VersionMismatch",
        "clientToken": "u2",
        "executionState": {
            "status": "IN_PROGRESS",
            "statusDetails": {"lifecycleEvent": "BeforeInstall"},
            "versionNumber": 3,
        },
    }
    execution = await service.execution(THING, "job-1")
    assert execution is not None
    assert execution.version_number == 3


async def test_update_without_status_details_keeps_them_and_accepted_has_no_state_unless_asked(
    service: JobsService, agent: BareAgent
) -> None:
    """Absent statusDetails are left unchanged, and update/accepted carries executionState only
    when includeJobExecutionState is true; includeJobDocument adds the document."""
    await service.queue_job(THING, "job-1", DOC_1)
    await agent.start_next(statusDetails={"step": "1"})
    accepted = await agent.update("job-1", "accepted", status="IN_PROGRESS", clientToken="u1")
    assert without_timestamp(accepted) == {"clientToken": "u1"}
    execution = await service.execution(THING, "job-1")
    assert execution is not None
    assert execution.status_details == {"step": "1"}
    with_document = await agent.update(
        "job-1", "accepted", status="IN_PROGRESS", clientToken="u2", includeJobDocument=True
    )
    assert with_document["jobDocument"] == DOC_1


async def test_update_after_a_terminal_state_is_rejected(
    service: JobsService, agent: BareAgent
) -> None:
    """After SUCCEEDED, another update gets TerminalStateReached without executionState."""
    await service.queue_job(THING, "job-1", DOC_1)
    await agent.start_next()
    await agent.update("job-1", "accepted", status="SUCCEEDED", clientToken="u1", expectedVersion=2)

    rejected = await agent.update("job-1", "rejected", status="IN_PROGRESS", clientToken="u2")

    assert without_timestamp(rejected) == {
        "code": "TerminalStateReached",
        "message": "Job execution job-1 of thing host-1 is in the terminal state SUCCEEDED",
        "clientToken": "u2",
    }


async def test_a_retried_update_with_the_same_client_token_gets_the_same_reply(
    service: JobsService, agent: BareAgent
) -> None:
    """A retried update (its reply was lost) is answered with the very same accepted payload
    and applied once, even after the execution ended."""
    await service.queue_job(THING, "job-1", DOC_1)
    await agent.start_next()
    request = {
        "status": "SUCCEEDED",
        "clientToken": "final",
        "expectedVersion": 2,
        "includeJobExecutionState": True,
    }
    first = await agent.update("job-1", "accepted", **request)
    await asyncio.sleep(1.1)  # a later reply would carry a later timestamp
    retried = await agent.update("job-1", "accepted", **request)

    assert retried == first
    assert first["executionState"] == {"status": "SUCCEEDED", "versionNumber": 3}
    execution = await service.execution(THING, "job-1")
    assert execution is not None
    assert execution.version_number == 3


async def test_a_client_token_reused_for_another_update_is_served_as_new(
    service: JobsService, agent: BareAgent
) -> None:
    """The same clientToken with other content is served as a new request."""
    await service.queue_job(THING, "job-1", DOC_1)
    await agent.start_next()
    await agent.update(
        "job-1", "accepted", status="IN_PROGRESS", clientToken="t", expectedVersion=2
    )
    await agent.update(
        "job-1", "accepted", status="IN_PROGRESS", clientToken="t", expectedVersion=3
    )
    execution = await service.execution(THING, "job-1")
    assert execution is not None
    assert execution.version_number == 4


async def test_updates_for_unknown_or_queued_jobs(service: JobsService, agent: BareAgent) -> None:
    """An unknown job gives ResourceNotFound; a QUEUED one is accepted and started (as on AWS)."""
    unknown = await agent.update("nope", "rejected", status="IN_PROGRESS", clientToken="x")
    assert unknown["code"] == "ResourceNotFound"
    assert unknown["message"] == "Job execution nope was not found for thing host-1"
    assert unknown["clientToken"] == "x"

    await service.queue_job(THING, "job-1", DOC_1)
    await service.queue_job(THING, "job-2", DOC_2)
    await agent.start_next()
    accepted = await agent.update("job-2", "accepted", status="IN_PROGRESS", clientToken="y")
    assert accepted["clientToken"] == "y"
    started = await service.execution(THING, "job-2")
    assert started is not None
    assert (started.status, started.version_number) == (JobStatus.IN_PROGRESS, 2)
    assert started.started_at is not None


async def test_malformed_requests_are_rejected(service: JobsService, agent: BareAgent) -> None:
    """Bad JSON gives InvalidJson without a clientToken; a missing or mistyped field, or a
    status a device may not set, gives InvalidRequest with the token."""
    await service.queue_job(THING, "job-1", DOC_1)
    await agent.start_next()
    topic = agent.topics.update("job-1")
    bad_json = await agent.call(topic, b"{not json", f"{topic}/rejected")
    no_status = await agent.call(topic, {"clientToken": "c1"}, f"{topic}/rejected")
    wrong_type = await agent.call(
        topic,
        {"clientToken": "c2", "status": "IN_PROGRESS", "expectedVersion": "2"},
        f"{topic}/rejected",
    )
    canceled = await agent.call(
        topic, {"clientToken": "c3", "status": "CANCELED"}, f"{topic}/rejected"
    )
    no_token = await agent.call(
        agent.topics.start_next, {"stepTimeoutInMinutes": 5}, agent.topics.start_next_rejected
    )

    assert bad_json["code"] == "InvalidJson"
    assert "clientToken" not in bad_json
    assert (no_status["code"], no_status["clientToken"]) == ("InvalidRequest", "c1")
    assert (
        no_status["message"]
        == "Invalid UpdateRequest message: Object missing required field `status`"
    )
    assert (wrong_type["code"], wrong_type["clientToken"]) == ("InvalidRequest", "c2")
    assert wrong_type["message"] == (
        "Invalid UpdateRequest message: Expected `int | null`, got `str` - at `$.expectedVersion`"
    )
    assert canceled["message"] == (
        "status CANCELED cannot be set by a device; use IN_PROGRESS, SUCCEEDED, FAILED or REJECTED"
    )
    assert no_token["message"] == (
        "Invalid StartNextRequest message: Object missing required field `clientToken`"
    )
    execution = await service.execution(THING, "job-1")
    assert execution is not None
    assert execution.version_number == 2


# --- service actions and timers -------------------------------------------------------------


async def test_cancel_publishes_notify_without_the_job_and_the_agent_reads_it(
    service: JobsService, agent: BareAgent
) -> None:
    """Cancelling an IN_PROGRESS job publishes notify without it and an empty notify-next;
    an update racing the cancel gets TerminalStateReached; `{jobId}/get` shows CANCELED; a
    second cancel changes nothing."""
    topics = agent.topics
    await service.queue_job(THING, "job-1", DOC_1)
    await agent.start_next()

    assert await service.cancel_job(THING, "job-1", status_details={"reason": "stopped"})

    notify = await agent.wait(topics.notify, 2)
    assert without_timestamp(notify) == {"jobs": {}}
    notify_next = await agent.wait(topics.notify_next, 2)
    assert without_timestamp(notify_next) == {}
    racing = await agent.update("job-1", "rejected", status="IN_PROGRESS", clientToken="r")
    assert racing["code"] == "TerminalStateReached"

    described = await agent.get("job-1", "accepted", clientToken="g")
    assert described["execution"]["status"] == "CANCELED"
    assert described["execution"]["versionNumber"] == 3
    assert described["execution"]["statusDetails"] == {"reason": "stopped"}
    assert not await service.cancel_job(THING, "job-1")
    assert not await service.cancel_job(THING, "never-queued")
    with pytest.raises(ValueError, match="not SUCCEEDED"):
        await service.cancel_job(THING, "job-1", status=JobStatus.SUCCEEDED)


async def test_remove_job_of_a_queued_execution(service: JobsService, agent: BareAgent) -> None:
    """Removing (REMOVED) a QUEUED job makes the next one `$next`."""
    await service.queue_job(THING, "job-1", DOC_1)
    await service.queue_job(THING, "job-2", DOC_2)
    await agent.wait(agent.topics.notify, 2)
    await service.cancel_job(THING, "job-1", status=JobStatus.REMOVED)
    notify_next = await agent.wait(agent.topics.notify_next, 2)
    assert notify_next["execution"]["jobId"] == "job-2"
    assert await status_of(service, THING, "job-1") is JobStatus.REMOVED


async def test_step_timeout_times_the_execution_out_and_updates_replace_it(
    service_factory: ServiceFactory, agent: BareAgent
) -> None:
    """The step timer of start-next is replaced by an update's stepTimeoutInMinutes (counted
    from the update); when it expires the execution is TIMED_OUT and notify is published."""
    # A minute lasts 0.4 s: the two timers end 1.2 s apart, room enough on a loaded machine.
    service = await service_factory(time_scale=0.4)
    await service.queue_job(THING, "job-1", DOC_1)
    await agent.start_next(stepTimeoutInMinutes=2)  # 0.8 s
    await agent.update(
        "job-1", "accepted", status="IN_PROGRESS", stepTimeoutInMinutes=5, clientToken="u"
    )  # 2.0 s from now
    await asyncio.sleep(1.0)
    assert await status_of(service, THING, "job-1") is JobStatus.IN_PROGRESS

    notify = await agent.wait(agent.topics.notify, 2, timeout=10)

    assert notify["jobs"] == {}
    execution = await service.execution(THING, "job-1")
    assert execution is not None
    assert (execution.status, execution.version_number) == (JobStatus.TIMED_OUT, 4)


async def test_the_queued_step_timer_runs_on_through_updates_without_a_step_timeout(
    service_factory: ServiceFactory, agent: BareAgent
) -> None:
    """queue_job's step timer applies when start-next names none, and an update without
    stepTimeoutInMinutes does not restart it."""
    # A minute lasts 1.5 s: the right timer and a restarted one end 1.5 s apart, so the bound
    # below leaves 0.9 s for the notify to arrive on a loaded machine.
    service = await service_factory(time_scale=1.5)
    await service.queue_job(THING, "job-1", DOC_1, step_timeout_minutes=2)  # 3 s
    started = time.monotonic()
    await agent.start_next()
    await asyncio.sleep(1.5)
    await agent.update("job-1", "accepted", status="IN_PROGRESS", clientToken="u")
    await agent.wait(agent.topics.notify, 2, timeout=10)
    # A restarted timer would have fired 4.5 s after the start.
    assert 2.9 < time.monotonic() - started < 3.9
    assert await status_of(service, THING, "job-1") is JobStatus.TIMED_OUT


async def test_in_progress_timeout_is_not_extended_by_step_timers(
    service: JobsService, agent: BareAgent
) -> None:
    """The job's in-progress timer ends the execution even while step timers are renewed."""
    await service.queue_job(THING, "job-1", DOC_1, in_progress_timeout_minutes=1.5)  # 0.3 s
    started = time.monotonic()
    await agent.start_next(stepTimeoutInMinutes=100)
    await agent.update(
        "job-1", "accepted", status="IN_PROGRESS", stepTimeoutInMinutes=100, clientToken="u"
    )
    await agent.wait(agent.topics.notify, 2, timeout=10)
    # The step timers would end it after 20 s.
    assert 0.25 < time.monotonic() - started < 5
    assert await status_of(service, THING, "job-1") is JobStatus.TIMED_OUT


# --- reads ----------------------------------------------------------------------------------


async def test_describe_next_and_get_pending(service: JobsService, agent: BareAgent) -> None:
    """`$next/get` returns the next pending execution (ResourceNotFound when none, no document
    when includeJobDocument is false); `get` lists IN_PROGRESS and QUEUED summaries."""
    topics = agent.topics
    none = await agent.get("$next", "rejected", clientToken="n0")
    assert (none["code"], none["clientToken"]) == ("ResourceNotFound", "n0")
    assert none["message"] == "Thing host-1 has no pending job execution"

    await service.queue_job(THING, "job-1", DOC_1)
    await service.queue_job(THING, "job-2", DOC_2)
    queued = await agent.get("$next", "accepted", clientToken="n1")
    assert queued["execution"]["jobId"] == "job-1"
    assert queued["execution"]["status"] == "QUEUED"
    assert queued["execution"]["jobDocument"] == DOC_1

    await agent.start_next()
    bare = await agent.get("$next", "accepted", clientToken="n2", includeJobDocument=False)
    assert bare["execution"]["status"] == "IN_PROGRESS"
    assert "jobDocument" not in bare["execution"]

    pending = await agent.call(
        topics.get_pending, {"clientToken": "p"}, topics.get_pending_accepted
    )
    assert pending["clientToken"] == "p"
    assert [s["jobId"] for s in pending["inProgressJobs"]] == ["job-1"]
    assert "startedAt" in pending["inProgressJobs"][0]
    assert [s["jobId"] for s in pending["queuedJobs"]] == ["job-2"]
    assert "startedAt" not in pending["queuedJobs"][0]


async def test_a_job_id_queued_again_is_a_new_execution(
    service: JobsService, agent: BareAgent
) -> None:
    """Once ended, a job id may be queued again: a new execution number, found by default, the
    old one by executionNumber (an unknown number is ResourceNotFound)."""
    await service.queue_job(THING, "job-1", DOC_1)
    await agent.start_next()
    await agent.update("job-1", "accepted", status="FAILED", clientToken="f")
    assert await service.queue_job(THING, "job-1", DOC_2)
    latest = await agent.get("job-1", "accepted", clientToken="a")
    first = await agent.get("job-1", "accepted", clientToken="b", executionNumber=1)
    unknown = await agent.get("job-1", "rejected", clientToken="c", executionNumber=7)
    assert (latest["execution"]["executionNumber"], latest["execution"]["status"]) == (2, "QUEUED")
    assert latest["execution"]["jobDocument"] == DOC_2
    assert (first["execution"]["executionNumber"], first["execution"]["status"]) == (1, "FAILED")
    assert first["execution"]["jobDocument"] == DOC_1
    assert unknown["message"] == "Job execution job-1 (execution 7) was not found for thing host-1"
    old = await agent.update(
        "job-1", "rejected", status="SUCCEEDED", clientToken="o", executionNumber=1
    )
    assert old["code"] == "TerminalStateReached"


# --- observation ----------------------------------------------------------------------------


async def test_presence_is_stored_and_a_cleared_retained_message_forgets_it(
    service: JobsService, agent: BareAgent
) -> None:
    """Presence messages become the thing's presence row (online flag, payload, the time it
    last changed); a heartbeat with the same payload keeps that time; an empty retained
    message deletes the row."""
    topic = f"codedeploy/things/{THING}/presence"
    online = b'{"state":"online","agentVersion":"0.1.0","hostname":"h","startedAt":"2026-01-01T00:00:00Z"}'
    await agent.client.publish(topic, online, qos=1, retain=True)
    await wait_until(lambda: _has_presence(service))
    info = await service.presence(THING)
    assert info is not None
    assert (info.online, info.presence.hostname, info.presence.agent_version) == (
        True,
        "h",
        "0.1.0",
    )
    first_seen = info.updated_at
    assert abs(first_seen - time.time()) < 5

    await agent.client.publish(topic, online, qos=1, retain=True)
    offline = online.replace(b"online", b"offline")
    await agent.client.publish(topic, offline, qos=1, retain=True)
    await wait_until(lambda: _is_offline(service))
    info = await service.presence(THING)
    assert info is not None
    assert info.updated_at >= first_seen

    await agent.client.publish(topic, b"not json", qos=1, retain=True)
    await agent.client.publish(topic, b"", qos=1, retain=True)
    await wait_until(lambda: _has_presence(service, expected=False))


async def _has_presence(service: JobsService, *, expected: bool = True) -> bool:
    return (await service.presence(THING) is not None) is expected


async def _is_offline(service: JobsService) -> bool:
    info = await service.presence(THING)
    return info is not None and not info.online


async def test_retained_presence_is_read_at_start_and_keeps_its_time(
    service_factory: ServiceFactory, mosquitto: MosquittoBroker
) -> None:
    """A service that starts after the agent published its presence gets the retained one; a
    restarted service receiving the same retained message keeps the time it changed."""
    async with open_agent(mosquitto.port) as agent:
        await agent.client.publish(
            f"codedeploy/things/{THING}/presence",
            b'{"state":"online","agentVersion":"1","hostname":"h","startedAt":"2026-01-01T00:00:00Z"}',
            qos=1,
            retain=True,
        )
    first = await service_factory()
    await wait_until(lambda: _has_presence(first))
    before = await first.presence(THING)
    await first.stop()
    await asyncio.sleep(0.1)
    second = await service_factory()
    await asyncio.sleep(0.3)  # the retained message arrives again
    assert await second.presence(THING) == before


async def test_log_lines_reach_listeners_and_a_bounded_buffer(
    service: JobsService, agent: BareAgent
) -> None:
    """Live log lines go to the log listeners as they arrive, and the last 200 per deployment
    and thing stay readable."""
    received: list[tuple[str, str, list[str]]] = []
    four = asyncio.Event()

    def listener(thing: str, deployment: str, lines: list[str]) -> None:
        received.append((thing, deployment, lines))
        if len(received) == 4:
            four.set()

    service.add_log_listener(listener)
    topic = f"codedeploy/things/{THING}/logs/d-1"
    await agent.client.publish(topic, b"line 1\nline 2\n", qos=1)
    await agent.client.publish(topic, b"line 3", qos=1)
    await agent.client.publish(f"codedeploy/things/{THING}/logs/d-2", b"other", qos=1)
    await agent.client.publish(topic, "\n".join(f"n{i}" for i in range(300)).encode(), qos=1)
    async with asyncio.timeout(5):
        await four.wait()
    assert received[:3] == [
        (THING, "d-1", ["line 1", "line 2"]),
        (THING, "d-1", ["line 3"]),
        (THING, "d-2", ["other"]),
    ]
    assert service.recent_log_lines(THING, "d-1") == [f"n{i}" for i in range(100, 300)]
    assert service.recent_log_lines(THING, "d-2") == ["other"]
    assert service.recent_log_lines(THING, "d-3") == []


# --- connection -----------------------------------------------------------------------------


async def test_the_service_reconnects_after_a_broker_restart(
    service: JobsService, mosquitto: MosquittoBroker
) -> None:
    """After the broker restarts the service connects again and serves requests."""
    await service.queue_job(THING, "job-1", DOC_1)
    assert await service.mqtt.flush(5)
    await asyncio.to_thread(mosquitto.restart)
    await wait_until(lambda: _connections(service, 2))
    async with open_agent(mosquitto.port) as agent:
        reply = await agent.start_next("after-restart")
    assert reply["execution"]["jobId"] == "job-1"


async def _connections(service: JobsService, count: int) -> bool:
    return service.mqtt.connections >= count and service.mqtt.connected


async def test_requests_sent_while_the_service_is_down_are_served_when_it_is_back(
    service_factory: ServiceFactory, mosquitto: MosquittoBroker
) -> None:
    """The persistent session keeps agent requests for a stopped service: the next one with the
    same client id answers them."""
    first = await service_factory(client_id="server-a")
    await first.queue_job(THING, "job-1", DOC_1)
    await first.stop()
    async with open_agent(mosquitto.port) as agent:
        await agent.send(agent.topics.start_next, {"clientToken": "while-down"})
        await asyncio.sleep(0.2)
        assert agent.on(agent.topics.start_next_accepted) == []
        await service_factory(client_id="server-a")
        reply = await agent.wait(agent.topics.start_next_accepted)
    assert reply["clientToken"] == "while-down"
    assert reply["execution"]["jobId"] == "job-1"


async def test_mqtt_3_1_1(service_factory: ServiceFactory, agent: BareAgent) -> None:
    """The service also speaks MQTT 3.1.1."""
    service = await service_factory(protocol="3.1.1")
    await service.queue_job(THING, "job-1", DOC_1)
    reply = await agent.start_next()
    assert reply["execution"]["jobId"] == "job-1"

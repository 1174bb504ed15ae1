"""Tests of the fake IoT Jobs service, driven by a plain aiomqtt client playing the agent.

The last section tests the bundle helpers of `tests/fakes/bundles.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import tarfile
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import aiomqtt
import msgspec
import pytest
import pytest_asyncio

from codedeploy_agent.appspec.parser import parse_appspec
from codedeploy_agent.protocol.errors import JobRejected, RejectReason
from codedeploy_agent.protocol.jobdoc import accept_job_document
from codedeploy_agent.protocol.messages import JobStatus, RejectedErrorCode
from codedeploy_agent.protocol.signing import load_private_key, load_public_key
from codedeploy_agent.protocol.topics import JobsTopics
from tests.fakes.brokers import MosquittoBroker
from tests.fakes.bundles import (
    corrupt_signature,
    make_keys,
    make_tgz,
    signed_job_document,
    write_bundle,
)
from tests.fakes.jobs_service import FakeJobsService

THING = "host-1"
DOC_1 = {"DeploymentId": "d-1", "n": 1}
DOC_2 = {"DeploymentId": "d-2", "n": 2}


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A private Mosquitto on a free loopback port."""
    with MosquittoBroker(tmp_path / "mosquitto") as started:
        yield started


class Agent:
    """A bare MQTT client subscribed to one thing's agent topics, recording what it receives."""

    def __init__(self, client: aiomqtt.Client, thing: str) -> None:
        self.client = client
        self.topics = JobsTopics("codedeploy/things", thing)
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


@contextlib.asynccontextmanager
async def open_agent(port: int, thing: str = THING) -> AsyncIterator[Agent]:
    async with aiomqtt.Client(
        "127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5, identifier=f"agent-{thing}"
    ) as client:
        agent = Agent(client, thing)
        # The real agent never asks for the pending list; this client does, in one test.
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
async def service(broker: MosquittoBroker) -> AsyncIterator[FakeJobsService]:
    """The fake service on the test's broker, serving thing `host-1` (1 job minute = 0.2 s)."""
    async with FakeJobsService("127.0.0.1", broker.port, things={THING}, time_scale=0.2) as started:
        yield started


@pytest_asyncio.fixture
async def agent(broker: MosquittoBroker) -> AsyncIterator[Agent]:
    """A plain client playing the agent of `host-1`."""
    async with open_agent(broker.port) as started:
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


pytestmark = [pytest.mark.broker, pytest.mark.timeout(30)]


# --- queueing and start-next ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_queue_publishes_notify_and_notify_next_only_when_next_changes(
    service: FakeJobsService, agent: Agent
) -> None:
    """Queueing publishes notify each time but notify-next only when `$next` changed."""
    topics = agent.topics
    service.queue_job(THING, "job-1", DOC_1)
    notify_next = await agent.wait(topics.notify_next)
    first_notify = await agent.wait(topics.notify)
    service.queue_job(THING, "job-2", DOC_2)
    second_notify = await agent.wait(topics.notify, 2)
    await service.flush()
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
    assert service.violations == []


@pytest.mark.asyncio
async def test_start_next_returns_the_queued_job_in_progress(
    service: FakeJobsService, agent: Agent
) -> None:
    """start-next moves the QUEUED execution to IN_PROGRESS (version 2) with the request's
    statusDetails and echoes the clientToken; nothing pending gives no `execution`."""
    empty = await agent.start_next("tok-0")
    assert without_timestamp(empty) == {"clientToken": "tok-0"}

    service.queue_job(THING, "job-1", DOC_1)
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
    assert service.execution(THING, "job-1").status is JobStatus.IN_PROGRESS
    again = await agent.start_next("tok-2", statusDetails={"phase": "other"})
    assert again["execution"]["versionNumber"] == 2
    assert again["execution"]["statusDetails"] == {"phase": "starting"}
    assert service.violations == []


@pytest.mark.asyncio
async def test_two_queued_jobs_are_served_in_order(service: FakeJobsService, agent: Agent) -> None:
    """The second job becomes `$next` (notify-next) once the first ends, and start-next runs it."""
    topics = agent.topics
    service.queue_job(THING, "job-1", DOC_1)
    service.queue_job(THING, "job-2", DOC_2)
    first = await agent.start_next("a")
    assert first["execution"]["jobId"] == "job-1"

    await agent.update("job-1", "accepted", status="SUCCEEDED", clientToken="u1", expectedVersion=2)
    notify_next = await agent.wait(topics.notify_next, 2)
    notify = await agent.wait(topics.notify, 3)
    assert notify_next["execution"]["jobId"] == "job-2"
    assert notify_next["execution"]["status"] == "QUEUED"
    assert [s["jobId"] for s in notify["jobs"]["QUEUED"]] == ["job-2"]
    assert "IN_PROGRESS" not in notify["jobs"]

    second = await agent.start_next("b")
    assert second["execution"]["jobId"] == "job-2"
    assert second["execution"]["status"] == "IN_PROGRESS"
    assert service.violations == []


# --- update ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_update_with_a_wrong_expected_version_is_rejected_with_the_state(
    service: FakeJobsService, agent: Agent
) -> None:
    """A stale expectedVersion gives VersionMismatch with executionState; nothing changes."""
    service.queue_job(THING, "job-1", DOC_1)
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
    assert service.execution(THING, "job-1").version_number == 3
    assert [u.client_token for u in service.updates(THING, "job-1")] == ["u1"]
    assert service.violations == []


@pytest.mark.asyncio
async def test_update_without_status_details_keeps_them_and_accepted_has_no_state_unless_asked(
    service: FakeJobsService, agent: Agent
) -> None:
    """Absent statusDetails are left unchanged, and update/accepted carries executionState only
    when includeJobExecutionState is true (AWS's default is false)."""
    service.queue_job(THING, "job-1", DOC_1)
    await agent.start_next(statusDetails={"step": "1"})
    accepted = await agent.update("job-1", "accepted", status="IN_PROGRESS", clientToken="u1")
    assert without_timestamp(accepted) == {"clientToken": "u1"}
    assert service.execution(THING, "job-1").status_details == {"step": "1"}


@pytest.mark.asyncio
async def test_update_after_a_terminal_state_is_rejected_and_recorded(
    service: FakeJobsService, agent: Agent
) -> None:
    """After SUCCEEDED, another update gets TerminalStateReached and counts as a violation."""
    service.queue_job(THING, "job-1", DOC_1)
    await agent.start_next()
    await agent.update("job-1", "accepted", status="SUCCEEDED", clientToken="u1", expectedVersion=2)

    rejected = await agent.update("job-1", "rejected", status="IN_PROGRESS", clientToken="u2")

    assert without_timestamp(rejected) == {
        "code": "TerminalStateReached",
        "message": "Job execution job-1 of thing host-1 is in the terminal state SUCCEEDED",
        "clientToken": "u2",
    }
    assert service.violations == [
        "host-1/job-1: update to IN_PROGRESS after the execution ended (SUCCEEDED)"
    ]


@pytest.mark.asyncio
async def test_terminal_update_code_can_be_invalid_state_transition(
    broker: MosquittoBroker, agent: Agent
) -> None:
    """With terminal_update_code=InvalidStateTransition the rejection carries executionState."""
    async with FakeJobsService(
        "127.0.0.1",
        broker.port,
        terminal_update_code=RejectedErrorCode.INVALID_STATE_TRANSITION,
    ) as service:
        service.queue_job(THING, "job-1", DOC_1)
        await agent.start_next()
        await agent.update("job-1", "accepted", status="FAILED", clientToken="u1")
        rejected = await agent.update("job-1", "rejected", status="SUCCEEDED", clientToken="u2")
    assert rejected["code"] == "InvalidStateTransition"
    assert rejected["executionState"] == {"status": "FAILED", "versionNumber": 3}


@pytest.mark.asyncio
async def test_a_retried_update_with_the_same_client_token_gets_the_same_reply(
    service: FakeJobsService, agent: Agent
) -> None:
    """A lost update/accepted makes the agent retry: the same request is answered with the same
    accepted payload and applied once, even after the execution ended."""
    service.queue_job(THING, "job-1", DOC_1)
    await agent.start_next()
    service.drop_next_responses(1, topic_suffix="update/accepted")
    request = {"status": "SUCCEEDED", "clientToken": "final", "expectedVersion": 2}
    await agent.send(agent.topics.update("job-1"), request)
    await service.wait_for_status(THING, "job-1", JobStatus.SUCCEEDED)
    await asyncio.sleep(0.1)
    assert agent.on(agent.topics.update_accepted("job-1")) == []

    retried = await agent.update("job-1", "accepted", **request)
    twice = await agent.update("job-1", "accepted", **request)

    assert retried == twice
    assert retried["clientToken"] == "final"
    assert [topic for topic, _ in service.dropped] == [agent.topics.update_accepted("job-1")]
    assert service.dropped[0][1] == retried
    assert service.execution(THING, "job-1").version_number == 3
    assert len(service.updates(THING, "job-1")) == 1
    assert service.violations == []


@pytest.mark.asyncio
async def test_a_client_token_reused_for_another_update_is_a_violation(
    service: FakeJobsService, agent: Agent
) -> None:
    """The same clientToken with other content is served as a new request and recorded."""
    service.queue_job(THING, "job-1", DOC_1)
    await agent.start_next()
    await agent.update(
        "job-1", "accepted", status="IN_PROGRESS", clientToken="t", expectedVersion=2
    )
    await agent.update(
        "job-1", "accepted", status="IN_PROGRESS", clientToken="t", expectedVersion=3
    )
    assert service.execution(THING, "job-1").version_number == 4
    assert service.violations == ["host-1/job-1: clientToken 't' reused for a different update"]


@pytest.mark.asyncio
async def test_updates_for_unknown_or_queued_jobs(service: FakeJobsService, agent: Agent) -> None:
    """An unknown job gives ResourceNotFound; a QUEUED one is accepted (as on AWS) but recorded,
    and so is a second execution started while one is IN_PROGRESS."""
    unknown = await agent.update("nope", "rejected", status="IN_PROGRESS", clientToken="x")
    assert unknown["code"] == "ResourceNotFound"
    assert unknown["message"] == "Job execution nope was not found for thing host-1"

    service.queue_job(THING, "job-1", DOC_1)
    service.queue_job(THING, "job-2", DOC_2)
    await agent.start_next()
    accepted = await agent.update("job-2", "accepted", status="IN_PROGRESS", clientToken="y")
    assert accepted["clientToken"] == "y"
    started = service.execution(THING, "job-2")
    assert (started.status, started.version_number) == (JobStatus.IN_PROGRESS, 2)
    assert started.started_at is not None
    assert service.violations == [
        "host-1/nope: update for a job this thing does not have",
        "host-1/job-2: update to IN_PROGRESS for a QUEUED execution (start it with start-next first)",
        "host-1: job-2 started while job-1 is IN_PROGRESS",
    ]


@pytest.mark.asyncio
async def test_malformed_requests_are_rejected_and_recorded(
    service: FakeJobsService, agent: Agent
) -> None:
    """Bad JSON gives InvalidJson without a clientToken; a missing or mistyped field, or a
    status a device may not set, gives InvalidRequest with the token."""
    service.queue_job(THING, "job-1", DOC_1)
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
    assert service.execution(THING, "job-1").version_number == 2
    assert [v.split(": ")[1] for v in service.violations] == [
        "InvalidJson",
        "InvalidRequest",
        "InvalidRequest",
        "InvalidRequest",
    ]


@pytest.mark.asyncio
async def test_reject_next_update_injects_a_rejection(
    service: FakeJobsService, agent: Agent
) -> None:
    """reject_next_update answers the next update with the code (and the state for
    VersionMismatch) without applying it; the following update is served normally."""
    service.queue_job(THING, "job-1", DOC_1)
    await agent.start_next()
    service.reject_next_update(RejectedErrorCode.VERSION_MISMATCH)
    service.reject_next_update(RejectedErrorCode.INVALID_REQUEST, message="injected")
    rejected = await agent.update("job-1", "rejected", status="SUCCEEDED", clientToken="a")
    invalid = await agent.update("job-1", "rejected", status="SUCCEEDED", clientToken="a")
    accepted = await agent.update("job-1", "accepted", status="SUCCEEDED", clientToken="b")
    assert rejected["code"] == "VersionMismatch"
    assert rejected["executionState"] == {"status": "IN_PROGRESS", "versionNumber": 2}
    assert without_timestamp(invalid) == {
        "code": "InvalidRequest",
        "message": "injected",
        "clientToken": "a",
    }
    assert accepted["clientToken"] == "b"
    assert service.violations == []


# --- service actions and timers -------------------------------------------------------------


@pytest.mark.asyncio
async def test_cancel_publishes_notify_without_the_job_and_the_agent_reads_it(
    service: FakeJobsService, agent: Agent
) -> None:
    """Cancelling an IN_PROGRESS job publishes notify without it and an empty notify-next;
    `{jobId}/get` shows CANCELED; an update racing the cancel is no violation, one after the
    agent read the verdict is."""
    topics = agent.topics
    service.queue_job(THING, "job-1", DOC_1)
    await agent.start_next()
    with pytest.raises(ValueError, match="is IN_PROGRESS; cancel it with force"):
        service.cancel_job(THING, "job-1", force=False)

    service.cancel_job(THING, "job-1")

    notify = await agent.wait(topics.notify, 2)
    assert without_timestamp(notify) == {"jobs": {}}
    notify_next = await agent.wait(topics.notify_next, 2)
    assert without_timestamp(notify_next) == {}
    racing = await agent.update("job-1", "rejected", status="IN_PROGRESS", clientToken="r")
    assert racing["code"] == "TerminalStateReached"
    assert service.violations == []

    described = await agent.call(
        topics.get("job-1"), {"clientToken": "g"}, topics.get_accepted("job-1")
    )
    assert described["execution"]["status"] == "CANCELED"
    assert described["execution"]["versionNumber"] == 3
    await agent.update("job-1", "rejected", status="FAILED", clientToken="late")
    assert service.violations == [
        "host-1/job-1: update to FAILED after the execution ended (CANCELED)"
    ]


@pytest.mark.asyncio
async def test_remove_job_of_a_queued_execution(service: FakeJobsService, agent: Agent) -> None:
    """remove_job sets REMOVED and the next job becomes `$next`."""
    service.queue_job(THING, "job-1", DOC_1)
    service.queue_job(THING, "job-2", DOC_2)
    await agent.wait(agent.topics.notify, 2)
    service.remove_job(THING, "job-1")
    notify_next = await agent.wait(agent.topics.notify_next, 2)
    assert notify_next["execution"]["jobId"] == "job-2"
    assert service.execution(THING, "job-1").status is JobStatus.REMOVED


@pytest.mark.asyncio
async def test_step_timeout_times_the_execution_out_and_updates_replace_it(
    broker: MosquittoBroker, agent: Agent
) -> None:
    """The step timer of start-next is replaced by an update's stepTimeoutInMinutes (counted
    from the update); when it expires the execution is TIMED_OUT and notify is published."""
    # A minute lasts 0.4 s: the two timers end 1.2 s apart, room enough on a loaded machine.
    async with FakeJobsService("127.0.0.1", broker.port, time_scale=0.4) as service:
        service.queue_job(THING, "job-1", DOC_1)
        await agent.start_next(stepTimeoutInMinutes=2)  # 0.8 s
        await agent.update(
            "job-1", "accepted", status="IN_PROGRESS", stepTimeoutInMinutes=5, clientToken="u"
        )  # 2.0 s from now
        await asyncio.sleep(1.0)
        assert service.execution(THING, "job-1").status is JobStatus.IN_PROGRESS

        timed_out = await service.wait_for_status(THING, "job-1", JobStatus.TIMED_OUT, timeout=10)

        assert timed_out.version_number == 4
        notify = await agent.wait(agent.topics.notify, 2)
        assert notify["jobs"] == {}
        assert service.violations == []


@pytest.mark.asyncio
async def test_the_queued_step_timer_runs_on_through_updates_without_a_step_timeout(
    broker: MosquittoBroker, agent: Agent
) -> None:
    """queue_job's step timer applies when start-next names none, and an update without
    stepTimeoutInMinutes does not restart it."""
    # A minute lasts 1.5 s: the right timer and a restarted one end 1.5 s apart.
    async with FakeJobsService("127.0.0.1", broker.port, time_scale=1.5) as service:
        service.queue_job(THING, "job-1", DOC_1, step_timeout_minutes=2)  # 3 s
        started = time.monotonic()
        await agent.start_next()
        await asyncio.sleep(1.5)
        await agent.update("job-1", "accepted", status="IN_PROGRESS", clientToken="u")
        await service.wait_for_status(THING, "job-1", JobStatus.TIMED_OUT, timeout=10)
        # A restarted timer would have fired 4.5 s after the start.
        assert 2.9 < time.monotonic() - started < 3.9


@pytest.mark.asyncio
async def test_in_progress_timeout_is_not_extended_by_step_timers(
    service: FakeJobsService, agent: Agent
) -> None:
    """The job's in-progress timer ends the execution even while step timers are renewed."""
    service.queue_job(THING, "job-1", DOC_1, in_progress_timeout_minutes=1.5)  # 0.3 s
    started = time.monotonic()
    await agent.start_next(stepTimeoutInMinutes=100)
    await agent.update(
        "job-1", "accepted", status="IN_PROGRESS", stepTimeoutInMinutes=100, clientToken="u"
    )
    await service.wait_for_status(THING, "job-1", {JobStatus.TIMED_OUT}, timeout=10)
    # The step timers would end it after 20 s.
    assert 0.25 < time.monotonic() - started < 5


# --- reads ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_describe_next_and_get_pending(service: FakeJobsService, agent: Agent) -> None:
    """`$next/get` returns the next pending execution (ResourceNotFound when none, no document
    when includeJobDocument is false); `get` lists IN_PROGRESS and QUEUED summaries."""
    topics = agent.topics
    none = await agent.call(
        topics.get("$next"), {"clientToken": "n0"}, topics.get_rejected("$next")
    )
    assert (none["code"], none["clientToken"]) == ("ResourceNotFound", "n0")

    service.queue_job(THING, "job-1", DOC_1)
    service.queue_job(THING, "job-2", DOC_2)
    queued = await agent.call(
        topics.get("$next"), {"clientToken": "n1"}, topics.get_accepted("$next")
    )
    assert queued["execution"]["jobId"] == "job-1"
    assert queued["execution"]["status"] == "QUEUED"
    assert queued["execution"]["jobDocument"] == DOC_1

    await agent.start_next()
    bare = await agent.call(
        topics.get("$next"),
        {"clientToken": "n2", "includeJobDocument": False},
        topics.get_accepted("$next"),
    )
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
    assert service.violations == []


@pytest.mark.asyncio
async def test_a_job_id_queued_again_is_a_new_execution(
    service: FakeJobsService, agent: Agent
) -> None:
    """Once ended, a job id may be queued again: a new execution number, found by default, the
    old one by executionNumber."""
    service.queue_job(THING, "job-1", DOC_1)
    with pytest.raises(ValueError, match="already has a pending execution of job-1"):
        service.queue_job(THING, "job-1", DOC_1)
    await agent.start_next()
    await agent.update("job-1", "accepted", status="FAILED", clientToken="f")
    service.queue_job(THING, "job-1", DOC_2)
    topics = agent.topics
    latest = await agent.call(
        topics.get("job-1"), {"clientToken": "a"}, topics.get_accepted("job-1")
    )
    first = await agent.call(
        topics.get("job-1"),
        {"clientToken": "b", "executionNumber": 1},
        topics.get_accepted("job-1"),
    )
    assert (latest["execution"]["executionNumber"], latest["execution"]["status"]) == (2, "QUEUED")
    assert (first["execution"]["executionNumber"], first["execution"]["status"]) == (1, "FAILED")


# --- observation ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_presence_logs_and_the_request_log(service: FakeJobsService, agent: Agent) -> None:
    """Presence (retained) and log lines are recorded per thing; requests() filters the log."""
    presence = {
        "state": "online",
        "agentVersion": "0.1.0",
        "hostname": "h",
        "startedAt": "2026-01-01T00:00:00Z",
    }
    await agent.client.publish(
        f"codedeploy/things/{THING}/presence", msgspec.json.encode(presence), qos=1, retain=True
    )
    await agent.client.publish(f"codedeploy/things/{THING}/logs/d-1", b"line 1\nline 2\n", qos=1)
    await agent.client.publish(f"codedeploy/things/{THING}/logs/d-1", b"line 3", qos=1)
    await service.wait_for(lambda: len(service.log_lines(THING, "d-1")) == 3)
    await service.wait_for(lambda: service.presence(THING) is not None)

    seen = service.presence(THING)
    assert seen is not None
    assert (seen.state, seen.hostname) == ("online", "h")
    assert service.log_lines(THING, "d-1") == ["line 1", "line 2", "line 3"]
    await agent.start_next("s")
    assert service.requests(THING) == [
        (agent.topics.start_next, {"clientToken": "s"}),
    ]
    assert service.violations == []


@pytest.mark.asyncio
async def test_messages_of_another_thing_are_violations(
    service: FakeJobsService, broker: MosquittoBroker
) -> None:
    """A request on a thing not in `things` is served but recorded."""
    async with open_agent(broker.port, "host-2") as other:
        reply = await other.start_next("o")
    assert "execution" not in reply
    assert service.violations == [
        "message on another thing's topic: codedeploy/things/host-2/jobs/start-next"
    ]


@pytest.mark.asyncio
async def test_wait_for_timeout_says_what_the_service_saw(service: FakeJobsService) -> None:
    """wait_for_status gives up with the executions and the violations in the message."""
    service.queue_job(THING, "job-1", DOC_1)
    with pytest.raises(TimeoutError, match=r"executions: host-1/job-1#1=QUEUED\(v1\)"):
        await service.wait_for_status(THING, "job-1", JobStatus.SUCCEEDED, timeout=0.2)


# --- connection -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_service_reconnects_after_a_broker_restart(
    service: FakeJobsService, broker: MosquittoBroker
) -> None:
    """After the broker restarts the service connects again and serves requests."""
    service.queue_job(THING, "job-1", DOC_1)
    await service.flush()
    await asyncio.to_thread(broker.restart)
    await service.wait_for(lambda: service.connections == 2, timeout=10)
    async with open_agent(broker.port) as agent:
        reply = await agent.start_next("after-restart")
    assert reply["execution"]["jobId"] == "job-1"
    assert service.violations == []


@pytest.mark.asyncio
async def test_mqtt_3_1_1(broker: MosquittoBroker, agent: Agent) -> None:
    """The service also speaks MQTT 3.1.1."""
    async with FakeJobsService("127.0.0.1", broker.port, protocol="3.1.1") as service:
        service.queue_job(THING, "job-1", DOC_1)
        reply = await agent.start_next()
    assert reply["execution"]["jobId"] == "job-1"


# --- bundle helpers (tests/fakes/bundles.py) ------------------------------------------------


def test_write_bundle_writes_an_appspec_the_agent_parses(tmp_path: Path) -> None:
    """write_bundle's appspec parses with the agent's parser and its scripts are executable."""
    root = write_bundle(
        tmp_path / "b",
        {"BeforeInstall": "echo before", "ValidateService": "#!/bin/sh\nexit 0"},
        files={"app/index.html": "hello"},
        install={"app": "/srv/app"},
        timeouts={"ValidateService": 5},
        runas={"BeforeInstall": "nobody"},
    )
    appspec = parse_appspec((root / "appspec.yml").read_text())
    before = appspec.hooks["BeforeInstall"][0]
    validate = appspec.hooks["ValidateService"][0]
    assert (before.location, before.timeout, before.runas) == (
        "scripts/BeforeInstall.sh",
        60,
        "nobody",
    )
    assert (validate.location, validate.timeout) == ("scripts/ValidateService.sh", 5)
    assert [(f.source, f.destination) for f in appspec.files] == [("app", "/srv/app")]
    assert (root / "scripts/BeforeInstall.sh").read_text() == "#!/bin/bash\necho before\n"
    assert (root / "scripts/ValidateService.sh").stat().st_mode & 0o777 == 0o755
    assert (root / "app/index.html").read_text() == "hello"


def test_make_tgz_puts_the_appspec_at_the_archive_root(tmp_path: Path) -> None:
    """make_tgz packs the directory's contents, modes kept."""
    root = write_bundle(tmp_path / "b", {"BeforeInstall": "true"})
    archive = make_tgz(root, tmp_path / "out" / "bundle.tgz")
    with tarfile.open(archive) as tar:
        members = {m.name: m.mode for m in tar.getmembers()}
    assert sorted(members) == ["appspec.yml", "scripts", "scripts/BeforeInstall.sh"]
    assert members["scripts/BeforeInstall.sh"] == 0o755


def test_signed_documents_are_accepted_and_expired_or_corrupted_ones_rejected(
    tmp_path: Path,
) -> None:
    """signed_job_document builds a document the agent accepts with the public key; an expired
    one is rejected JobExpired, a corrupted signature SignatureInvalid."""
    private, public = make_keys(tmp_path / "keys")
    trusted = {"cp-1": load_public_key(public)}
    now = datetime.now(UTC)
    kwargs: dict[str, Any] = {
        "deployment_id": "d-ABC",
        "group_id": "dg-1",
        "location": tmp_path / "b",
        "bundle_type": "directory",
    }
    document = signed_job_document(load_private_key(private), "cp-1", **kwargs)
    accepted = accept_job_document(document, trusted_keys=trusted, now=now)
    assert document["Revision"] == {
        "RevisionType": "Local Directory",
        "LocalRevision": {"Location": str(tmp_path / "b"), "BundleType": "directory"},
    }
    assert accepted.lifecycle_events[0] == "ApplicationStop"

    expired = signed_job_document(private, "cp-1", expires_in=timedelta(minutes=-5), **kwargs)
    with pytest.raises(JobRejected) as expired_error:
        accept_job_document(expired, trusted_keys=trusted, now=now)
    assert expired_error.value.reason_code is RejectReason.JOB_EXPIRED

    with pytest.raises(JobRejected) as corrupted_error:
        accept_job_document(corrupt_signature(document), trusted_keys=trusted, now=now)
    assert corrupted_error.value.reason_code is RejectReason.SIGNATURE_INVALID

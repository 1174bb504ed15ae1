"""What the daemon keeps across restarts and outages, with the real `codedeploy-agent run`: the
state_dir / root_dir locks, the job ledger (a job id never runs twice), the outbox (updates
queued offline are delivered once, even after SIGKILL), the ongoing-deployment markers, and a
resent update that AWS answers with VersionMismatch."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from codedeploy_agent.protocol.messages import JobStatus, PresenceState
from codedeploy_agent.protocol.topics import TopicKind
from tests.daemon.conftest import KEY_ID, THING, Agent
from tests.daemon.test_daemon import IN_PLACE, document, events_reported
from tests.fakes.brokers import MosquittoBroker
from tests.fakes.bundles import write_bundle
from tests.fakes.jobs_service import FakeJobsService

pytestmark = [pytest.mark.broker, pytest.mark.asyncio]


async def wait_online(service: FakeJobsService, thing: str = THING) -> None:
    await service.wait_for(
        lambda: (p := service.presence(thing)) is not None and p.state is PresenceState.ONLINE,
        timeout=30,
    )


def outbox_requests(agent: Agent) -> list[dict[str, object]]:
    """The update requests waiting in the agent's outbox, oldest first."""
    requests = []
    for path in sorted((agent.state_dir / "outbox").glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            continue  # accepted and removed by the running agent since the listing
        requests.append(json.loads(record["request"]))
    return requests


def wait_until(predicate: Callable[[], bool], what: str, agent: Agent, timeout: float = 30) -> None:
    """Poll `predicate()` (blocking: call through asyncio.to_thread) until true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:g} s\n{agent.output()}")
        time.sleep(0.05)


# --- one agent per state_dir and root_dir ------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "key"), [("state_dir", "state_dir"), (":root_dir:", ":root_dir")]
)
async def test_second_agent_sharing_a_directory_is_refused(  # noqa: PLR0917 - fixtures + params
    agent: Agent,
    service: FakeJobsService,
    keys: tuple[Path, Path],
    tmp_path: Path,
    setting: str,
    key: str,
) -> None:
    """An agent with its own pid_dir but the running agent's state_dir (or root_dir) refuses to
    start, naming the directory and the running agent's pid; the running one is unaffected."""
    agent.start()
    await wait_online(service)
    assert agent.process is not None
    shared = agent.state_dir if setting == "state_dir" else agent.root_dir
    other = Agent(tmp_path / "other", agent.endpoint, thing="host-2")
    other.base.mkdir()
    other.extra = {
        key: str(shared),  # the spelling Agent.write_config uses
        "security": {"trusted_keys": {KEY_ID: str(agent.base / "keys" / "signing.pub.pem")}},
    }
    other.start()
    try:
        assert await asyncio.to_thread(other.wait, 30) == 1
    finally:
        other.kill()
    assert (
        f"ERROR: Could not acquire lock on {shared}/.lock - aborting start! The {setting} "
        f"{shared} is in use: another agent (PID {agent.process.pid}) uses it. Two agents "
        f"sharing a {setting} would "
    ) in other.output()
    assert f"Stop that agent first, or give this one its own {setting}." in other.output()
    assert agent.process.poll() is None
    bundle = write_bundle(tmp_path / "bundle", {"ApplicationStart": "true"})
    service.queue_job(THING, "job-1", document(keys, bundle, "d-SHARED001"))
    await service.wait_for_status(THING, "job-1", {JobStatus.SUCCEEDED}, timeout=30)
    assert service.violations == []


# --- the ledger: a job id that ended here never runs again ------------------------------------


@pytest.mark.parametrize("outcome", [JobStatus.SUCCEEDED, JobStatus.FAILED])
async def test_a_job_that_ended_here_is_never_run_again(
    agent: Agent,
    service: FakeJobsService,
    keys: tuple[Path, Path],
    tmp_path: Path,
    outcome: JobStatus,
) -> None:
    """The service offers a job id again (a new execution) after the agent restarted: no hook
    runs a second time, and the new execution gets the first outcome with a message saying so
    (PROTOCOL.md, agent behaviour 6)."""
    runs = tmp_path / "runs"
    hooks = {"BeforeInstall": f"echo ran >> {runs}"}
    if outcome is JobStatus.FAILED:
        hooks["AfterInstall"] = "exit 3"
    doc = document(keys, write_bundle(tmp_path / "bundle", hooks), "d-TWICE0001")
    service.queue_job(THING, "job-1", doc)
    agent.start()
    first = await service.wait_for_status(
        THING, "job-1", {JobStatus.SUCCEEDED, JobStatus.FAILED}, timeout=30
    )
    assert first.status is outcome
    # In a thread: the service on this loop must go on answering while the agent stops.
    await asyncio.to_thread(agent.stop)
    service.queue_job(THING, "job-1", doc)
    agent.start()
    second = await service.wait_for_status(
        THING, "job-1", {JobStatus.SUCCEEDED, JobStatus.FAILED}, timeout=30
    )
    assert second.execution_number != first.execution_number
    assert second.status is outcome
    assert runs.read_text() == "ran\n"
    updates = service.updates(THING, "job-1", execution_number=second.execution_number)
    assert [u.status for u in updates] == [outcome]
    details = updates[0].status_details
    assert details["message"] == (
        f"This job already ended {outcome.value} on this host; it is not run twice."
    )
    if outcome is JobStatus.FAILED:
        assert details["lifecycleEvent"] == "AfterInstall"
        assert details["errorCode"] == "UnknownError"
    assert service.violations == []


# --- the outbox: updates queued offline ---------------------------------------------------------


async def run_job_offline(
    agent: Agent,
    service: FakeJobsService,
    broker: MosquittoBroker,
    keys: tuple[Path, Path],
    tmp_path: Path,
) -> dict[str, int]:
    """Start a job, stop the broker while its AfterInstall hook runs, let the job end offline;
    return the clientTokens of the updates then waiting in the outbox (SUCCEEDED last), each with
    how often the service had already received it (1 when only its reply was lost)."""
    started, gate = tmp_path / "started", tmp_path / "go"
    bundle = write_bundle(
        tmp_path / "bundle",
        {"AfterInstall": f"touch {started}; while [ ! -e {gate} ]; do sleep 0.1; done"},
    )
    service.queue_job(THING, "job-o", document(keys, bundle, "d-OFFLINE01"))
    agent.start()
    await service.wait_for(started.exists, timeout=30)
    await asyncio.to_thread(broker.stop)
    # The agent must know the broker is gone before the hook ends: an update published into a
    # connection that is already dead could come back as MQTT's own retransmission.
    await asyncio.to_thread(
        wait_until,
        lambda: agent.status().get("broker_connected") is False,
        "the agent never noticed the broker stopped",
        agent,
    )
    gate.touch()
    await asyncio.to_thread(
        wait_until,
        lambda: any(r["status"] == "SUCCEEDED" for r in outbox_requests(agent)),
        "the job's SUCCEEDED update never reached the outbox",
        agent,
    )
    queued = outbox_requests(agent)
    assert [r["status"] for r in queued][-1] == "SUCCEEDED"
    assert len(queued) >= 4  # AfterInstall, ApplicationStart, ValidateService, SUCCEEDED
    received = update_tokens(service)
    return {str(r["clientToken"]): received.count(str(r["clientToken"])) for r in queued}


def update_tokens(service: FakeJobsService) -> list[str]:
    return [str(p["clientToken"]) for _, p in service.requests(THING, TopicKind.UPDATE)]


def assert_delivered_once(agent: Agent, service: FakeJobsService, queued: dict[str, int]) -> None:
    """Every event was applied once, the job ended SUCCEEDED, and the outbox emptied.

    Not "each queued update was received exactly once more": MQTT QoS 1 is at-least-once on
    each leg (the broker may hand the service an update it took before stopping as well as the
    agent's resend), and an update answered with VersionMismatch is retried under a new
    clientToken. What must hold is that the service applied each outcome once.
    """
    assert [e for e, _ in events_reported(service, "job-o")] == IN_PLACE
    received = update_tokens(service)
    final = list(queued)[-1]  # the SUCCEEDED update (run_job_offline checks it is last)
    assert received.count(final) > queued[final], "the SUCCEEDED update was never resent"
    wait_until(lambda: outbox_requests(agent) == [], "the outbox was never emptied", agent)
    assert service.violations == []


async def test_updates_queued_while_the_broker_is_down_are_sent_once(
    agent: Agent,
    service: FakeJobsService,
    broker: MosquittoBroker,
    keys: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    """The broker stops while a hook runs and the job ends offline: once the broker is back,
    every queued update is delivered and applied once, and the job is SUCCEEDED."""
    tokens = await run_job_offline(agent, service, broker, keys, tmp_path)
    await asyncio.to_thread(broker.start)
    await service.wait_for_status(THING, "job-o", {JobStatus.SUCCEEDED}, timeout=60)
    await asyncio.to_thread(assert_delivered_once, agent, service, tokens)


async def test_outbox_survives_sigkill(
    agent: Agent,
    service: FakeJobsService,
    broker: MosquittoBroker,
    keys: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    """SIGKILL with updates waiting in the outbox: the restarted agent delivers them (each
    applied once) and reports no FailedAfterRestart (the job had ended)."""
    tokens = await run_job_offline(agent, service, broker, keys, tmp_path)
    agent.kill()
    assert [str(r["clientToken"]) for r in outbox_requests(agent)] == list(tokens)
    await asyncio.to_thread(broker.start)
    agent.start()
    execution = await service.wait_for_status(THING, "job-o", {JobStatus.SUCCEEDED}, timeout=60)
    assert "errorCode" not in execution.status_details
    await asyncio.to_thread(assert_delivered_once, agent, service, tokens)


# --- AWS does not de-duplicate by clientToken ---------------------------------------------------


@pytest.mark.slow
async def test_resent_update_answered_with_version_mismatch_is_not_applied_twice(
    agent: Agent, service: FakeJobsService, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """As on AWS, a resend after a lost reply is a new request: it carries the old
    expectedVersion and gets VersionMismatch. The agent sees from the returned state that its
    update was applied and moves on instead of applying it again under a new token."""
    service.ignore_client_tokens = True
    bundle = write_bundle(tmp_path / "bundle", {"ApplicationStart": "true"})
    service.drop_next_responses(1, topic_suffix="update/accepted")
    service.queue_job(THING, "job-v", document(keys, bundle, "d-MISMATCH1"))
    agent.start()
    await service.wait_for_status(THING, "job-v", {JobStatus.SUCCEEDED}, timeout=60)
    assert [e for e, _ in events_reported(service, "job-v")] == IN_PLACE
    assert len(service.dropped) == 1
    lost = service.dropped[0][1]["clientToken"]
    rejected = [p for topic, p in service.log if topic.endswith("/update/rejected")]
    assert [(p["code"], p["clientToken"]) for p in rejected] == [("VersionMismatch", lost)]
    assert service.violations == []


# --- ongoing-deployment markers -----------------------------------------------------------------


async def test_ongoing_deployment_markers_cleared_after_a_restart(
    agent: Agent, service: FakeJobsService, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """SIGKILL mid-hook leaves `ongoing-deployment/<d-id>`; the restarted agent reports the job
    FailedAfterRestart and clears the markers, a stray one (no job in the ledger) included."""
    pid_file = tmp_path / "hook.pid"
    bundle = write_bundle(tmp_path / "bundle", {"AfterInstall": f"echo $$ > {pid_file}\nsleep 300"})
    service.queue_job(THING, "job-m", document(keys, bundle, "d-MARKER001"))
    agent.start()
    await service.wait_for(
        lambda: pid_file.exists() and pid_file.read_text().strip() != "", timeout=30
    )
    ongoing = agent.root_dir / "ongoing-deployment"
    try:
        assert (ongoing / "d-MARKER001").read_text() == "job-m"
        agent.kill()
    finally:
        psutil.Process(int(pid_file.read_text())).kill()  # the orphaned hook
    (ongoing / "d-STRAY0001").write_text("job-stray")
    os.utime(ongoing / "d-STRAY0001", (time.time() + 5, time.time() + 5))  # the newest
    agent.start()
    failed = await service.wait_for_status(THING, "job-m", {JobStatus.FAILED}, timeout=30)
    assert failed.status_details["errorCode"] == "FailedAfterRestart"
    assert failed.status_details["lifecycleEvent"] == "AfterInstall"
    assert sorted(ongoing.iterdir()) == []
    log = agent.log_file.read_text()
    assert "ongoing-deployment marker of a job the ledger does not list as running" in log
    assert "job_id=job-stray" in log
    assert service.violations == []

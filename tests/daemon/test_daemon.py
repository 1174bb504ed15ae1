"""Acceptance tests: the real `codedeploy-agent run` driven over MQTT by a Jobs service built
from PROTOCOL.md (issue acceptance list)."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import psutil
import pytest

from codedeploy_agent.protocol.messages import JobStatus, PresenceState, restore_newlines
from tests.daemon.conftest import KEY_ID, THING, Agent
from tests.fakes.brokers import MosquittoBroker
from tests.fakes.bundles import corrupt_signature, job_document, signed_job_document, write_bundle
from tests.fakes.jobs_service import FakeJobsService

pytestmark = [pytest.mark.broker, pytest.mark.asyncio]

IN_PLACE = [
    "ApplicationStop",
    "DownloadBundle",
    "BeforeInstall",
    "Install",
    "AfterInstall",
    "ApplicationStart",
    "ValidateService",
]


def document(keys: tuple[Path, Path], bundle: Path, deployment_id: str, **extra: object) -> dict:  # type: ignore[type-arg]
    return signed_job_document(
        keys[0],
        KEY_ID,
        deployment_id=deployment_id,
        group_id="dg-web",
        location=bundle,
        bundle_type="directory",
        **extra,  # type: ignore[arg-type]
    )


def events_reported(service: FakeJobsService, job_id: str) -> list[tuple[str, str]]:
    """(lifecycleEvent, eventStatus) of every accepted IN_PROGRESS update with an outcome."""
    return [
        (u.status_details["lifecycleEvent"], u.status_details["eventStatus"])
        for u in service.updates(THING, job_id)
        if u.status is JobStatus.IN_PROGRESS and "endTime" in u.status_details
    ]


async def test_successful_deployment(
    agent: Agent, service: FakeJobsService, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """A queued job runs every in-place event, reports each one, then SUCCEEDED; presence is
    online and live log lines arrive. Events with nothing to run (the first deployment's
    ApplicationStop, events without scripts) are reported Succeeded, as CodeDeploy shows them."""
    bundle = write_bundle(
        tmp_path / "bundle",
        {"BeforeInstall": "echo before", "ApplicationStart": "echo started; echo oops >&2"},
    )
    service.queue_job(THING, "job-1", document(keys, bundle, "d-AAAAAAAA1"))
    agent.start()
    execution = await service.wait_for_status(THING, "job-1", {JobStatus.SUCCEEDED}, timeout=30)
    assert execution.status is JobStatus.SUCCEEDED
    assert events_reported(service, "job-1") == [
        ("ApplicationStop", "Succeeded"),
        ("DownloadBundle", "Succeeded"),
        ("BeforeInstall", "Succeeded"),
        ("Install", "Succeeded"),
        ("AfterInstall", "Succeeded"),
        ("ApplicationStart", "Succeeded"),
        ("ValidateService", "Succeeded"),
    ]
    presence = service.presence(THING)
    assert presence is not None
    assert presence.state is PresenceState.ONLINE
    await service.wait_for(
        lambda: any("[stdout]started" in line for line in service.log_lines(THING, "d-AAAAAAAA1"))
    )
    scripts_log = agent.root_dir / "dg-web" / "d-AAAAAAAA1" / "logs" / "scripts.log"
    assert "[stderr]oops" in scripts_log.read_text()
    assert service.violations == []


async def test_deleted_previous_revision_reports_application_stop_skipped(
    agent: Agent, service: FakeJobsService, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """When the previous revision's directory was deleted by hand, the next job reports its
    ApplicationStop Skipped (its scripts could not run) and still SUCCEEDS."""
    marker = tmp_path / "stopped"
    bundle = write_bundle(tmp_path / "bundle", {"ApplicationStop": f"echo stop >> {marker}"})
    service.queue_job(THING, "job-1", document(keys, bundle, "d-DELETED01"))
    agent.start()
    await service.wait_for_status(THING, "job-1", {JobStatus.SUCCEEDED}, timeout=30)
    shutil.rmtree(agent.root_dir / "dg-web" / "d-DELETED01")
    service.queue_job(THING, "job-2", document(keys, bundle, "d-DELETED02"))
    await service.wait_for_status(THING, "job-2", {JobStatus.SUCCEEDED}, timeout=30)
    assert events_reported(service, "job-2") == [
        ("ApplicationStop", "Skipped"),
        *((event, "Succeeded") for event in IN_PLACE[1:]),
    ]
    assert not marker.exists()
    assert service.violations == []


async def test_script_failure_reports_failed_with_log_tail(
    agent: Agent, service: FakeJobsService, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """A failing hook ends the job FAILED with ScriptFailed, the script name and its output."""
    bundle = write_bundle(
        tmp_path / "bundle", {"AfterInstall": "echo line one\necho line two >&2\nexit 7"}
    )
    service.queue_job(THING, "job-f", document(keys, bundle, "d-FAILED001"))
    agent.start()
    execution = await service.wait_for_status(THING, "job-f", {JobStatus.FAILED}, timeout=30)
    details = execution.status_details
    assert details["lifecycleEvent"] == "AfterInstall"
    assert details["errorCode"] == "ScriptFailed"
    assert details["scriptName"] == "scripts/AfterInstall.sh"
    assert details["message"] == (
        "Script at specified location: scripts/AfterInstall.sh failed with exit code 7"
    )
    tail = restore_newlines(details["logTail"])
    assert "[stdout]line one\n[stderr]line two\n" in tail
    assert [e for e, _ in events_reported(service, "job-f")] == IN_PLACE[:4]
    assert service.violations == []


@pytest.mark.parametrize(
    ("make_doc", "code"),
    [
        ("expired", "JobExpired"),
        ("bad-signature", "SignatureInvalid"),
        ("unsigned", "SignatureInvalid"),
        ("malformed", "InvalidJobDocument"),
    ],
)
async def test_rejected_jobs(  # noqa: PLR0917 - fixtures plus two parameters
    agent: Agent,
    service: FakeJobsService,
    keys: tuple[Path, Path],
    tmp_path: Path,
    make_doc: str,
    code: str,
) -> None:
    """Jobs that can never succeed here are REJECTED with the reason, and no hook runs."""
    marker = tmp_path / "ran"
    bundle = write_bundle(tmp_path / "bundle", {"BeforeInstall": f"touch {marker}"})
    if make_doc == "expired":
        doc = document(keys, bundle, "d-EXPIRED01", expires_in=timedelta(minutes=-5))
    elif make_doc == "bad-signature":
        doc = corrupt_signature(document(keys, bundle, "d-BADSIG001"))
    elif make_doc == "unsigned":
        doc = job_document(
            deployment_id="d-UNSIGNED1", group_id="g", location=bundle, bundle_type="directory"
        )
    else:
        doc = document(keys, bundle, "d-MALFORMED")
        doc.pop("Signature")
        doc["Revision"] = {"RevisionType": "Local Directory"}
        agent.extra["security"] = {"trusted_keys": {}}
    service.queue_job(THING, "job-r", doc)
    agent.start()
    execution = await service.wait_for_status(THING, "job-r", {JobStatus.REJECTED}, timeout=30)
    assert execution.status_details["errorCode"] == code
    assert execution.status_details["message"]
    assert not marker.exists()
    assert service.violations == []


async def test_cancel_mid_hook_kills_it_and_takes_the_next_job(
    agent: Agent, service: FakeJobsService, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """CANCELED while a hook runs: the hook's process tree dies, nothing more is reported for
    that job, and the next job runs."""
    pid_file = tmp_path / "hook.pid"
    slow = write_bundle(
        tmp_path / "slow",
        {"ApplicationStart": f"echo $$ > {pid_file}\nsleep 300 &\necho $! >> {pid_file}\nwait"},
    )
    quick = write_bundle(tmp_path / "quick", {"ApplicationStart": "true"})
    service.queue_job(THING, "job-c", document(keys, slow, "d-CANCEL001"))
    service.queue_job(THING, "job-n", document(keys, quick, "d-NEXT00001"))
    agent.start()
    await service.wait_for(
        lambda: pid_file.exists() and len(pid_file.read_text().split()) == 2, timeout=30
    )
    pids = [int(p) for p in pid_file.read_text().split()]
    assert all(psutil.pid_exists(p) for p in pids)
    updates_before = len(service.updates(THING, "job-c"))
    service.cancel_job(THING, "job-c", force=True)
    await service.wait_for_status(THING, "job-n", {JobStatus.SUCCEEDED}, timeout=30)
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert len(service.updates(THING, "job-c")) == updates_before
    assert service.execution(THING, "job-c").status is JobStatus.CANCELED
    assert service.violations == []


async def test_broker_restart_mid_deployment(
    agent: Agent,
    service: FakeJobsService,
    broker: MosquittoBroker,
    keys: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    """The broker restarts while a hook runs: no update is lost and none is applied twice."""
    started = tmp_path / "started"
    bundle = write_bundle(
        tmp_path / "bundle",
        {"AfterInstall": f"touch {started}; sleep 3", "ValidateService": "true"},
    )
    service.queue_job(THING, "job-b", document(keys, bundle, "d-BROKER001"))
    agent.start()
    await service.wait_for(started.exists, timeout=30)
    broker.restart()
    execution = await service.wait_for_status(THING, "job-b", {JobStatus.SUCCEEDED}, timeout=60)
    assert execution.status is JobStatus.SUCCEEDED
    assert [e for e, _ in events_reported(service, "job-b")] == IN_PLACE
    assert service.violations == []


@pytest.mark.parametrize(
    "event",
    ["ApplicationStop", "BeforeInstall", "AfterInstall", "ApplicationStart", "ValidateService"],
)
async def test_sigkill_in_a_hook_then_failed_after_restart(
    agent: Agent, service: FakeJobsService, keys: tuple[Path, Path], tmp_path: Path, event: str
) -> None:
    """SIGKILL in any hook: the restarted agent reports FailedAfterRestart for that event first,
    keeps the last-successful pointer right, and runs the next job."""
    hooks = dict.fromkeys(
        ("ApplicationStop", "BeforeInstall", "AfterInstall", "ApplicationStart", "ValidateService"),
        "true",
    )
    v1 = write_bundle(tmp_path / "v1", hooks)
    v2 = write_bundle(tmp_path / "v2", {**hooks, event: "sleep 300"})
    v3 = write_bundle(tmp_path / "v3", hooks)
    service.queue_job(THING, "job-1", document(keys, v1, "d-KILL00001"))
    agent.start()
    await service.wait_for_status(THING, "job-1", {JobStatus.SUCCEEDED}, timeout=30)
    stop_script = (
        agent.root_dir / "dg-web/d-KILL00001/deployment-archive/scripts/ApplicationStop.sh"
    )
    if event == "ApplicationStop":
        # ApplicationStop runs the *previous* revision's script: make v1's the slow one.
        stop_script.write_text("#!/bin/sh\nsleep 300\n")
    service.queue_job(THING, "job-2", document(keys, v2, "d-KILL00002"))
    await asyncio.to_thread(agent.wait_for_event, "d-KILL00002", event)
    agent.kill()
    # v1 stays the last successful revision when job 2 dies before Install: give it back a
    # working ApplicationStop, or job 3 would run the slow one too.
    stop_script.write_text("#!/bin/sh\ntrue\n")
    service.queue_job(THING, "job-3", document(keys, v3, "d-KILL00003"))
    agent.start()
    failed = await service.wait_for_status(THING, "job-2", {JobStatus.FAILED}, timeout=30)
    assert failed.status_details["errorCode"] == "FailedAfterRestart"
    assert failed.status_details["lifecycleEvent"] == event
    assert (
        failed.status_details["message"]
        == "Failed: Failing in-progress lifecycle event after an agent restart."
    )
    await service.wait_for_status(THING, "job-3", {JobStatus.SUCCEEDED}, timeout=30)
    pointer = agent.root_dir / "deployment-instructions" / "dg-web_last_successful_install"
    assert pointer.read_text() == str(agent.root_dir / "dg-web" / "d-KILL00003")
    assert service.violations == []


async def test_two_jobs_run_in_order_never_at_once(
    agent: Agent, service: FakeJobsService, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """Two queued jobs run one after the other, in queue order."""
    log = tmp_path / "order"
    for n in (1, 2):
        bundle = write_bundle(
            tmp_path / f"b{n}",
            {"BeforeInstall": f"echo start-{n} >> {log}; sleep 0.5; echo end-{n} >> {log}"},
        )
        service.queue_job(THING, f"job-{n}", document(keys, bundle, f"d-ORDER0000{n}"))
    agent.start()
    await service.wait_for_status(THING, "job-2", {JobStatus.SUCCEEDED}, timeout=30)
    assert log.read_text().split() == ["start-1", "end-1", "start-2", "end-2"]
    assert service.execution(THING, "job-1").status is JobStatus.SUCCEEDED
    assert service.violations == []


async def test_last_will_publishes_offline_when_killed(
    agent: Agent, service: FakeJobsService
) -> None:
    """SIGKILL: the broker publishes the retained offline presence (the last will)."""
    agent.start()
    await service.wait_for(
        lambda: (p := service.presence(THING)) is not None and p.state is PresenceState.ONLINE,
        timeout=30,
    )
    agent.kill()
    await service.wait_for(
        lambda: (p := service.presence(THING)) is not None and p.state is PresenceState.OFFLINE,
        timeout=30,
    )


async def test_sigterm_lets_the_hook_finish_then_fails_the_job(
    agent: Agent, service: FakeJobsService, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """SIGTERM mid-hook: the hook finishes, the deployment stops before the next event, the job
    is FAILED saying the agent was stopping, presence goes offline and the agent exits 0."""
    started, finished = tmp_path / "started", tmp_path / "finished"
    bundle = write_bundle(
        tmp_path / "bundle",
        {
            "AfterInstall": f"touch {started}; sleep 2; touch {finished}",
            "ApplicationStart": f"touch {tmp_path / 'never'}",
        },
    )
    service.queue_job(THING, "job-t", document(keys, bundle, "d-SIGTERM01"))
    agent.start()
    await service.wait_for(started.exists, timeout=30)
    agent.signal(signal.SIGTERM)
    assert await asyncio.to_thread(agent.wait, 30) == 0
    assert finished.exists()
    assert not (tmp_path / "never").exists()
    execution = await service.wait_for_status(THING, "job-t", {JobStatus.FAILED}, timeout=10)
    assert execution.status_details["lifecycleEvent"] == "ApplicationStart"
    assert "The agent was stopping (SIGTERM)" in execution.status_details["message"]
    presence = service.presence(THING)
    assert presence is not None
    assert presence.state is PresenceState.OFFLINE


async def test_second_sigterm_forces_the_hook_to_stop(
    agent: Agent, service: FakeJobsService, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """A second SIGTERM stops the running hook at once and reports it."""
    started = tmp_path / "started"
    bundle = write_bundle(tmp_path / "bundle", {"AfterInstall": f"touch {started}; sleep 300"})
    service.queue_job(THING, "job-t", document(keys, bundle, "d-SIGTERM02"))
    agent.start()
    await service.wait_for(started.exists, timeout=30)
    agent.signal(signal.SIGTERM)
    await asyncio.sleep(0.5)
    agent.signal(signal.SIGTERM)
    assert await asyncio.to_thread(agent.wait, 30) == 0
    execution = await service.wait_for_status(THING, "job-t", {JobStatus.FAILED}, timeout=10)
    assert execution.status_details["lifecycleEvent"] == "AfterInstall"
    assert "stopped the running AfterInstall hook at once" in execution.status_details["message"]


async def test_sigterm_stops_a_hook_that_outlasts_kill_agent_max_wait_time(
    agent: Agent, service: FakeJobsService, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """SIGTERM while a hook runs longer than `kill_agent_max_wait_time_seconds`: when the wait
    runs out the hook's processes are stopped, the job is FAILED saying so, and the agent
    exits 0."""
    agent.extra[":kill_agent_max_wait_time_seconds"] = 1
    pid_file = tmp_path / "hook.pid"
    bundle = write_bundle(tmp_path / "bundle", {"AfterInstall": f"echo $$ > {pid_file}\nsleep 300"})
    service.queue_job(THING, "job-w", document(keys, bundle, "d-MAXWAIT01"))
    agent.start()
    await service.wait_for(
        lambda: pid_file.exists() and pid_file.read_text().strip() != "", timeout=30
    )
    hook = psutil.Process(int(pid_file.read_text()))
    agent.signal(signal.SIGTERM)
    try:
        assert await asyncio.to_thread(agent.wait, 30) == 0
        assert not hook.is_running() or hook.status() == psutil.STATUS_ZOMBIE
    finally:
        if hook.is_running():
            hook.kill()
    execution = await service.wait_for_status(THING, "job-w", {JobStatus.FAILED}, timeout=10)
    assert execution.status_details["lifecycleEvent"] == "AfterInstall"
    assert execution.status_details["errorCode"] == "UnknownError"
    assert execution.status_details["message"] == (
        "The agent was stopping (SIGTERM) and stopped the running AfterInstall hook after "
        "waiting 1 s (kill_agent_max_wait_time_seconds). Deploy again once the agent is back."
    )
    assert service.violations == []


async def test_background_app_survives_an_agent_restart(
    agent: Agent, service: FakeJobsService, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """An application started by ApplicationStart keeps running when the agent stops."""
    pid_file = tmp_path / "app.pid"
    bundle = write_bundle(
        tmp_path / "bundle",
        {
            "ApplicationStart": f"nohup sleep 300 > /dev/null 2>&1 < /dev/null &\necho $! > {pid_file}"
        },
    )
    service.queue_job(THING, "job-a", document(keys, bundle, "d-APPSURV01"))
    agent.start()
    await service.wait_for_status(THING, "job-a", {JobStatus.SUCCEEDED}, timeout=30)
    pid = int(pid_file.read_text())
    agent.stop()
    agent.start()
    await service.wait_for(
        lambda: (
            len(
                [
                    p
                    for p in service.presence_history(THING)
                    if p is not None and p.state is PresenceState.ONLINE
                ]
            )
            >= 2
        ),
        timeout=30,
    )
    try:
        assert psutil.pid_exists(pid)
        assert psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    finally:
        psutil.Process(pid).kill()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `codedeploy-agent <args>` as a separate process."""
    return subprocess.run(
        [sys.executable, "-m", "codedeploy_agent", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


async def test_status_command_and_second_instance(agent: Agent, service: FakeJobsService) -> None:
    """`status` shows the running agent; a second agent on the same state is refused."""
    agent.start()
    await service.wait_for(lambda: service.presence(THING) is not None, timeout=30)
    await asyncio.sleep(0.5)
    config = str(agent.config_file)
    status = await asyncio.to_thread(cli, "status", "-c", config)
    assert status.returncode == 0, status.stdout + status.stderr
    assert agent.process is not None
    assert f"The AWS CodeDeploy agent is running as PID {agent.process.pid}" in status.stdout
    second = await asyncio.to_thread(cli, "run", "-c", config)
    assert second.returncode == 1
    assert "Could not acquire lock on" in second.stdout + second.stderr
    agent.stop()
    stopped = await asyncio.to_thread(cli, "status", "-c", config)
    assert stopped.returncode == 1
    assert "No AWS CodeDeploy agent running" in stopped.stdout


async def test_removed_mid_hook_stops_it(
    agent: Agent, service: FakeJobsService, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """REMOVED (the thing left the job's targets) stops the running hook like a cancel."""
    pid_file = tmp_path / "hook.pid"
    slow = write_bundle(tmp_path / "slow", {"AfterInstall": f"echo $$ > {pid_file}\nsleep 300"})
    service.queue_job(THING, "job-x", document(keys, slow, "d-REMOVED01"))
    agent.start()
    await service.wait_for(
        lambda: pid_file.exists() and pid_file.read_text().strip() != "", timeout=30
    )
    pid = int(pid_file.read_text())
    service.remove_job(THING, "job-x")
    await service.wait_for(lambda: not psutil.pid_exists(pid), timeout=30)
    assert service.execution(THING, "job-x").status is JobStatus.REMOVED
    ledger = (agent.state_dir / "jobs.json").read_text()
    assert '"state": "REMOVED"' in ledger
    assert service.violations == []


async def test_two_agents_side_by_side(
    broker: MosquittoBroker, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """Two agents with their own config, roots, state and thing names share one machine and
    one broker; each runs its own job."""
    second = "host-2"
    agents = [
        Agent(tmp_path / "agent", broker.endpoint),
        Agent(tmp_path / "agent-2", broker.endpoint, thing=second),
    ]
    public = "keys/signing.pub.pem"
    (tmp_path / "agent-2" / "keys").mkdir(parents=True)
    (tmp_path / "agent-2" / public).write_bytes((tmp_path / "agent" / public).read_bytes())
    bundle = write_bundle(tmp_path / "bundle", {"ApplicationStart": "echo $DEPLOYMENT_ID"})
    async with FakeJobsService("127.0.0.1", broker.port, things={THING, second}) as service:
        service.queue_job(THING, "job-a", document(keys, bundle, "d-SIDE00001"))
        service.queue_job(second, "job-b", document(keys, bundle, "d-SIDE00002"))
        try:
            for agent in agents:
                agent.start()
            await service.wait_for_status(THING, "job-a", {JobStatus.SUCCEEDED}, timeout=30)
            await service.wait_for_status(second, "job-b", {JobStatus.SUCCEEDED}, timeout=30)
            assert (agents[0].root_dir / "dg-web" / "d-SIDE00001").is_dir()
            assert (agents[1].root_dir / "dg-web" / "d-SIDE00002").is_dir()
            assert not (agents[0].root_dir / "dg-web" / "d-SIDE00002").exists()
            assert service.violations == []
        finally:
            for agent in agents:
                agent.stop()

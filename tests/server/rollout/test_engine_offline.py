"""Agents that do not pick their job up: the pickup deadline fails their instance with a
message built from the presence topic (SQLite)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from codedeploy_agent.protocol.messages import JobStatus
from tests.fakes.bundles import make_tgz, write_bundle
from tests.server.rollout.conftest import Fleet, event_states, s3_location

pytestmark = [pytest.mark.asyncio, pytest.mark.broker]
HOSTS = ["host-1", "host-2", "host-3"]
CHECK = (
    "Check the agent: run `codedeploy-agent status` (or `systemctl status codedeploy-agent`) "
    "on the host, check that it reaches the MQTT broker, and that its thing name is host-3 "
    "(mqtt.thing_name in its config)."
)


@pytest.fixture
def database(tmp_path: Path) -> str:
    """SQLite only for this module."""
    return str(tmp_path / "state.db")


def _diagnostics(target: dict[str, object]) -> dict[str, str]:
    events = target["lifecycleEvents"]
    assert isinstance(events, list)
    assert events[0]["status"] == "Failed"
    assert {e["status"] for e in events[1:]} == {"Skipped"}
    diagnostics: dict[str, str] = events[0]["diagnostics"]
    return diagnostics


async def test_offline_agents_fail_after_the_pickup_deadline(fleet: Fleet) -> None:
    """An agent that never reported presence, then one that went offline, fail their instance
    after the pickup deadline with a message saying so and how to check; their executions are
    cancelled so they never run later."""
    fleet.add_agent("host-1")
    fleet.add_agent("host-2")
    fleet.add_agent("host-3", start=False)
    v1 = fleet.bundle("v1")
    await fleet.start_server(pickup_deadline_seconds=1.5)
    await fleet.create_group(HOSTS)
    first = await fleet.deploy(v1, ["host-3", "host-1", "host-2"], ordered=True)
    started = time.monotonic()
    doc = await fleet.wait_for(first, timeout=15)
    assert 1.5 <= time.monotonic() - started < 6
    assert doc["status"] == "Failed"
    assert doc["errorInformation"]["code"] == "HEALTH_CONSTRAINTS"
    targets = await fleet.targets(first)
    assert [t["status"] for t in targets] == ["Failed", "Skipped", "Skipped"]
    assert _diagnostics(targets[0]) == {
        "errorCode": "UnknownError",
        "scriptName": "",
        "message": "The agent on host-3 did not start the deployment within 1.5 seconds and has "
        "never reported its presence (no message on codedeploy/things/host-3/presence): it is "
        f"not installed, not running, or cannot reach the broker. {CHECK}",
        "logTail": "",
    }
    assert fleet.jobs is not None
    execution = await fleet.jobs.execution("host-3", first)
    assert execution is not None
    assert execution.status is JobStatus.CANCELED

    agent = fleet.agents["host-3"]
    agent.start()
    for _ in range(200):
        info = await fleet.jobs.presence("host-3")
        if info is not None and info.online:
            break
        await asyncio.sleep(0.05)
    agent.stop()
    for _ in range(200):
        info = await fleet.jobs.presence("host-3")
        if info is not None and not info.online:
            break
        await asyncio.sleep(0.05)
    assert info is not None
    assert not info.online
    since = datetime.fromtimestamp(info.updated_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    second = await fleet.deploy(v1, HOSTS, config="CodeDeployDefault.AllAtOnce")
    doc = await fleet.wait_for(second, timeout=30)
    assert doc["status"] == "Succeeded"  # AllAtOnce: one success is enough
    by_name = {t["targetId"]: t for t in await fleet.targets(second)}
    assert by_name["host-3"]["status"] == "Failed"
    assert _diagnostics(by_name["host-3"])["message"] == (
        "The agent on host-3 did not start the deployment within 1.5 seconds: it has been "
        f"offline since {since} (its last presence message). {CHECK}"
    )
    assert doc["deploymentOverview"]["Succeeded"] == 2
    assert doc["deploymentOverview"]["Failed"] == 1
    # The first deployment's job was cancelled: the agent never ran it.
    assert fleet.last_successful("host-3") is None


async def test_agent_dying_mid_hook_times_out(fleet: Fleet) -> None:
    """An agent killed while a hook runs stops reporting: the step timer the job was queued
    with (raised by the agent for the hook's timeout) ends the execution TIMED_OUT, and the
    running event fails with a message saying so."""
    agent = fleet.add_agent("host-1")
    source = fleet.base / "sources" / "slow"
    write_bundle(
        source,
        {"BeforeInstall": "sleep 60\n"},
        files={"VERSION": "slow\n"},
        timeouts={"BeforeInstall": 600},
    )
    make_tgz(source, fleet.base / "bundles" / "slow.tgz")
    # A job minute lasts 0.2 s: the agent's 11-minute step timer (600 s hook) is 2.2 s.
    await fleet.start_server(time_scale=0.2)
    await fleet.create_group(["host-1"])
    deployment_id = await fleet.deploy(s3_location("slow"), ["host-1"])
    await fleet.wait_target(
        deployment_id, "host-1", lambda t: ("BeforeInstall", "InProgress") in event_states(t)
    )
    await asyncio.to_thread(agent.wait_for_event, deployment_id, "BeforeInstall")
    agent.kill()
    doc = await fleet.wait_for(deployment_id, timeout=20)
    assert doc["status"] == "Failed"
    (target,) = await fleet.targets(deployment_id)
    assert target["_execution"]["status"] == "TIMED_OUT"
    before_install = target["lifecycleEvents"][2]
    assert before_install["lifecycleEventName"] == "BeforeInstall"
    assert before_install["status"] == "Failed"
    assert before_install["diagnostics"]["message"] == (
        "The agent stopped reporting progress: the job execution timed out (TIMED_OUT) while "
        "this event was running. The agent may have stopped or lost its connection to the "
        "broker; run `codedeploy-agent status` on the host and check its log."
    )
    assert [e["status"] for e in target["lifecycleEvents"][3:]] == ["Skipped"] * 4


async def test_deployment_running_too_long_times_out(fleet: Fleet) -> None:
    """A deployment running past its maximum duration fails with TIMEOUT; the instance still
    running is cancelled (its event fails) and the waiting ones are skipped."""
    for thing in ("host-1", "host-2"):
        fleet.add_agent(thing)
    slow = fleet.bundle("slow", {"BeforeInstall": "sleep 60\n"})
    await fleet.start_server(max_duration_seconds=2.0)
    await fleet.create_group(["host-1", "host-2"])
    deployment_id = await fleet.deploy(slow, ["host-1", "host-2"], ordered=True)
    doc = await fleet.wait_for(deployment_id, timeout=20)
    assert doc["errorInformation"] == {
        "code": "TIMEOUT",
        "message": "The deployment has timed out: an in-place deployment may run at most "
        "0.000555556 hours.",
    }
    running, waiting = await fleet.targets(deployment_id)
    assert running["status"] == "Failed"
    assert dict(event_states(running))["BeforeInstall"] == "Failed"
    assert waiting["status"] == "Skipped"
    assert fleet.jobs is not None
    execution = await fleet.jobs.execution("host-1", deployment_id)
    assert execution is not None
    assert execution.status is JobStatus.CANCELED

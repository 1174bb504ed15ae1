"""Agents that do not pick their job up: the pickup deadline fails their instance with a
message built from the presence topic (SQLite)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from codedeploy_agent.protocol.messages import JobStatus
from tests.server.rollout.conftest import Fleet

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
    targets = {t["targetId"]: t for t in await fleet.targets(second)}
    assert targets["host-3"]["status"] == "Failed"
    assert _diagnostics(targets["host-3"])["message"] == (
        "The agent on host-3 did not start the deployment within 1.5 seconds: it has been "
        f"offline since {since} (its last presence message). {CHECK}"
    )
    assert doc["deploymentOverview"]["Succeeded"] == 2
    assert doc["deploymentOverview"]["Failed"] == 1
    # The first deployment's job was cancelled: the agent never ran it.
    assert fleet.last_successful("host-3") is None

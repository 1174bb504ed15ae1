"""Batches per deployment config with real agents (SQLite; the main flow runs on both)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from codedeploy_server.store import dumps
from tests.server.rollout.conftest import Fleet

pytestmark = [pytest.mark.asyncio, pytest.mark.broker]


@pytest.fixture
def database(tmp_path: Path) -> str:
    """SQLite only for this module."""
    return str(tmp_path / "state.db")


def _queued(targets: list[dict[str, object]]) -> list[float]:
    return [float(t["_queuedAt"]) for t in targets]  # type: ignore[arg-type]


async def test_half_at_a_time(fleet: Fleet) -> None:
    """HalfAtATime with 4 hosts queues 2 at once, and the 3rd only after one of them ended."""
    hosts = ["host-1", "host-2", "host-3", "host-4"]
    for thing in hosts:
        fleet.add_agent(thing)
    v1 = fleet.bundle("v1")
    await fleet.start_server()
    await fleet.create_group(hosts)
    deployment_id = await fleet.deploy(v1, hosts, config="CodeDeployDefault.HalfAtATime")
    doc = await fleet.wait_for(deployment_id)
    assert doc["status"] == "Succeeded"
    assert doc["_engine"]["minimum"] == 2
    targets = await fleet.targets(deployment_id)
    queued = _queued(targets)
    assert queued[0] == queued[1]
    first_end = min(t["lastUpdatedAt"] for t in targets[:2])
    assert min(queued[2:]) >= first_end
    assert all(fleet.installed_version(thing) == "v1" for thing in hosts)


async def test_all_at_once_and_custom_config(fleet: Fleet) -> None:
    """AllAtOnce queues every host at once; a custom HOST_COUNT 1 config runs two of three at
    once."""
    hosts = ["host-1", "host-2", "host-3"]
    for thing in hosts:
        fleet.add_agent(thing)
    v1, v2 = fleet.bundle("v1"), fleet.bundle("v2")
    await fleet.start_server()
    await fleet.create_group(hosts)
    first = await fleet.deploy(v1, hosts, config="CodeDeployDefault.AllAtOnce")
    assert (await fleet.wait_for(first))["status"] == "Succeeded"
    assert len(set(_queued(await fleet.targets(first)))) == 1
    async with fleet.db().transaction() as tx:
        await tx.execute(
            "INSERT INTO deployment_configs (name, config_id, create_time, doc) VALUES (?, ?, ?, ?)",
            (
                "KeepOne",
                str(uuid.uuid4()),
                time.time(),
                dumps(
                    {
                        "deploymentConfigName": "KeepOne",
                        "minimumHealthyHosts": {"type": "HOST_COUNT", "value": 1},
                        "computePlatform": "Server",
                    }
                ),
            ),
        )
    second = await fleet.deploy(v2, hosts, config="KeepOne")
    doc = await fleet.wait_for(second)
    assert doc["status"] == "Succeeded"
    assert doc["_engine"]["minimum"] == 1
    queued = _queued(await fleet.targets(second))
    assert queued[0] == queued[1] < queued[2]
    assert all(fleet.installed_version(thing) == "v2" for thing in hosts)


async def test_minimum_that_cannot_be_met_fails_at_once(fleet: Fleet) -> None:
    """HalfAtATime on a single instance cannot take it offline: Failed with
    HEALTH_CONSTRAINTS_INVALID before any job is queued; the target is Skipped."""
    fleet.add_agent("host-1", start=False)
    v1 = fleet.bundle("v1")
    await fleet.start_server()
    await fleet.create_group(["host-1"])
    deployment_id = await fleet.deploy(v1, ["host-1"], config="CodeDeployDefault.HalfAtATime")
    doc = await fleet.wait_for(deployment_id, timeout=5)
    assert doc["status"] == "Failed"
    assert doc["errorInformation"] == {
        "code": "HEALTH_CONSTRAINTS_INVALID",
        "message": "The revision cannot be successfully deployed within the instance health "
        "constraints specified: the deployment config CodeDeployDefault.HalfAtATime keeps at "
        "least 1 of the 1 instances healthy, so none may be taken offline. Use a config with a "
        "lower minimum healthy hosts value, or deploy to more instances.",
    }
    (target,) = await fleet.targets(deployment_id)
    assert target["status"] == "Skipped"
    assert fleet.jobs is not None
    assert await fleet.jobs.execution("host-1", deployment_id) is None
    group = await fleet.group()
    assert group["lastAttemptedDeployment"]["status"] == "Failed"
    assert "lastSuccessfulDeployment" not in group


async def test_no_instances_and_missing_config(fleet: Fleet) -> None:
    """A deployment without targets fails with NO_INSTANCES; one whose config was deleted
    fails with CODEDEPLOY_RESOURCE_CANNOT_BE_FOUND."""
    v1 = fleet.bundle("v1")
    await fleet.start_server()
    await fleet.create_group([])
    empty = await fleet.deploy(v1, [])
    doc = await fleet.wait_for(empty, timeout=5)
    assert doc["errorInformation"]["code"] == "NO_INSTANCES"
    assert doc["errorInformation"]["message"].startswith(
        "The deployment failed because no instances were found for your deployment group."
    )
    fleet.add_agent("host-1", start=False)
    gone = await fleet.deploy(v1, ["host-1"], config="Deleted")
    doc = await fleet.wait_for(gone, timeout=5)
    assert doc["errorInformation"] == {
        "code": "CODEDEPLOY_RESOURCE_CANNOT_BE_FOUND",
        "message": "The deployment config Deleted was deleted after the deployment was created.",
    }


async def test_ignore_application_stop_failures(fleet: Fleet) -> None:
    """ApplicationStop runs the last successful revision's script: when it fails the
    deployment fails, unless ignoreApplicationStopFailures is set: then the event shows
    Failed with the agent's message and the deployment goes on to succeed."""
    fleet.add_agent("host-1")
    broken_stop = fleet.bundle("v1", {"ApplicationStop": "echo cannot stop >&2; exit 1\n"})
    v2 = fleet.bundle("v2")
    await fleet.start_server()
    await fleet.create_group(["host-1"])
    first = await fleet.deploy(broken_stop, ["host-1"])
    assert (await fleet.wait_for(first))["status"] == "Succeeded"  # no stop script ran yet

    failing = await fleet.deploy(v2, ["host-1"])
    doc = await fleet.wait_for(failing)
    assert doc["status"] == "Failed"
    (target,) = await fleet.targets(failing)
    assert target["lifecycleEvents"][0]["status"] == "Failed"
    assert target["lifecycleEvents"][0]["diagnostics"]["errorCode"] == "ScriptFailed"

    ignoring = await fleet.deploy(v2, ["host-1"], ignoreApplicationStopFailures=True)
    doc = await fleet.wait_for(ignoring)
    assert doc["status"] == "Succeeded"
    assert doc["_jobDocument"]["IgnoreApplicationStopFailures"] is True
    (target,) = await fleet.targets(ignoring)
    stop = target["lifecycleEvents"][0]
    assert stop["status"] == "Failed"
    assert stop["diagnostics"]["message"].startswith("ignored: ")
    assert [e["status"] for e in target["lifecycleEvents"][1:]] == ["Succeeded"] * 6
    assert fleet.installed_version("host-1") == "v2"

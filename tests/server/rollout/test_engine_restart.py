"""A server killed mid-rollout: another engine (after the lease expired) resumes the
deployment from the store and the Jobs service's executions (both store backends)."""

from __future__ import annotations

import asyncio
import time

import pytest

from codedeploy_agent.protocol.messages import JobStatus
from codedeploy_server.api.errors import (
    DeploymentAlreadyCompletedException,
    DeploymentDoesNotExistException,
    UnsupportedActionForDeploymentTypeException,
)
from codedeploy_server.rollout.document import LIFECYCLE_EVENTS
from codedeploy_server.rollout.events import pending_events
from codedeploy_server.store import dumps
from tests.server.rollout.conftest import Fleet, event_states

pytestmark = [pytest.mark.asyncio, pytest.mark.broker]
HOSTS = ["host-1", "host-2", "host-3"]


async def test_engine_killed_mid_rollout_is_resumed(fleet: Fleet) -> None:
    """The engine, the JobsService and the store go away while host-2 runs; a new server
    (another id) takes the deployment over once the lease expired, applies what happened
    meanwhile, and finishes the rollout."""
    for thing in HOSTS:
        fleet.add_agent(thing)
    v1 = fleet.bundle("v1", {"BeforeInstall": "sleep 1\n"})
    await fleet.start_server(server_id="server-1", lease_seconds=2.0)
    await fleet.create_group(HOSTS)
    deployment_id = await fleet.deploy(v1, HOSTS)
    await fleet.wait_target(
        deployment_id,
        "host-2",
        lambda t: ("BeforeInstall", "InProgress") in event_states(t),
    )
    await fleet.stop_server(crash=True)
    killed_at = time.monotonic()
    await asyncio.sleep(1.5)  # host-2 finishes while no server listens

    await fleet.start_server(server_id="server-2", lease_seconds=2.0)
    doc = await fleet.wait_for(deployment_id)
    assert doc["status"] == "Succeeded", doc
    # Not before server-1's lease ran out (2 s from its last renewal).
    assert time.monotonic() - killed_at >= 1.5
    targets = await fleet.targets(deployment_id)
    assert [t["status"] for t in targets] == ["Succeeded"] * 3
    for target in targets:
        assert {state for _, state in event_states(target)} == {"Succeeded"}
    async with fleet.db().transaction() as tx:
        row = await tx.fetchone(
            "SELECT owner FROM deployments WHERE deployment_id = ?", (deployment_id,)
        )
    assert row == {"owner": "server-2"}
    assert all(fleet.installed_version(thing) == "v1" for thing in HOSTS)


async def test_cancellations_decided_before_a_crash_are_sent_at_start(fleet: Fleet) -> None:
    """A deployment stopped just before the server died still lists the cancellations it
    decided (`_cancels`); the next start sends them, so no agent goes on running it."""
    await fleet.start_server()
    assert fleet.jobs is not None
    deployment_id = "d-CRASHED01"
    await fleet.jobs.queue_job("host-1", deployment_id, {"DeploymentId": deployment_id})
    async with fleet.db().transaction() as tx:
        await tx.execute(
            "INSERT INTO deployments (deployment_id, application_name, group_name, status, "
            "create_time, complete_time, owner, lease_until, doc) "
            "VALUES (?, 'shop', 'web', 'Stopped', ?, ?, 'gone', 0, ?)",
            (
                deployment_id,
                time.time(),
                time.time(),
                dumps({"deploymentId": deployment_id, "status": "Stopped", "_cancels": ["host-1"]}),
            ),
        )
    # Stopped by hand in the store, as if the server died right after that commit.
    await fleet.stop_server()
    await fleet.start_server()
    assert fleet.jobs is not None
    for _ in range(100):
        execution = await fleet.jobs.execution("host-1", deployment_id)
        if execution is not None and execution.status is JobStatus.CANCELED:
            break
        await asyncio.sleep(0.05)
    assert execution is not None
    assert execution.status is JobStatus.CANCELED
    for _ in range(100):
        if "_cancels" not in await fleet.deployment(deployment_id):
            break
        await asyncio.sleep(0.05)
    assert "_cancels" not in await fleet.deployment(deployment_id)


async def test_stop_before_start_and_continue(fleet: Fleet) -> None:
    """A deployment stopped before it started ends Stopped with every target Skipped and no
    job queued; ContinueDeployment is refused for in-place deployments, and for ended ones."""
    fleet.add_agent("host-1", start=False)
    v1 = fleet.bundle("v1")
    await fleet.start_server(tick_seconds=60.0)  # nothing starts it behind the test's back
    await fleet.create_group(["host-1"])
    assert fleet.engine is not None
    engine = fleet.engine
    deployment_id = "d-NOTSTART1"
    async with fleet.db().transaction() as tx:
        await tx.execute(
            "INSERT INTO deployments (deployment_id, application_name, group_name, status, "
            "create_time, complete_time, owner, lease_until, doc) "
            "VALUES (?, 'shop', 'web', 'Created', ?, NULL, NULL, NULL, ?)",
            (
                deployment_id,
                time.time(),
                dumps({"deploymentId": deployment_id, "status": "Created", "revision": v1}),
            ),
        )
        await tx.execute(
            "INSERT INTO deployment_targets (deployment_id, target_id, status, position, doc) "
            "VALUES (?, 'host-1', 'Pending', 0, ?)",
            (
                deployment_id,
                dumps(
                    {
                        "deploymentId": deployment_id,
                        "targetId": "host-1",
                        "status": "Pending",
                        "lifecycleEvents": pending_events(LIFECYCLE_EVENTS),
                    }
                ),
            ),
        )
    with pytest.raises(UnsupportedActionForDeploymentTypeException, match="in-place"):
        await engine.continue_deployment(deployment_id, "READY_WAIT")
    assert await engine.stop_deployment(deployment_id, None) == "Succeeded"
    doc = await fleet.deployment(deployment_id)
    assert doc["status"] == "Stopped"
    assert "startTime" not in doc
    assert doc["deploymentOverview"]["Skipped"] == 1
    (target,) = await fleet.targets(deployment_id)
    assert target["status"] == "Skipped"
    assert fleet.jobs is not None
    assert await fleet.jobs.execution("host-1", deployment_id) is None
    with pytest.raises(DeploymentAlreadyCompletedException):
        await engine.continue_deployment(deployment_id, "READY_WAIT")
    with pytest.raises(DeploymentDoesNotExistException):
        await engine.stop_deployment("d-UNKNOWN00", None)

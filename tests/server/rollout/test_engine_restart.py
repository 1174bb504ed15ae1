"""A server killed mid-rollout: another engine (after the lease expired) resumes the
deployment from the store and the Jobs service's executions (both store backends)."""

from __future__ import annotations

import asyncio
import time

import pytest

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
        assert {state for _, state in event_states(target)} <= {"Succeeded", "Skipped"}
    async with fleet.db().transaction() as tx:
        row = await tx.fetchone(
            "SELECT owner FROM deployments WHERE deployment_id = ?", (deployment_id,)
        )
    assert row == {"owner": "server-2"}
    assert all(fleet.installed_version(thing) == "v1" for thing in HOSTS)

"""Two servers on one PostgreSQL database and one broker (MQTT 5 shared subscriptions): one
drives each deployment, the other records what reaches it, takes over when the first dies,
and passes StopDeployment on."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from codedeploy_agent.protocol.signing import load_private_key
from codedeploy_server.jobs import JobsService
from codedeploy_server.mqtt import ServerMqtt
from codedeploy_server.rollout.engine import RolloutEngine
from codedeploy_server.store import open_store
from tests.daemon.conftest import KEY_ID
from tests.server.rollout.conftest import TOPIC_ROOT, Fleet, event_states

pytestmark = [pytest.mark.asyncio, pytest.mark.broker]
HOSTS = ["host-1", "host-2", "host-3"]
GROUP = "codedeploy-server"


@pytest.fixture
def database(postgres_url: str) -> str:
    """PostgreSQL only: several servers share one database."""
    return postgres_url


@asynccontextmanager
async def second_server(
    fleet: Fleet, server_id: str, **options: Any
) -> AsyncIterator[RolloutEngine]:
    """Another server (its own store connection, Jobs service and engine) in the group."""
    store = await open_store(fleet.database)
    mqtt = ServerMqtt(
        endpoint=fleet.broker.endpoint,
        client_id=f"server-{uuid.uuid4().hex[:8]}",
        shared_group=GROUP,
        session_expiry_seconds=0,
    )
    jobs = JobsService(store, mqtt, topic_root=TOPIC_ROOT)
    await jobs.start()
    assert await mqtt.wait_connected(10)
    assert fleet.resolver is not None
    engine = RolloutEngine(
        store,
        jobs,
        signing_key=load_private_key(fleet.private_key),
        key_id=KEY_ID,
        revisions=fleet.resolver,
        server_id=server_id,
        tick_seconds=0.1,
        **options,
    )
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop()
        await jobs.stop()
        await store.close()


async def _owner(fleet: Fleet, deployment_id: str) -> str | None:
    async with fleet.db().transaction() as tx:
        row = await tx.fetchone(
            "SELECT owner FROM deployments WHERE deployment_id = ?", (deployment_id,)
        )
    return None if row is None else row["owner"]


async def test_one_server_drives_the_other_follows(fleet: Fleet) -> None:
    """With agent requests spread over both servers, the deployment created on server A is
    driven by A to the end; B never takes it while A's lease is alive."""
    for thing in HOSTS:
        fleet.add_agent(thing)
    v1 = fleet.bundle("v1")
    await fleet.start_server(server_id="A", shared_group=GROUP, lease_seconds=2.0)
    await fleet.create_group(HOSTS)
    async with second_server(fleet, "B", lease_seconds=2.0):
        deployment_id = await fleet.deploy(v1, HOSTS)
        owners = set()
        while (await fleet.deployment(deployment_id))["status"] not in ("Succeeded", "Failed"):
            owners.add(await _owner(fleet, deployment_id))
            await asyncio.sleep(0.05)
        assert (await fleet.deployment(deployment_id))["status"] == "Succeeded"
        assert owners == {"A"}
    for target in await fleet.targets(deployment_id):
        assert {state for _, state in event_states(target)} == {"Succeeded"}


async def test_stop_through_the_other_server_and_takeover(fleet: Fleet) -> None:
    """StopDeployment on the server that does not own the deployment answers Pending and the
    owner stops it; when the owner dies mid-rollout, the other server finishes the next
    deployment once the lease expired."""
    for thing in HOSTS:
        fleet.add_agent(thing)
    slow = fleet.bundle("slow", {"BeforeInstall": "sleep 1\n"})
    # Mosquitto keeps handing a dead server's share of a shared subscription to its persistent
    # session (queued until it comes back): A's session ends with its connection, so that
    # the agents' requests reach B once A is gone.
    await fleet.start_server(
        server_id="A", shared_group=GROUP, lease_seconds=2.0, session_expiry_seconds=0
    )
    await fleet.create_group(HOSTS)
    async with second_server(fleet, "B", lease_seconds=2.0) as other:
        first = await fleet.deploy(slow, HOSTS)
        await fleet.wait_target(first, "host-1", lambda t: t["status"] == "InProgress")
        assert await other.stop_deployment(first, False) == "Pending"
        doc = await fleet.wait_for(first, timeout=10)
        assert doc["status"] == "Stopped"
        assert await _owner(fleet, first) == "A"

        second = await fleet.deploy(slow, HOSTS)
        await fleet.wait_target(second, "host-1", lambda t: t["status"] == "Succeeded")
        await fleet.stop_server(crash=True)  # A dies without releasing its lease
        died = time.monotonic()
        reopened = await open_store(fleet.database)
        try:
            fleet.store = reopened
            doc = await fleet.wait_for(second, timeout=30)
            assert doc["status"] == "Succeeded"
            assert time.monotonic() - died > 1.0
            assert await _owner(fleet, second) == "B"
        finally:
            fleet.store = None
            await reopened.close()

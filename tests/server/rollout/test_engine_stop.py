"""StopDeployment mid-rollout, with and without the automatic rollback (SQLite)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from codedeploy_agent.protocol.messages import JobStatus
from codedeploy_server.api.errors import DeploymentAlreadyCompletedException
from codedeploy_server.rollout.engine import STOP_MESSAGE
from tests.server.rollout.conftest import Fleet, event_states

pytestmark = [pytest.mark.asyncio, pytest.mark.broker]
HOSTS = ["host-1", "host-2", "host-3"]
#: The group rolls back on a stop request unless StopDeployment says otherwise.
ROLLBACK_ON_STOP = {"enabled": True, "events": ["DEPLOYMENT_STOP_ON_REQUEST"]}
SLOW = {"BeforeInstall": "sleep 60\n"}


@pytest.fixture
def database(tmp_path: Path) -> str:
    """SQLite only for this module."""
    return str(tmp_path / "state.db")


def _running(event: str) -> Callable[[dict[str, Any]], bool]:
    def check(target: dict[str, Any]) -> bool:
        return (event, "InProgress") in event_states(target)

    return check


async def _stopped_midway(fleet: Fleet, auto_rollback_enabled: bool | None) -> tuple[str, str]:
    for thing in HOSTS:
        fleet.add_agent(thing)
    v1, slow = fleet.bundle("v1"), fleet.bundle("slow", SLOW)
    await fleet.start_server()
    await fleet.create_group(HOSTS, auto_rollback=ROLLBACK_ON_STOP)
    good = await fleet.deploy(v1, HOSTS)
    assert (await fleet.wait_for(good))["status"] == "Succeeded"
    deployment_id = await fleet.deploy(slow, HOSTS)
    await fleet.wait_target(deployment_id, "host-1", _running("BeforeInstall"))
    assert fleet.engine is not None
    started = time.monotonic()
    status = await fleet.engine.stop_deployment(deployment_id, auto_rollback_enabled)
    assert status == "Succeeded"
    assert time.monotonic() - started < 2
    doc = await fleet.deployment(deployment_id)
    assert doc["status"] == "Stopped"
    assert doc["errorInformation"] == {"code": "MANUAL_STOP", "message": STOP_MESSAGE}
    assert "_cancels" not in doc
    targets = {t["targetId"]: t for t in await fleet.targets(deployment_id)}
    interrupted = targets["host-1"]
    assert interrupted["status"] == "Failed"
    states = dict(event_states(interrupted))
    assert states["BeforeInstall"] == "Failed"
    assert states["ValidateService"] == "Skipped"
    before_install = next(
        e for e in interrupted["lifecycleEvents"] if e["lifecycleEventName"] == "BeforeInstall"
    )
    assert before_install["diagnostics"]["message"] == (
        "The deployment was stopped (StopDeployment) while this event was running; the agent "
        "was told to stop its scripts (job execution CANCELED)."
    )
    assert targets["host-2"]["status"] == targets["host-3"]["status"] == "Skipped"
    assert fleet.jobs is not None
    execution = await fleet.jobs.execution("host-1", deployment_id)
    assert execution is not None
    assert execution.status is JobStatus.CANCELED
    # A second StopDeployment of the same deployment: done.
    assert await fleet.engine.stop_deployment(deployment_id, auto_rollback_enabled) == "Succeeded"
    return good, deployment_id


async def test_stop_with_rollback(fleet: Fleet) -> None:
    """Stopped mid-rollout with the group's DEPLOYMENT_STOP_ON_REQUEST (flag absent): the
    running host's job is cancelled (the agent kills its hook), the others are skipped, and a
    rollback puts the interrupted host back on v1."""
    _good, stopped = await _stopped_midway(fleet, None)
    doc = await fleet.deployment(stopped)
    rollback_id = doc["rollbackInfo"]["rollbackDeploymentId"]
    rollback = await fleet.wait_for(rollback_id)
    assert rollback["status"] == "Succeeded"
    assert sorted(t["targetId"] for t in await fleet.targets(rollback_id)) == list(HOSTS)
    for thing in HOSTS:
        assert fleet.installed_version(thing) == "v1"
    assert fleet.last_successful("host-1").name == rollback_id  # type: ignore[union-attr]
    assert fleet.last_successful("host-2").name == rollback_id  # type: ignore[union-attr]
    # The agent stopped the sleeping hook at once: the rollback ran right after the stop.
    assert rollback["completeTime"] - doc["completeTime"] < 15


async def test_stop_without_rollback(fleet: Fleet) -> None:
    """An explicit autoRollbackEnabled=false wins over the group's DEPLOYMENT_STOP_ON_REQUEST:
    no rollback deployment, and a later stop of the ended deployment is refused."""
    _, stopped = await _stopped_midway(fleet, False)
    doc = await fleet.deployment(stopped)
    assert "rollbackInfo" not in doc
    async with fleet.db().transaction() as tx:
        count = await tx.fetchone("SELECT COUNT(*) AS n FROM deployments")
    assert count == {"n": 2}
    assert fleet.engine is not None
    first = (await fleet.targets(stopped))[0]
    assert first["targetId"] == "host-1"
    with pytest.raises(DeploymentAlreadyCompletedException, match="has already completed"):
        await fleet.engine.stop_deployment(
            (await fleet.group())["lastSuccessfulDeployment"]["deploymentId"], None
        )

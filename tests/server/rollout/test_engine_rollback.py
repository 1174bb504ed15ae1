"""A failing host: HEALTH_CONSTRAINTS, then the automatic rollback puts every host back on the
previous revision (both store backends)."""

from __future__ import annotations

import pytest

from codedeploy_server.rollout.engine import HEALTH_CONSTRAINTS_MESSAGE
from tests.server.rollout.conftest import FAIL_ON, Fleet, event_states

pytestmark = [pytest.mark.asyncio, pytest.mark.broker]
HOSTS = ["host-1", "host-2", "host-3"]
ROLLBACK_ON_FAILURE = {"enabled": True, "events": ["DEPLOYMENT_FAILURE"]}


async def test_failure_rolls_back(fleet: Fleet) -> None:
    """ValidateService failing on host-2 fails a OneAtATime deployment with HEALTH_CONSTRAINTS
    (host-3 never reached); the rollback deployment (new id, codeDeployRollback) redeploys v1
    to the hosts that need it and succeeds; rollbackInfo links both."""
    for thing in HOSTS:
        fleet.add_agent(thing)
    v1 = fleet.bundle("v1")
    v2 = fleet.bundle("v2", {"ValidateService": FAIL_ON.format(thing="host-2")})
    await fleet.start_server()
    await fleet.create_group(HOSTS, auto_rollback=ROLLBACK_ON_FAILURE)
    good = await fleet.deploy(v1, HOSTS)
    assert (await fleet.wait_for(good))["status"] == "Succeeded"

    bad = await fleet.deploy(v2, HOSTS, fileExistsBehavior="OVERWRITE")
    doc = await fleet.wait_for(bad)
    assert doc["status"] == "Failed"
    assert doc["errorInformation"] == {
        "code": "HEALTH_CONSTRAINTS",
        "message": f"{HEALTH_CONSTRAINTS_MESSAGE} Failed instances: host-2. GetDeploymentTarget "
        f"(or `codedeploy status {bad}`) shows why each one failed.",
    }
    assert doc["deploymentOverview"]["Succeeded"] == 1
    assert doc["deploymentOverview"]["Failed"] == 1
    assert doc["deploymentOverview"]["Skipped"] == 1
    assert doc["previousRevision"] == v1
    assert doc["_jobDocument"]["AgentActionOverrides"] == {
        "AgentOverrides": {"FileExistsBehavior": "OVERWRITE"}
    }
    assert doc["deploymentStatusMessages"] == [
        (
            "host-2: ValidateService failed (ScriptFailed): Script at specified location: "
            "scripts/ValidateService.sh failed with exit code 3"
        )
    ]
    targets = {t["targetId"]: t for t in await fleet.targets(bad)}
    failed = targets["host-2"]
    assert failed["status"] == "Failed"
    assert event_states(failed)[-1] == ("ValidateService", "Failed")
    diagnostics = failed["lifecycleEvents"][-1]["diagnostics"]
    assert diagnostics["errorCode"] == "ScriptFailed"
    assert diagnostics["scriptName"] == "scripts/ValidateService.sh"
    assert "[stderr]host-2 is unhealthy" in diagnostics["logTail"]
    assert targets["host-3"]["status"] == "Skipped"

    rollback_id = doc["rollbackInfo"]["rollbackDeploymentId"]
    rollback = await fleet.wait_for(rollback_id)
    assert rollback["status"] == "Succeeded", rollback
    assert rollback["creator"] == "codeDeployRollback"
    assert rollback["revision"] == v1
    assert rollback["rollbackInfo"] == {"rollbackTriggeringDeploymentId": bad}
    assert "fileExistsBehavior" not in rollback, "the last successful deployment's behaviour"
    assert rollback["_jobDocument"]["DeploymentCreator"] == "codeDeployRollback"
    assert "AgentActionOverrides" not in rollback["_jobDocument"]
    # Every target of the failed deployment, host-3 (never reached) included, as AWS does.
    assert sorted(t["targetId"] for t in await fleet.targets(rollback_id)) == [
        "host-1",
        "host-2",
        "host-3",
    ]
    doc = await fleet.deployment(bad)
    assert doc["rollbackInfo"] == {
        "rollbackDeploymentId": rollback_id,
        "rollbackMessage": f"Automatic rollback deployment {rollback_id} succeeded redeploying "
        f"the last known good revision (from deployment {good}).",
    }
    for thing in HOSTS:
        assert fleet.installed_version(thing) == "v1", thing
    assert fleet.last_successful("host-1").name == rollback_id  # type: ignore[union-attr]
    assert fleet.last_successful("host-3").name == rollback_id  # type: ignore[union-attr]
    group = await fleet.group()
    assert group["lastSuccessfulDeployment"]["deploymentId"] == rollback_id
    assert group["targetRevision"] == v1


async def test_first_deployment_failing_has_nothing_to_roll_back(fleet: Fleet) -> None:
    """When the group never succeeded there is no last known good revision: no rollback, and
    rollbackMessage says so."""
    fleet.add_agent("host-1")
    bad = fleet.bundle("bad", {"AfterInstall": "exit 4\n"})
    await fleet.start_server()
    await fleet.create_group(["host-1"], auto_rollback=ROLLBACK_ON_FAILURE)
    deployment_id = await fleet.deploy(bad, ["host-1"])
    doc = await fleet.wait_for(deployment_id)
    assert doc["status"] == "Failed"
    assert doc["rollbackInfo"] == {
        "rollbackMessage": "Automatic rollback was not performed: deployment group web has no "
        "earlier successful deployment, so there is no last known good revision to roll back to."
    }
    async with fleet.db().transaction() as tx:
        rows = await tx.fetchall("SELECT deployment_id FROM deployments")
    assert [r["deployment_id"] for r in rows] == [deployment_id]

"""Deployment targets and the deprecated deployment instances through boto3, including target
documents written into the store as the rollout engine writes them."""

from __future__ import annotations

import pytest

from codedeploy_server.store import dumps, loads
from tests.server.api.conftest import Api

EVENTS = [
    "ApplicationStop",
    "DownloadBundle",
    "BeforeInstall",
    "Install",
    "AfterInstall",
    "ApplicationStart",
    "ValidateService",
]


async def _deployment(api: Api, *hosts: str) -> str:
    for host in hosts:
        await api.register(host, env="prod")
    await api.group(onPremisesInstanceTagFilters=[{"Key": "env", "Value": "prod"}])
    return await api.deploy()


async def _engine_writes_failure(api: Api, deployment_id: str, target: str) -> None:
    """What the engine writes when ValidateService failed on `target`."""
    async with api.store.transaction() as tx:
        row = await tx.fetchone(
            "SELECT doc FROM deployment_targets WHERE deployment_id = ? AND target_id = ?",
            (deployment_id, target),
        )
        assert row is not None
        doc = loads(row["doc"])
        for event in doc["lifecycleEvents"][:-1]:
            event.update(status="Succeeded", startTime=100.0, endTime=101.0)
        doc["lifecycleEvents"][-1].update(
            status="Failed",
            startTime=101.0,
            endTime=102.5,
            diagnostics={
                "errorCode": "ScriptFailed",
                "scriptName": "scripts/validate.sh",
                "message": "Script at specified location: scripts/validate.sh run as user root failed with exit code 1",
                "logTail": "[stdout]checking\n[stderr]not ready\n",
            },
        )
        doc["status"] = "Failed"
        doc["lastUpdatedAt"] = 102.5
        doc["_execution"] = {"status": "FAILED", "version": 9}
        await tx.execute(
            "UPDATE deployment_targets SET status = 'Failed', doc = ? "
            "WHERE deployment_id = ? AND target_id = ?",
            (dumps(doc), deployment_id, target),
        )


@pytest.mark.asyncio
async def test_get_target_of_new_deployment(api: Api) -> None:
    """A new deployment's target is an InstanceTarget with the 7 in-place events Pending."""
    deployment_id = await _deployment(api, "host-1")
    target = (
        await api.call("get_deployment_target", deploymentId=deployment_id, targetId="host-1")
    )["deploymentTarget"]
    assert target["deploymentTargetType"] == "InstanceTarget"
    instance = target["instanceTarget"]
    assert instance["deploymentId"] == deployment_id
    assert instance["targetId"] == "host-1"
    assert instance["targetArn"].startswith(
        "arn:aws:codedeploy:us-east-1:123456789012:instance/host-1_"
    )
    assert instance["status"] == "Pending"
    assert [(e["lifecycleEventName"], e["status"]) for e in instance["lifecycleEvents"]] == [
        (name, "Pending") for name in EVENTS
    ]


@pytest.mark.asyncio
async def test_engine_written_diagnostics_are_shown(api: Api) -> None:
    """Statuses, times and diagnostics the engine writes come back through boto3."""
    deployment_id = await _deployment(api, "host-1")
    await _engine_writes_failure(api, deployment_id, "host-1")
    instance = (
        await api.call("get_deployment_target", deploymentId=deployment_id, targetId="host-1")
    )["deploymentTarget"]["instanceTarget"]
    assert instance["status"] == "Failed"
    last = instance["lifecycleEvents"][-1]
    assert last["lifecycleEventName"] == "ValidateService"
    assert last["status"] == "Failed"
    assert last["endTime"].timestamp() == 102.5
    assert last["diagnostics"] == {
        "errorCode": "ScriptFailed",
        "scriptName": "scripts/validate.sh",
        "message": "Script at specified location: scripts/validate.sh run as user root failed with exit code 1",
        "logTail": "[stdout]checking\n[stderr]not ready\n",
    }
    summary = (
        await api.call("get_deployment_instance", deploymentId=deployment_id, instanceId="host-1")
    )["instanceSummary"]
    assert summary["instanceId"] == "host-1"
    assert summary["status"] == "Failed"
    assert summary["lifecycleEvents"] == instance["lifecycleEvents"]


@pytest.mark.asyncio
async def test_list_targets_in_order_and_by_status(api: Api) -> None:
    """Targets list in scheduling order; a TargetStatus filter selects by status."""
    deployment_id = await _deployment(api, "c", "a", "b")
    listed = await api.call("list_deployment_targets", deploymentId=deployment_id)
    assert listed["targetIds"] == ["a", "b", "c"]
    await _engine_writes_failure(api, deployment_id, "b")
    failed = await api.call(
        "list_deployment_targets",
        deploymentId=deployment_id,
        targetFilters={"TargetStatus": ["Failed"]},
    )
    assert failed["targetIds"] == ["b"]
    pending = await api.call(
        "list_deployment_instances", deploymentId=deployment_id, instanceStatusFilter=["Pending"]
    )
    assert pending["instancesList"] == ["a", "c"]


@pytest.mark.asyncio
async def test_target_filter_errors(api: Api) -> None:
    """Unknown statuses, unknown filter names and Blue/Green labels are refused by name."""
    deployment_id = await _deployment(api, "a")
    error = await api.error(
        "list_deployment_targets",
        deploymentId=deployment_id,
        targetFilters={"TargetStatus": ["Done"]},
    )
    assert error.response["Error"]["Code"] == "InvalidInstanceStatusException"
    error = await api.error(
        "list_deployment_targets", deploymentId=deployment_id, targetFilters={"Colour": ["red"]}
    )
    assert error.response["Error"]["Code"] == "InvalidTargetFilterNameException"
    error = await api.error(
        "list_deployment_targets",
        deploymentId=deployment_id,
        targetFilters={"ServerInstanceLabel": ["Blue"]},
    )
    assert error.response["Error"]["Code"] == "InvalidDeploymentInstanceTypeException"
    error = await api.error(
        "list_deployment_instances", deploymentId=deployment_id, instanceTypeFilter=["Green"]
    )
    assert error.response["Error"]["Code"] == "InvalidDeploymentInstanceTypeException"


@pytest.mark.asyncio
async def test_batch_get_targets(api: Api) -> None:
    """BatchGetDeploymentTargets returns targets in the order asked; unknown ids fail."""
    deployment_id = await _deployment(api, "a", "b")
    answer = await api.call(
        "batch_get_deployment_targets", deploymentId=deployment_id, targetIds=["b", "a"]
    )
    assert [t["instanceTarget"]["targetId"] for t in answer["deploymentTargets"]] == ["b", "a"]
    error = await api.error(
        "batch_get_deployment_targets", deploymentId=deployment_id, targetIds=["a", "zz"]
    )
    assert error.response["Error"]["Code"] == "DeploymentTargetDoesNotExistException"
    error = await api.error(
        "batch_get_deployment_targets",
        deploymentId=deployment_id,
        targetIds=[f"h{i}" for i in range(26)],
    )
    assert error.response["Error"]["Code"] == "DeploymentTargetListSizeExceededException"


@pytest.mark.asyncio
async def test_batch_get_instances_names_missing(api: Api) -> None:
    """BatchGetDeploymentInstances returns known instances and names the others."""
    deployment_id = await _deployment(api, "a")
    answer = await api.call(
        "batch_get_deployment_instances", deploymentId=deployment_id, instanceIds=["a", "zz"]
    )
    assert [s["instanceId"] for s in answer["instancesSummary"]] == ["a"]
    assert answer["errorMessage"] == f"Instances not part of deployment {deployment_id}: zz"


@pytest.mark.asyncio
async def test_unknown_target_and_deployment(api: Api) -> None:
    """An unknown target or instance, and an unknown deployment, are each named."""
    deployment_id = await _deployment(api, "a")
    error = await api.error("get_deployment_target", deploymentId=deployment_id, targetId="zz")
    assert error.response["Error"]["Code"] == "DeploymentTargetDoesNotExistException"
    error = await api.error("get_deployment_instance", deploymentId=deployment_id, instanceId="zz")
    assert error.response["Error"]["Code"] == "InstanceDoesNotExistException"
    error = await api.error("list_deployment_targets", deploymentId="d-NOTHERE00")
    assert error.response["Error"]["Code"] == "DeploymentDoesNotExistException"

"""CreateDeployment and the deployment operations through boto3, with statuses written into the
store as the rollout engine writes them."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import aiohttp
import pytest
from botocore.exceptions import WaiterError  # type: ignore[import-untyped,unused-ignore]

from codedeploy_server.rollout.health import record
from codedeploy_server.store import loads
from tests.server.api.conftest import S3_REVISION, Api, signed_headers

V2 = {
    "revisionType": "S3",
    "s3Location": {"bucket": "releases", "key": "app/v2.zip", "bundleType": "zip"},
}
EVENTS = [
    "ApplicationStop",
    "DownloadBundle",
    "BeforeInstall",
    "Install",
    "AfterInstall",
    "ApplicationStart",
    "ValidateService",
]


async def _targets(api: Api, deployment_id: str) -> list[str]:
    answer = await api.call("list_deployment_targets", deploymentId=deployment_id)
    targets: list[str] = answer["targetIds"]
    return targets


async def _group_id(api: Api) -> str:
    info = await api.call("get_deployment_group", applicationName="web", deploymentGroupName="prod")
    group_id: str = info["deploymentGroupInfo"]["deploymentGroupId"]
    return group_id


@pytest.mark.asyncio
async def test_create_writes_rows_and_calls_the_engine(api: Api) -> None:
    """A deployment is written Created with Pending targets, then handed to the engine."""
    await api.register("web-1", env="prod")
    await api.register("web-2", env="prod")
    await api.register("db-1", env="staging")
    await api.group(onPremisesInstanceTagFilters=[{"Key": "env", "Value": "prod"}])
    deployment_id = await api.deploy(description="release 1")
    assert re.fullmatch(r"d-[A-Z0-9]{9}", deployment_id)
    assert api.rollout.created == [deployment_id]
    info = (await api.call("get_deployment", deploymentId=deployment_id))["deploymentInfo"]
    assert info["status"] == "Created"
    assert info["creator"] == "user"
    assert info["applicationName"] == "web"
    assert info["deploymentGroupName"] == "prod"
    assert info["deploymentConfigName"] == "CodeDeployDefault.OneAtATime"
    assert info["revision"] == S3_REVISION
    assert info["description"] == "release 1"
    assert info["fileExistsBehavior"] == "DISALLOW"
    assert info["computePlatform"] == "Server"
    assert info["ignoreApplicationStopFailures"] is False
    assert info["deploymentStyle"] == {
        "deploymentType": "IN_PLACE",
        "deploymentOption": "WITHOUT_TRAFFIC_CONTROL",
    }
    assert info["deploymentOverview"] == {
        "Pending": 2,
        "InProgress": 0,
        "Succeeded": 0,
        "Failed": 0,
        "Skipped": 0,
        "Ready": 0,
    }
    assert "previousRevision" not in info
    assert await _targets(api, deployment_id) == ["web-1", "web-2"]
    async with api.store.transaction() as tx:
        row = await tx.fetchone(
            "SELECT status, doc FROM deployments WHERE deployment_id = ?", (deployment_id,)
        )
        targets = await tx.fetchall(
            "SELECT target_id, status, position FROM deployment_targets WHERE deployment_id = ? "
            "ORDER BY position",
            (deployment_id,),
        )
    assert row is not None
    assert row["status"] == "Created"
    assert loads(row["doc"])["_groupId"] == await _group_id(api)
    assert loads(row["doc"])["_lifecycleEvents"] == EVENTS
    assert [(t["target_id"], t["status"], t["position"]) for t in targets] == [
        ("web-1", "Pending", 0),
        ("web-2", "Pending", 1),
    ]


@pytest.mark.asyncio
async def test_private_keys_never_reach_clients(api: Api) -> None:
    """The raw GetDeployment answer has no `_` keys (they stay in the store)."""
    await api.register("web-1", env="prod")
    await api.group(onPremisesInstanceTagFilters=[{"Key": "env", "Value": "prod"}])
    deployment_id = await api.deploy()
    body = json.dumps({"deploymentId": deployment_id}).encode()
    headers = signed_headers(api.url + "/", body, target="GetDeployment")
    async with (
        aiohttp.ClientSession() as session,
        session.post(api.url + "/", data=body, headers=headers) as response,
    ):
        text = await response.text()
    assert '"deploymentId"' in text
    assert '"_' not in text


@pytest.mark.asyncio
async def test_tag_set_is_and_of_ors(api: Api) -> None:
    """With a tag set an instance must match one filter of every tag group."""
    await api.register("a", env="prod", role="web")
    await api.register("b", env="prod", role="db")
    await api.register("c", env="qa", role="web")
    await api.register("d", env="staging", tier="web")
    await api.group(
        onPremisesTagSet={
            "onPremisesTagSetList": [
                [
                    {"Key": "env", "Value": "prod", "Type": "KEY_AND_VALUE"},
                    {"Key": "env", "Value": "staging", "Type": "KEY_AND_VALUE"},
                ],
                [{"Value": "web", "Type": "VALUE_ONLY"}],
            ]
        }
    )
    deployment_id = await api.deploy()
    assert await _targets(api, deployment_id) == ["a", "d"]


@pytest.mark.asyncio
async def test_deregistered_instances_are_not_targeted(api: Api) -> None:
    """Only REGISTERED instances are deployed to."""
    await api.register("a", env="prod")
    await api.register("b", env="prod")
    await api.call("deregister_on_premises_instance", instanceName="a")
    await api.group(onPremisesInstanceTagFilters=[{"Key": "env", "Type": "KEY_ONLY"}])
    assert await _targets(api, await api.deploy()) == ["b"]


@pytest.mark.asyncio
async def test_no_matching_instance_leaves_it_to_the_engine(api: Api) -> None:
    """A group matching nothing still creates the deployment (the engine fails it NO_INSTANCES)."""
    await api.group(onPremisesInstanceTagFilters=[{"Key": "env", "Value": "prod"}])
    deployment_id = await api.deploy()
    assert api.rollout.created == [deployment_id]
    assert await _targets(api, deployment_id) == []
    info = (await api.call("get_deployment", deploymentId=deployment_id))["deploymentInfo"]
    assert info["deploymentOverview"]["Pending"] == 0


@pytest.mark.asyncio
async def test_config_precedence(api: Api) -> None:
    """The deployment's config wins over the group's, which wins over OneAtATime."""
    await api.group(deploymentConfigName="CodeDeployDefault.HalfAtATime")
    first = await api.deploy()
    await api.set_status(first, "Succeeded")
    second = await api.deploy(deploymentConfigName="CodeDeployDefault.AllAtOnce")
    await api.set_status(second, "Succeeded")
    configs = [
        (await api.call("get_deployment", deploymentId=d))["deploymentInfo"]["deploymentConfigName"]
        for d in (first, second)
    ]
    assert configs == ["CodeDeployDefault.HalfAtATime", "CodeDeployDefault.AllAtOnce"]
    error = await api.error(
        "create_deployment",
        applicationName="web",
        deploymentGroupName="prod",
        revision=S3_REVISION,
        deploymentConfigName="Nope",
    )
    assert error.response["Error"]["Code"] == "DeploymentConfigDoesNotExistException"


@pytest.mark.asyncio
async def test_one_active_deployment_per_group(api: Api) -> None:
    """A second deployment while one is active is refused with AWS's exact message."""
    await api.group()
    first = await api.deploy()
    await api.set_status(first, "InProgress")
    error = await api.error(
        "create_deployment", applicationName="web", deploymentGroupName="prod", revision=V2
    )
    assert error.response["Error"]["Code"] == "DeploymentLimitExceededException"
    assert error.response["Error"]["Message"] == (
        f"The Deployment Group 'prod' already has an active Deployment '{first}'"
    )
    await api.set_status(first, "Stopped")
    await api.deploy(revision=V2)


@pytest.mark.asyncio
async def test_concurrent_creates_admit_one(api: Api) -> None:
    """Ten CreateDeployment calls at once on one group: exactly one deployment is created."""
    await api.group()
    results = await asyncio.gather(
        *(
            api.call(
                "create_deployment",
                applicationName="web",
                deploymentGroupName="prod",
                revision=S3_REVISION,
            )
            for _ in range(10)
        ),
        return_exceptions=True,
    )
    created = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if not isinstance(r, dict)]
    assert len(created) == 1
    assert len(refused) == 9
    assert all("DeploymentLimitExceededException" in str(r) for r in refused)
    listed = await api.call("list_deployments", applicationName="web", deploymentGroupName="prod")
    assert listed["deployments"] == [created[0]["deploymentId"]]


@pytest.mark.asyncio
async def test_previous_revision_is_last_success(api: Api) -> None:
    """previousRevision is the revision of the group's last successful deployment."""
    await api.group()
    first = await api.deploy()
    await api.set_status(first, "Succeeded")
    failed = await api.deploy(
        revision={
            "revisionType": "S3",
            "s3Location": {"bucket": "releases", "key": "bad.zip", "bundleType": "zip"},
        }
    )
    await api.set_status(failed, "Failed")
    third = await api.deploy(revision=V2)
    info = (await api.call("get_deployment", deploymentId=third))["deploymentInfo"]
    assert info["previousRevision"] == S3_REVISION


@pytest.mark.asyncio
async def test_scheduling_order_follows_instance_health(api: Api) -> None:
    """Unhealthy (never deployed or failed) first, then Old revision, then Current; by name."""
    for name in ("a-current", "b-old", "c-new", "d-failed", "e-current"):
        await api.register(name, env="prod")
    await api.group(onPremisesInstanceTagFilters=[{"Key": "env", "Type": "KEY_ONLY"}])
    first = await api.deploy()
    await api.set_status(first, "Succeeded")
    group_id = await _group_id(api)
    async with api.store.transaction() as tx:
        for name in ("a-current", "e-current"):
            await record(
                tx,
                group_id,
                name,
                succeeded=True,
                revision=S3_REVISION,
                deployment_id=first,
                now=1.0,
            )
        await record(
            tx, group_id, "b-old", succeeded=True, revision=V2, deployment_id=first, now=1.0
        )
        await record(
            tx,
            group_id,
            "d-failed",
            succeeded=False,
            revision=S3_REVISION,
            deployment_id=first,
            now=1.0,
        )
    second = await api.deploy(revision=V2)
    assert await _targets(api, second) == ["c-new", "d-failed", "b-old", "a-current", "e-current"]


@pytest.mark.asyncio
async def test_update_outdated_instances_only(api: Api) -> None:
    """updateOutdatedInstancesOnly leaves out instances Healthy on the deployed revision."""
    for name in ("a", "b", "c"):
        await api.register(name, env="prod")
    await api.group(onPremisesInstanceTagFilters=[{"Key": "env", "Type": "KEY_ONLY"}])
    group_id = await _group_id(api)
    first = await api.deploy()
    await api.set_status(first, "Failed")
    async with api.store.transaction() as tx:
        await record(
            tx, group_id, "a", succeeded=True, revision=S3_REVISION, deployment_id=first, now=1.0
        )
        await record(
            tx, group_id, "b", succeeded=False, revision=S3_REVISION, deployment_id=first, now=1.0
        )
    second = await api.deploy(updateOutdatedInstancesOnly=True)
    assert await _targets(api, second) == ["b", "c"]
    info = (await api.call("get_deployment", deploymentId=second))["deploymentInfo"]
    assert info["updateOutdatedInstancesOnly"] is True


@pytest.mark.asyncio
async def test_target_instances_override(api: Api) -> None:
    """targetInstances.tagFilters replaces the group's selection for that deployment."""
    await api.register("a", env="prod")
    await api.register("canary", env="prod", canary="yes")
    await api.group(onPremisesInstanceTagFilters=[{"Key": "env", "Type": "KEY_ONLY"}])
    overrides = {"tagFilters": [{"Key": "canary", "Value": "yes", "Type": "KEY_AND_VALUE"}]}
    deployment_id = await api.deploy(targetInstances=overrides)
    assert await _targets(api, deployment_id) == ["canary"]
    info = (await api.call("get_deployment", deploymentId=deployment_id))["deploymentInfo"]
    assert info["targetInstances"] == overrides


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"description": "x" * 257}, "DescriptionTooLongException"),
        ({"fileExistsBehavior": "MERGE"}, "InvalidFileExistsBehaviorException"),
        ({"targetInstances": {"autoScalingGroups": ["asg"]}}, "InvalidTargetInstancesException"),
        (
            {
                "targetInstances": {
                    "tagFilters": [{"Key": "a", "Type": "KEY_ONLY"}],
                    "ec2TagSet": {"ec2TagSetList": [[{"Key": "b", "Type": "KEY_ONLY"}]]},
                }
            },
            "InvalidTargetInstancesException",
        ),
        (
            {
                "targetInstances": {
                    "tagFilters": [{"Key": f"k{i}", "Type": "KEY_ONLY"} for i in range(11)]
                }
            },
            "InvalidTargetInstancesException",
        ),
        ({"autoRollbackConfiguration": {"enabled": True}}, "InvalidAutoRollbackConfigException"),
        (
            {"revision": {"revisionType": "String", "string": {"content": "x"}}},
            "InvalidRevisionException",
        ),
        ({"revision": {}}, "RevisionRequiredException"),
        ({"deploymentMode": "RESTART"}, "InvalidInputException"),
        (
            {
                "overrideAlarmConfiguration": {
                    "enabled": True,
                    "alarms": [{"name": f"a{i}"} for i in range(11)],
                }
            },
            "AlarmsLimitExceededException",
        ),
    ],
)
async def test_refused_deployments(api: Api, params: dict[str, Any], code: str) -> None:
    """Invalid CreateDeployment input is refused before anything is written."""
    await api.group()
    params.setdefault("revision", S3_REVISION)
    error = await api.error(
        "create_deployment", applicationName="web", deploymentGroupName="prod", **params
    )
    assert error.response["Error"]["Code"] == code
    assert api.rollout.created == []
    assert (await api.call("list_deployments"))["deployments"] == []


@pytest.mark.asyncio
async def test_missing_group_and_application(api: Api) -> None:
    """Unknown group, unknown application and no group at all are each named."""
    await api.group()
    error = await api.error(
        "create_deployment", applicationName="web", deploymentGroupName="qa", revision=S3_REVISION
    )
    assert error.response["Error"]["Code"] == "DeploymentGroupDoesNotExistException"
    error = await api.error(
        "create_deployment",
        applicationName="nope",
        deploymentGroupName="prod",
        revision=S3_REVISION,
    )
    assert error.response["Error"]["Code"] == "ApplicationDoesNotExistException"
    error = await api.error("create_deployment", applicationName="web", revision=S3_REVISION)
    assert error.response["Error"]["Code"] == "DeploymentGroupNameRequiredException"


@pytest.mark.asyncio
async def test_get_unknown_and_malformed_ids(api: Api) -> None:
    """A well-formed unknown id does not exist; a malformed one gives AWS's format message."""
    error = await api.error("get_deployment", deploymentId="d-ABCDEFGH1")
    assert error.response["Error"]["Code"] == "DeploymentDoesNotExistException"
    error = await api.error("get_deployment", deploymentId="12345")
    assert error.response["Error"]["Code"] == "InvalidDeploymentIdException"
    assert error.response["Error"]["Message"] == (
        "Specified DeploymentId is not in the valid format: 12345"
    )


@pytest.mark.asyncio
async def test_list_and_batch_get(api: Api) -> None:
    """ListDeployments is newest first with status/time/group filters; BatchGet skips unknowns."""
    await api.group("web", "prod")
    await api.call(
        "create_deployment_group",
        applicationName="web",
        deploymentGroupName="qa",
        serviceRoleArn="arn:aws:iam::123456789012:role/r",
    )
    first = await api.deploy()
    await api.set_status(first, "Succeeded")
    second = await api.deploy(revision=V2)
    third = await api.deploy(group="qa")
    assert (await api.call("list_deployments"))["deployments"] == [third, second, first]
    in_prod = await api.call("list_deployments", applicationName="web", deploymentGroupName="prod")
    assert in_prod["deployments"] == [second, first]
    in_app = await api.call("list_deployments", applicationName="web")
    assert in_app["deployments"] == [third, second, first]
    done = await api.call("list_deployments", includeOnlyStatuses=["Succeeded"])
    assert done["deployments"] == [first]
    created = {
        d: (await api.call("get_deployment", deploymentId=d))["deploymentInfo"]["createTime"]
        for d in (first, second)
    }
    window = await api.call(
        "list_deployments", createTimeRange={"start": created[first], "end": created[second]}
    )
    assert window["deployments"] == [second, first]
    error = await api.error("list_deployments", deploymentGroupName="prod")
    assert error.response["Error"]["Code"] == "ApplicationNameRequiredException"
    error = await api.error(
        "list_deployments", createTimeRange={"start": created[second], "end": created[first]}
    )
    assert error.response["Error"]["Code"] == "InvalidTimeRangeException"
    error = await api.error("list_deployments", includeOnlyStatuses=["Done"])
    assert error.response["Error"]["Code"] == "InvalidDeploymentStatusException"
    batch = await api.call("batch_get_deployments", deploymentIds=[second, "d-ZZZZZZZZZ", first])
    assert [d["deploymentId"] for d in batch["deploymentsInfo"]] == [second, first]


@pytest.mark.asyncio
async def test_stop_goes_through_the_engine(api: Api) -> None:
    """StopDeployment passes the rollback flag to the engine and returns its status. A Stopped
    deployment still reaches the engine (a repeated stop answers Pending, then Succeeded);
    one that Succeeded or Failed is refused without asking it."""
    await api.group()
    deployment_id = await api.deploy()
    api.rollout.stop_answer = "Pending"
    answer = await api.call("stop_deployment", deploymentId=deployment_id, autoRollbackEnabled=True)
    assert answer["status"] == "Pending"
    assert answer["statusMessage"] == (
        "No more commands will be scheduled for execution in the deployment instances"
    )
    await api.call("stop_deployment", deploymentId=deployment_id)
    assert api.rollout.stops == [(deployment_id, True), (deployment_id, None)]
    await api.set_status(deployment_id, "Stopped")
    api.rollout.stop_answer = "Succeeded"
    answer = await api.call("stop_deployment", deploymentId=deployment_id)
    assert answer["status"] == "Succeeded"
    assert len(api.rollout.stops) == 3
    for status in ("Succeeded", "Failed"):
        await api.set_status(deployment_id, status)
        error = await api.error("stop_deployment", deploymentId=deployment_id)
        assert error.response["Error"]["Code"] == "DeploymentAlreadyCompletedException"
    assert len(api.rollout.stops) == 3


@pytest.mark.asyncio
async def test_continue(api: Api) -> None:
    """ContinueDeployment: in-place TERMINATION_WAIT is unsupported; READY_WAIT needs Ready."""
    await api.group()
    deployment_id = await api.deploy()
    error = await api.error(
        "continue_deployment", deploymentId=deployment_id, deploymentWaitType="TERMINATION_WAIT"
    )
    assert error.response["Error"]["Code"] == "UnsupportedActionForDeploymentTypeException"
    error = await api.error("continue_deployment", deploymentId=deployment_id)
    assert error.response["Error"]["Code"] == "DeploymentIsNotInReadyStateException"
    assert api.rollout.continues == []
    await api.set_status(deployment_id, "Ready")
    await api.call(
        "continue_deployment", deploymentId=deployment_id, deploymentWaitType="READY_WAIT"
    )
    assert api.rollout.continues == [(deployment_id, "READY_WAIT")]


@pytest.mark.asyncio
async def test_deployment_successful_waiter(api: Api) -> None:
    """boto3's deployment_successful waiter returns once the status is Succeeded."""
    await api.group()
    deployment_id = await api.deploy()

    def wait() -> None:
        waiter = api.client.get_waiter("deployment_successful")
        waiter.wait(deploymentId=deployment_id, WaiterConfig={"Delay": 0.05, "MaxAttempts": 200})

    waiting = asyncio.create_task(asyncio.to_thread(wait))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await api.set_status(deployment_id, "InProgress")
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await api.set_status(deployment_id, "Succeeded")
    await asyncio.wait_for(waiting, 10)


@pytest.mark.asyncio
async def test_deployment_successful_waiter_fails_on_failed(api: Api) -> None:
    """The waiter raises WaiterError when the deployment Failed."""
    await api.group()
    deployment_id = await api.deploy()
    await api.set_status(deployment_id, "Failed")

    def wait() -> None:
        waiter = api.client.get_waiter("deployment_successful")
        waiter.wait(deploymentId=deployment_id, WaiterConfig={"Delay": 0.05, "MaxAttempts": 5})

    with pytest.raises(WaiterError, match="Failed"):
        await asyncio.to_thread(wait)

"""Deployment groups through boto3: defaults, tag filters and sets, what is refused, update,
derived fields, delete."""

from __future__ import annotations

from typing import Any

import pytest

from tests.server.api.conftest import ROLE_ARN, S3_REVISION, Api


async def _create(api: Api, **settings: Any) -> dict[str, Any]:
    await api.call("create_application", applicationName="web")
    await api.call(
        "create_deployment_group",
        applicationName="web",
        deploymentGroupName="prod",
        serviceRoleArn=ROLE_ARN,
        **settings,
    )
    answer = await api.call(
        "get_deployment_group", applicationName="web", deploymentGroupName="prod"
    )
    info: dict[str, Any] = answer["deploymentGroupInfo"]
    return info


@pytest.mark.asyncio
async def test_defaults(api: Api) -> None:
    """A group with no settings reads back with AWS's defaults (OneAtATime, in place)."""
    info = await _create(api)
    assert info["deploymentConfigName"] == "CodeDeployDefault.OneAtATime"
    assert info["deploymentStyle"] == {
        "deploymentType": "IN_PLACE",
        "deploymentOption": "WITHOUT_TRAFFIC_CONTROL",
    }
    assert info["onPremisesInstanceTagFilters"] == []
    assert info["alarmConfiguration"] == {
        "enabled": False,
        "ignorePollAlarmFailure": False,
        "alarms": [],
    }
    assert info["outdatedInstancesStrategy"] == "UPDATE"
    assert info["computePlatform"] == "Server"
    assert info["serviceRoleArn"] == ROLE_ARN
    assert "targetRevision" not in info
    assert "lastSuccessfulDeployment" not in info


@pytest.mark.asyncio
async def test_tag_filters_get_their_type(api: Api) -> None:
    """Filters without Type get the inferred one; filters with one keep it."""
    info = await _create(
        api,
        onPremisesInstanceTagFilters=[
            {"Key": "env", "Value": "prod"},
            {"Key": "web"},
            {"Value": "blue", "Type": "VALUE_ONLY"},
        ],
    )
    assert info["onPremisesInstanceTagFilters"] == [
        {"Key": "env", "Value": "prod", "Type": "KEY_AND_VALUE"},
        {"Key": "web", "Type": "KEY_ONLY"},
        {"Value": "blue", "Type": "VALUE_ONLY"},
    ]


@pytest.mark.asyncio
async def test_tag_set(api: Api) -> None:
    """A tag set is stored group by group."""
    tag_set = {
        "onPremisesTagSetList": [
            [{"Key": "env", "Value": "prod", "Type": "KEY_AND_VALUE"}],
            [{"Key": "role", "Value": "web", "Type": "KEY_AND_VALUE"}],
        ]
    }
    info = await _create(api, onPremisesTagSet=tag_set)
    assert info["onPremisesTagSet"] == tag_set


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("settings", "code"),
    [
        (
            {
                "onPremisesInstanceTagFilters": [{"Key": "a", "Value": "b"}],
                "onPremisesTagSet": {"onPremisesTagSetList": [[{"Key": "a"}]]},
            },
            "InvalidOnPremisesTagCombinationException",
        ),
        (
            {"onPremisesTagSet": {"onPremisesTagSetList": [[{"Key": "k"}]] * 4}},
            "TagSetListLimitExceededException",
        ),
        ({"onPremisesInstanceTagFilters": [{"Type": "KEY_ONLY"}]}, "InvalidTagException"),
        ({"deploymentStyle": {"deploymentType": "BLUE_GREEN"}}, "InvalidDeploymentStyleException"),
        (
            {"deploymentStyle": {"deploymentOption": "WITH_TRAFFIC_CONTROL"}},
            "InvalidDeploymentStyleException",
        ),
        ({"ec2TagFilters": [{"Key": "Name", "Value": "x"}]}, "InvalidEC2TagException"),
        ({"autoScalingGroups": ["asg"]}, "InvalidAutoScalingGroupException"),
        ({"deploymentConfigName": "Missing.Config"}, "DeploymentConfigDoesNotExistException"),
        ({"serviceRoleArn": "not-an-arn"}, "InvalidRoleException"),
        (
            {"autoRollbackConfiguration": {"enabled": True, "events": []}},
            "InvalidAutoRollbackConfigException",
        ),
        (
            {"alarmConfiguration": {"enabled": True, "alarms": [{"name": "cpu"}]}},
            "InvalidAlarmConfigException",
        ),
        (
            {"loadBalancerInfo": {"elbInfoList": [{"name": "lb"}]}},
            "InvalidLoadBalancerInfoException",
        ),
        (
            {
                "triggerConfigurations": [
                    {"triggerName": "t", "triggerTargetArn": "arn:aws:sns:us-east-1:1:t"}
                ]
            },
            "InvalidTriggerConfigException",
        ),
    ],
)
async def test_refused_settings(api: Api, settings: dict[str, Any], code: str) -> None:
    """Settings that are malformed or that this server cannot honour are refused by name."""
    await api.call("create_application", applicationName="web")
    params = {"serviceRoleArn": ROLE_ARN, **settings}
    error = await api.error(
        "create_deployment_group", applicationName="web", deploymentGroupName="prod", **params
    )
    assert error.response["Error"]["Code"] == code


@pytest.mark.asyncio
async def test_blue_green_message_says_why(api: Api) -> None:
    """The blue/green refusal says this server deploys in place."""
    await api.call("create_application", applicationName="web")
    error = await api.error(
        "create_deployment_group",
        applicationName="web",
        deploymentGroupName="prod",
        serviceRoleArn=ROLE_ARN,
        deploymentStyle={
            "deploymentType": "BLUE_GREEN",
            "deploymentOption": "WITH_TRAFFIC_CONTROL",
        },
    )
    assert error.response["Error"]["Message"] == (
        "Deployment type BLUE_GREEN is not supported: this server deploys in place "
        "(deploymentType IN_PLACE)."
    )


@pytest.mark.asyncio
async def test_missing_role_and_application(api: Api) -> None:
    """No serviceRoleArn is RoleRequiredException; an unknown application is named."""
    await api.call("create_application", applicationName="web")
    error = await api.error(
        "create_deployment_group",
        applicationName="web",
        deploymentGroupName="prod",
        serviceRoleArn="",
    )
    assert error.response["Error"]["Code"] == "InvalidRoleException"
    error = await api.error(
        "create_deployment_group",
        applicationName="nope",
        deploymentGroupName="prod",
        serviceRoleArn=ROLE_ARN,
    )
    assert error.response["Error"]["Code"] == "ApplicationDoesNotExistException"


@pytest.mark.asyncio
async def test_duplicate_and_missing_group(api: Api) -> None:
    """A duplicate group is refused; an unknown one gives AWS's "No Deployment Group" text."""
    await _create(api)
    error = await api.error(
        "create_deployment_group",
        applicationName="web",
        deploymentGroupName="prod",
        serviceRoleArn=ROLE_ARN,
    )
    assert error.response["Error"]["Code"] == "DeploymentGroupAlreadyExistsException"
    error = await api.error("get_deployment_group", applicationName="web", deploymentGroupName="qa")
    assert error.response["Error"]["Code"] == "DeploymentGroupDoesNotExistException"
    assert error.response["Error"]["Message"] == "No Deployment Group found for name: qa"


@pytest.mark.asyncio
async def test_update_replaces_given_settings_only(api: Api) -> None:
    """UpdateDeploymentGroup changes what it is given and keeps the rest."""
    await api.call(
        "create_deployment_config",
        deploymentConfigName="Two",
        minimumHealthyHosts={"type": "HOST_COUNT", "value": 2},
    )
    await _create(api, onPremisesInstanceTagFilters=[{"Key": "env", "Value": "prod"}])
    answer = await api.call(
        "update_deployment_group",
        applicationName="web",
        currentDeploymentGroupName="prod",
        deploymentConfigName="Two",
        autoRollbackConfiguration={"enabled": True, "events": ["DEPLOYMENT_FAILURE"]},
    )
    assert answer["hooksNotCleanedUp"] == []
    info = (
        await api.call("get_deployment_group", applicationName="web", deploymentGroupName="prod")
    )["deploymentGroupInfo"]
    assert info["deploymentConfigName"] == "Two"
    assert info["autoRollbackConfiguration"] == {"enabled": True, "events": ["DEPLOYMENT_FAILURE"]}
    assert info["onPremisesInstanceTagFilters"] == [
        {"Key": "env", "Value": "prod", "Type": "KEY_AND_VALUE"}
    ]


@pytest.mark.asyncio
async def test_update_to_tag_set_clears_filters(api: Api) -> None:
    """Switching a group from filters to a tag set leaves only the tag set."""
    await _create(api, onPremisesInstanceTagFilters=[{"Key": "env", "Value": "prod"}])
    await api.call(
        "update_deployment_group",
        applicationName="web",
        currentDeploymentGroupName="prod",
        onPremisesTagSet={"onPremisesTagSetList": [[{"Key": "role", "Type": "KEY_ONLY"}]]},
    )
    info = (
        await api.call("get_deployment_group", applicationName="web", deploymentGroupName="prod")
    )["deploymentGroupInfo"]
    assert info["onPremisesInstanceTagFilters"] == []
    assert info["onPremisesTagSet"] == {
        "onPremisesTagSetList": [[{"Key": "role", "Type": "KEY_ONLY"}]]
    }


@pytest.mark.asyncio
async def test_rename_keeps_history(api: Api) -> None:
    """A renamed group keeps its deployments (ListDeployments under the new name)."""
    await _create(api)
    deployment_id = await api.deploy()
    await api.set_status(deployment_id, "Succeeded")
    await api.call(
        "update_deployment_group",
        applicationName="web",
        currentDeploymentGroupName="prod",
        newDeploymentGroupName="production",
    )
    listed = await api.call(
        "list_deployments", applicationName="web", deploymentGroupName="production"
    )
    assert listed["deployments"] == [deployment_id]
    info = await api.call("get_deployment", deploymentId=deployment_id)
    assert info["deploymentInfo"]["deploymentGroupName"] == "production"
    groups = await api.call("list_deployment_groups", applicationName="web")
    assert groups["deploymentGroups"] == ["production"]


@pytest.mark.asyncio
async def test_rename_refused_while_deploying(api: Api) -> None:
    """A group with a running deployment cannot be renamed."""
    await _create(api)
    deployment_id = await api.deploy()
    error = await api.error(
        "update_deployment_group",
        applicationName="web",
        currentDeploymentGroupName="prod",
        newDeploymentGroupName="other",
    )
    assert error.response["Error"]["Code"] == "InvalidDeploymentGroupNameException"
    assert deployment_id in error.response["Error"]["Message"]


@pytest.mark.asyncio
async def test_derived_deployment_fields(api: Api) -> None:
    """targetRevision and lastSuccessful/lastAttempted come from the group's deployments."""
    await _create(api)
    first = await api.deploy()
    await api.set_status(first, "Succeeded")
    second = await api.deploy(
        revision={
            "revisionType": "S3",
            "s3Location": {"bucket": "releases", "key": "app/v2.zip", "bundleType": "zip"},
        }
    )
    await api.set_status(second, "Failed")
    info = (
        await api.call("get_deployment_group", applicationName="web", deploymentGroupName="prod")
    )["deploymentGroupInfo"]
    assert info["targetRevision"] == S3_REVISION
    assert info["lastSuccessfulDeployment"]["deploymentId"] == first
    assert info["lastSuccessfulDeployment"]["status"] == "Succeeded"
    assert info["lastAttemptedDeployment"]["deploymentId"] == second
    assert info["lastAttemptedDeployment"]["status"] == "Failed"


@pytest.mark.asyncio
async def test_list_batch_get_and_delete(api: Api) -> None:
    """Groups list by name; BatchGet names the missing; delete is idempotent."""
    await api.group("web", "b")
    await api.call(
        "create_deployment_group",
        applicationName="web",
        deploymentGroupName="a",
        serviceRoleArn=ROLE_ARN,
    )
    listed = await api.call("list_deployment_groups", applicationName="web")
    assert listed["deploymentGroups"] == ["a", "b"]
    assert listed["applicationName"] == "web"
    batch = await api.call(
        "batch_get_deployment_groups", applicationName="web", deploymentGroupNames=["b", "zz"]
    )
    assert [g["deploymentGroupName"] for g in batch["deploymentGroupsInfo"]] == ["b"]
    assert batch["errorMessage"] == "Deployment groups not found: zz"
    deleted = await api.call(
        "delete_deployment_group", applicationName="web", deploymentGroupName="a"
    )
    assert deleted["hooksNotCleanedUp"] == []
    await api.call("delete_deployment_group", applicationName="web", deploymentGroupName="a")
    listed = await api.call("list_deployment_groups", applicationName="web")
    assert listed["deploymentGroups"] == ["b"]

"""Resource tags on application and deployment group ARNs through boto3."""

from __future__ import annotations

import pytest

from tests.server.api.conftest import ROLE_ARN, Api

APP_ARN = "arn:aws:codedeploy:us-east-1:123456789012:application:web"
GROUP_ARN = "arn:aws:codedeploy:us-east-1:123456789012:deploymentgroup:web/prod"


@pytest.mark.asyncio
async def test_tags_from_create_and_tag_resource(api: Api) -> None:
    """Tags given at creation and by TagResource are listed sorted; a key's value is replaced."""
    await api.call(
        "create_application", applicationName="web", tags=[{"Key": "team", "Value": "a"}]
    )
    await api.call(
        "tag_resource",
        ResourceArn=APP_ARN,
        Tags=[{"Key": "team", "Value": "b"}, {"Key": "cost", "Value": "1"}],
    )
    tags = (await api.call("list_tags_for_resource", ResourceArn=APP_ARN))["Tags"]
    assert tags == [{"Key": "cost", "Value": "1"}, {"Key": "team", "Value": "b"}]
    await api.call("untag_resource", ResourceArn=APP_ARN, TagKeys=["team", "absent"])
    tags = (await api.call("list_tags_for_resource", ResourceArn=APP_ARN))["Tags"]
    assert tags == [{"Key": "cost", "Value": "1"}]


@pytest.mark.asyncio
async def test_group_tags_follow_rename(api: Api) -> None:
    """A group's tags stay with it when the group is renamed."""
    await api.call("create_application", applicationName="web")
    await api.call(
        "create_deployment_group",
        applicationName="web",
        deploymentGroupName="prod",
        serviceRoleArn=ROLE_ARN,
        tags=[{"Key": "tier", "Value": "1"}],
    )
    await api.call("tag_resource", ResourceArn=GROUP_ARN, Tags=[{"Key": "owner", "Value": "ops"}])
    await api.call(
        "update_deployment_group",
        applicationName="web",
        currentDeploymentGroupName="prod",
        newDeploymentGroupName="live",
    )
    tags = (
        await api.call("list_tags_for_resource", ResourceArn=GROUP_ARN.replace("/prod", "/live"))
    )["Tags"]
    assert tags == [{"Key": "owner", "Value": "ops"}, {"Key": "tier", "Value": "1"}]
    error = await api.error("list_tags_for_resource", ResourceArn=GROUP_ARN)
    assert error.response["Error"]["Code"] == "DeploymentGroupDoesNotExistException"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("arn", "code"),
    [
        ("arn:aws:codedeploy:eu-west-1:123456789012:application:web", "InvalidArnException"),
        ("arn:aws:codedeploy:us-east-1:999999999999:application:web", "InvalidArnException"),
        ("not-an-arn", "InvalidArnException"),
        ("arn:aws:codedeploy:us-east-1:123456789012:deploymentgroup:web", "InvalidArnException"),
        (
            "arn:aws:codedeploy:us-east-1:123456789012:deploymentconfig:Mine",
            "ArnNotSupportedException",
        ),
        (
            "arn:aws:codedeploy:us-east-1:123456789012:application:ghost",
            "ApplicationDoesNotExistException",
        ),
    ],
)
async def test_bad_arns(api: Api, arn: str, code: str) -> None:
    """ARNs of another region/account, malformed ones and unsupported types are refused."""
    await api.call("create_application", applicationName="web")
    error = await api.error("tag_resource", ResourceArn=arn, Tags=[{"Key": "k", "Value": "v"}])
    assert error.response["Error"]["Code"] == code


@pytest.mark.asyncio
async def test_invalid_tags(api: Api) -> None:
    """Empty tag lists and over-long keys are refused."""
    await api.call("create_application", applicationName="web")
    error = await api.error("tag_resource", ResourceArn=APP_ARN, Tags=[])
    assert error.response["Error"]["Code"] == "TagRequiredException"
    error = await api.error(
        "tag_resource", ResourceArn=APP_ARN, Tags=[{"Key": "k" * 129, "Value": "v"}]
    )
    assert error.response["Error"]["Code"] == "InvalidTagsToAddException"
    error = await api.error("untag_resource", ResourceArn=APP_ARN, TagKeys=[])
    assert error.response["Error"]["Code"] == "TagRequiredException"

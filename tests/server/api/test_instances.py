"""On-premises instances through boto3: register, tags, list filters, deregister."""

from __future__ import annotations

import pytest

from tests.server.api.conftest import USER_ARN, Api

SESSION_ARN = "arn:aws:sts::123456789012:assumed-role/CodeDeployHost/host-1"


@pytest.mark.asyncio
async def test_register_and_get(api: Api) -> None:
    """A registered instance reads back with its ARNs, time and tags (sorted by key)."""
    await api.register("host-1", role="web", env="prod")
    info = (await api.call("get_on_premises_instance", instanceName="host-1"))["instanceInfo"]
    assert info["instanceName"] == "host-1"
    assert info["iamUserArn"] == USER_ARN.format("host-1")
    assert info["instanceArn"].startswith(
        "arn:aws:codedeploy:us-east-1:123456789012:instance/host-1_"
    )
    assert info["tags"] == [{"Key": "env", "Value": "prod"}, {"Key": "role", "Value": "web"}]
    assert "deregisterTime" not in info


@pytest.mark.asyncio
async def test_register_with_session_arn(api: Api) -> None:
    """An IAM session ARN is stored as such."""
    await api.call(
        "register_on_premises_instance", instanceName="host-1", iamSessionArn=SESSION_ARN
    )
    info = (await api.call("get_on_premises_instance", instanceName="host-1"))["instanceInfo"]
    assert info["iamSessionArn"] == SESSION_ARN
    assert "iamUserArn" not in info


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({}, "IamArnRequiredException"),
        (
            {"iamUserArn": USER_ARN.format("x"), "iamSessionArn": SESSION_ARN},
            "MultipleIamArnsProvidedException",
        ),
        ({"iamUserArn": "arn:aws:iam::123:user/x"}, "InvalidIamUserArnException"),
        ({"iamSessionArn": "arn:aws:iam::123456789012:user/x"}, "InvalidIamSessionArnException"),
    ],
)
async def test_registration_arns(api: Api, params: dict[str, str], code: str) -> None:
    """Exactly one well-formed IAM ARN is needed."""
    error = await api.error("register_on_premises_instance", instanceName="host-1", **params)
    assert error.response["Error"]["Code"] == code


@pytest.mark.asyncio
async def test_invalid_instance_name(api: Api) -> None:
    """A name that cannot be an MQTT thing name is InvalidInstanceNameException."""
    error = await api.error(
        "register_on_premises_instance", instanceName="host/1", iamUserArn=USER_ARN.format("x")
    )
    assert error.response["Error"]["Code"] == "InvalidInstanceNameException"
    assert "MQTT thing name" in error.response["Error"]["Message"]


@pytest.mark.asyncio
async def test_duplicate_name_and_arn(api: Api) -> None:
    """A registered name, or an IAM user ARN in use by another instance, is refused."""
    await api.register("host-1")
    error = await api.error(
        "register_on_premises_instance", instanceName="host-1", iamUserArn=USER_ARN.format("z")
    )
    assert error.response["Error"]["Code"] == "InstanceNameAlreadyRegisteredException"
    error = await api.error(
        "register_on_premises_instance",
        instanceName="host-2",
        iamUserArn=USER_ARN.format("host-1"),
    )
    assert error.response["Error"]["Code"] == "IamUserArnAlreadyRegisteredException"


@pytest.mark.asyncio
async def test_deregister_and_register_again(api: Api) -> None:
    """A deregistered instance is listed as such and its name can be registered again."""
    await api.register("host-1")
    await api.register("host-2")
    await api.call("deregister_on_premises_instance", instanceName="host-1")
    await api.call("deregister_on_premises_instance", instanceName="host-1")
    info = (await api.call("get_on_premises_instance", instanceName="host-1"))["instanceInfo"]
    assert "deregisterTime" in info
    registered = await api.call("list_on_premises_instances", registrationStatus="Registered")
    assert registered["instanceNames"] == ["host-2"]
    deregistered = await api.call("list_on_premises_instances", registrationStatus="Deregistered")
    assert deregistered["instanceNames"] == ["host-1"]
    everything = await api.call("list_on_premises_instances")
    assert everything["instanceNames"] == ["host-1", "host-2"]
    await api.register("host-1")
    info = (await api.call("get_on_premises_instance", instanceName="host-1"))["instanceInfo"]
    assert "deregisterTime" not in info


@pytest.mark.asyncio
async def test_list_by_tag_filters(api: Api) -> None:
    """ListOnPremisesInstances tag filters are an OR over KEY_ONLY/VALUE_ONLY/KEY_AND_VALUE."""
    await api.register("a", env="prod")
    await api.register("b", env="staging")
    await api.register("c", role="prod")
    await api.register("d")

    async def names(*filters: dict[str, str]) -> list[str]:
        answer = await api.call("list_on_premises_instances", tagFilters=list(filters))
        result: list[str] = answer["instanceNames"]
        return result

    assert await names({"Key": "env", "Type": "KEY_ONLY"}) == ["a", "b"]
    assert await names({"Value": "prod", "Type": "VALUE_ONLY"}) == ["a", "c"]
    assert await names({"Key": "env", "Value": "prod", "Type": "KEY_AND_VALUE"}) == ["a"]
    assert await names(
        {"Key": "env", "Value": "staging", "Type": "KEY_AND_VALUE"},
        {"Key": "role", "Type": "KEY_ONLY"},
    ) == ["b", "c"]
    assert await names({"Key": "Env", "Type": "KEY_ONLY"}) == []


@pytest.mark.asyncio
async def test_tags_add_replace_remove(api: Api) -> None:
    """AddTags replaces a key's value; RemoveTags by key, or by key and matching value."""
    await api.register("host-1", env="prod", role="web")
    await api.call(
        "add_tags_to_on_premises_instances",
        instanceNames=["host-1"],
        tags=[{"Key": "env", "Value": "staging"}],
    )
    await api.call(
        "remove_tags_from_on_premises_instances",
        instanceNames=["host-1"],
        tags=[{"Key": "role", "Value": "db"}],
    )
    info = (await api.call("get_on_premises_instance", instanceName="host-1"))["instanceInfo"]
    assert info["tags"] == [{"Key": "env", "Value": "staging"}, {"Key": "role", "Value": "web"}]
    await api.call(
        "remove_tags_from_on_premises_instances",
        instanceNames=["host-1"],
        tags=[{"Key": "role"}, {"Key": "env", "Value": "staging"}],
    )
    info = (await api.call("get_on_premises_instance", instanceName="host-1"))["instanceInfo"]
    assert info["tags"] == []


@pytest.mark.asyncio
async def test_tagging_unregistered_instance(api: Api) -> None:
    """Tagging an instance that is not registered names it."""
    await api.register("host-1")
    error = await api.error(
        "add_tags_to_on_premises_instances",
        instanceNames=["host-1", "ghost"],
        tags=[{"Key": "env", "Value": "prod"}],
    )
    assert error.response["Error"]["Code"] == "InstanceNotRegisteredException"
    assert error.response["Error"]["Message"] == (
        "The specified on-premises instance is not registered: ghost."
    )
    error = await api.error("add_tags_to_on_premises_instances", instanceNames=["host-1"], tags=[])
    assert error.response["Error"]["Code"] == "TagRequiredException"


@pytest.mark.asyncio
async def test_get_unknown_and_batch_get(api: Api) -> None:
    """An unknown instance is InstanceNotRegisteredException; BatchGet leaves unknowns out."""
    error = await api.error("get_on_premises_instance", instanceName="ghost")
    assert error.response["Error"]["Code"] == "InstanceNotRegisteredException"
    await api.register("b", env="prod")
    await api.register("a")
    infos = (await api.call("batch_get_on_premises_instances", instanceNames=["b", "ghost", "a"]))[
        "instanceInfos"
    ]
    assert [info["instanceName"] for info in infos] == ["b", "a"]
    assert infos[0]["tags"] == [{"Key": "env", "Value": "prod"}]

"""Deployment configs through boto3: the built-ins as AWS reports them, custom ones, deletion."""

from __future__ import annotations

from typing import Any

import pytest

from tests.server.api.conftest import Api

BUILTINS = {
    "CodeDeployDefault.OneAtATime": {"type": "MOST_CONCURRENCY", "value": 1},
    "CodeDeployDefault.HalfAtATime": {"type": "FLEET_PERCENT", "value": 50},
    "CodeDeployDefault.AllAtOnce": {"type": "HOST_COUNT", "value": 0},
}


@pytest.mark.asyncio
@pytest.mark.parametrize(("name", "hosts"), list(BUILTINS.items()))
async def test_builtin_configs(api: Api, name: str, hosts: dict[str, Any]) -> None:
    """Each predefined config reports AWS's minimum healthy hosts and the Server platform."""
    info = (await api.call("get_deployment_config", deploymentConfigName=name))[
        "deploymentConfigInfo"
    ]
    assert info["deploymentConfigName"] == name
    assert info["minimumHealthyHosts"] == hosts
    assert info["computePlatform"] == "Server"
    assert info["deploymentConfigId"]


@pytest.mark.asyncio
async def test_create_custom_and_list(api: Api) -> None:
    """Custom HOST_COUNT and FLEET_PERCENT configs are listed with the built-ins, by name."""
    created = await api.call(
        "create_deployment_config",
        deploymentConfigName="Eighty",
        minimumHealthyHosts={"type": "FLEET_PERCENT", "value": 80},
    )
    await api.call(
        "create_deployment_config",
        deploymentConfigName="Three",
        minimumHealthyHosts={"type": "HOST_COUNT", "value": 3},
    )
    info = (await api.call("get_deployment_config", deploymentConfigName="Eighty"))[
        "deploymentConfigInfo"
    ]
    assert info["deploymentConfigId"] == created["deploymentConfigId"]
    assert info["minimumHealthyHosts"] == {"type": "FLEET_PERCENT", "value": 80}
    listed = await api.call("list_deployment_configs")
    assert listed["deploymentConfigsList"] == [
        "CodeDeployDefault.AllAtOnce",
        "CodeDeployDefault.HalfAtATime",
        "CodeDeployDefault.OneAtATime",
        "Eighty",
        "Three",
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("params", "code"),
    [
        (
            {"minimumHealthyHosts": {"type": "FLEET_PERCENT", "value": 100}},
            "InvalidMinimumHealthyHostValueException",
        ),
        (
            {"minimumHealthyHosts": {"type": "HOST_COUNT", "value": -1}},
            "InvalidMinimumHealthyHostValueException",
        ),
        (
            {"minimumHealthyHosts": {"type": "MOST_CONCURRENCY", "value": 1}},
            "InvalidMinimumHealthyHostValueException",
        ),
        ({}, "InvalidMinimumHealthyHostValueException"),
        (
            {"minimumHealthyHosts": {"type": "HOST_COUNT"}},
            "InvalidMinimumHealthyHostValueException",
        ),
        (
            {"computePlatform": "Lambda", "trafficRoutingConfig": {"type": "AllAtOnce"}},
            "InvalidComputePlatformException",
        ),
        (
            {
                "minimumHealthyHosts": {"type": "HOST_COUNT", "value": 1},
                "trafficRoutingConfig": {"type": "AllAtOnce"},
            },
            "InvalidTrafficRoutingConfigurationException",
        ),
        (
            {
                "minimumHealthyHosts": {"type": "HOST_COUNT", "value": 1},
                "zonalConfig": {"monitorDurationInSeconds": 60},
            },
            "InvalidZonalDeploymentConfigurationException",
        ),
    ],
)
async def test_invalid_custom_configs(api: Api, params: dict[str, Any], code: str) -> None:
    """Out-of-range or unsupported settings are refused with CodeDeploy's exceptions."""
    error = await api.error("create_deployment_config", deploymentConfigName="Bad", **params)
    assert error.response["Error"]["Code"] == code


@pytest.mark.asyncio
async def test_reserved_prefix_and_duplicates(api: Api) -> None:
    """CodeDeployDefault. names are reserved; a duplicate name is refused."""
    error = await api.error(
        "create_deployment_config",
        deploymentConfigName="CodeDeployDefault.Mine",
        minimumHealthyHosts={"type": "HOST_COUNT", "value": 1},
    )
    assert error.response["Error"]["Code"] == "InvalidDeploymentConfigNameException"
    await api.call(
        "create_deployment_config",
        deploymentConfigName="Mine",
        minimumHealthyHosts={"type": "HOST_COUNT", "value": 1},
    )
    error = await api.error(
        "create_deployment_config",
        deploymentConfigName="Mine",
        minimumHealthyHosts={"type": "HOST_COUNT", "value": 1},
    )
    assert error.response["Error"]["Code"] == "DeploymentConfigAlreadyExistsException"


@pytest.mark.asyncio
async def test_builtin_cannot_be_deleted(api: Api) -> None:
    """Deleting a predefined config is InvalidDeploymentConfigNameException."""
    error = await api.error(
        "delete_deployment_config", deploymentConfigName="CodeDeployDefault.AllAtOnce"
    )
    assert error.response["Error"]["Code"] == "InvalidDeploymentConfigNameException"
    assert error.response["Error"]["Message"] == (
        "CodeDeployDefault.AllAtOnce is a predefined deployment config and cannot be deleted."
    )


@pytest.mark.asyncio
async def test_config_in_use_cannot_be_deleted(api: Api) -> None:
    """A config a group uses is DeploymentConfigInUseException; unused, it goes."""
    await api.call(
        "create_deployment_config",
        deploymentConfigName="Two",
        minimumHealthyHosts={"type": "HOST_COUNT", "value": 2},
    )
    await api.group(deploymentConfigName="Two")
    error = await api.error("delete_deployment_config", deploymentConfigName="Two")
    assert error.response["Error"]["Code"] == "DeploymentConfigInUseException"
    await api.call(
        "update_deployment_group",
        applicationName="web",
        currentDeploymentGroupName="prod",
        deploymentConfigName="CodeDeployDefault.AllAtOnce",
    )
    await api.call("delete_deployment_config", deploymentConfigName="Two")
    error = await api.error("get_deployment_config", deploymentConfigName="Two")
    assert error.response["Error"]["Code"] == "DeploymentConfigDoesNotExistException"


@pytest.mark.asyncio
async def test_config_of_running_deployment_cannot_be_deleted(api: Api) -> None:
    """A config only a running deployment uses is still in use."""
    await api.call(
        "create_deployment_config",
        deploymentConfigName="Two",
        minimumHealthyHosts={"type": "HOST_COUNT", "value": 2},
    )
    await api.group()
    deployment_id = await api.deploy(deploymentConfigName="Two")
    error = await api.error("delete_deployment_config", deploymentConfigName="Two")
    assert error.response["Error"]["Code"] == "DeploymentConfigInUseException"
    assert deployment_id in error.response["Error"]["Message"]

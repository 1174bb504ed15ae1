"""Deployment configs: Create, Get, List, Delete.

The three predefined in-place configs exist on every server (from the rollout engine's
`BUILTIN_CONFIGS`) and report what AWS reports: OneAtATime `MOST_CONCURRENCY` 1, HalfAtATime
`FLEET_PERCENT` 50, AllAtOnce `HOST_COUNT` 0. They cannot be created, changed or deleted
(`InvalidDeploymentConfigNameException`). A custom config is `minimumHealthyHosts` of type
`HOST_COUNT` (any value >= 0) or `FLEET_PERCENT` (0-99) on the Server platform; traffic
routing and zonal configs (Lambda/ECS, AZ-aware fleets) are refused. A config a deployment group
or a running deployment uses cannot be deleted (`DeploymentConfigInUseException`).
"""

from __future__ import annotations

from typing import Any, Final

from codedeploy_server.api import errors as e
from codedeploy_server.api import queries
from codedeploy_server.api.context import ApiContext, Handler, Params, Result, new_uuid
from codedeploy_server.api.operations.applications import check_platform
from codedeploy_server.api.paging import paginate
from codedeploy_server.rollout.policy import BUILTIN_CONFIGS
from codedeploy_server.store import dumps, loads

MAX_CUSTOM_CONFIGS: Final = 200


def _minimum_healthy_hosts(block: Any) -> dict[str, Any]:
    if not isinstance(block, dict) or "type" not in block or "value" not in block:
        raise e.InvalidMinimumHealthyHostValueException(
            "minimumHealthyHosts {type: HOST_COUNT|FLEET_PERCENT, value} is required for the "
            "Server compute platform."
        )
    kind, value = block["type"], block["value"]
    if value < 0 or (kind == "FLEET_PERCENT" and value > 99):
        limit = "0 to 99" if kind == "FLEET_PERCENT" else "0 or more"
        raise e.InvalidMinimumHealthyHostValueException(
            f"The minimum healthy instance value was specified in an invalid format: {kind} "
            f"needs a value of {limit}, got {value}."
        )
    return {"type": kind, "value": value}


async def create_deployment_config(ctx: ApiContext, params: Params) -> Result:
    """CreateDeploymentConfig (custom minimum healthy hosts)."""
    name: str = params["deploymentConfigName"]
    if name.startswith(queries.BUILTIN_PREFIX):
        raise e.InvalidDeploymentConfigNameException(
            f"Deployment config names starting with {queries.BUILTIN_PREFIX} are reserved for "
            f"the predefined configs: {name}. Choose another name."
        )
    platform = check_platform(params.get("computePlatform"))
    if params.get("trafficRoutingConfig"):
        raise e.InvalidTrafficRoutingConfigurationException(
            "trafficRoutingConfig is for Lambda and Amazon ECS deployments; a Server config "
            "sets minimumHealthyHosts only."
        )
    if params.get("zonalConfig"):
        raise e.InvalidZonalDeploymentConfigurationException(
            "zonalConfig is not supported: on-premises instances have no Availability Zones "
            "here. Remove zonalConfig."
        )
    hosts = _minimum_healthy_hosts(params.get("minimumHealthyHosts"))
    async with ctx.store.transaction() as tx:
        if await tx.fetchone("SELECT name FROM deployment_configs WHERE name = ?", (name,)):
            raise e.DeploymentConfigAlreadyExistsException(
                f"Deployment config {name} already exists. Choose another name, or delete it "
                "first (when no deployment group uses it)."
            )
        count = await tx.fetchone("SELECT COUNT(*) AS n FROM deployment_configs")
        if count is not None and int(count["n"]) >= MAX_CUSTOM_CONFIGS:
            raise e.DeploymentConfigLimitExceededException(
                f"The limit of {MAX_CUSTOM_CONFIGS} custom deployment configs was reached."
            )
        now = ctx.now()
        doc = {
            "deploymentConfigId": new_uuid(),
            "deploymentConfigName": name,
            "minimumHealthyHosts": hosts,
            "createTime": now,
            "computePlatform": platform,
        }
        await tx.execute(
            "INSERT INTO deployment_configs (name, config_id, create_time, doc) "
            "VALUES (?, ?, ?, ?)",
            (name, doc["deploymentConfigId"], now, dumps(doc)),
        )
    return {"deploymentConfigId": doc["deploymentConfigId"]}


async def get_deployment_config(ctx: ApiContext, params: Params) -> Result:
    """GetDeploymentConfig."""
    async with ctx.store.snapshot() as tx:
        doc = await queries.existing_config(tx, params["deploymentConfigName"])
    return {"deploymentConfigInfo": doc}


async def list_deployment_configs(ctx: ApiContext, params: Params) -> Result:
    """ListDeploymentConfigs: the predefined configs and the custom ones, by name."""
    async with ctx.store.snapshot() as tx:
        rows = await tx.fetchall("SELECT name FROM deployment_configs")
    names = sorted({*BUILTIN_CONFIGS, *(row["name"] for row in rows)})
    page, token = paginate(names, params.get("nextToken"), listing="ListDeploymentConfigs")
    return {"deploymentConfigsList": page, "nextToken": token}


async def delete_deployment_config(ctx: ApiContext, params: Params) -> Result:
    """DeleteDeploymentConfig: refused for the predefined configs and for configs in use."""
    name: str = params["deploymentConfigName"]
    if name in BUILTIN_CONFIGS or name.startswith(queries.BUILTIN_PREFIX):
        raise e.InvalidDeploymentConfigNameException(
            f"{name} is a predefined deployment config and cannot be deleted."
        )
    async with ctx.store.transaction() as tx:
        for row in await tx.fetchall("SELECT application_name, name, doc FROM deployment_groups"):
            if loads(row["doc"]).get("deploymentConfigName") == name:
                raise e.DeploymentConfigInUseException(
                    f"The deployment configuration is still in use: deployment group "
                    f"{row['name']} of application {row['application_name']} uses {name}. "
                    "Change that group's config first."
                )
        for row in await tx.fetchall(
            "SELECT deployment_id, doc FROM deployments WHERE status IN "  # noqa: S608 - placeholders/constants only
            f"({queries.marks(len(queries.ACTIVE_STATUSES))})",
            queries.ACTIVE_STATUSES,
        ):
            if loads(row["doc"]).get("deploymentConfigName") == name:
                raise e.DeploymentConfigInUseException(
                    f"The deployment configuration is still in use: deployment "
                    f"{row['deployment_id']} is running with {name}."
                )
        await tx.execute("DELETE FROM deployment_configs WHERE name = ?", (name,))
    return {}


OPERATIONS: Final[dict[str, Handler]] = {
    "CreateDeploymentConfig": create_deployment_config,
    "GetDeploymentConfig": get_deployment_config,
    "ListDeploymentConfigs": list_deployment_configs,
    "DeleteDeploymentConfig": delete_deployment_config,
}

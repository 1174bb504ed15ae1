"""Deployment groups: Create, Get, List, BatchGet, Update, Delete.

A group selects on-premises instances by tags: `onPremisesInstanceTagFilters` (OR of filters) or
`onPremisesTagSet` (up to 3 groups; AND of ORs), never both. It deploys in place
(`IN_PLACE` / `WITHOUT_TRAFFIC_CONTROL`, the default); what this server cannot honour is refused
with the matching exception rather than stored and ignored: blue/green and traffic control (no
load balancers), EC2 tag filters and Auto Scaling groups (no EC2), SNS triggers, enabled
CloudWatch alarms, ECS services. `targetRevision`, `lastSuccessfulDeployment` and
`lastAttemptedDeployment` are derived from the deployments when the group is read.
"""

from __future__ import annotations

import re
from typing import Any, Final

from codedeploy_server.api import errors as e
from codedeploy_server.api import queries
from codedeploy_server.api.context import ApiContext, Handler, Params, Result, new_uuid
from codedeploy_server.api.operations.tags import resource_tags
from codedeploy_server.api.paging import paginate
from codedeploy_server.api.tagging import decode_filters, decode_tag_set
from codedeploy_server.rollout.policy import DEFAULT_CONFIG
from codedeploy_server.store import Tx, dumps, loads

MAX_GROUPS_PER_APPLICATION: Final = 1000
MAX_BATCH: Final = 100
MAX_ALARMS: Final = 10
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/\S+")
_DEFAULT_STYLE: Final = {
    "deploymentType": "IN_PLACE",
    "deploymentOption": "WITHOUT_TRAFFIC_CONTROL",
}


def _check_role(arn: str) -> str:
    if not _ROLE_ARN.fullmatch(arn):
        raise e.InvalidRoleException(
            f"The service role ARN was specified in an invalid format: {arn}. Expected "
            "arn:aws:iam::<account>:role/<name> (the server does not assume it, but keeps it)."
        )
    return arn


def _deployment_style(block: dict[str, Any]) -> dict[str, str]:
    style = {**_DEFAULT_STYLE, **block}
    if style["deploymentType"] != "IN_PLACE":
        raise e.InvalidDeploymentStyleException(
            f"Deployment type {style['deploymentType']} is not supported: this server deploys "
            "in place (deploymentType IN_PLACE)."
        )
    if style["deploymentOption"] != "WITHOUT_TRAFFIC_CONTROL":
        raise e.InvalidDeploymentStyleException(
            f"Deployment option {style['deploymentOption']} is not supported: there is no load "
            "balancer to control traffic (deploymentOption WITHOUT_TRAFFIC_CONTROL)."
        )
    return style


def auto_rollback(block: dict[str, Any]) -> dict[str, Any]:
    """A validated `AutoRollbackConfiguration` (enabled needs at least one event)."""
    enabled = bool(block.get("enabled", False))
    events = list(dict.fromkeys(block.get("events", [])))
    if enabled and not events:
        raise e.InvalidAutoRollbackConfigException(
            "Automatic rollback is enabled but no event is listed: add DEPLOYMENT_FAILURE "
            "and/or DEPLOYMENT_STOP_ON_REQUEST to events."
        )
    return {"enabled": enabled, "events": events}


def alarm_configuration(block: dict[str, Any]) -> dict[str, Any]:
    """A validated `AlarmConfiguration`; enabled alarms are refused (no CloudWatch to poll)."""
    alarms = block.get("alarms", [])
    if len(alarms) > MAX_ALARMS:
        raise e.AlarmsLimitExceededException(
            f"The maximum number of alarms for a deployment group ({MAX_ALARMS}) was exceeded."
        )
    for alarm in alarms:
        name = alarm.get("name")
        if not name or len(name) > 255:
            raise e.InvalidAlarmConfigException(
                "An alarm name is empty or longer than 255 characters."
            )
    if block.get("enabled") and alarms:
        raise e.InvalidAlarmConfigException(
            "CloudWatch alarms are not supported: this server cannot read alarm states. Set "
            "alarmConfiguration.enabled to false (or remove the alarms)."
        )
    return {
        "enabled": bool(block.get("enabled", False)),
        "ignorePollAlarmFailure": bool(block.get("ignorePollAlarmFailure", False)),
        "alarms": [{"name": alarm["name"]} for alarm in alarms],
    }


def _refuse_unsupported(params: Params) -> None:
    """What needs EC2, load balancers, SNS or ECS: refused when non-empty."""
    tag_set = params.get("ec2TagSet") or {}
    if params.get("ec2TagFilters") and tag_set.get("ec2TagSetList"):
        raise e.InvalidEC2TagCombinationException(
            "Only one of ec2TagFilters and ec2TagSet can be used in a single call."
        )
    if params.get("ec2TagFilters") or tag_set.get("ec2TagSetList"):
        raise e.InvalidEC2TagException(
            "EC2 instances are not supported: this server deploys to registered on-premises "
            "instances. Use onPremisesInstanceTagFilters or onPremisesTagSet."
        )
    if params.get("autoScalingGroups"):
        raise e.InvalidAutoScalingGroupException(
            "Auto Scaling groups are not supported: this server deploys to registered "
            "on-premises instances."
        )
    if params.get("triggerConfigurations"):
        raise e.InvalidTriggerConfigException(
            "Triggers are not supported: this server has no SNS topics to notify. Remove "
            "triggerConfigurations."
        )
    balancer = params.get("loadBalancerInfo") or {}
    if any(balancer.get(key) for key in balancer):
        raise e.InvalidLoadBalancerInfoException(
            "Load balancers are not supported: deployments run in place without traffic "
            "control. Remove loadBalancerInfo."
        )
    if params.get("blueGreenDeploymentConfiguration"):
        raise e.InvalidBlueGreenDeploymentConfigurationException(
            "Blue/green deployments are not supported: remove blueGreenDeploymentConfiguration."
        )
    if params.get("ecsServices"):
        raise e.InvalidECSServiceException(
            "Amazon ECS services are not supported: this server deploys to on-premises "
            "instances (compute platform Server)."
        )


async def _apply_settings(tx: Tx, doc: dict[str, Any], params: Params) -> None:
    """Validate the settings present in `params` and write them into the group document."""
    _refuse_unsupported(params)
    filters = params.get("onPremisesInstanceTagFilters")
    tag_set = params.get("onPremisesTagSet")
    tag_set_list = None if tag_set is None else tag_set.get("onPremisesTagSetList", [])
    if filters and tag_set_list:
        raise e.InvalidOnPremisesTagCombinationException(
            "Only one of onPremisesInstanceTagFilters and onPremisesTagSet can be used in a "
            "single call."
        )
    if filters is not None:
        decoded = decode_filters(filters, e.InvalidTagException, "onPremisesInstanceTagFilters")
        doc["onPremisesInstanceTagFilters"] = [f.to_doc() for f in decoded]
        if decoded:
            doc.pop("onPremisesTagSet", None)
    if tag_set_list is not None:
        groups = decode_tag_set(tag_set_list, e.InvalidTagException, "onPremisesTagSetList")
        if groups:
            doc["onPremisesTagSet"] = {
                "onPremisesTagSetList": [[f.to_doc() for f in group] for group in groups]
            }
            doc["onPremisesInstanceTagFilters"] = []
        else:
            doc.pop("onPremisesTagSet", None)
    if "deploymentConfigName" in params:
        await queries.existing_config(tx, params["deploymentConfigName"])
        doc["deploymentConfigName"] = params["deploymentConfigName"]
    if "serviceRoleArn" in params:
        doc["serviceRoleArn"] = _check_role(params["serviceRoleArn"])
    if "alarmConfiguration" in params:
        doc["alarmConfiguration"] = alarm_configuration(params["alarmConfiguration"])
    if "autoRollbackConfiguration" in params:
        doc["autoRollbackConfiguration"] = auto_rollback(params["autoRollbackConfiguration"])
    if "deploymentStyle" in params:
        doc["deploymentStyle"] = _deployment_style(params["deploymentStyle"])
    for key in ("outdatedInstancesStrategy", "ec2DeploymentOptions", "terminationHookEnabled"):
        if params.get(key) is not None:
            doc[key] = params[key]


async def create_deployment_group(ctx: ApiContext, params: Params) -> Result:
    """CreateDeploymentGroup."""
    application_name: str = params["applicationName"]
    name: str = params["deploymentGroupName"]
    async with ctx.store.transaction() as tx:
        app = await queries.application(tx, application_name, lock=True)
        if await tx.fetchone(
            "SELECT name FROM deployment_groups WHERE application_name = ? AND name = ?",
            (application_name, name),
        ):
            raise e.DeploymentGroupAlreadyExistsException(
                f"Deployment Group {name} already exists in application {application_name}. "
                "Choose another name, or change the group with UpdateDeploymentGroup."
            )
        count = await tx.fetchone(
            "SELECT COUNT(*) AS n FROM deployment_groups WHERE application_name = ?",
            (application_name,),
        )
        if count is not None and int(count["n"]) >= MAX_GROUPS_PER_APPLICATION:
            raise e.DeploymentGroupLimitExceededException(
                f"The limit of {MAX_GROUPS_PER_APPLICATION} deployment groups per application "
                "was reached."
            )
        doc: dict[str, Any] = {
            "applicationName": application_name,
            "deploymentGroupId": new_uuid(),
            "deploymentGroupName": name,
            "deploymentConfigName": DEFAULT_CONFIG,
            "ec2TagFilters": [],
            "onPremisesInstanceTagFilters": [],
            "autoScalingGroups": [],
            "triggerConfigurations": [],
            "alarmConfiguration": {"enabled": False, "ignorePollAlarmFailure": False, "alarms": []},
            "deploymentStyle": dict(_DEFAULT_STYLE),
            "outdatedInstancesStrategy": "UPDATE",
            "computePlatform": app.get("computePlatform", "Server"),
            "terminationHookEnabled": False,
            "_tags": resource_tags(params.get("tags", [])),
        }
        await _apply_settings(tx, doc, params)
        await tx.execute(
            "INSERT INTO deployment_groups (application_name, name, group_id, doc) "
            "VALUES (?, ?, ?, ?)",
            (application_name, name, doc["deploymentGroupId"], dumps(doc)),
        )
    return {"deploymentGroupId": doc["deploymentGroupId"]}


async def get_deployment_group(ctx: ApiContext, params: Params) -> Result:
    """GetDeploymentGroup."""
    async with ctx.store.snapshot() as tx:
        await queries.application(tx, params["applicationName"])
        doc = await queries.group(tx, params["applicationName"], params["deploymentGroupName"])
        view = await queries.group_view(tx, doc)
    return {"deploymentGroupInfo": view}


async def list_deployment_groups(ctx: ApiContext, params: Params) -> Result:
    """ListDeploymentGroups: names in alphabetical order."""
    application_name: str = params["applicationName"]
    async with ctx.store.snapshot() as tx:
        await queries.application(tx, application_name)
        rows = await tx.fetchall(
            "SELECT name FROM deployment_groups WHERE application_name = ? ORDER BY name",
            (application_name,),
        )
    page, token = paginate(
        [row["name"] for row in rows],
        params.get("nextToken"),
        listing=f"ListDeploymentGroups/{application_name}",
    )
    return {"applicationName": application_name, "deploymentGroups": page, "nextToken": token}


async def batch_get_deployment_groups(ctx: ApiContext, params: Params) -> Result:
    """BatchGetDeploymentGroups: groups not found are named in `errorMessage`."""
    application_name: str = params["applicationName"]
    names: list[str] = params["deploymentGroupNames"]
    if len(names) > MAX_BATCH:
        raise e.BatchLimitExceededException(
            f"The maximum number of names or IDs allowed for this request ({MAX_BATCH}) was "
            f"exceeded: {len(names)} given."
        )
    found: list[dict[str, Any]] = []
    missing: list[str] = []
    async with ctx.store.snapshot() as tx:
        await queries.application(tx, application_name)
        for name in dict.fromkeys(names):
            try:
                doc = await queries.group(tx, application_name, name)
            except e.DeploymentGroupDoesNotExistException:
                missing.append(name)
                continue
            found.append(await queries.group_view(tx, doc))
    result: Result = {"deploymentGroupsInfo": found}
    if missing:
        result["errorMessage"] = f"Deployment groups not found: {', '.join(missing)}"
    return result


async def update_deployment_group(ctx: ApiContext, params: Params) -> Result:
    """UpdateDeploymentGroup: the settings given replace the group's; the rest stay."""
    application_name: str = params["applicationName"]
    current: str = params["currentDeploymentGroupName"]
    new = params.get("newDeploymentGroupName") or current
    async with ctx.store.transaction() as tx:
        await queries.application(tx, application_name)
        doc = await queries.group(tx, application_name, current, lock=True)
        await _apply_settings(tx, doc, params)
        if new != current:
            await _check_rename(tx, application_name, current, new)
            doc["deploymentGroupName"] = new
            await _rename_deployments(tx, application_name, current, new)
        await tx.execute(
            "UPDATE deployment_groups SET name = ?, doc = ? "
            "WHERE application_name = ? AND name = ?",
            (new, dumps(doc), application_name, current),
        )
    return {"hooksNotCleanedUp": []}


async def _check_rename(tx: Tx, application_name: str, current: str, new: str) -> None:
    if await tx.fetchone(
        "SELECT name FROM deployment_groups WHERE application_name = ? AND name = ?",
        (application_name, new),
    ):
        raise e.DeploymentGroupAlreadyExistsException(
            f"Deployment Group {new} already exists in application {application_name}. Choose "
            "another new name."
        )
    running = await queries.active_deployment(tx, application_name, current)
    if running is not None:
        raise e.InvalidDeploymentGroupNameException(
            f"Deployment group {current} cannot be renamed while deployment {running} is "
            "running. Wait for it to end (or stop it), then rename."
        )


async def _rename_deployments(tx: Tx, application_name: str, current: str, new: str) -> None:
    """Keep the group's history (ListDeployments, previous revisions) under its new name."""
    for row in await tx.fetchall(
        "SELECT deployment_id, doc FROM deployments WHERE application_name = ? AND group_name = ?",
        (application_name, current),
    ):
        deployment = loads(row["doc"])
        deployment["deploymentGroupName"] = new
        await tx.execute(
            "UPDATE deployments SET group_name = ?, doc = ? WHERE deployment_id = ?",
            (new, dumps(deployment), row["deployment_id"]),
        )


async def delete_deployment_group(ctx: ApiContext, params: Params) -> Result:
    """DeleteDeploymentGroup: idempotent; the group's deployments stay readable by id."""
    async with ctx.store.transaction() as tx:
        await tx.execute(
            "DELETE FROM deployment_groups WHERE application_name = ? AND name = ?",
            (params["applicationName"], params["deploymentGroupName"]),
        )
    return {"hooksNotCleanedUp": []}


OPERATIONS: Final[dict[str, Handler]] = {
    "CreateDeploymentGroup": create_deployment_group,
    "GetDeploymentGroup": get_deployment_group,
    "ListDeploymentGroups": list_deployment_groups,
    "BatchGetDeploymentGroups": batch_get_deployment_groups,
    "UpdateDeploymentGroup": update_deployment_group,
    "DeleteDeploymentGroup": delete_deployment_group,
}

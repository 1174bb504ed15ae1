"""Deployments: Create, Get, List, BatchGet, Stop, Continue.

CreateDeployment validates everything a client can get wrong before anything is written, then
writes the `deployments` row (a `DeploymentInfo`, status `Created`) and one `deployment_targets`
row per target (an `InstanceTarget`, its 7 in-place lifecycle events `Pending`, `position` = the
scheduling order) in one transaction, and hands the deployment to the rollout engine. From then
on the engine owns the statuses; this module only reads them.

- One active deployment per group: `DeploymentLimitExceededException` "The Deployment Group
  '<name>' already has an active Deployment '<d-id>'". The group's row is locked while this is
  checked, so two servers sharing PostgreSQL cannot both start one.
- The config is the deployment's, else the group's, else `CodeDeployDefault.OneAtATime`.
- The revision is registered with the application as it is deployed (as on AWS).
- No instance matching is not an error here: the deployment is created with no targets and the
  engine fails it with `NO_INSTANCES` (what AWS reports when a group matches no instance).
- `previousRevision` is the group's last successful deployment's revision.
"""

from __future__ import annotations

from typing import Any, Final

import structlog

from codedeploy_agent.protocol.jobdoc import IN_PLACE_EVENTS
from codedeploy_server.api import errors as e
from codedeploy_server.api import queries, targeting
from codedeploy_server.api.context import ApiContext, Handler, Params, Result, new_deployment_id
from codedeploy_server.api.locations import normalise
from codedeploy_server.api.operations.groups import alarm_configuration, auto_rollback
from codedeploy_server.api.operations.revisions import check_description, record_revision
from codedeploy_server.api.paging import paginate
from codedeploy_server.rollout.policy import DEFAULT_CONFIG
from codedeploy_server.store import Tx, dumps, loads

log = structlog.get_logger("codedeploy_server.api")

MAX_BATCH: Final = 100
_STOP_MESSAGE: Final = (
    "No more commands will be scheduled for execution in the deployment instances"
)


def _overview(pending: int) -> dict[str, int]:
    return {
        "Pending": pending,
        "InProgress": 0,
        "Succeeded": 0,
        "Failed": 0,
        "Skipped": 0,
        "Ready": 0,
    }


def _target_doc(deployment_id: str, name: str, arn: str | None, now: float) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "deploymentId": deployment_id,
        "targetId": name,
        "status": "Pending",
        "lastUpdatedAt": now,
        "lifecycleEvents": [
            {"lifecycleEventName": event, "status": "Pending"} for event in IN_PLACE_EVENTS
        ],
    }
    if arn:
        doc["targetArn"] = arn
    return doc


async def _unique_id(tx: Tx) -> str:
    while True:
        candidate = new_deployment_id()
        if not await tx.fetchone(
            "SELECT deployment_id FROM deployments WHERE deployment_id = ?", (candidate,)
        ):
            return candidate


def _checked_options(params: Params) -> dict[str, Any]:
    """The deployment's own options, validated (nothing read from the store)."""
    if not params.get("deploymentGroupName"):
        raise e.DeploymentGroupNameRequiredException(
            "The deployment group name was not specified: deploymentGroupName is required for "
            "on-premises deployments."
        )
    if params.get("deploymentMode") == "RESTART":
        raise e.InvalidInputException(
            "deploymentMode RESTART is not supported by this server: deploy the revision "
            "again (deploymentMode STANDARD)."
        )
    revision = params.get("revision")
    if not revision:
        raise e.RevisionRequiredException(
            "The revision was not specified: pass revision (an S3 or GitHub location, or "
            "one of the other forms in the README's Revision types)."
        )
    options: dict[str, Any] = {
        "description": check_description(params.get("description")),
        "revision": normalise(revision),
        "selection": None,
    }
    if params.get("targetInstances"):
        options["selection"] = targeting.override_selection(params["targetInstances"])
    if "overrideAlarmConfiguration" in params:
        options["overrideAlarmConfiguration"] = alarm_configuration(
            params["overrideAlarmConfiguration"]
        )
    if "autoRollbackConfiguration" in params:
        options["autoRollbackConfiguration"] = auto_rollback(params["autoRollbackConfiguration"])
    return options


async def create_deployment(ctx: ApiContext, params: Params) -> Result:
    """CreateDeployment."""
    options = _checked_options(params)
    application_name: str = params["applicationName"]
    group_name: str = params["deploymentGroupName"]
    location: dict[str, Any] = options["revision"]
    async with ctx.store.transaction() as tx:
        await queries.application(tx, application_name)
        group = await queries.group(tx, application_name, group_name, lock=True)
        config_name = (
            params.get("deploymentConfigName")
            or group.get("deploymentConfigName")
            or DEFAULT_CONFIG
        )
        await queries.existing_config(tx, config_name)
        active = await queries.active_deployment(tx, application_name, group_name)
        if active is not None:
            raise e.DeploymentLimitExceededException(
                f"The Deployment Group '{group_name}' already has an active Deployment '{active}'"
            )
        last_success = await queries.last_deployment(
            tx, application_name, group_name, succeeded=True
        )
        previous = None if last_success is None else last_success.get("revision")
        selection = options["selection"] or targeting.group_selection(group)
        names = await targeting.order_targets(
            tx,
            group["deploymentGroupId"],
            await targeting.resolve(tx, selection),
            group_revision=previous,
            revision=location,
            outdated_only=bool(params.get("updateOutdatedInstancesOnly")),
        )
        now = ctx.now()
        deployment_id = await _unique_id(tx)
        doc = _deployment_doc(
            params,
            options=options,
            group=group,
            config_name=config_name,
            previous=previous,
            deployment_id=deployment_id,
            now=now,
        )
        doc["deploymentOverview"] = _overview(len(names))
        await tx.execute(
            "INSERT INTO deployments (deployment_id, application_name, group_name, status, "
            "create_time, complete_time, owner, lease_until, doc) "
            "VALUES (?, ?, ?, 'Created', ?, NULL, NULL, NULL, ?)",
            (deployment_id, application_name, group_name, now, dumps(doc)),
        )
        arns = await _instance_arns(tx, names)
        for position, name in enumerate(names):
            await tx.execute(
                "INSERT INTO deployment_targets (deployment_id, target_id, status, position, doc) "
                "VALUES (?, ?, 'Pending', ?, ?)",
                (
                    deployment_id,
                    name,
                    position,
                    dumps(_target_doc(deployment_id, name, arns.get(name), now)),
                ),
            )
        await record_revision(tx, application_name, location, now=now, used_by_group=group_name)
    log.info(
        "deployment created",
        deployment_id=deployment_id,
        application=application_name,
        deployment_group=group_name,
        instances=len(names),
    )
    try:
        await ctx.rollout.deployment_created(deployment_id)
    except Exception:
        # The rows are committed: the engine resumes `Created` deployments when it starts, and
        # a 500 here would make the client retry into DeploymentLimitExceededException.
        log.exception("rollout engine did not take the deployment", deployment_id=deployment_id)
    return {"deploymentId": deployment_id}


def _deployment_doc(
    params: Params,
    *,
    options: dict[str, Any],
    group: dict[str, Any],
    config_name: str,
    previous: dict[str, Any] | None,
    deployment_id: str,
    now: float,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "applicationName": params["applicationName"],
        "deploymentGroupName": params["deploymentGroupName"],
        "deploymentConfigName": config_name,
        "deploymentId": deployment_id,
        "revision": options["revision"],
        "status": "Created",
        "createTime": now,
        "creator": "user",
        "ignoreApplicationStopFailures": bool(params.get("ignoreApplicationStopFailures", False)),
        "updateOutdatedInstancesOnly": bool(params.get("updateOutdatedInstancesOnly", False)),
        "deploymentStyle": group.get("deploymentStyle")
        or {"deploymentType": "IN_PLACE", "deploymentOption": "WITHOUT_TRAFFIC_CONTROL"},
        "instanceTerminationWaitTimeStarted": False,
        "fileExistsBehavior": params.get("fileExistsBehavior", "DISALLOW"),
        "computePlatform": "Server",
        "_groupId": group["deploymentGroupId"],
        "_lifecycleEvents": list(IN_PLACE_EVENTS),
    }
    if previous is not None:
        doc["previousRevision"] = previous
    if options["description"] is not None:
        doc["description"] = options["description"]
    rollback = options.get("autoRollbackConfiguration") or group.get("autoRollbackConfiguration")
    if rollback is not None:
        doc["autoRollbackConfiguration"] = rollback
    if params.get("targetInstances"):
        doc["targetInstances"] = params["targetInstances"]
    for key in ("overrideAlarmConfiguration", "deploymentMode"):
        if key in options or key in params:
            doc[key] = options.get(key, params.get(key))
    if params.get("ec2DeploymentOptions"):
        doc["ec2DeploymentOptions"] = params["ec2DeploymentOptions"]
    return doc


async def _instance_arns(tx: Tx, names: list[str]) -> dict[str, str]:
    if not names:
        return {}
    rows = await tx.fetchall(
        f"SELECT name, doc FROM instances WHERE name IN ({queries.marks(len(names))})",  # noqa: S608 - placeholders/constants only
        names,
    )
    return {row["name"]: str(loads(row["doc"]).get("instanceArn", "")) for row in rows}


async def get_deployment(ctx: ApiContext, params: Params) -> Result:
    """GetDeployment."""
    async with ctx.store.snapshot() as tx:
        doc = await queries.deployment(tx, params["deploymentId"])
    return {"deploymentInfo": doc}


async def batch_get_deployments(ctx: ApiContext, params: Params) -> Result:
    """BatchGetDeployments: ids that do not exist are left out."""
    ids = [queries.check_deployment_id(i) for i in dict.fromkeys(params["deploymentIds"])]
    if len(ids) > MAX_BATCH:
        raise e.BatchLimitExceededException(
            f"The maximum number of names or IDs allowed for this request ({MAX_BATCH}) was "
            f"exceeded: {len(ids)} given."
        )
    if not ids:
        return {"deploymentsInfo": []}
    async with ctx.store.snapshot() as tx:
        rows = await tx.fetchall(
            "SELECT deployment_id, doc FROM deployments WHERE deployment_id IN "  # noqa: S608 - placeholders/constants only
            f"({queries.marks(len(ids))})",
            ids,
        )
    docs = {row["deployment_id"]: loads(row["doc"]) for row in rows}
    return {"deploymentsInfo": [docs[i] for i in ids if i in docs]}


async def list_deployments(ctx: ApiContext, params: Params) -> Result:
    """ListDeployments: newest first; filters by application (and group), statuses, time."""
    application_name, group_name = params.get("applicationName"), params.get("deploymentGroupName")
    if group_name and not application_name:
        raise e.ApplicationNameRequiredException(
            "If deploymentGroupName is specified, applicationName must be specified too."
        )
    time_range = params.get("createTimeRange") or {}
    # Timestamps arrive as epoch-second floats (shapes.py converts them).
    start, end = time_range.get("start"), time_range.get("end")
    if start is not None and end is not None and start > end:
        raise e.InvalidTimeRangeException(
            "The start time must be earlier than the end time in createTimeRange."
        )
    statuses: list[str] = params.get("includeOnlyStatuses") or []
    clauses, values = [], []
    async with ctx.store.snapshot() as tx:
        if application_name:
            await queries.application(tx, application_name)
            clauses.append("application_name = ?")
            values.append(application_name)
        if group_name and application_name:
            await queries.group(tx, application_name, group_name)
            clauses.append("group_name = ?")
            values.append(group_name)
        if statuses:
            clauses.append(f"status IN ({queries.marks(len(statuses))})")
            values.extend(statuses)
        if start is not None:
            clauses.append("create_time >= ?")
            values.append(start)
        if end is not None:
            clauses.append("create_time <= ?")
            values.append(end)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        external = params.get("externalId")
        columns = "deployment_id, doc" if external else "deployment_id"
        rows = await tx.fetchall(
            f"SELECT {columns} FROM deployments{where} "  # noqa: S608 - placeholders/constants only
            "ORDER BY create_time DESC, deployment_id DESC",
            values,
        )
    if external:
        rows = [row for row in rows if loads(row["doc"]).get("externalId") == external]
    listing = f"ListDeployments/{dumps(params | {'nextToken': None})}"
    page, token = paginate(
        [row["deployment_id"] for row in rows], params.get("nextToken"), listing=listing
    )
    return {"deployments": page, "nextToken": token}


async def stop_deployment(ctx: ApiContext, params: Params) -> Result:
    """StopDeployment: through the rollout engine (`Pending` or `Succeeded`).

    A deployment that is already `Stopped` goes to the engine too, not straight to
    DeploymentAlreadyCompletedException. A StopDeployment that answered `Pending` is followed by
    later calls that answer `Succeeded` once the stop is done (service reference §4.2). By then
    the deployment is `Stopped`, so the engine decides: `Pending` while its cancellations are
    unsent, `Succeeded` after. A deployment that ended without a stop request is refused there.
    """
    deployment_id: str = params["deploymentId"]
    async with ctx.store.transaction() as tx:
        doc = await queries.deployment(tx, deployment_id)
    if doc.get("status") != "Stopped":
        _check_not_completed(doc)
    status = await ctx.rollout.stop_deployment(deployment_id, params.get("autoRollbackEnabled"))
    return {"status": status, "statusMessage": _STOP_MESSAGE}


async def continue_deployment(ctx: ApiContext, params: Params) -> Result:
    """ContinueDeployment: only a blue/green wait can be continued; in-place ones are refused
    the way AWS refuses them."""
    deployment_id = params.get("deploymentId")
    if not deployment_id:
        raise e.DeploymentIdRequiredException("At least one deployment ID must be specified.")
    wait_type = params.get("deploymentWaitType", "READY_WAIT")
    async with ctx.store.transaction() as tx:
        doc = await queries.deployment(tx, deployment_id)
    _check_not_completed(doc)
    style = (doc.get("deploymentStyle") or {}).get("deploymentType", "IN_PLACE")
    if wait_type == "TERMINATION_WAIT" and style == "IN_PLACE":
        raise e.UnsupportedActionForDeploymentTypeException(
            f"Deployment {deployment_id} is an in-place deployment: there are no original "
            "instances whose termination could be waited for (TERMINATION_WAIT is for "
            "blue/green deployments)."
        )
    if wait_type == "READY_WAIT" and doc.get("status") != "Ready":
        raise e.DeploymentIsNotInReadyStateException(
            f"The deployment {deployment_id} does not have a status of Ready (it is "
            f"{doc.get('status')}) and can't continue yet."
        )
    await ctx.rollout.continue_deployment(deployment_id, wait_type)
    return {}


def _check_not_completed(doc: dict[str, Any]) -> None:
    if doc.get("status") in queries.TERMINAL_STATUSES:
        raise e.DeploymentAlreadyCompletedException(
            f"Deployment {doc.get('deploymentId')} has already completed (status "
            f"{doc.get('status')})."
        )


OPERATIONS: Final[dict[str, Handler]] = {
    "CreateDeployment": create_deployment,
    "GetDeployment": get_deployment,
    "ListDeployments": list_deployments,
    "BatchGetDeployments": batch_get_deployments,
    "StopDeployment": stop_deployment,
    "ContinueDeployment": continue_deployment,
}

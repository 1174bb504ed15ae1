"""Deployment targets (List/Get/BatchGet DeploymentTarget(s)) and the deprecated deployment
instance operations (Get/List/BatchGet DeploymentInstance(s)), all shaped from the
`deployment_targets` rows the API writes and the rollout engine updates.

Targets exist from the moment the deployment is created, so these operations answer for a
`Created` deployment too (AWS may answer `DeploymentNotStartedException` there; a client polling
right after CreateDeployment is better served by the Pending targets). In-place deployments have
no Blue/Green labels: filtering by one is `InvalidDeploymentInstanceTypeException`.
"""

from __future__ import annotations

from typing import Any, Final

from codedeploy_server.api import errors as e
from codedeploy_server.api import queries
from codedeploy_server.api.context import ApiContext, Handler, Params, Result
from codedeploy_server.api.paging import paginate
from codedeploy_server.store import Tx, dumps, loads

MAX_BATCH: Final = 25
TARGET_STATUSES: Final = (
    "Pending",
    "InProgress",
    "Succeeded",
    "Failed",
    "Skipped",
    "Unknown",
    "Ready",
)


async def _target_docs(
    tx: Tx, deployment_id: str, ids: list[str] | None
) -> dict[str, dict[str, Any]]:
    """The deployment's target documents by id (all of them when `ids` is None)."""
    if ids is None:
        rows = await tx.fetchall(
            "SELECT target_id, doc FROM deployment_targets WHERE deployment_id = ? "
            "ORDER BY position, target_id",
            (deployment_id,),
        )
    elif not ids:
        rows = []
    else:
        rows = await tx.fetchall(
            "SELECT target_id, doc FROM deployment_targets WHERE deployment_id = ? AND target_id "  # noqa: S608 - placeholders/constants only
            f"IN ({queries.marks(len(ids))})",
            (deployment_id, *ids),
        )
    return {row["target_id"]: loads(row["doc"]) for row in rows}


def _deployment_target(doc: dict[str, Any]) -> dict[str, Any]:
    return {"deploymentTargetType": "InstanceTarget", "instanceTarget": doc}


def _instance_summary(doc: dict[str, Any]) -> dict[str, Any]:
    summary = {
        "deploymentId": doc.get("deploymentId"),
        "instanceId": doc.get("targetId"),
        "status": doc.get("status"),
        "lastUpdatedAt": doc.get("lastUpdatedAt"),
        "lifecycleEvents": doc.get("lifecycleEvents", []),
    }
    if doc.get("instanceLabel"):
        summary["instanceType"] = doc["instanceLabel"]
    return summary


async def _listed(
    ctx: ApiContext, deployment_id: str, statuses: list[str], labels: list[str]
) -> list[str]:
    """Target ids in scheduling order, filtered by status."""
    if labels:
        raise e.InvalidDeploymentInstanceTypeException(
            f"Deployment {deployment_id} is an in-place deployment: its instances have no "
            "Blue/Green label to filter by."
        )
    async with ctx.store.snapshot() as tx:
        await queries.deployment(tx, deployment_id)
        rows = await tx.fetchall(
            "SELECT target_id, status FROM deployment_targets WHERE deployment_id = ? "
            "ORDER BY position, target_id",
            (deployment_id,),
        )
    return [row["target_id"] for row in rows if not statuses or row["status"] in statuses]


async def list_deployment_targets(ctx: ApiContext, params: Params) -> Result:
    """ListDeploymentTargets (`targetFilters`: TargetStatus, ServerInstanceLabel)."""
    deployment_id: str = params["deploymentId"]
    filters: dict[str, list[str]] = params.get("targetFilters") or {}
    statuses = filters.get("TargetStatus", [])
    unknown = [status for status in statuses if status not in TARGET_STATUSES]
    if unknown:
        raise e.InvalidInstanceStatusException(
            f"The specified instance status does not exist: {', '.join(unknown)}. Use "
            f"{', '.join(TARGET_STATUSES)}."
        )
    ids = await _listed(ctx, deployment_id, statuses, filters.get("ServerInstanceLabel", []))
    listing = f"ListDeploymentTargets/{deployment_id}/{dumps(filters)}"
    page, token = paginate(ids, params.get("nextToken"), listing=listing)
    return {"targetIds": page, "nextToken": token}


async def get_deployment_target(ctx: ApiContext, params: Params) -> Result:
    """GetDeploymentTarget."""
    deployment_id, target_id = params["deploymentId"], params["targetId"]
    async with ctx.store.snapshot() as tx:
        await queries.deployment(tx, deployment_id)
        docs = await _target_docs(tx, deployment_id, [target_id])
    if target_id not in docs:
        raise e.DeploymentTargetDoesNotExistException(
            f"The provided target ID does not belong to the attempted deployment: {target_id} "
            f"is not a target of {deployment_id}."
        )
    return {"deploymentTarget": _deployment_target(docs[target_id])}


async def batch_get_deployment_targets(ctx: ApiContext, params: Params) -> Result:
    """BatchGetDeploymentTargets: every id must be a target (at most 25)."""
    deployment_id: str = params["deploymentId"]
    ids = list(dict.fromkeys(params["targetIds"]))
    if len(ids) > MAX_BATCH:
        raise e.DeploymentTargetListSizeExceededException(
            f"BatchGetDeploymentTargets accepts at most {MAX_BATCH} target IDs; {len(ids)} given."
        )
    async with ctx.store.snapshot() as tx:
        await queries.deployment(tx, deployment_id)
        docs = await _target_docs(tx, deployment_id, ids)
    missing = [target for target in ids if target not in docs]
    if missing:
        raise e.DeploymentTargetDoesNotExistException(
            f"The provided target ID does not belong to the attempted deployment: "
            f"{', '.join(missing)} (deployment {deployment_id})."
        )
    return {"deploymentTargets": [_deployment_target(docs[target]) for target in ids]}


async def get_deployment_instance(ctx: ApiContext, params: Params) -> Result:
    """GetDeploymentInstance (deprecated; GetDeploymentTarget's data)."""
    deployment_id, instance_id = params["deploymentId"], params["instanceId"]
    async with ctx.store.snapshot() as tx:
        await queries.deployment(tx, deployment_id)
        docs = await _target_docs(tx, deployment_id, [instance_id])
    if instance_id not in docs:
        raise e.InstanceDoesNotExistException(
            f"The specified instance does not exist in the deployment group: {instance_id} is "
            f"not a target of {deployment_id}."
        )
    return {"instanceSummary": _instance_summary(docs[instance_id])}


async def list_deployment_instances(ctx: ApiContext, params: Params) -> Result:
    """ListDeploymentInstances (deprecated)."""
    deployment_id: str = params["deploymentId"]
    statuses = params.get("instanceStatusFilter") or []
    ids = await _listed(ctx, deployment_id, statuses, params.get("instanceTypeFilter") or [])
    listing = f"ListDeploymentInstances/{deployment_id}/{dumps(statuses)}"
    page, token = paginate(ids, params.get("nextToken"), listing=listing)
    return {"instancesList": page, "nextToken": token}


async def batch_get_deployment_instances(ctx: ApiContext, params: Params) -> Result:
    """BatchGetDeploymentInstances (deprecated): instances not targeted are named in
    `errorMessage`."""
    deployment_id: str = params["deploymentId"]
    ids = list(dict.fromkeys(params["instanceIds"]))
    if len(ids) > MAX_BATCH:
        raise e.BatchLimitExceededException(
            f"The maximum number of instance IDs allowed for this request ({MAX_BATCH}) was "
            f"exceeded: {len(ids)} given."
        )
    async with ctx.store.snapshot() as tx:
        await queries.deployment(tx, deployment_id)
        docs = await _target_docs(tx, deployment_id, ids)
    result: Result = {"instancesSummary": [_instance_summary(docs[i]) for i in ids if i in docs]}
    missing = [i for i in ids if i not in docs]
    if missing:
        result["errorMessage"] = (
            f"Instances not part of deployment {deployment_id}: {', '.join(missing)}"
        )
    return result


OPERATIONS: Final[dict[str, Handler]] = {
    "ListDeploymentTargets": list_deployment_targets,
    "GetDeploymentTarget": get_deployment_target,
    "BatchGetDeploymentTargets": batch_get_deployment_targets,
    "GetDeploymentInstance": get_deployment_instance,
    "ListDeploymentInstances": list_deployment_instances,
    "BatchGetDeploymentInstances": batch_get_deployment_instances,
}

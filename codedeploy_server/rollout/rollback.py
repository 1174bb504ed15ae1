"""Automatic rollback (service reference §4.1): a new deployment of the group's last known good
revision, written in the same transaction that ends the failed (or stopped) deployment.

Decisions where AWS documents nothing (§11 gaps 1 and 2):

- **Which instances.** Every target of the failed deployment, as AWS redeploys the last known
  good revision to the deployment's instances: the failed hosts, the ones it updated and the
  ones it never reached all end up on the old revision (issue 5). Leaving out the hosts known
  to run it already would save their restart, but it breaks the deployment config: with
  HalfAtATime, a rollback of the one failed host out of three would need that one host to stay
  healthy while it is deployed (HEALTH_CONSTRAINTS_INVALID), where AWS's rollback over the
  three succeeds.
- **Which revision and options.** The revision of the group's `lastSuccessfulDeployment`, with
  that deployment's `fileExistsBehavior` (§4.1); `ignoreApplicationStopFailures` and the
  deployment config of the failed deployment. The rollback itself is never rolled back (its
  creator is `codeDeployRollback`), so a broken old revision cannot loop.
- **No last known good revision** (the group's first deployment failed): no rollback; the
  failed deployment's `rollbackInfo.rollbackMessage` says why. The same when no instance needs
  it.
- **Messages.** `rollbackInfo.rollbackMessage` on the failed deployment says which deployment
  rolls back and is updated when that one ends (succeeded / failed / stopped).
- **Order.** The rollback is a new deployment and is ordered like one (reference §1.3):
  Unhealthy hosts first, then Unknown-, Old- and Current-revision ones, with the revision
  health measured against the last known good revision. The failed deployment's outcomes are
  in the health table by then (transitions.close records them before the rollback is
  written). So the hosts that failed go first, then the ones the failed deployment updated,
  then the ones it never reached, which still run the good revision.

The rows are written the way the API writes a new deployment (server.md conventions): the
failed deployment's document is the template (its private keys included), status `Created`,
targets `Pending` with every lifecycle event `Pending`, `position` = scheduling order.
"""

from __future__ import annotations

import secrets
import string
from typing import Any, Final

from codedeploy_server.rollout import health
from codedeploy_server.rollout.events import TargetStatus, pending_events
from codedeploy_server.rollout.records import DeploymentRecord, TargetRecord, deployment_doc
from codedeploy_server.store import Tx, dumps

ROLLBACK_CREATOR: Final = "codeDeployRollback"
_ID_ALPHABET: Final = string.ascii_uppercase + string.digits
#: Keys of the failed deployment's document that describe its run, not a new deployment.
_RUN_KEYS: Final = frozenset(
    {
        "status",
        "errorInformation",
        "createTime",
        "startTime",
        "completeTime",
        "deploymentOverview",
        "rollbackInfo",
        "previousRevision",
        "deploymentStatusMessages",
        "additionalDeploymentStatusInfo",
        "instanceTerminationWaitTimeStarted",
        "relatedDeployments",
        "targetInstances",
        "description",
        "externalId",
        "_engine",
        "_jobDocument",
        "_stopRequest",
        "_cancels",
        "_rollbackOf",
        "_revisionFrom",
    }
)


def new_deployment_id() -> str:
    """`d-` and 9 upper-case letters and digits, like CodeDeploy's ids."""
    return "d-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(9))


def no_revision_message(group_name: str) -> str:
    """rollbackMessage when the group never had a successful deployment."""
    return (
        "Automatic rollback was not performed: deployment group "
        f"{group_name} has no earlier successful deployment, so there is no last known good "
        "revision to roll back to."
    )


def started_message(rollback_id: str, source_id: str) -> str:
    """rollbackMessage while the rollback runs."""
    return (
        f"Automatic rollback deployment {rollback_id} is redeploying the last known good "
        f"revision (from deployment {source_id})."
    )


def ended_message(rollback_id: str, source_id: str, status: str) -> str:
    """rollbackMessage once the rollback ended."""
    verb = {"Succeeded": "succeeded", "Failed": "failed", "Stopped": "was stopped"}[status]
    return (
        f"Automatic rollback deployment {rollback_id} {verb} redeploying the last known good "
        f"revision (from deployment {source_id})."
    )


async def create_rollback(
    tx: Tx,
    failed: DeploymentRecord,
    group_id: str,
    group: dict[str, Any],
    *,
    now: float,
    owner: str | None,
    lease_until: float | None,
) -> tuple[str | None, str]:
    """Write the rollback deployment of `failed`; (its id, or None, and the rollbackMessage)."""
    last = group.get("lastSuccessfulDeployment") or {}
    source_id = last.get("deploymentId")
    source = await deployment_doc(tx, source_id) if source_id else None
    if not source_id or source is None or not source.get("revision"):
        return None, no_revision_message(failed.group_name)
    revision = source["revision"]
    targets = await _targets(tx, failed, group_id, revision)
    if not targets:
        return None, (
            "Automatic rollback was not performed: no instance was changed by this deployment "
            f"and every instance is already on the last known good revision (from deployment "
            f"{source_id})."
        )
    rollback_id = new_deployment_id()
    doc: dict[str, Any] = {k: v for k, v in failed.doc.items() if k not in _RUN_KEYS}
    doc.update(
        deploymentId=rollback_id,
        status="Created",
        createTime=now,
        creator=ROLLBACK_CREATOR,
        revision=revision,
        updateOutdatedInstancesOnly=False,
        rollbackInfo={"rollbackTriggeringDeploymentId": failed.deployment_id},
        deploymentOverview={
            "Pending": len(targets),
            "InProgress": 0,
            "Succeeded": 0,
            "Failed": 0,
            "Skipped": 0,
            "Ready": 0,
        },
        _rollbackOf=failed.deployment_id,
        _revisionFrom=source_id,
    )
    doc.pop("fileExistsBehavior", None)
    if source.get("fileExistsBehavior"):
        doc["fileExistsBehavior"] = source["fileExistsBehavior"]
    await tx.execute(
        "INSERT INTO deployments (deployment_id, application_name, group_name, status, "
        "create_time, complete_time, owner, lease_until, doc) "
        "VALUES (?, ?, ?, ?, ?, NULL, ?, ?, ?)",
        (
            rollback_id,
            failed.application_name,
            failed.group_name,
            "Created",
            now,
            owner,
            lease_until,
            dumps(doc),
        ),
    )
    for position, old in enumerate(targets):
        target: dict[str, Any] = {
            key: old.doc[key]
            for key in ("targetId", "targetArn", "instanceLabel")
            if key in old.doc
        }
        names = [e["lifecycleEventName"] for e in old.doc.get("lifecycleEvents", [])]
        target.update(
            deploymentId=rollback_id,
            targetId=old.target_id,
            status=TargetStatus.PENDING.value,
            lastUpdatedAt=now,
            lifecycleEvents=pending_events(names),
        )
        await tx.execute(
            "INSERT INTO deployment_targets (deployment_id, target_id, status, position, doc) "
            "VALUES (?, ?, ?, ?, ?)",
            (rollback_id, old.target_id, TargetStatus.PENDING.value, position, dumps(target)),
        )
    return rollback_id, started_message(rollback_id, source_id)


async def _targets(
    tx: Tx, failed: DeploymentRecord, group_id: str, revision: dict[str, Any]
) -> list[TargetRecord]:
    """The failed deployment's targets in the rollback's own scheduling order (module
    docstring): Unhealthy first, then Unknown-, Old- and Current-revision hosts against the
    last known good `revision`. Ties keep the failed deployment's order."""
    by_name = {target.target_id: target for target in failed.targets}
    order = await health.scheduling_order(tx, group_id, list(by_name), revision)
    return [by_name[name] for name in order]


__all__ = [
    "ROLLBACK_CREATOR",
    "create_rollback",
    "ended_message",
    "new_deployment_id",
    "no_revision_message",
    "started_message",
]

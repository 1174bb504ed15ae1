"""What happens to a deployment's documents inside the transaction that decides it: the policy's
next step (`drive`), its end (`end` + `close`: skipped and cancelled targets, the group's
bookkeeping, the automatic rollback), and each finished target's health (`settled`).

Everything here works on a locked `DeploymentRecord` and writes only through the transaction;
what must happen outside the store afterwards (queue, cancel, start a rollback) is collected in
`Effects` for the engine to perform once the transaction has committed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import structlog

from codedeploy_agent.protocol.messages import JobStatus
from codedeploy_server.rollout import health, records
from codedeploy_server.rollout.events import (
    TargetStatus,
    execution_status,
    fail_target,
    mark_queued,
    skip_target,
)
from codedeploy_server.rollout.policy import Counts, Verdict, decide
from codedeploy_server.rollout.records import DeploymentRecord, TargetRecord
from codedeploy_server.rollout.rollback import ROLLBACK_CREATOR, create_rollback, ended_message
from codedeploy_server.store import Tx

log = structlog.get_logger("codedeploy_server.rollout")

#: AWS's HEALTH_CONSTRAINTS text (service reference §1.3); the failed instances follow it.
HEALTH_CONSTRAINTS_MESSAGE: Final = (
    "The overall deployment failed because too many individual instances failed deployment, "
    "too few healthy instances are available for deployment, or some instances in your "
    "deployment group are experiencing problems."
)
NO_INSTANCES_MESSAGE: Final = (
    "The deployment failed because no instances were found for your deployment group. Check "
    "your deployment group settings to make sure the tags for your instances correctly "
    "identify the instances you want to deploy to, and then try again."
)
#: `errorInformation.message` of a stopped deployment (code MANUAL_STOP, §11 gap 4).
STOP_MESSAGE: Final = "The deployment was stopped by a StopDeployment request."
#: How many failed instances `deploymentStatusMessages` lists.
_MAX_STATUS_MESSAGES: Final = 10
#: How many failed instances the HEALTH_CONSTRAINTS message names.
_MAX_NAMED: Final = 20
#: Diagnostics of an event that was running when the deployment ended.
_INTERRUPTED: Final = {
    "Stopped": "The deployment was stopped (StopDeployment) while this event was running; "
    "the agent was told to stop its scripts (job execution CANCELED).",
    "Failed": "The deployment ended (it failed) while this event was running; the agent was "
    "told to stop its scripts (job execution CANCELED).",
}


@dataclass(slots=True)
class Effects:
    """What a committed transaction decided to do outside the store."""

    #: The signed job document of the deployment (for `queue`).
    document: dict[str, Any] | None = None
    #: Instances whose execution is to be queued.
    queue: list[str] = field(default_factory=list)
    #: Instances whose execution is to be cancelled.
    cancel: list[str] = field(default_factory=list)
    #: Rollback deployments to start.
    started: list[str] = field(default_factory=list)


def drive(
    record: DeploymentRecord, now: float, effects: Effects, *, max_duration_seconds: float
) -> None:
    """The next step of an InProgress deployment: a stop request ends it `Stopped`; past its
    maximum run time it fails with `TIMEOUT`; otherwise the policy starts the next instances
    or ends it. Only the documents in memory change; `close` does the rest of an ending."""
    if "_stopRequest" in record.doc:
        end(record, now, "Stopped", "MANUAL_STOP", STOP_MESSAGE)
        return
    started = float(record.doc.get("startTime") or now)
    if now > started + max_duration_seconds:
        hours = max_duration_seconds / 3600
        end(
            record,
            now,
            "Failed",
            "TIMEOUT",
            f"The deployment has timed out: an in-place deployment may run at most {hours:g} "
            "hours.",
        )
        return
    counts = Counts(
        succeeded=len(record.in_status(TargetStatus.SUCCEEDED)),
        failed=len(record.in_status(TargetStatus.FAILED)),
        in_flight=len(record.in_status(TargetStatus.IN_PROGRESS)),
        pending=len(record.in_status(TargetStatus.PENDING)),
    )
    minimum = int(record.engine.get("minimum", 0))
    decision = decide(counts, minimum)
    if decision.verdict is Verdict.CONTINUE:
        for target in record.in_status(TargetStatus.PENDING)[: decision.start]:
            mark_queued(target.doc, now)
            target.dirty = True
            effects.queue.append(target.target_id)
    elif decision.verdict is Verdict.SUCCEEDED:
        end(record, now, "Succeeded", None, None)
    elif decision.verdict is Verdict.FAILED:
        end(record, now, "Failed", "HEALTH_CONSTRAINTS", health_message(record))
    else:
        end(
            record,
            now,
            "Failed",
            "HEALTH_CONSTRAINTS_INVALID",
            "The revision cannot be successfully deployed within the instance health "
            "constraints specified: the deployment config "
            f"{record.doc.get('deploymentConfigName')} keeps at least {minimum} of the "
            f"{counts.total} instances healthy, so none may be taken offline. Use a config "
            "with a lower minimum healthy hosts value, or deploy to more instances.",
        )


def end(
    record: DeploymentRecord, now: float, status: str, code: str | None, message: str | None
) -> None:
    """Give the deployment its terminal status, `completeTime`, `errorInformation`, and the
    failed instances in `deploymentStatusMessages`."""
    record.status = status
    record.doc["completeTime"] = now
    if code is not None:
        record.doc["errorInformation"] = {"code": code, "message": message or ""}
    failed = [f"{t.target_id}: {failure_summary(t)}" for t in record.in_status(TargetStatus.FAILED)]
    if failed and status != "Succeeded":
        record.doc["deploymentStatusMessages"] = failed[:_MAX_STATUS_MESSAGES]


async def close(
    tx: Tx, record: DeploymentRecord, now: float, effects: Effects, *, owner: str, lease: float
) -> None:
    """Everything that goes with a terminal status: in-flight targets cancelled (failed, or
    skipped when the agent had not started), pending ones skipped, the group's
    `lastAttemptedDeployment` / `lastSuccessfulDeployment` / `targetRevision`, the automatic
    rollback (owned by `owner` for `lease` seconds), and the message of the deployment a
    rollback rolls back."""
    reason = _INTERRUPTED.get(record.status, "The deployment ended while this event was running.")
    for target in record.targets:
        if target.status is TargetStatus.IN_PROGRESS:
            effects.cancel.append(target.target_id)
            if execution_status(target.doc) in (None, JobStatus.QUEUED):
                skip_target(target.doc, now)
            else:
                fail_target(target.doc, now, reason)
                await settled(tx, record, target, now)
            target.dirty = True
        elif target.status is TargetStatus.PENDING:
            skip_target(target.doc, now)
            target.dirty = True
    if effects.cancel:
        # Sent after the commit; kept until sent, so a restart sends them again.
        record.doc["_cancels"] = list(effects.cancel)
    group = await records.load_group(tx, record.application_name, record.group_name)
    if group is not None:
        group_id, group_doc = group
        last = {
            "deploymentId": record.deployment_id,
            "status": record.status,
            "endTime": now,
            "createTime": record.doc.get("createTime", now),
        }
        group_doc["lastAttemptedDeployment"] = last
        if record.status == "Succeeded":
            group_doc["lastSuccessfulDeployment"] = last
            if record.doc.get("revision"):
                group_doc["targetRevision"] = record.doc["revision"]
        elif rolls_back(record, group_doc):
            rollback_id, message = await create_rollback(
                tx,
                record,
                group_id,
                group_doc,
                now=now,
                owner=owner,
                lease_until=now + lease,
            )
            info: dict[str, Any] = {"rollbackMessage": message}
            if rollback_id is not None:
                info["rollbackDeploymentId"] = rollback_id
                effects.started.append(rollback_id)
            record.doc["rollbackInfo"] = info
            log.info(
                "automatic rollback",
                deployment_id=record.deployment_id,
                rollback_deployment_id=rollback_id,
                message=message,
            )
        await records.save_group(tx, record.application_name, record.group_name, group_doc)
    await _report_to_trigger(tx, record)
    log.info(
        "deployment ended",
        deployment_id=record.deployment_id,
        status=record.status,
        error=record.doc.get("errorInformation", {}).get("code"),
    )


def rolls_back(record: DeploymentRecord, group: Mapping[str, Any]) -> bool:
    """Whether the ended deployment is rolled back (§4.1; §4.2 for stops: an explicit
    `autoRollbackEnabled` wins, else DEPLOYMENT_STOP_ON_REQUEST in the configuration)."""
    if record.doc.get("creator") == ROLLBACK_CREATOR:
        return False  # a rollback is never rolled back
    config = record.doc.get("autoRollbackConfiguration")
    if not isinstance(config, Mapping):
        config = group.get("autoRollbackConfiguration")
    enabled = isinstance(config, Mapping) and bool(config.get("enabled"))
    events = set(config.get("events") or ()) if isinstance(config, Mapping) else set()
    if record.status == "Stopped":
        explicit = (record.doc.get("_stopRequest") or {}).get("autoRollbackEnabled")
        if explicit is not None:
            return bool(explicit)
        return enabled and "DEPLOYMENT_STOP_ON_REQUEST" in events
    return enabled and "DEPLOYMENT_FAILURE" in events


async def _report_to_trigger(tx: Tx, record: DeploymentRecord) -> None:
    """A rollback that ended updates the rollbackMessage of the deployment it rolls back."""
    trigger_id = record.doc.get("_rollbackOf")
    if not trigger_id:
        return
    trigger = await records.deployment_doc(tx, str(trigger_id), lock=True)
    if trigger is None:
        return
    info = trigger.setdefault("rollbackInfo", {})
    info["rollbackMessage"] = ended_message(
        record.deployment_id, str(record.doc.get("_revisionFrom", "")), record.status
    )
    await records.write_deployment_doc(tx, str(trigger_id), trigger)


async def settled(tx: Tx, record: DeploymentRecord, target: TargetRecord, now: float) -> None:
    """Record a target that just ended in the instance health table (health.py)."""
    group_id = record.engine.get("groupId") or record.doc.get("_groupId")
    if not group_id or target.status not in (TargetStatus.SUCCEEDED, TargetStatus.FAILED):
        return
    await health.record(
        tx,
        str(group_id),
        target.target_id,
        succeeded=target.status is TargetStatus.SUCCEEDED,
        revision=record.doc.get("revision"),
        deployment_id=record.deployment_id,
        now=now,
    )


def failure_summary(target: TargetRecord) -> str:
    """`<event> failed (<errorCode>): <first line of the message>` of a failed target."""
    for event in target.doc.get("lifecycleEvents", []):
        if event.get("status") == "Failed" and event.get("diagnostics"):
            diagnostics = event["diagnostics"]
            lines = str(diagnostics.get("message", "")).splitlines()
            first = f": {lines[0][:300]}" if lines else ""
            return f"{event['lifecycleEventName']} failed ({diagnostics.get('errorCode')}){first}"
    return "failed"


def health_message(record: DeploymentRecord) -> str:
    """AWS's HEALTH_CONSTRAINTS text, then which instances failed and where to look."""
    failed = [t.target_id for t in record.in_status(TargetStatus.FAILED)]
    if not failed:
        return HEALTH_CONSTRAINTS_MESSAGE
    more = " ..." if len(failed) > _MAX_NAMED else ""
    return (
        f"{HEALTH_CONSTRAINTS_MESSAGE} Failed instances: {', '.join(failed[:_MAX_NAMED])}{more}. "
        f"GetDeploymentTarget (or `codedeploy status {record.deployment_id}`) shows why each "
        "one failed."
    )


__all__ = [
    "HEALTH_CONSTRAINTS_MESSAGE",
    "NO_INSTANCES_MESSAGE",
    "STOP_MESSAGE",
    "Effects",
    "close",
    "drive",
    "end",
    "failure_summary",
    "health_message",
    "rolls_back",
    "settled",
]

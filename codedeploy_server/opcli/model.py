"""The API's answers, decoded once into frozen views the commands and renderers share.

Inputs are botocore-shaped dicts as boto3 returns them (`DeploymentInfo`, `DeploymentTarget`,
`InstanceInfo`; timestamps already `datetime`). Missing members decode to None or empty, so the
views work with AWS CodeDeploy's answers as well as the self-hosted server's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

#: Deployment statuses after which nothing changes any more (DeploymentStatus).
TERMINAL_DEPLOYMENT: Final = frozenset({"Succeeded", "Failed", "Stopped"})
#: Target statuses after which a target's events do not change any more (TargetStatus).
TERMINAL_TARGET: Final = frozenset({"Succeeded", "Failed", "Skipped"})
#: The order of DeploymentOverview's counters, as the AWS CLI's samples show them.
OVERVIEW_KEYS: Final = ("Pending", "InProgress", "Succeeded", "Failed", "Skipped", "Ready")
#: The member of a DeploymentTarget that holds the target, per deploymentTargetType.
_TARGET_MEMBERS: Final = ("instanceTarget", "lambdaTarget", "ecsTarget", "cloudFormationTarget")


@dataclass(frozen=True, slots=True)
class EventView:
    """One lifecycle event of a target, with its diagnostics when the agent sent some."""

    name: str
    status: str
    error_code: str | None = None
    script_name: str | None = None
    message: str | None = None
    log_tail: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class TargetView:
    """One deployment target (an on-premises instance for the Server platform)."""

    target_id: str
    status: str
    events: tuple[EventView, ...] = ()
    last_updated: datetime | None = None

    @property
    def terminal(self) -> bool:
        """True once the target's status cannot change any more."""
        return self.status in TERMINAL_TARGET

    @property
    def current_event(self) -> EventView | None:
        """The event worth showing: the one running, else the one that failed, else None."""
        for wanted in ("InProgress", "Failed"):
            for event in self.events:
                if event.status == wanted:
                    return event
        return None


@dataclass(frozen=True, slots=True)
class DeploymentView:
    """A deployment's `DeploymentInfo`, the parts the CLI shows."""

    deployment_id: str
    status: str
    application: str | None = None
    group: str | None = None
    config: str | None = None
    creator: str | None = None
    description: str | None = None
    revision: str | None = None
    create_time: datetime | None = None
    start_time: datetime | None = None
    complete_time: datetime | None = None
    error_code: str | None = None
    error_message: str | None = None
    overview: tuple[tuple[str, int], ...] = ()
    rollback_deployment_id: str | None = None
    rollback_triggering_id: str | None = None
    rollback_message: str | None = None
    auto_rollback_enabled: bool = False
    auto_rollback_events: frozenset[str] = frozenset()
    status_messages: tuple[str, ...] = ()

    @property
    def terminal(self) -> bool:
        """True once the deployment has ended (Succeeded, Failed or Stopped)."""
        return self.status in TERMINAL_DEPLOYMENT

    def rollback_expected(self) -> bool:
        """True when automatic rollback is configured for the way this deployment ended.

        StopDeployment's own `autoRollbackEnabled` is not in DeploymentInfo, so a stop that asked
        for a rollback the group does not configure is only seen once `rollbackInfo` appears.
        """
        if not self.auto_rollback_enabled or self.rollback_triggering_id is not None:
            return False  # a rollback deployment is never rolled back itself
        if self.status == "Failed":
            return "DEPLOYMENT_FAILURE" in self.auto_rollback_events
        if self.status == "Stopped":
            return "DEPLOYMENT_STOP_ON_REQUEST" in self.auto_rollback_events
        return False


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A deployment and its targets, as read by one poll."""

    deployment: DeploymentView
    targets: tuple[TargetView, ...] = ()


@dataclass(frozen=True, slots=True)
class InstanceView:
    """An on-premises instance (`InstanceInfo`)."""

    name: str
    arn: str | None = None
    iam_arn: str | None = None
    register_time: datetime | None = None
    deregister_time: datetime | None = None
    tags: tuple[tuple[str, str], ...] = ()

    @property
    def registration_status(self) -> str:
        """`Registered` or `Deregistered`, as ListOnPremisesInstances filters them."""
        return "Deregistered" if self.deregister_time is not None else "Registered"


def _str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return None if value is None else str(value)


def _time(data: Mapping[str, Any], key: str) -> datetime | None:
    value = data.get(key)
    return value if isinstance(value, datetime) else None


def _map(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    return value if isinstance(value, Mapping) else {}


def describe_revision(revision: Mapping[str, Any]) -> str | None:
    """A one-line description of a RevisionLocation (`s3://bucket/key (zip, eTag …)`...)."""
    kind = revision.get("revisionType")
    if kind == "S3":
        s3 = _map(revision, "s3Location")
        extras = [str(s3["bundleType"])] if s3.get("bundleType") else []
        extras += [f"{key} {s3[key]}" for key in ("eTag", "version") if s3.get(key)]
        return f"s3://{s3.get('bucket')}/{s3.get('key')}" + (
            f" ({', '.join(extras)})" if extras else ""
        )
    if kind == "GitHub":
        # The server's other git sources ride in gitHubLocation (README "Revision types").
        github = _map(revision, "gitHubLocation")
        repository, commit = str(github.get("repository")), github.get("commitId")
        for prefix, label in (("bitbucket:", "Bitbucket"), ("codecommit:", "CodeCommit")):
            if repository.startswith(prefix):
                return f"{label} {repository.removeprefix(prefix)}@{commit}"
        if repository.startswith("git+"):
            return f"git {repository.removeprefix('git+')}@{commit}"
        return f"GitHub {repository}@{commit}"
    if kind == "String":
        # A bundle URL and its sha256 on the Server compute platform.
        content = _map(revision, "string")
        return f"{content.get('content')} (sha256 {content.get('sha256')})"
    if kind == "AppSpecContent":
        content = _map(revision, "appSpecContent")
        sha = content.get("sha256")
        return f"{kind} (sha256 {sha})" if sha else str(kind)
    return None if kind is None else str(kind)


def decode_deployment(info: Mapping[str, Any]) -> DeploymentView:
    """Decode a `DeploymentInfo` (GetDeployment's `deploymentInfo`)."""
    error = _map(info, "errorInformation")
    rollback = _map(info, "rollbackInfo")
    auto = _map(info, "autoRollbackConfiguration")
    overview = _map(info, "deploymentOverview")
    revision = _map(info, "revision")
    return DeploymentView(
        deployment_id=str(info.get("deploymentId", "")),
        status=str(info.get("status", "Unknown")),
        application=_str(info, "applicationName"),
        group=_str(info, "deploymentGroupName"),
        config=_str(info, "deploymentConfigName"),
        creator=_str(info, "creator"),
        description=_str(info, "description"),
        revision=describe_revision(revision) if revision else None,
        create_time=_time(info, "createTime"),
        start_time=_time(info, "startTime"),
        complete_time=_time(info, "completeTime"),
        error_code=_str(error, "code"),
        error_message=_str(error, "message"),
        overview=tuple((key, int(overview[key])) for key in OVERVIEW_KEYS if key in overview),
        rollback_deployment_id=_str(rollback, "rollbackDeploymentId"),
        rollback_triggering_id=_str(rollback, "rollbackTriggeringDeploymentId"),
        rollback_message=_str(rollback, "rollbackMessage"),
        auto_rollback_enabled=bool(auto.get("enabled")),
        auto_rollback_events=frozenset(str(e) for e in auto.get("events") or ()),
        status_messages=tuple(str(m) for m in info.get("deploymentStatusMessages") or ()),
    )


def decode_event(event: Mapping[str, Any]) -> EventView:
    """Decode a `LifecycleEvent`."""
    diagnostics = _map(event, "diagnostics")
    return EventView(
        name=str(event.get("lifecycleEventName", "?")),
        status=str(event.get("status", "Unknown")),
        error_code=_str(diagnostics, "errorCode"),
        script_name=_str(diagnostics, "scriptName") or None,
        message=_str(diagnostics, "message") or None,
        log_tail=_str(diagnostics, "logTail") or None,
        start_time=_time(event, "startTime"),
        end_time=_time(event, "endTime"),
    )


def decode_target(target: Mapping[str, Any]) -> TargetView:
    """Decode a `DeploymentTarget` (any of its four kinds) or a bare `InstanceTarget`."""
    inner = next((target[m] for m in _TARGET_MEMBERS if isinstance(target.get(m), Mapping)), target)
    return TargetView(
        target_id=str(inner.get("targetId", "?")),
        status=str(inner.get("status", "Unknown")),
        events=tuple(decode_event(e) for e in inner.get("lifecycleEvents") or ()),
        last_updated=_time(inner, "lastUpdatedAt"),
    )


def decode_instance(info: Mapping[str, Any]) -> InstanceView:
    """Decode an `InstanceInfo` (BatchGetOnPremisesInstances)."""
    return InstanceView(
        name=str(info.get("instanceName", "?")),
        arn=_str(info, "instanceArn"),
        iam_arn=_str(info, "iamUserArn") or _str(info, "iamSessionArn"),
        register_time=_time(info, "registerTime"),
        deregister_time=_time(info, "deregisterTime"),
        tags=tuple(
            (str(tag.get("Key", "")), str(tag.get("Value", ""))) for tag in info.get("tags") or ()
        ),
    )

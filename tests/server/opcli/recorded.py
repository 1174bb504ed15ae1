"""Botocore-shaped API answers for the renderer tests (what boto3 returns, timestamps parsed).

The shapes are botocore's (`DeploymentInfo`, `DeploymentTarget`/`InstanceTarget`,
`LifecycleEvent`, `InstanceInfo`); a test builds the answers of successive polls with these
helpers and checks what the CLI prints for them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final

EVENTS: Final = (
    "ApplicationStop",
    "DownloadBundle",
    "BeforeInstall",
    "Install",
    "AfterInstall",
    "ApplicationStart",
    "ValidateService",
)
T0: Final = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """T0 plus `seconds`."""
    return T0 + timedelta(seconds=seconds)


def event(
    name: str,
    status: str,
    *,
    code: str | None = None,
    script: str | None = None,
    message: str | None = None,
    tail: str | None = None,
) -> dict[str, Any]:
    """A LifecycleEvent; diagnostics only when given."""
    data: dict[str, Any] = {"lifecycleEventName": name, "status": status}
    if status != "Pending":
        data["startTime"] = at(1)
    if status in ("Succeeded", "Failed", "Skipped"):
        data["endTime"] = at(2)
    if code is not None:
        data["diagnostics"] = {
            "errorCode": code,
            "scriptName": script or "",
            "message": message or "",
            "logTail": tail or "",
        }
    return data


def target(
    target_id: str,
    status: str,
    statuses: dict[str, str] | None = None,
    *,
    failed: dict[str, Any] | None = None,
    deployment_id: str = "d-ABCDEFGH1",
) -> dict[str, Any]:
    """A DeploymentTarget of type InstanceTarget; `statuses` sets events (others Pending)."""
    events = []
    for name in EVENTS:
        if failed is not None and failed["lifecycleEventName"] == name:
            events.append(failed)
        else:
            events.append(event(name, (statuses or {}).get(name, "Pending")))
    return {
        "deploymentTargetType": "InstanceTarget",
        "instanceTarget": {
            "deploymentId": deployment_id,
            "targetId": target_id,
            "targetArn": f"arn:aws:codedeploy:us-east-1:000000000000:instance/{target_id}",
            "status": status,
            "lastUpdatedAt": at(5),
            "lifecycleEvents": events,
        },
    }


def all_events(status: str, upto: str | None = None) -> dict[str, str]:
    """Every event (up to and including `upto`) with `status`."""
    names = EVENTS if upto is None else EVENTS[: EVENTS.index(upto) + 1]
    return dict.fromkeys(names, status)


def deployment(
    status: str,
    *,
    deployment_id: str = "d-ABCDEFGH1",
    overview: dict[str, int] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A DeploymentInfo of an in-place deployment from S3."""
    data: dict[str, Any] = {
        "applicationName": "web",
        "deploymentGroupName": "prod",
        "deploymentConfigName": "CodeDeployDefault.OneAtATime",
        "deploymentId": deployment_id,
        "revision": {
            "revisionType": "S3",
            "s3Location": {
                "bucket": "codedeploy-server-bundles",
                "key": "ab" * 32,
                "bundleType": "zip",
                "eTag": "ab" * 32,
            },
        },
        "status": status,
        "createTime": at(0),
        "creator": "user",
        "deploymentOverview": {
            "Pending": 0,
            "InProgress": 0,
            "Succeeded": 0,
            "Failed": 0,
            "Skipped": 0,
            "Ready": 0,
            **(overview or {}),
        },
        "computePlatform": "Server",
    }
    data.update(extra)
    return data


class RecordedApi:
    """Replays recorded answers, one poll at a time, through the CodeDeployApi methods.

    `script[deployment_id]` is the list of (DeploymentInfo, [DeploymentTarget...]) each
    successive GetDeployment moves to (the last one stays); ListDeploymentTargets and
    BatchGetDeploymentTargets answer from the state the last GetDeployment moved to. Every call
    is recorded in `calls` as (operation, parameters).
    """

    def __init__(self, script: dict[str, list[tuple[dict[str, Any], list[dict[str, Any]]]]]):
        self.script = script
        self.position = dict.fromkeys(script, -1)
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def _state(self, deployment_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        return self.script[deployment_id][max(self.position[deployment_id], 0)]

    def get_deployment(self, **kwargs: Any) -> dict[str, Any]:
        """The next recorded DeploymentInfo of the deployment."""
        self.calls.append(("GetDeployment", kwargs))
        deployment_id = kwargs["deploymentId"]
        last = len(self.script[deployment_id]) - 1
        self.position[deployment_id] = min(self.position[deployment_id] + 1, last)
        return {"deploymentInfo": self._state(deployment_id)[0]}

    def list_deployment_targets(self, **kwargs: Any) -> dict[str, Any]:
        """The target ids of the current state."""
        self.calls.append(("ListDeploymentTargets", kwargs))
        targets = self._state(kwargs["deploymentId"])[1]
        return {"targetIds": [t["instanceTarget"]["targetId"] for t in targets]}

    def batch_get_deployment_targets(self, **kwargs: Any) -> dict[str, Any]:
        """The asked-for targets of the current state."""
        self.calls.append(("BatchGetDeploymentTargets", kwargs))
        targets = self._state(kwargs["deploymentId"])[1]
        wanted = set(kwargs["targetIds"])
        return {
            "deploymentTargets": [t for t in targets if t["instanceTarget"]["targetId"] in wanted]
        }

    def create_deployment(self, **kwargs: Any) -> dict[str, Any]:
        """The first deployment of the script."""
        self.calls.append(("CreateDeployment", kwargs))
        return {"deploymentId": next(iter(self.script))}

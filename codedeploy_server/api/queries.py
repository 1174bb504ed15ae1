"""Store lookups shared by the operations: each returns the document or raises the CodeDeploy
exception a client gets when it is missing, with AWS's message where it is known."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final

from codedeploy_server.api import errors as e
from codedeploy_server.rollout.policy import BUILTIN_CONFIGS
from codedeploy_server.store import Row, Tx, loads

Doc = dict[str, Any]

#: Statuses of a deployment that has not ended (the one-active-per-group rule counts these).
ACTIVE_STATUSES: Final = ("Created", "Queued", "InProgress", "Baking", "Ready")
TERMINAL_STATUSES: Final = ("Succeeded", "Failed", "Stopped")
_DEPLOYMENT_ID = re.compile(r"d-[A-Z0-9]{9}")
#: Built-in configs report a fixed id and creation time (they exist before any server does).
_BUILTIN_CREATE_TIME: Final = 1412553600.0  # 2014-10-06, the API version's date
_BUILTIN_IDS: Final = {
    "CodeDeployDefault.OneAtATime": "0f9b8a9e-1e4d-4c1e-9e37-000000000001",
    "CodeDeployDefault.HalfAtATime": "0f9b8a9e-1e4d-4c1e-9e37-000000000002",
    "CodeDeployDefault.AllAtOnce": "0f9b8a9e-1e4d-4c1e-9e37-000000000003",
}
BUILTIN_PREFIX: Final = "CodeDeployDefault."


def check_deployment_id(deployment_id: str) -> str:
    """`deployment_id` when it has CodeDeploy's form, else InvalidDeploymentIdException."""
    if not _DEPLOYMENT_ID.fullmatch(deployment_id):
        raise e.InvalidDeploymentIdException(
            f"Specified DeploymentId is not in the valid format: {deployment_id}"
        )
    return deployment_id


async def application(tx: Tx, name: str, *, lock: bool = False) -> Doc:
    """The application's `ApplicationInfo` document."""
    row = await tx.fetchone(
        "SELECT doc FROM applications WHERE name = ?" + (tx.for_update if lock else ""),  # noqa: S608 - placeholders/constants only
        (name,),
    )
    if row is None:
        raise e.ApplicationDoesNotExistException(f"No application found for name: {name}")
    doc: Doc = loads(row["doc"])
    return doc


async def group(tx: Tx, application_name: str, name: str, *, lock: bool = False) -> Doc:
    """The group's `DeploymentGroupInfo` document (stored part; see `group_view`)."""
    row = await tx.fetchone(
        "SELECT doc FROM deployment_groups WHERE application_name = ? AND name = ?"  # noqa: S608 - placeholders/constants only
        + (tx.for_update if lock else ""),
        (application_name, name),
    )
    if row is None:
        raise e.DeploymentGroupDoesNotExistException(f"No Deployment Group found for name: {name}")
    doc: Doc = loads(row["doc"])
    return doc


async def deployment(tx: Tx, deployment_id: str) -> Doc:
    """The deployment's `DeploymentInfo` document (id checked for form first)."""
    check_deployment_id(deployment_id)
    row = await tx.fetchone("SELECT doc FROM deployments WHERE deployment_id = ?", (deployment_id,))
    if row is None:
        raise e.DeploymentDoesNotExistException(f"Deployment {deployment_id} does not exist.")
    doc: Doc = loads(row["doc"])
    return doc


def builtin_config(name: str) -> Doc | None:
    """A predefined config's `DeploymentConfigInfo`, or None."""
    hosts = BUILTIN_CONFIGS.get(name)
    if hosts is None:
        return None
    return {
        "deploymentConfigId": _BUILTIN_IDS[name],
        "deploymentConfigName": name,
        "minimumHealthyHosts": hosts.to_doc(),
        "createTime": _BUILTIN_CREATE_TIME,
        "computePlatform": "Server",
    }


async def config(tx: Tx, name: str) -> Doc | None:
    """A config's `DeploymentConfigInfo` (built-in or custom), or None."""
    builtin = builtin_config(name)
    if builtin is not None:
        return builtin
    row = await tx.fetchone("SELECT doc FROM deployment_configs WHERE name = ?", (name,))
    return None if row is None else dict(loads(row["doc"]))


async def existing_config(tx: Tx, name: str) -> Doc:
    """A config that must exist (DeploymentConfigDoesNotExistException otherwise)."""
    doc = await config(tx, name)
    if doc is None:
        raise e.DeploymentConfigDoesNotExistException(
            f"No deployment configuration found for name: {name}"
        )
    return doc


async def active_deployment(tx: Tx, application_name: str, group_name: str) -> str | None:
    """The id of the group's deployment that has not ended, if any."""
    row = await tx.fetchone(
        "SELECT deployment_id FROM deployments WHERE application_name = ? AND group_name = ? "  # noqa: S608 - placeholders/constants only
        f"AND status IN ({_marks(ACTIVE_STATUSES)}) ORDER BY create_time LIMIT 1",
        (application_name, group_name, *ACTIVE_STATUSES),
    )
    return None if row is None else str(row["deployment_id"])


async def last_deployment(
    tx: Tx, application_name: str, group_name: str, *, succeeded: bool
) -> Doc | None:
    """The group's most recent deployment (only Succeeded ones when `succeeded`), or None."""
    status_clause = " AND status = 'Succeeded'" if succeeded else ""
    row = await tx.fetchone(
        "SELECT doc FROM deployments WHERE application_name = ? AND group_name = ?"  # noqa: S608 - placeholders/constants only
        f"{status_clause} ORDER BY create_time DESC, deployment_id DESC LIMIT 1",
        (application_name, group_name),
    )
    return None if row is None else dict(loads(row["doc"]))


async def group_view(tx: Tx, doc: Doc) -> Doc:
    """A group's document with what CodeDeploy derives from its deployments: `targetRevision`
    (the last successful deployment's revision), `lastSuccessfulDeployment`,
    `lastAttemptedDeployment`."""
    view = dict(doc)
    app, name = doc["applicationName"], doc["deploymentGroupName"]
    succeeded = await last_deployment(tx, app, name, succeeded=True)
    attempted = await last_deployment(tx, app, name, succeeded=False)
    if succeeded is not None:
        view["targetRevision"] = succeeded.get("revision")
        view["lastSuccessfulDeployment"] = _last_info(succeeded)
    if attempted is not None:
        view["lastAttemptedDeployment"] = _last_info(attempted)
    return view


def _last_info(doc: Doc) -> Doc:
    return {
        "deploymentId": doc.get("deploymentId"),
        "status": doc.get("status"),
        "endTime": doc.get("completeTime"),
        "createTime": doc.get("createTime"),
    }


async def instance_tags(tx: Tx, names: Iterable[str] | None = None) -> dict[str, dict[str, str]]:
    """Tags per instance (every instance with tags when `names` is None)."""
    rows: list[Row] = await tx.fetchall(
        "SELECT instance_name, tag_key, tag_value FROM instance_tags ORDER BY tag_key"
    )
    wanted = None if names is None else set(names)
    tags: dict[str, dict[str, str]] = {}
    for row in rows:
        if wanted is None or row["instance_name"] in wanted:
            tags.setdefault(row["instance_name"], {})[row["tag_key"]] = row["tag_value"]
    return tags


def marks(count: int) -> str:
    """`?, ?, ...` for an IN list of `count` values."""
    return ", ".join("?" * count)


def _marks(values: tuple[str, ...]) -> str:
    return marks(len(values))

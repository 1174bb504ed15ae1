"""`codedeploy list`: deployments (ListDeployments + BatchGetDeployments), newest first."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from codedeploy_server.opcli.client import CodeDeployApi, paginate
from codedeploy_server.opcli.errors import UsageError
from codedeploy_server.opcli.queries import fetch_deployments
from codedeploy_server.opcli.render import Output, deployments_table

#: DeploymentStatus, the values `--status` accepts (ListDeployments' includeOnlyStatuses).
DEPLOYMENT_STATUSES = (
    "Created",
    "Queued",
    "InProgress",
    "Baking",
    "Succeeded",
    "Failed",
    "Stopped",
    "Ready",
)
_OLDEST = datetime.min.replace(tzinfo=UTC)


def run_list(
    api: CodeDeployApi,
    output: Output,
    *,
    application_name: str | None = None,
    deployment_group_name: str | None = None,
    statuses: Sequence[str] = (),
    max_items: int | None = None,
) -> int:
    """List deployments as a table, newest first (at most `max_items`)."""
    if bool(application_name) != bool(deployment_group_name):
        # ListDeployments takes a group only with its application; a lone application is
        # refused by the service too, so say it here with the fix.
        raise UsageError(
            "--application-name and --deployment-group-name go together: give both to list "
            "one deployment group's deployments, or neither to list all."
        )
    params: dict[str, Any] = {}
    if application_name and deployment_group_name:
        params["applicationName"] = application_name
        params["deploymentGroupName"] = deployment_group_name
    if statuses:
        params["includeOnlyStatuses"] = list(statuses)
    ids: list[str] = paginate(api.list_deployments, "deployments", **params)
    views = sorted(
        fetch_deployments(api, ids),
        key=lambda v: (v.create_time or _OLDEST, v.deployment_id),
        reverse=True,
    )
    if max_items is not None:
        views = views[:max_items]
    if not views:
        output.note("No deployments found.")
        return 0
    output.show(deployments_table(views, tty=output.tty))
    return 0

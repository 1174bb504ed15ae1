"""`codedeploy deploy`: CreateDeployment, and with `--wait` live progress until it ends.

Without `--wait` it prints the deployment id alone (for `id=$(codedeploy deploy ...)`) and
exits 0. With `--wait` it follows the deployment (see `watch.py`), prints how it ended, and when
automatic rollback starts a rollback deployment, follows that one too. The exit status is 0
only when the deployment itself Succeeded (a successful rollback is still a failed deployment).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from codedeploy_server.opcli.client import CodeDeployApi
from codedeploy_server.opcli.errors import AbortedError
from codedeploy_server.opcli.render import Output
from codedeploy_server.opcli.watch import (
    DEFAULT_INTERVAL,
    ROLLBACK_GRACE,
    ProgressView,
    await_rollback,
    open_view,
    summary_lines,
    watch,
)


@dataclass(frozen=True, slots=True)
class DeployOptions:
    """The arguments of `deploy`."""

    application_name: str
    deployment_group_name: str
    revision: dict[str, Any]
    deployment_config_name: str | None = None
    description: str | None = None
    file_exists_behavior: str | None = None
    ignore_application_stop_failures: bool = False
    wait: bool = False
    interval: float = DEFAULT_INTERVAL


def create_request(options: DeployOptions) -> dict[str, Any]:
    """The CreateDeployment parameters (only the options given)."""
    request: dict[str, Any] = {
        "applicationName": options.application_name,
        "deploymentGroupName": options.deployment_group_name,
        "revision": options.revision,
    }
    if options.deployment_config_name:
        request["deploymentConfigName"] = options.deployment_config_name
    if options.description is not None:
        request["description"] = options.description
    if options.file_exists_behavior:
        request["fileExistsBehavior"] = options.file_exists_behavior
    if options.ignore_application_stop_failures:
        request["ignoreApplicationStopFailures"] = True
    return request


def run_deploy(
    api: CodeDeployApi,
    options: DeployOptions,
    output: Output,
    *,
    view_factory: Callable[[Output], ProgressView] = open_view,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Create the deployment; with `wait`, follow it (and its rollback). Returns the status."""
    deployment_id = str(api.create_deployment(**create_request(options))["deploymentId"])
    if not options.wait:
        output.line(deployment_id)
        return 0
    output.line(f"Created deployment {deployment_id}")
    return follow(
        api,
        deployment_id,
        output,
        interval=options.interval,
        view_factory=view_factory,
        sleep=sleep,
    )


def follow(
    api: CodeDeployApi,
    deployment_id: str,
    output: Output,
    *,
    interval: float = DEFAULT_INTERVAL,
    view_factory: Callable[[Output], ProgressView] = open_view,
    sleep: Callable[[float], None] = time.sleep,
    rollback_grace: float = ROLLBACK_GRACE,
) -> int:
    """Follow `deployment_id` and then its automatic rollback, if one starts; 0 iff Succeeded."""
    watching = deployment_id
    try:
        final = watch(api, watching, view_factory(output), interval=interval, sleep=sleep)
        final = await_rollback(api, final, interval=interval, grace=rollback_grace, sleep=sleep)
        output.lines(summary_lines(final))
        rollback_id = final.deployment.rollback_deployment_id
        if rollback_id:
            watching = rollback_id
            output.line(f"Following rollback deployment {rollback_id}")
            rollback = watch(api, rollback_id, view_factory(output), interval=interval, sleep=sleep)
            output.lines(summary_lines(rollback))
    except KeyboardInterrupt:
        raise AbortedError(
            f"Stopped watching {watching}; the deployment goes on. See it with: "
            f"codedeploy status {watching}"
        ) from None
    return 0 if final.deployment.status == "Succeeded" else 1

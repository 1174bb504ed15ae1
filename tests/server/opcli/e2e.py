"""Helpers of the end-to-end tests against the real API app (see `api_server.py`): the fleet
every test starts from, the `deploy` arguments, and the scripted engine steps.

The steps write what the rollout engine would: statuses, lifecycle events, diagnostics with log
tails, the overview counters, and a rollback deployment.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import boto3  # type: ignore[import-untyped,unused-ignore]

from codedeploy_server.store import Store
from tests.server.opcli.api_server import (
    ApiServer,
    copy_as_rollback,
    update_deployment,
    update_target,
)
from tests.server.opcli.recorded import EVENTS

ROLLBACK_ID = "d-ROLLBACK1"
VALIDATE_FAILED = {
    "errorCode": "ScriptFailed",
    "scriptName": "scripts/validate.sh",
    "message": "Script at specified location: scripts/validate.sh run as user root failed "
    "with exit code 3",
    "logTail": "[stdout]checking\n[stderr]no answer",
}
START_LOG = {
    "errorCode": "Success",
    "scriptName": "scripts/start.sh",
    "message": "Succeeded",
    "logTail": "[stdout]started",
}


def client(api: ApiServer) -> Any:
    """boto3's codedeploy client for the server (credentials from the test environment)."""
    return boto3.client("codedeploy", endpoint_url=api.url)


def deploy_args(api: ApiServer, *extra: str) -> list[str]:
    """`deploy` of a bundle-store revision to web/prod."""
    location = f"bucket=codedeploy-server-bundles,key={'ab' * 32},bundleType=zip"
    return [
        "deploy",
        "--endpoint-url",
        api.url,
        "--application-name",
        "web",
        "--deployment-group-name",
        "prod",
        "--s3-location",
        location,
        *extra,
    ]


def overview(**counts: int) -> dict[str, int]:
    """A deploymentOverview."""
    base = dict.fromkeys(("Pending", "InProgress", "Succeeded", "Failed", "Skipped", "Ready"), 0)
    return {**base, **counts}


def upto(status: str, last: str) -> dict[str, str]:
    """Events up to and including `last` with `status`."""
    return dict.fromkeys(EVENTS[: EVENTS.index(last) + 1], status)


async def step_started(store: Store, deployment_id: str) -> None:
    """host-1 runs its second event."""
    await update_deployment(
        store,
        deployment_id,
        status="InProgress",
        deploymentOverview=overview(InProgress=1, Pending=1),
    )
    await update_target(
        store,
        deployment_id,
        "host-1",
        "InProgress",
        {"ApplicationStop": "Succeeded", "DownloadBundle": "InProgress"},
    )


async def step_host1_done(store: Store, deployment_id: str) -> None:
    """host-1 succeeded; host-2 started."""
    await update_deployment(
        store, deployment_id, deploymentOverview=overview(Succeeded=1, InProgress=1)
    )
    await update_target(
        store,
        deployment_id,
        "host-1",
        "Succeeded",
        dict.fromkeys(EVENTS, "Succeeded"),
        diagnostics={"ApplicationStart": START_LOG},
    )
    await update_target(
        store, deployment_id, "host-2", "InProgress", {"ApplicationStop": "InProgress"}
    )


async def step_host2_failed(store: Store, deployment_id: str) -> None:
    """host-2 fails ValidateService; the deployment fails and its rollback is written."""
    await update_target(
        store,
        deployment_id,
        "host-2",
        "Failed",
        {**upto("Succeeded", "ApplicationStart"), "ValidateService": "Failed"},
        diagnostics={"ValidateService": VALIDATE_FAILED},
    )
    await copy_as_rollback(store, deployment_id, ROLLBACK_ID, "Succeeded")
    await update_deployment(
        store,
        deployment_id,
        status="Failed",
        deploymentOverview=overview(Succeeded=1, Failed=1),
        errorInformation={
            "code": "HEALTH_CONSTRAINTS",
            "message": "The overall deployment failed because too many individual instances "
            "failed deployment",
        },
        rollbackInfo={
            "rollbackDeploymentId": ROLLBACK_ID,
            "rollbackMessage": f"Automatic rollback: deployment {ROLLBACK_ID} started",
        },
    )


async def step_succeeded(store: Store, deployment_id: str) -> None:
    """Both hosts succeed at once."""
    for host in ("host-1", "host-2"):
        await update_target(
            store, deployment_id, host, "Succeeded", dict.fromkeys(EVENTS, "Succeeded")
        )
    await update_deployment(
        store, deployment_id, status="Succeeded", deploymentOverview=overview(Succeeded=2)
    )


#: What `without_times` puts in place of a timestamp (same width: columns stay aligned).
T = "####-##-## ##:##:##"


async def wait_until(predicate: Callable[[], bool], limit: float = 20.0) -> None:
    """Return once `predicate()` is true; fail the test after `limit` seconds."""
    async with asyncio.timeout(limit):
        while not predicate():  # noqa: ASYNC110 - a StringIO written by the code under test
            await asyncio.sleep(0.02)


def without_times(text: str) -> str:
    """`text` with local timestamps replaced by `T`."""
    return re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", T, text)


def make_fleet(api: ApiServer) -> ApiServer:
    """Application `web`, group `prod` (tag role=web: host-1, host-2), host-3 tagged role=db."""
    cd = client(api)
    cd.create_application(applicationName="web")
    for name, role in (("host-1", "web"), ("host-2", "web"), ("host-3", "db")):
        cd.register_on_premises_instance(
            instanceName=name, iamUserArn=f"arn:aws:iam::123456789012:user/{name}"
        )
        cd.add_tags_to_on_premises_instances(
            tags=[{"Key": "role", "Value": role}, {"Key": "site", "Value": "lab"}],
            instanceNames=[name],
        )
    cd.create_deployment_group(
        applicationName="web",
        deploymentGroupName="prod",
        serviceRoleArn="arn:aws:iam::123456789012:role/codedeploy",
        onPremisesInstanceTagFilters=[{"Key": "role", "Value": "web", "Type": "KEY_AND_VALUE"}],
    )
    return api

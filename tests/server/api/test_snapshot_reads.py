"""The API's read-only operations run in store snapshots: they answer while a write
transaction (the rollout engine's, say) is held open, from the last committed state."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from codedeploy_server.store import dumps, loads
from tests.server.api.conftest import ACCOUNT, REGION, S3_REVISION, Api

pytestmark = pytest.mark.asyncio


@asynccontextmanager
async def engine_writing(api: Api, deployment_id: str) -> AsyncIterator[None]:
    """A write transaction, open for the block's duration, that set the deployment InProgress
    (uncommitted until the block ends) after locking its row, as the engine does."""
    written, release = asyncio.Event(), asyncio.Event()

    async def write() -> None:
        async with api.store.transaction() as tx:
            row = await tx.fetchone(
                "SELECT doc FROM deployments WHERE deployment_id = ?" + tx.for_update,  # noqa: S608 - a constant
                (deployment_id,),
            )
            assert row is not None
            doc = loads(row["doc"])
            doc["status"] = "InProgress"
            await tx.execute(
                "UPDATE deployments SET status = 'InProgress', doc = ? WHERE deployment_id = ?",
                (dumps(doc), deployment_id),
            )
            written.set()
            await release.wait()

    task = asyncio.create_task(write())
    await asyncio.wait_for(written.wait(), 5)
    try:
        yield
    finally:
        release.set()
        await task


def read_calls(deployment_id: str) -> list[tuple[str, dict[str, Any]]]:
    """Every read-only operation, with parameters that name existing things."""
    group = {"applicationName": "web", "deploymentGroupName": "prod"}
    deployment = {"deploymentId": deployment_id}
    return [
        ("get_application", {"applicationName": "web"}),
        ("list_applications", {}),
        ("batch_get_applications", {"applicationNames": ["web"]}),
        ("get_deployment_config", {"deploymentConfigName": "CodeDeployDefault.OneAtATime"}),
        ("list_deployment_configs", {}),
        ("get_deployment_group", group),
        ("list_deployment_groups", {"applicationName": "web"}),
        (
            "batch_get_deployment_groups",
            {"applicationName": "web", "deploymentGroupNames": ["prod"]},
        ),
        ("get_on_premises_instance", {"instanceName": "host-1"}),
        ("batch_get_on_premises_instances", {"instanceNames": ["host-1"]}),
        ("list_on_premises_instances", {}),
        ("get_application_revision", {"applicationName": "web", "revision": S3_REVISION}),
        ("list_application_revisions", {"applicationName": "web", "deployed": "exclude"}),
        ("batch_get_application_revisions", {"applicationName": "web", "revisions": [S3_REVISION]}),
        (
            "list_tags_for_resource",
            {"ResourceArn": f"arn:aws:codedeploy:{REGION}:{ACCOUNT}:application:web"},
        ),
        ("list_deployment_targets", deployment),
        ("get_deployment_target", {**deployment, "targetId": "host-1"}),
        ("batch_get_deployment_targets", {**deployment, "targetIds": ["host-1"]}),
        ("get_deployment_instance", {**deployment, "instanceId": "host-1"}),
        ("list_deployment_instances", deployment),
        ("batch_get_deployment_instances", {**deployment, "instanceIds": ["host-1"]}),
        ("batch_get_deployments", {"deploymentIds": [deployment_id]}),
        ("list_deployments", group),
    ]


async def test_reads_answer_while_a_write_transaction_is_open(api: Api) -> None:
    """Every Get/BatchGet/List operation answers while a write transaction is held open, and
    GetDeployment shows the last committed status, not the open transaction's."""
    await api.register("host-1", env="prod")
    await api.group(onPremisesInstanceTagFilters=[{"Key": "env", "Value": "prod"}])
    deployment_id = await api.deploy()
    async with engine_writing(api, deployment_id):
        answer = await asyncio.wait_for(api.call("get_deployment", deploymentId=deployment_id), 5)
        assert answer["deploymentInfo"]["status"] == "Created"
        for operation, params in read_calls(deployment_id):
            await asyncio.wait_for(api.call(operation, **params), 5)
        # The read-only refusals read in a snapshot too.
        error = await asyncio.wait_for(
            api.error("skip_wait_time_for_instance_termination", deploymentId=deployment_id), 5
        )
        assert error.response["Error"]["Code"] == "UnsupportedActionForDeploymentTypeException"
    answer = await api.call("get_deployment", deploymentId=deployment_id)
    assert answer["deploymentInfo"]["status"] == "InProgress"
    listed = await api.call("list_deployments", applicationName="web", deploymentGroupName="prod")
    assert listed["deployments"] == [deployment_id]

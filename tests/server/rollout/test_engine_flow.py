"""The main flow on both store backends: OneAtATime over three real agents."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import pytest

from codedeploy_agent.lifecycle import DEFAULT_ORDER
from codedeploy_server.rollout.document import LIFECYCLE_EVENTS
from tests.server.rollout.conftest import GROUP, Fleet, event_states, span

pytestmark = [pytest.mark.asyncio, pytest.mark.broker]
HOSTS = ["host-1", "host-2", "host-3"]


async def test_one_at_a_time(fleet: Fleet) -> None:
    """OneAtATime deploys to one host at a time in scheduling order, every lifecycle event is
    reported per target, and the deployment, group and instance health end Succeeded."""
    for thing in HOSTS:
        fleet.add_agent(thing)
    v1 = fleet.bundle("v1")
    await fleet.start_server()
    group_id = await fleet.create_group(HOSTS)
    deployment_id = await fleet.deploy(v1, HOSTS)
    doc = await fleet.wait_for(deployment_id)
    assert doc["status"] == "Succeeded", doc
    assert doc["deploymentOverview"] == {
        "Pending": 0,
        "InProgress": 0,
        "Succeeded": 3,
        "Failed": 0,
        "Skipped": 0,
        "Ready": 0,
    }
    assert doc["startTime"] >= doc["createTime"]
    assert doc["completeTime"] >= doc["startTime"]
    assert "errorInformation" not in doc
    targets = await fleet.targets(deployment_id)
    assert [t["targetId"] for t in targets] == HOSTS
    for target in targets:
        assert target["status"] == "Succeeded"
        # The first deployment to a host has no earlier revision whose ApplicationStop could
        # run: the agent reports that noop Succeeded, as CodeDeploy shows it.
        assert event_states(target) == [(name, "Succeeded") for name in LIFECYCLE_EVENTS]
        assert fleet.installed_version(target["targetId"]) == "v1"
    # One at a time: each host starts after the previous one finished.
    spans = [span(t) for t in targets]
    for (_, previous_end), (start, _) in itertools.pairwise(spans):
        assert start >= previous_end
    queued = [t["_queuedAt"] for t in targets]
    assert queued == sorted(queued)
    group = await fleet.group()
    assert group["lastSuccessfulDeployment"]["deploymentId"] == deployment_id
    assert group["lastSuccessfulDeployment"]["status"] == "Succeeded"
    assert group["lastAttemptedDeployment"] == group["lastSuccessfulDeployment"]
    assert group["targetRevision"] == v1
    async with fleet.db().transaction() as tx:
        rows = await tx.fetchall(
            "SELECT instance_name, healthy, deployment_id FROM instance_health "
            "WHERE group_id = ? ORDER BY instance_name",
            (group_id,),
        )
    assert rows == [
        {"instance_name": name, "healthy": 1, "deployment_id": deployment_id} for name in HOSTS
    ]
    # The job document was built once and signed; every execution got the same one.
    assert fleet.jobs is not None
    documents = [
        (await fleet.jobs.execution(name, deployment_id)).job_document  # type: ignore[union-attr]
        for name in HOSTS
    ]
    assert documents[0] == documents[1] == documents[2] == doc["_jobDocument"]
    document = doc["_jobDocument"]
    assert document["DeploymentGroupId"] == group_id
    assert document["DeploymentGroupName"] == GROUP
    assert document["DeploymentCreator"] == "user"
    assert document["LifecycleEvents"] == list(LIFECYCLE_EVENTS)
    assert document["Signature"]["KeyId"] == "test-key"
    issued = datetime.fromisoformat(document["IssuedAt"])
    assert datetime.fromisoformat(document["ExpiresAt"]) - issued == timedelta(hours=8)
    assert document["AllPossibleLifecycleEvents"] == list(DEFAULT_ORDER)
    assert "IgnoreApplicationStopFailures" not in document  # false: left out
    assert "AgentActionOverrides" not in document

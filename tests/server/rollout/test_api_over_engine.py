"""The API over the real rollout engine, driven by boto3: a repeated StopDeployment, the
diagnostics of succeeded lifecycle events, and the host order of a rollback (issue 5).

Everything is real: the API (`create_api`) on a loopback port, the engine, the Jobs service on
a private Mosquitto, `codedeploy-agent run` processes, and a botocore `codedeploy` client. The
setup goes through the API as an operator's would: application, registered and tagged
instances, a group selecting them by tag, CreateDeployment.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import botocore.session  # type: ignore[import-untyped,unused-ignore]
import pytest
from aiohttp.test_utils import TestServer
from botocore.client import BaseClient, Config  # type: ignore[import-untyped,unused-ignore]
from botocore.exceptions import ClientError  # type: ignore[import-untyped,unused-ignore]

from codedeploy_agent.protocol.signing import load_private_key
from codedeploy_server.api import create_api
from codedeploy_server.rollout.engine import RolloutEngine
from tests.daemon.conftest import KEY_ID
from tests.server.rollout.conftest import APP, FAIL_ON, GROUP, Fleet, event_states

pytestmark = [pytest.mark.asyncio, pytest.mark.broker]

ACCESS_KEY = "AKIDAPIOVERENGINE001"
SECRET_KEY = "api-over-engine-secret/0123456789abcdef"  # noqa: S105 - a test key
REGION = "us-east-1"
ROLE_ARN = "arn:aws:iam::123456789012:role/CodeDeployServiceRole"
ROLLBACK_ON_FAILURE = {"enabled": True, "events": ["DEPLOYMENT_FAILURE"]}
TERMINAL = ("Succeeded", "Failed", "Stopped")


@pytest.fixture
def database(tmp_path: Path) -> str:
    """SQLite only for this module (the store is not what these tests are about)."""
    return str(tmp_path / "state.db")


class Operator:
    """A botocore `codedeploy` client for one API server; calls run in a thread, since the
    server shares this event loop."""

    def __init__(self, client: BaseClient) -> None:
        self.client = client

    async def call(self, operation: str, **params: Any) -> dict[str, Any]:
        method: Callable[..., dict[str, Any]] = getattr(self.client, operation)
        return await asyncio.to_thread(method, **params)

    async def error(self, operation: str, **params: Any) -> ClientError:
        with pytest.raises(ClientError) as info:
            await self.call(operation, **params)
        return info.value

    async def setup(self, hosts: list[str], config: str, **group: Any) -> None:
        """The application, `hosts` registered and tagged role=web, and the group `web`."""
        await self.call("create_application", applicationName=APP)
        for name in hosts:
            await self.call(
                "register_on_premises_instance",
                instanceName=name,
                iamUserArn=f"arn:aws:iam::123456789012:user/{name}",
            )
        await self.call(
            "add_tags_to_on_premises_instances",
            instanceNames=hosts,
            tags=[{"Key": "role", "Value": "web"}],
        )
        await self.call(
            "create_deployment_group",
            applicationName=APP,
            deploymentGroupName=GROUP,
            serviceRoleArn=ROLE_ARN,
            deploymentConfigName=config,
            onPremisesInstanceTagFilters=[{"Key": "role", "Value": "web", "Type": "KEY_AND_VALUE"}],
            **group,
        )

    async def deploy(self, revision: dict[str, Any]) -> str:
        answer = await self.call(
            "create_deployment",
            applicationName=APP,
            deploymentGroupName=GROUP,
            revision=revision,
        )
        deployment_id: str = answer["deploymentId"]
        return deployment_id

    async def wait(self, deployment_id: str, timeout: float = 60.0) -> dict[str, Any]:  # noqa: ASYNC109
        """GetDeployment until the deployment ended; its DeploymentInfo."""
        deadline = time.monotonic() + timeout
        while True:
            info: dict[str, Any] = (await self.call("get_deployment", deploymentId=deployment_id))[
                "deploymentInfo"
            ]
            if info["status"] in TERMINAL:
                return info
            if time.monotonic() > deadline:
                raise AssertionError(f"{deployment_id} still {info['status']}: {info}")
            await asyncio.sleep(0.2)

    async def target(self, deployment_id: str, target_id: str) -> dict[str, Any]:
        answer = await self.call(
            "get_deployment_target", deploymentId=deployment_id, targetId=target_id
        )
        target: dict[str, Any] = answer["deploymentTarget"]["instanceTarget"]
        return target

    async def target_ids(self, deployment_id: str) -> list[str]:
        answer = await self.call("list_deployment_targets", deploymentId=deployment_id)
        ids: list[str] = answer["targetIds"]
        return ids

    async def run_order(self, deployment_id: str, hosts: list[str]) -> list[str]:
        """The hosts of a deployment ordered by when their first lifecycle event started."""
        starts: dict[str, float] = {}
        for host in hosts:
            events = (await self.target(deployment_id, host))["lifecycleEvents"]
            starts[host] = min(e["startTime"].timestamp() for e in events if "startTime" in e)
        return sorted(hosts, key=starts.__getitem__)


@asynccontextmanager
async def operator(fleet: Fleet, engine: RolloutEngine) -> AsyncIterator[Operator]:
    """The API over `engine` and the fleet's store, on a free loopback port."""
    app = create_api(
        fleet.db(), credentials={ACCESS_KEY: SECRET_KEY}, rollout=engine, region=REGION
    )
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    client = botocore.session.get_session().create_client(
        "codedeploy",
        endpoint_url=str(server.make_url("")).rstrip("/"),
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=30),
    )
    try:
        yield Operator(client)
    finally:
        client.close()
        await server.close()


def _other_server(fleet: Fleet) -> RolloutEngine:
    """The engine of a second server on the same store and Jobs service. It is not started:
    it only answers its API's calls, like a server that does not own the deployment."""
    assert fleet.jobs is not None
    assert fleet.resolver is not None
    return RolloutEngine(
        fleet.db(),
        fleet.jobs,
        signing_key=load_private_key(fleet.private_key),
        key_id=KEY_ID,
        revisions=fleet.resolver,
        server_id="server-2",
        lease_seconds=2.0,
        tick_seconds=0.1,
    )


async def test_a_repeated_stop_answers_succeeded(fleet: Fleet) -> None:
    """StopDeployment through a server that does not own the deployment answers Pending; the
    owner stops it; asking again, as service reference §4.2 tells a client that got Pending,
    answers Succeeded instead of DeploymentAlreadyCompletedException. A deployment that ended
    without a stop is still refused."""
    fleet.add_agent("host-1")
    v1 = fleet.bundle("v1")
    slow = fleet.bundle("slow", {"BeforeInstall": "sleep 60\n"})
    owner = await fleet.start_server()
    async with (
        operator(fleet, owner) as ops,
        operator(fleet, _other_server(fleet)) as other,
    ):
        await ops.setup(["host-1"], "CodeDeployDefault.OneAtATime")
        done = await ops.deploy(v1)
        assert (await ops.wait(done))["status"] == "Succeeded"
        refused = await other.error("stop_deployment", deploymentId=done)
        assert refused.response["Error"]["Code"] == "DeploymentAlreadyCompletedException"

        deployment_id = await ops.deploy(slow)
        await fleet.wait_target(
            deployment_id,
            "host-1",
            lambda t: ("BeforeInstall", "InProgress") in event_states(t),
        )
        first = await other.call("stop_deployment", deploymentId=deployment_id)
        assert first["status"] == "Pending"
        assert (await ops.wait(deployment_id, timeout=20))["status"] == "Stopped"
        answers: list[str] = []
        deadline = time.monotonic() + 20
        while not answers or answers[-1] != "Succeeded":
            assert time.monotonic() < deadline, answers
            for api in (other, ops):
                answer = await api.call("stop_deployment", deploymentId=deployment_id)
                assert answer["statusMessage"] == (
                    "No more commands will be scheduled for execution in the deployment instances"
                )
                answers.append(answer["status"])
            await asyncio.sleep(0.2)
        assert set(answers) <= {"Pending", "Succeeded"}, answers
        info = (await ops.call("get_deployment", deploymentId=deployment_id))["deploymentInfo"]
        assert info["status"] == "Stopped"
        assert info["errorInformation"]["code"] == "MANUAL_STOP"


async def test_succeeded_events_carry_success_diagnostics(fleet: Fleet) -> None:
    """GetDeploymentTarget shows every succeeded lifecycle event with CodeDeploy's diagnostics
    for a success: errorCode Success, no script name, message Succeeded, empty log tail."""
    fleet.add_agent("host-1")
    v1 = fleet.bundle("v1")
    owner = await fleet.start_server()
    async with operator(fleet, owner) as ops:
        await ops.setup(["host-1"], "CodeDeployDefault.AllAtOnce")
        deployment_id = await ops.deploy(v1)
        assert (await ops.wait(deployment_id))["status"] == "Succeeded"
        target = await ops.target(deployment_id, "host-1")
    assert target["status"] == "Succeeded"
    events = target["lifecycleEvents"]
    assert len(events) == 7
    for event in events:
        assert event["status"] == "Succeeded", event
        assert event["diagnostics"] == {
            "errorCode": "Success",
            "scriptName": "",
            "message": "Succeeded",
            "logTail": "",
        }, event


async def test_rollback_deploys_unhealthy_hosts_first(fleet: Fleet) -> None:
    """OneAtATime: v2 updates host-1, fails on host-2 and never reaches host-3. The rollback
    is a new deployment ordered as reference §1.3 orders one: the unhealthy host-2 first, then
    host-1 (on v2, an old revision against v1), then host-3 (still on v1), not the failed
    deployment's host-1, host-2, host-3."""
    hosts = ["host-1", "host-2", "host-3"]
    for thing in hosts:
        fleet.add_agent(thing)
    v1 = fleet.bundle("v1")
    v2 = fleet.bundle("v2", {"ValidateService": FAIL_ON.format(thing="host-2")})
    owner = await fleet.start_server()
    async with operator(fleet, owner) as ops:
        await ops.setup(
            hosts, "CodeDeployDefault.OneAtATime", autoRollbackConfiguration=ROLLBACK_ON_FAILURE
        )
        good = await ops.deploy(v1)
        assert (await ops.wait(good))["status"] == "Succeeded"
        bad = await ops.deploy(v2)
        failed = await ops.wait(bad)
        assert failed["status"] == "Failed"
        assert await ops.target_ids(bad) == hosts
        assert (await ops.target(bad, "host-1"))["status"] == "Succeeded"
        assert (await ops.target(bad, "host-2"))["status"] == "Failed"
        assert (await ops.target(bad, "host-3"))["status"] == "Skipped"

        rollback_id = failed["rollbackInfo"]["rollbackDeploymentId"]
        rollback = await ops.wait(rollback_id)
        assert rollback["status"] == "Succeeded", rollback
        expected = ["host-2", "host-1", "host-3"]
        assert await ops.target_ids(rollback_id) == expected
        assert await ops.run_order(rollback_id, hosts) == expected
    for thing in hosts:
        assert fleet.installed_version(thing) == "v1", thing

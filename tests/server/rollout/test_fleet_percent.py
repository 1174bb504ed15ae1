"""A custom `FLEET_PERCENT` deployment config created through CreateDeploymentConfig, deployed
with real agents to 4 hosts through the API over the real engine (issue 5).

Service reference §1.2-1.3: M = ceil(N x value / 100), computed once; at most (N - failed) - M
instances are in flight at any moment; a deployment fails (HEALTH_CONSTRAINTS) when that
allowance reaches 0 while instances wait, and otherwise succeeds iff >= max(M, 1) succeeded.
With N = 4 and M = 2, two hosts run at once, and after one failure only one does.

Batches are read from the targets' `_queuedAt` (when the engine queued the host's job) and
`lastUpdatedAt` (the time of the job's last update, so its end once the target ended).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.server.rollout.conftest import FAIL_ON, Fleet
from tests.server.rollout.test_api_over_engine import Operator, operator

pytestmark = [pytest.mark.asyncio, pytest.mark.broker]

HOSTS = ["host-1", "host-2", "host-3", "host-4"]


@pytest.fixture
def database(tmp_path: Path) -> str:
    """SQLite only for this module (the store is not what these tests are about)."""
    return str(tmp_path / "state.db")


async def create_config(ops: Operator, name: str, percent: int) -> None:
    """CreateDeploymentConfig with minimumHealthyHosts FLEET_PERCENT `percent`; GetDeploymentConfig
    shows it back."""
    hosts = {"type": "FLEET_PERCENT", "value": percent}
    await ops.call(
        "create_deployment_config",
        deploymentConfigName=name,
        minimumHealthyHosts=hosts,
        computePlatform="Server",
    )
    info = (await ops.call("get_deployment_config", deploymentConfigName=name))[
        "deploymentConfigInfo"
    ]
    assert info["minimumHealthyHosts"] == hosts
    assert info["computePlatform"] == "Server"


def assert_within_allowance(targets: list[dict[str, Any]], minimum: int) -> None:
    """Whenever the engine queued a host, the hosts in flight (that one included) were at most
    (N - failed so far) - M. A failed host that ended before the moment counts once, as failed
    and not in flight, so the check holds whichever order the engine saw the updates in."""
    started = [t for t in targets if "_queuedAt" in t]
    for target in started:
        moment = float(target["_queuedAt"])
        in_flight = [
            t["targetId"]
            for t in started
            if float(t["_queuedAt"]) <= moment < float(t["lastUpdatedAt"])
        ]
        failed = [
            t["targetId"]
            for t in started
            if t["status"] == "Failed" and float(t["lastUpdatedAt"]) <= moment
        ]
        allowed = len(targets) - len(failed) - minimum
        assert len(in_flight) <= allowed, (
            f"when {target['targetId']} was queued, {in_flight} were in flight after the "
            f"failures of {failed}: more than (N - failed) - M = {allowed}"
        )


async def test_fleet_percent_50_tolerates_one_failure(fleet: Fleet) -> None:
    """FLEET_PERCENT 50 on 4 hosts (M = 2): host-1 and host-2 start together; host-1 fails its
    BeforeInstall, which leaves room for one host at a time, so host-3 and host-4 never run
    together; 3 of 4 succeeded (>= M) so the deployment Succeeds with host-1 Failed."""
    for thing in HOSTS:
        fleet.add_agent(thing)
    v1 = fleet.bundle("v1", {"BeforeInstall": FAIL_ON.format(thing="host-1")})
    engine = await fleet.start_server()
    async with operator(fleet, engine) as ops:
        await create_config(ops, "HalfOfTheFleet", 50)
        await ops.setup(HOSTS, "HalfOfTheFleet")
        deployment_id = await ops.deploy(v1)
        info = await ops.wait(deployment_id)
        failed = await ops.target(deployment_id, "host-1")
    assert info["status"] == "Succeeded", info
    assert info["deploymentConfigName"] == "HalfOfTheFleet"
    overview = info["deploymentOverview"]
    assert (overview["Succeeded"], overview["Failed"], overview["Skipped"]) == (3, 1, 0)
    assert failed["status"] == "Failed"
    before_install = next(
        e for e in failed["lifecycleEvents"] if e["lifecycleEventName"] == "BeforeInstall"
    )
    assert before_install["status"] == "Failed"
    assert before_install["diagnostics"]["errorCode"] == "ScriptFailed"
    assert "host-1 is unhealthy" in before_install["diagnostics"]["logTail"]

    assert (await fleet.deployment(deployment_id))["_engine"]["minimum"] == 2
    targets = await fleet.targets(deployment_id)
    assert [t["targetId"] for t in targets] == HOSTS
    queued = [float(t["_queuedAt"]) for t in targets]
    ended = [float(t["lastUpdatedAt"]) for t in targets]
    # The first batch is N - M = 2 hosts, queued by one decision.
    assert queued[0] == queued[1] < queued[2] < queued[3]
    # Whichever of host-1's failure and host-2's success came first, host-4 waits for the end
    # of every other host: after the failure, one host at a time.
    assert queued[3] >= max(ended[:3]), targets
    assert_within_allowance(targets, minimum=2)
    assert fleet.installed_version("host-1") is None
    assert [fleet.installed_version(thing) for thing in HOSTS[1:]] == ["v1"] * 3


async def test_fleet_percent_rounds_up_and_fails_at_the_second_failure(fleet: Fleet) -> None:
    """FLEET_PERCENT 30 on 4 hosts: M = ceil(1.2) = 2 (rounded down it would be 1, and 3 hosts
    would start at once). host-1 and host-2 start together and both fail: (4 - 2) - 2 = 0 hosts
    may run while two wait, so the deployment fails with HEALTH_CONSTRAINTS at once, and
    host-3 and host-4 are Skipped without ever getting a job."""
    for thing in HOSTS:
        fleet.add_agent(thing)
    broken = FAIL_ON.format(thing="host-1") + FAIL_ON.format(thing="host-2")
    v1 = fleet.bundle("v1", {"ValidateService": broken})
    engine = await fleet.start_server()
    async with operator(fleet, engine) as ops:
        await create_config(ops, "ThirtyPercent", 30)
        await ops.setup(HOSTS, "ThirtyPercent")
        deployment_id = await ops.deploy(v1)
        info = await ops.wait(deployment_id)
        statuses = [(await ops.target(deployment_id, thing))["status"] for thing in HOSTS]
    assert info["status"] == "Failed", info
    assert info["errorInformation"]["code"] == "HEALTH_CONSTRAINTS", info
    assert statuses == ["Failed", "Failed", "Skipped", "Skipped"]
    overview = info["deploymentOverview"]
    assert (overview["Succeeded"], overview["Failed"], overview["Skipped"]) == (0, 2, 2)

    assert (await fleet.deployment(deployment_id))["_engine"]["minimum"] == 2
    targets = await fleet.targets(deployment_id)
    assert [t["targetId"] for t in targets] == HOSTS
    assert targets[0]["_queuedAt"] == targets[1]["_queuedAt"]
    assert "_queuedAt" not in targets[2]
    assert "_queuedAt" not in targets[3]
    assert fleet.jobs is not None
    for thing in ("host-3", "host-4"):
        assert await fleet.jobs.execution(thing, deployment_id) is None, thing
        assert fleet.installed_version(thing) is None, thing
    assert_within_allowance(targets, minimum=2)


async def test_fleet_percent_50_tolerates_a_second_failure_on_the_last_host(
    fleet: Fleet,
) -> None:
    """FLEET_PERCENT 50 on 4 hosts (M = 2), host-1 and host-4 fail: after host-1 the hosts run
    one at a time; host-4's failure leaves nobody waiting and 2 succeeded (>= M), so the
    deployment Succeeds (the documented "fails at the 2nd failure unless the last instance is
    that 2nd failure")."""
    for thing in HOSTS:
        fleet.add_agent(thing)
    broken = FAIL_ON.format(thing="host-1") + FAIL_ON.format(thing="host-4")
    v1 = fleet.bundle("v1", {"AfterInstall": broken})
    engine = await fleet.start_server()
    async with operator(fleet, engine) as ops:
        await create_config(ops, "HalfOfTheFleet", 50)
        await ops.setup(HOSTS, "HalfOfTheFleet")
        deployment_id = await ops.deploy(v1)
        info = await ops.wait(deployment_id)
        statuses = [(await ops.target(deployment_id, thing))["status"] for thing in HOSTS]
    assert info["status"] == "Succeeded", info
    assert statuses == ["Failed", "Succeeded", "Succeeded", "Failed"]
    targets = await fleet.targets(deployment_id)
    assert [t["targetId"] for t in targets] == HOSTS
    ended = [float(t["lastUpdatedAt"]) for t in targets]
    assert float(targets[3]["_queuedAt"]) >= max(ended[:3]), targets
    assert_within_allowance(targets, minimum=2)

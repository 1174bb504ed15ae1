"""`codedeploy logs` against the real API app, and `--follow` with Mosquitto too."""

from __future__ import annotations

import asyncio
import io
import threading
import time

import aiomqtt
import pytest

from codedeploy_server.opcli.client import Clients, ClientSettings
from codedeploy_server.opcli.logs import MqttSettings, follow_logs
from codedeploy_server.opcli.render import Output
from codedeploy_server.store import Store
from tests.fakes.brokers import MosquittoBroker
from tests.server.opcli.api_server import ApiServer
from tests.server.opcli.conftest import CliRunner, run_main
from tests.server.opcli.e2e import (
    client,
    deploy_args,
    step_host1_done,
    step_host2_failed,
    step_started,
    step_succeeded,
    wait_until,
)


def test_logs_prints_the_tails(fleet: ApiServer, cli: CliRunner) -> None:
    """logs prints each reported log tail under its instance and event."""
    fleet.rollout.steps = [step_started, step_host1_done, step_host2_failed]
    cli(*deploy_args(fleet, "--wait", "--poll-interval", "0.05"))
    result = cli("logs", fleet.rollout.created[0], "--endpoint-url", fleet.url)
    assert result.out == (
        "==> host-1 ApplicationStart (Succeeded) <==\n"
        "[stdout]started\n"
        "\n"
        "==> host-2 ValidateService (Failed) <==\n"
        "[stdout]checking\n"
        "[stderr]no answer\n"
    )


@pytest.mark.broker
@pytest.mark.asyncio
async def test_logs_follow_through_the_api_and_mosquitto(
    fleet: ApiServer, mosquitto: MosquittoBroker
) -> None:
    """--follow: tails so far from the API, live lines from the broker, until the end."""
    clients = Clients(ClientSettings(endpoint_url=fleet.url))
    deployment_id = await asyncio.to_thread(
        lambda: clients.codedeploy.create_deployment(
            applicationName="web",
            deploymentGroupName="prod",
            revision={
                "revisionType": "S3",
                "s3Location": {
                    "bucket": "codedeploy-server-bundles",
                    "key": "ab" * 32,
                    "bundleType": "zip",
                },
            },
        )["deploymentId"]
    )
    release = threading.Event()

    async def hold_then_succeed(store: Store, created: str) -> None:
        # Answers the follow's second GetDeployment only once the live lines are out.
        await asyncio.to_thread(release.wait, 20)
        await step_succeeded(store, created)

    fleet.rollout.steps = [step_host1_done, hold_then_succeed]
    out, err = io.StringIO(), io.StringIO()
    follow = asyncio.create_task(
        follow_logs(
            clients.codedeploy,
            deployment_id,
            Output(out, err),
            MqttSettings(mosquitto.endpoint),
            poll_interval=0.05,
            drain=0.2,
        )
    )
    await wait_until(lambda: "Following" in err.getvalue() or follow.done())
    assert not follow.done(), err.getvalue()
    async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="host-2-agent") as agent:
        await agent.publish(
            f"codedeploy/things/host-2/logs/{deployment_id}", b"[stdout]stopping\n[stdout]done"
        )
        await wait_until(lambda: "done" in out.getvalue())
    release.set()
    assert await asyncio.wait_for(follow, 20) == 0
    assert out.getvalue() == (
        "==> host-1 ApplicationStart (Succeeded) <==\n"
        "[stdout]started\n"
        "host-2 [stdout]stopping\n"
        "host-2 [stdout]done\n"
    )
    assert err.getvalue() == (
        f"Following live script output of {deployment_id} (Ctrl-C to stop)\n"
        f"Deployment {deployment_id} Succeeded\n"
    )


@pytest.mark.broker
def test_logs_follow_command_line(
    fleet: ApiServer,
    mosquitto: MosquittoBroker,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`codedeploy logs ID --follow --mqtt-endpoint ...` end to end, from the command line."""
    monkeypatch.setenv("CODEDEPLOY_ENDPOINT_URL", fleet.url)
    deployment_id = client(fleet).create_deployment(
        applicationName="web",
        deploymentGroupName="prod",
        revision={
            "revisionType": "S3",
            "s3Location": {
                "bucket": "codedeploy-server-bundles",
                "key": "ab" * 32,
                "bundleType": "zip",
            },
        },
    )["deploymentId"]
    polling, release = threading.Event(), threading.Event()

    async def nothing(store: Store, created: str) -> None:
        del store, created

    async def hold_then_succeed(store: Store, created: str) -> None:
        polling.set()  # subscribed, tails printed: the follow is polling for the end
        await asyncio.to_thread(release.wait, 20)
        await step_succeeded(store, created)

    fleet.rollout.steps = [nothing, hold_then_succeed]
    capsys.readouterr()
    status: list[int] = []
    runner = threading.Thread(
        target=lambda: status.append(
            run_main(
                [
                    "logs",
                    deployment_id,
                    "--follow",
                    "--mqtt-endpoint",
                    mosquitto.endpoint,
                    "--instance",
                    "host-1",
                    "--poll-interval",
                    "0.05",
                ]
            )
        )
    )
    runner.start()
    assert polling.wait(20)

    async def publish() -> None:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="agents") as agent:
            root = f"codedeploy/things/{{}}/logs/{deployment_id}"
            await agent.publish(root.format("host-2"), b"[stdout]not this one")
            await agent.publish(root.format("host-1"), b"[stdout]live line")

    asyncio.run(publish())
    out = ""
    deadline = time.monotonic() + 20
    while "live line" not in out and time.monotonic() < deadline:
        out += capsys.readouterr().out
        time.sleep(0.02)
    release.set()
    runner.join(20)
    captured = capsys.readouterr()
    assert status == [0]
    assert out + captured.out == "host-1 [stdout]live line\n"

"""Issue acceptance for the control plane: boto3 (and the `codedeploy` CLI, and the AWS CLI)
against `codedeploy-server run`, three real agents, a private Mosquitto; loopback only."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from tests.fakes.bundles import write_bundle
from tests.server.e2e.conftest import ACCESS_KEY, REGION, SECRET_KEY, System, codedeploy_client

pytestmark = [pytest.mark.broker, pytest.mark.slow]

APP = "shop"
GROUP = "web"
IN_PLACE = [
    "ApplicationStop",
    "DownloadBundle",
    "BeforeInstall",
    "Install",
    "AfterInstall",
    "ApplicationStart",
    "ValidateService",
]


def record_hook(log: Path, event: str, extra: str = "") -> str:
    """A hook that appends `<host> <event> <version> <start> <end>` to `log` (after `extra`)."""
    return (
        f"start=$(date +%s.%N)\n{extra}"
        f'echo "$HOST_NAME {event} $(cat app/VERSION) $start $(date +%s.%N)" >> {log}\n'
    )


def make_revision(tmp_path: Path, version: str, log: Path, *, validate: str = "") -> Path:
    """A bundle whose hooks log each event, with app/VERSION = `version`."""
    hooks = {
        "ApplicationStop": f'echo "$HOST_NAME ApplicationStop" >> {log}',
        "BeforeInstall": record_hook(log, "BeforeInstall"),
        "ApplicationStart": record_hook(log, "ApplicationStart", "sleep 0.3\n"),
        "ValidateService": record_hook(log, "ValidateService", validate),
    }
    return write_bundle(tmp_path / f"rev-{version}", hooks, files={"app/VERSION": version + "\n"})


def cli_env(system: System) -> dict[str, str]:
    """The environment of an operator's shell: credentials, region, the server's endpoint."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "AWS_"))}
    env.update(
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_DEFAULT_REGION=REGION,
        CODEDEPLOY_ENDPOINT_URL=system.server.url,
        AWS_CONFIG_FILE="/nonexistent",
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
    )
    return env


def push(system: System, source: Path) -> dict[str, str]:
    """`codedeploy push` to the server's bundle store; the S3 location it registered."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "codedeploy_server.opcli.main",
            "push",
            "--application-name",
            APP,
            "--source",
            str(source),
        ],
        capture_output=True,
        text=True,
        env=cli_env(system),
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    match = re.search(r"--s3-location (\S+)", result.stdout)
    assert match, result.stdout
    return dict(part.split("=", 1) for part in match.group(1).split(","))


def setup_group(system: System, config: str = "CodeDeployDefault.OneAtATime", **extra: Any) -> str:
    """Application, three registered and tagged instances, a group by tag; the group id."""
    client = system.client
    client.create_application(applicationName=APP, computePlatform="Server")
    system.register_instances()
    client.create_deployment_group(
        applicationName=APP,
        deploymentGroupName=GROUP,
        deploymentConfigName=config,
        onPremisesInstanceTagFilters=[{"Key": "role", "Value": "web", "Type": "KEY_AND_VALUE"}],
        serviceRoleArn="arn:aws:iam::000000000000:role/codedeploy",
        **extra,
    )
    group = client.get_deployment_group(applicationName=APP, deploymentGroupName=GROUP)
    return str(group["deploymentGroupInfo"]["deploymentGroupId"])


def deploy(
    system: System, location: dict[str, str], config: str | None = None, **extra: Any
) -> str:
    kwargs: dict[str, Any] = {
        "applicationName": APP,
        "deploymentGroupName": GROUP,
        "revision": {"revisionType": "S3", "s3Location": dict(location.items())},
        **extra,
    }
    if config:
        kwargs["deploymentConfigName"] = config
    return str(system.client.create_deployment(**kwargs)["deploymentId"])


def wait(system: System, deployment_id: str, timeout: float = 90) -> dict[str, Any]:
    """The deployment once it ended (Succeeded, Failed or Stopped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = system.client.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
        if info["status"] in ("Succeeded", "Failed", "Stopped"):
            return dict(info)
        time.sleep(0.3)
    raise AssertionError(f"{deployment_id} still {info['status']}")


def host_lines(log: Path, event: str) -> list[list[str]]:
    return [line.split() for line in log.read_text().splitlines() if line.split()[1] == event]


def test_deploy_with_each_builtin_config(system: System, tmp_path: Path) -> None:
    """Every built-in config deploys to the three hosts; the waiter sees success; targets show
    their lifecycle events; OneAtATime deploys one host at a time."""
    system.start_agents()
    setup_group(system)
    log = tmp_path / "events.log"
    location = push(system, make_revision(tmp_path, "1", log))
    for config in (
        "CodeDeployDefault.OneAtATime",
        "CodeDeployDefault.HalfAtATime",
        "CodeDeployDefault.AllAtOnce",
    ):
        log.write_text("")
        deployment_id = deploy(system, location, config)
        system.client.get_waiter("deployment_successful").wait(
            deploymentId=deployment_id, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
        )
        info = system.client.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
        assert info["deploymentOverview"]["Succeeded"] == 3, info
        targets = system.client.list_deployment_targets(deploymentId=deployment_id)["targetIds"]
        assert sorted(targets) == ["web-1", "web-2", "web-3"]
        target = system.client.get_deployment_target(deploymentId=deployment_id, targetId="web-2")
        events = target["deploymentTarget"]["instanceTarget"]["lifecycleEvents"]
        assert [e["lifecycleEventName"] for e in events] == IN_PLACE
        assert [e["status"] for e in events] == ["Succeeded"] * len(IN_PLACE), events
        starts = host_lines(log, "BeforeInstall")
        ends = host_lines(log, "ValidateService")
        assert len(starts) == len(ends) == 3
        if config.endswith("OneAtATime"):
            # Each host starts only after the previous one validated.
            order = sorted(starts, key=lambda line: float(line[3]))
            finished = {line[0]: float(line[4]) for line in ends}
            for before, after in itertools.pairwise(order):
                assert float(after[3]) > finished[before[0]], (before, after)


def test_failure_rolls_back_every_host(system: System, tmp_path: Path) -> None:
    """v2 fails ValidateService on web-2: Failed, a rollback deployment of v1 Succeeds, every
    host ends on v1, and rollbackInfo links the two."""
    system.start_agents()
    group_id = setup_group(
        system,
        autoRollbackConfiguration={"enabled": True, "events": ["DEPLOYMENT_FAILURE"]},
    )
    log = tmp_path / "events.log"
    v1 = push(system, make_revision(tmp_path, "1", log))
    assert wait(system, deploy(system, v1))["status"] == "Succeeded"
    fail_on_web_2 = 'if [ "$HOST_NAME" = web-2 ]; then echo "v2 is broken here" >&2; exit 1; fi\n'
    v2 = push(system, make_revision(tmp_path, "2", log, validate=fail_on_web_2))
    failed_id = deploy(system, v2)
    failed = wait(system, failed_id)
    assert failed["status"] == "Failed"
    assert failed["errorInformation"]["code"] == "HEALTH_CONSTRAINTS"
    rollback_id = failed["rollbackInfo"]["rollbackDeploymentId"]
    rollback = wait(system, rollback_id)
    assert rollback["status"] == "Succeeded"
    assert rollback["creator"] == "codeDeployRollback"
    assert rollback["rollbackInfo"]["rollbackTriggeringDeploymentId"] == failed_id
    for name in system.agents:
        current = system.last_successful(name, group_id)
        assert current is not None
        assert (current / "deployment-archive" / "app" / "VERSION").read_text() == "1\n", name
    target = system.client.get_deployment_target(deploymentId=failed_id, targetId="web-2")
    events = {
        e["lifecycleEventName"]: e
        for e in target["deploymentTarget"]["instanceTarget"]["lifecycleEvents"]
    }
    assert events["ValidateService"]["status"] == "Failed"
    assert events["ValidateService"]["diagnostics"]["errorCode"] == "ScriptFailed"
    assert "v2 is broken here" in events["ValidateService"]["diagnostics"]["logTail"]


def test_stop_mid_rollout_with_rollback(system: System, tmp_path: Path) -> None:
    """StopDeployment with autoRollbackEnabled stops the rollout and rolls every host back."""
    system.start_agents()
    group_id = setup_group(system)
    log = tmp_path / "events.log"
    v1 = push(system, make_revision(tmp_path, "1", log))
    assert wait(system, deploy(system, v1))["status"] == "Succeeded"
    slow = make_revision(tmp_path, "2", log, validate="sleep 3\n")
    deployment_id = deploy(system, push(system, slow))
    time.sleep(1.5)
    answer = system.client.stop_deployment(deploymentId=deployment_id, autoRollbackEnabled=True)
    assert answer["status"] in ("Pending", "Succeeded")
    stopped = wait(system, deployment_id)
    assert stopped["status"] == "Stopped"
    assert stopped["errorInformation"]["code"] == "MANUAL_STOP"
    rollback = wait(system, stopped["rollbackInfo"]["rollbackDeploymentId"])
    assert rollback["status"] == "Succeeded"
    for name in system.agents:
        current = system.last_successful(name, group_id)
        assert current is not None
        assert (current / "deployment-archive" / "app" / "VERSION").read_text() == "1\n"


def test_server_killed_and_restarted_mid_rollout(system: System, tmp_path: Path) -> None:
    """The server is SIGKILLed while hosts deploy; restarted, it finishes the deployment."""
    system.start_agents()
    setup_group(system)
    log = tmp_path / "events.log"
    location = push(system, make_revision(tmp_path, "1", log, validate="sleep 1\n"))
    deployment_id = deploy(system, location)
    time.sleep(1.0)
    system.server.kill()
    system.server.start()
    system.client = codedeploy_client(system.server.url)
    info = wait(system, deployment_id, timeout=120)
    assert info["status"] == "Succeeded", info
    assert len(host_lines(log, "ValidateService")) == 3


def test_offline_agent_fails_with_a_clear_message(system: System, tmp_path: Path) -> None:
    """An instance whose agent never runs fails after the pickup deadline, saying why."""
    system.start_agents("web-1", "web-2")
    setup_group(system, "CodeDeployDefault.AllAtOnce")
    log = tmp_path / "events.log"
    info = wait(system, deploy(system, push(system, make_revision(tmp_path, "1", log))), timeout=60)
    assert info["status"] == "Succeeded"  # AllAtOnce: one success is enough
    target = system.client.get_deployment_target(
        deploymentId=info["deploymentId"], targetId="web-3"
    )
    instance = target["deploymentTarget"]["instanceTarget"]
    assert instance["status"] == "Failed"
    messages = " ".join(
        e.get("diagnostics", {}).get("message", "") for e in instance["lifecycleEvents"]
    )
    assert "web-3" in messages
    assert "codedeploy-agent status" in messages


def test_unsigned_and_wrongly_signed_calls_are_refused(system: System) -> None:
    """A wrong secret, an unknown key and no credentials at all get AWS's error codes."""
    with pytest.raises(botocore.exceptions.ClientError) as wrong:
        codedeploy_client(system.server.url, secret="not-the-secret").list_applications()  # noqa: S106
    assert wrong.value.response["Error"]["Code"] == "InvalidSignatureException"
    with pytest.raises(botocore.exceptions.ClientError) as unknown:
        codedeploy_client(system.server.url, key="AKIAUNKNOWNKEY000001").list_applications()
    assert unknown.value.response["Error"]["Code"] == "UnrecognizedClientException"
    import urllib.error  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    request = urllib.request.Request(  # noqa: S310 - loopback
        system.server.url,
        data=b"{}",
        headers={
            "X-Amz-Target": "CodeDeploy_20141006.ListApplications",
            "Content-Type": "application/x-amz-json-1.1",
        },
    )
    with pytest.raises(urllib.error.HTTPError) as unsigned:
        urllib.request.urlopen(request, timeout=10)  # noqa: S310
    assert json.loads(unsigned.value.read())["__type"].endswith(
        "MissingAuthenticationTokenException"
    )


def test_codedeploy_cli_flow(system: System, tmp_path: Path) -> None:
    """push, deploy --wait, status, list and instances through the `codedeploy` CLI."""
    system.start_agents()
    setup_group(system)
    env = cli_env(system)
    log = tmp_path / "events.log"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "codedeploy_server.opcli.main", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=180,
            check=False,
        )

    pushed = run(
        "push", "--application-name", APP, "--source", str(make_revision(tmp_path, "1", log))
    )
    assert pushed.returncode == 0, pushed.stderr
    # The command `push` prints, as an operator copies it (the optional flags left out).
    location = re.search(r"--s3-location (\S+)", pushed.stdout)
    assert location, pushed.stdout
    args = ["--application-name", APP, "--deployment-group-name", GROUP]
    args += ["--s3-location", location.group(1)]
    deployed = run("deploy", *args, "--wait")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert "Succeeded" in deployed.stdout
    deployment_id = re.search(r"d-[A-Z0-9]{9}", deployed.stdout)
    assert deployment_id
    status = run("status", deployment_id.group(0))
    assert status.returncode == 0
    assert "Succeeded" in status.stdout
    listing = run("list", "--application-name", APP, "--deployment-group-name", GROUP)
    assert deployment_id.group(0) in listing.stdout
    instances = run("instances", "--tag", "role=web")
    assert all(name in instances.stdout for name in ("web-1", "web-2", "web-3"))


def test_aws_cli_drives_the_server(system: System, tmp_path: Path) -> None:
    """The AWS CLI itself (`aws deploy ... --endpoint-url`) creates and waits for a deployment."""
    system.start_agents()
    setup_group(system)
    location = push(system, make_revision(tmp_path, "1", tmp_path / "events.log"))
    env = cli_env(system)
    aws = [
        str(Path(sys.executable).with_name("aws")),
        "--endpoint-url",
        system.server.url,
        "--output",
        "json",
    ]

    def run(*args: str) -> Any:
        result = subprocess.run(
            [*aws, *args], capture_output=True, text=True, env=env, timeout=180, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return json.loads(result.stdout) if result.stdout.strip() else None

    assert APP in run("deploy", "list-applications")["applications"]
    s3 = ",".join(f"{k}={v}" for k, v in location.items())
    created = run(
        "deploy",
        "create-deployment",
        "--application-name",
        APP,
        "--deployment-group-name",
        GROUP,
        "--s3-location",
        s3,
    )
    run("deploy", "wait", "deployment-successful", "--deployment-id", created["deploymentId"])
    info = run("deploy", "get-deployment", "--deployment-id", created["deploymentId"])
    assert info["deploymentInfo"]["status"] == "Succeeded"

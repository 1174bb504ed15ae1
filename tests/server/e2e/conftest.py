"""The whole system on loopback: `codedeploy-server run` as a real process, a private Mosquitto,
three real `codedeploy-agent run` processes, and boto3 (or the AWS CLI, or `codedeploy`) as the
operator's client."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.config import Config

from codedeploy_agent.protocol.signing import generate_keypair
from tests.daemon.conftest import Agent
from tests.fakes.broker_fixtures import mosquitto_factory  # noqa: F401 - a fixture
from tests.fakes.brokers import MosquittoBroker, free_port

ACCESS_KEY = "AKIACODEDEPLOYTEST01"
SECRET_KEY = "c0d3d3pl0y-t3st-s3cr3t-k3y-0123456789abcd"  # noqa: S105 - a test credential
REGION = "us-east-1"
THINGS = ("web-1", "web-2", "web-3")


@dataclass
class Server:
    """`codedeploy-server run` in a subprocess."""

    base: Path
    broker: MosquittoBroker
    port: int = field(default_factory=free_port)
    pickup_deadline_seconds: float = 300.0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def public_key(self) -> Path:
        return self.base / "jobs.pub.pem"

    @property
    def output_file(self) -> Path:
        return self.base / "server-output.log"

    def write_config(self) -> Path:
        self.base.mkdir(parents=True, exist_ok=True)
        if not (self.base / "jobs.pem").exists():
            generate_keypair(self.base / "jobs.pem", self.public_key)
        (self.base / "secret").write_text(SECRET_KEY + "\n")
        config = {
            "listen": f"127.0.0.1:{self.port}",
            "database": str(self.base / "state.db"),
            "mqtt": {"endpoint": self.broker.endpoint},
            "credentials": [
                {"access_key_id": ACCESS_KEY, "secret_access_key_file": str(self.base / "secret")}
            ],
            "signing_key_file": str(self.base / "jobs.pem"),
            "signing_key_id": "control-plane-1",
            "bundle_store": {"path": str(self.base / "bundles")},
            "rollout": {"pickup_deadline_seconds": self.pickup_deadline_seconds},
        }
        path = self.base / "server.yml"
        path.write_text(yaml.safe_dump(config))
        return path

    def start(self) -> None:
        config = self.write_config()
        seen = len(self.output())
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "AWS_"))}
        with self.output_file.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "codedeploy_server", "run", "-c", str(config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if "listening on" in self.output()[seen:]:
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"the server did not start:\n{self.output()}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.kill()

    def output(self) -> str:
        return self.output_file.read_text(errors="replace") if self.output_file.exists() else ""


def codedeploy_client(url: str, *, key: str = ACCESS_KEY, secret: str = SECRET_KEY) -> Any:
    """boto3's CodeDeploy client against the server (no retries: errors show at once)."""
    return boto3.client(
        "codedeploy",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


@dataclass
class System:
    """The server, its broker and three agents named web-1, web-2, web-3."""

    server: Server
    agents: dict[str, Agent]
    client: Any

    def start_agents(self, *names: str) -> None:
        for name in names or tuple(self.agents):
            self.agents[name].start()

    def register_instances(self, *names: str, tags: dict[str, str] | None = None) -> None:
        for name in names or tuple(self.agents):
            self.client.register_on_premises_instance(
                instanceName=name, iamUserArn=f"arn:aws:iam::000000000000:user/{name}"
            )
        self.client.add_tags_to_on_premises_instances(
            tags=[{"Key": k, "Value": v} for k, v in (tags or {"role": "web"}).items()],
            instanceNames=list(names or self.agents),
        )

    def last_successful(self, name: str, group_id: str) -> Path | None:
        pointer = (
            self.agents[name].root_dir
            / "deployment-instructions"
            / f"{group_id}_last_successful_install"
        )
        return Path(pointer.read_text()) if pointer.exists() else None


@pytest.fixture
def system(
    tmp_path: Path,
    mosquitto_factory: Callable[..., MosquittoBroker],  # noqa: F811
) -> Iterator[System]:
    """A running server with three configured (not started) agents; everything stopped after."""
    broker = mosquitto_factory()
    server = Server(tmp_path / "server", broker, pickup_deadline_seconds=8.0)
    server.start()
    agents = {}
    for name in THINGS:
        agent = Agent(tmp_path / name, broker.endpoint, thing=name)
        agent.extra["security"] = {"trusted_keys": {"control-plane-1": str(server.public_key)}}
        agent.env = {"HOST_NAME": name}
        (agent.base / "keys").mkdir(parents=True)
        agents[name] = agent
    yield System(server, agents, codedeploy_client(server.url))
    for agent in agents.values():
        agent.stop()
    server.stop()
    print("---- server output ----\n" + server.output()[-20000:])
    for name, agent in agents.items():
        print(f"---- {name} output ----\n" + agent.output()[-5000:])

"""The real `codedeploy-agent run` process, a private Mosquitto, and the test-side Jobs service."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from tests.fakes.broker_fixtures import mosquitto_factory  # noqa: F401 - a fixture
from tests.fakes.brokers import MosquittoBroker
from tests.fakes.bundles import make_keys
from tests.fakes.jobs_service import FakeJobsService

THING = "host-1"
KEY_ID = "test-key"


@dataclass
class Agent:
    """One agent installation under `base`, run as a real process."""

    base: Path
    endpoint: str
    thing: str = THING
    protocol: str = "5"
    extra: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    runs: int = 0

    @property
    def config_file(self) -> Path:
        return self.base / "codedeployagent.yml"

    @property
    def root_dir(self) -> Path:
        return self.base / "deployment-root"

    @property
    def state_dir(self) -> Path:
        return self.base / "state"

    @property
    def log_file(self) -> Path:
        return self.base / "logs" / "codedeploy-agent.log"

    @property
    def output_file(self) -> Path:
        return self.base / "agent-output.log"

    def write_config(self) -> None:
        config: dict[str, Any] = {
            ":root_dir": str(self.root_dir),
            ":log_dir": str(self.base / "logs"),
            ":pid_dir": str(self.base / "pid"),
            "state_dir": str(self.state_dir),
            ":kill_agent_max_wait_time_seconds": 30,
            "heartbeat_seconds": 1,
            "hooks": {"kill_grace_seconds": 1},
            "mqtt": {
                "endpoint": self.endpoint,
                "thing_name": self.thing,
                "protocol": self.protocol,
                "keepalive_seconds": 5,
            },
            "clock": {"ntp_servers": []},
            "security": {"trusted_keys": {KEY_ID: str(self.base / "keys" / "signing.pub.pem")}},
        }
        for key, value in self.extra.items():
            if isinstance(value, dict) and isinstance(config.get(key), dict):
                config[key] = {**config[key], **value}
            else:
                config[key] = value
        self.config_file.write_text(yaml.safe_dump(config))

    def start(self) -> None:
        """Start `codedeploy-agent run` (output appended to agent-output.log)."""
        self.write_config()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
        env.update(self.env)
        self.runs += 1
        with self.output_file.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "codedeploy_agent", "run", "-c", str(self.config_file)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL the agent and reap it."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def wait(self, timeout: float = 30) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()

    def output(self) -> str:
        return self.output_file.read_text(errors="replace") if self.output_file.exists() else ""

    def status(self) -> dict[str, Any]:
        path = self.state_dir / "codedeploy-agent.status.json"
        try:
            result: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return result

    def wait_for_event(self, deployment_id: str, event: str, timeout: float = 30) -> None:
        """Poll the status file until the agent is in `event` of `deployment_id`.

        The deployment matters: the status file is written behind the job, so right after a
        job ends it may still name that job's last event (ValidateService of the one before).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status()
            if (
                status.get("current_deployment_id") == deployment_id
                and status.get("current_event") == event
            ):
                return
            time.sleep(0.01)
        raise AssertionError(
            f"the agent never reached {event} of {deployment_id}: {self.status()}\n{self.output()}"
        )


@pytest.fixture
def broker(mosquitto_factory: Callable[..., MosquittoBroker]) -> MosquittoBroker:  # noqa: F811
    """A private Mosquitto with persistence, for one test."""
    return mosquitto_factory()


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    """The control plane's signing key pair; the agent trusts the public half."""
    return make_keys(tmp_path / "agent" / "keys")


@pytest.fixture
def agent(tmp_path: Path, broker: MosquittoBroker, keys: tuple[Path, Path]) -> Iterator[Agent]:
    """An agent configured for the broker (not started); stopped and its output shown after."""
    del keys
    agent = Agent(tmp_path / "agent", broker.endpoint)
    yield agent
    agent.stop()
    print("---- agent output ----\n" + agent.output())


@pytest_asyncio.fixture
async def service(broker: MosquittoBroker) -> AsyncIterator[FakeJobsService]:
    """The test-side Jobs service on the same broker."""
    async with FakeJobsService("127.0.0.1", broker.port, things={THING}) as svc:
        yield svc

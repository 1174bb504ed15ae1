"""A host layout under tmp_path, its config file, fake NTP servers and real brokers for doctor."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from codedeploy_agent.config import AgentConfig, load_config
from codedeploy_agent.host.pidfile import PidFile
from codedeploy_agent.host.status import AgentState, AgentStatus, status_path, write_status
from tests.fakes.broker_fixtures import mosquitto_factory  # noqa: F401 - a fixture
from tests.fakes.bundles import make_keys
from tests.fakes.ntp import FakeNtpServer, NtpServerFactory

THING = "host-1"


@dataclass
class Host:
    """An agent installation under `base`: directories, a signing key and the config file."""

    base: Path
    mqtt: dict[str, Any] = field(default_factory=lambda: {"endpoint": "mqtt://127.0.0.1:1"})
    extra: dict[str, Any] = field(default_factory=dict)
    ntp_servers: list[str] = field(default_factory=list)

    @property
    def config_file(self) -> Path:
        return self.base / "codedeployagent.yml"

    @property
    def root_dir(self) -> Path:
        return self.base / "deployment-root"

    @property
    def log_dir(self) -> Path:
        return self.base / "log"

    @property
    def state_dir(self) -> Path:
        return self.base / "state"

    @property
    def pid_dir(self) -> Path:
        return self.base / "state" / ".pid"

    @property
    def public_key(self) -> Path:
        return self.base / "keys" / "signing.pub.pem"

    def write(self) -> Path:
        """Write the config file (thing name host-1, one trusted key) and return its path."""
        data: dict[str, Any] = {
            ":root_dir": str(self.root_dir),
            ":log_dir": str(self.log_dir),
            ":pid_dir": str(self.pid_dir),
            "state_dir": str(self.state_dir),
            "mqtt": {"thing_name": THING, **self.mqtt},
            "clock": {"ntp_servers": self.ntp_servers, "timeout_seconds": 1},
            "security": {"trusted_keys": {"test-key": str(self.public_key)}},
            **self.extra,
        }
        self.config_file.write_text(yaml.safe_dump(data))
        return self.config_file

    def config(self) -> AgentConfig:
        """Write the file and load it as the agent would."""
        config, _warnings = load_config(self.write())
        return config


@pytest.fixture
def host(tmp_path: Path) -> Host:
    """Directories (0755) and a key pair for an agent under tmp_path/host."""
    base = tmp_path / "host"
    host = Host(base)
    for directory in (host.root_dir, host.log_dir, host.state_dir, host.pid_dir):
        directory.mkdir(parents=True)
        directory.chmod(0o755)
    make_keys(base / "keys")
    return host


@dataclass
class RunningAgent:
    """Stands in for a running agent: holds its pid lock and writes its status snapshot."""

    host: Host
    pid_file: PidFile | None = None

    def start(self, **status: Any) -> AgentStatus:
        """Take the lock (our pid) and write a snapshot (idle, connected as host-1 by default)."""
        self.pid_file = PidFile(self.host.pid_dir, "codedeploy-agent")
        self.pid_file.acquire()
        now = datetime.now(UTC)
        fields: dict[str, Any] = {
            "pid": os.getpid(),
            "started_at": now,
            "state": AgentState.IDLE,
            "broker_connected": True,
            "broker_endpoint": "mqtt://127.0.0.1:1883",
            "thing_name": THING,
            "agent_version": "0.1.0",
            "updated_at": now,
            **status,
        }
        snapshot = AgentStatus(**fields)
        write_status(status_path(self.host.state_dir, "codedeploy-agent"), snapshot)
        return snapshot

    def stop(self) -> None:
        if self.pid_file is not None:
            self.pid_file.release()


@pytest.fixture
def running_agent(host: Host) -> Iterator[RunningAgent]:
    """A stand-in agent for `host`, released when the test ends."""
    agent = RunningAgent(host)
    yield agent
    agent.stop()


@pytest.fixture
def ntp_server() -> Iterator[NtpServerFactory]:
    """Start `FakeNtpServer(offset_seconds, ...)` servers on 127.0.0.1; stopped when the test ends."""
    started: list[FakeNtpServer] = []

    def start(
        offset_seconds: float = 0.0, *, stratum: int = 2, leap: int = 0, answer: bool = True
    ) -> FakeNtpServer:
        server = FakeNtpServer(offset_seconds, stratum=stratum, leap=leap, answer=answer)
        server.__enter__()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.__exit__(None, None, None)

"""doctor's running-agent check and the whole report (`run_doctor`): lines, order, exit status."""

from __future__ import annotations

import io
import os
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from codedeploy_agent import doctor
from codedeploy_agent.doctor import Finding, Status, check_agent, run_doctor, summary
from codedeploy_agent.host.status import AgentState, LastResult, ResultStatus
from tests.doctor.conftest import Host, RunningAgent
from tests.fakes.broker_fixtures import MosquittoFactory
from tests.fakes.ntp import NtpServerFactory

SYSTEMD = Path("/run/systemd/system").is_dir()


def test_agent_not_running_fails(host: Host) -> None:
    """Nobody holds the pid lock: FAIL, with how to start the service and where to look."""
    config = host.config()
    assert doctor.running_agent(config) == (None, None)
    findings = check_agent(config, None, None)
    assert findings[0] == Finding(
        "agent",
        Status.FAIL,
        f"not running (nobody holds {host.pid_dir}/codedeploy-agent.pid.lock): no deployment can "
        "reach this host",
        "systemctl enable --now codedeploy-agent.service; if it does not stay up: journalctl -u "
        "codedeploy-agent.service -n 50",
    )
    assert len(findings) == (2 if SYSTEMD else 1)  # the unit's own line only under systemd


def test_running_agent_and_its_last_failure(host: Host, running_agent: RunningAgent) -> None:
    """A running agent passes with what it does; a failed last deployment is shown as information."""
    running_agent.start(
        state=AgentState.DEPLOYING,
        current_deployment_id="d-AAAAAAAA2",
        current_event="AfterInstall",
        last_result=LastResult(
            deployment_id="d-AAAAAAAA1",
            job_id="job-1",
            status=ResultStatus.FAILED,
            finished_at=datetime(2026, 2, 19, 15, 12, 11, tzinfo=UTC),
            message="Script at specified location: scripts/a.sh failed with exit code 7",
        ),
    )
    config = host.config()
    pid, snapshot = doctor.running_agent(config)
    assert pid == os.getpid()
    findings = check_agent(config, pid, snapshot)
    assert findings[:2] == [
        Finding(
            "agent",
            Status.OK,
            f"running as PID {os.getpid()}, version 0.1.0: deploying d-AAAAAAAA2 (AfterInstall), "
            "connected to mqtt://127.0.0.1:1883",
        ),
        Finding(
            "agent",
            Status.INFO,
            "last deployment d-AAAAAAAA1 (job job-1) ended FAILED at 2026-02-19 15:12:11Z: Script "
            "at specified location: scripts/a.sh failed with exit code 7",
        ),
    ]


def test_snapshot_of_another_process_is_not_trusted(
    host: Host, running_agent: RunningAgent
) -> None:
    """A snapshot written by an earlier agent (another pid) is not the running agent's."""
    running_agent.start(pid=1)
    pid, snapshot = doctor.running_agent(host.config())
    assert (pid, snapshot) == (os.getpid(), None)
    assert check_agent(host.config(), pid, snapshot)[0] == Finding(
        "agent",
        Status.WARN,
        f"running as PID {os.getpid()}, but its status snapshot is missing",
        "restart it",
    )


def test_summary_line() -> None:
    """The closing line counts failures, warnings and passes."""
    findings = [
        Finding("a", Status.OK, "x"),
        Finding("b", Status.WARN, "y"),
        Finding("c", Status.FAIL, "z", "fix it"),
        Finding("d", Status.INFO, "w"),
    ]
    assert summary(findings) == "problems found: 1 failed, 1 warning, 1 ok"
    assert summary(findings[:1]) == "no problems found: 0 failed, 0 warnings, 1 ok"
    assert findings[2].format() == "[FAIL] c: z\n       fix: fix it"


@pytest.mark.broker
def test_healthy_host_passes(
    host: Host,
    running_agent: RunningAgent,
    mosquitto_factory: MosquittoFactory,
    ntp_server: NtpServerFactory,
) -> None:
    """Everything right: exit status 0, every check in its order, no FAIL and no WARN."""
    broker = mosquitto_factory()
    host.mqtt = {"endpoint": broker.endpoint}
    host.ntp_servers = [ntp_server(0.0).address]
    running_agent.start(broker_endpoint=broker.endpoint)
    out = io.StringIO()
    assert run_doctor(host.write(), out) == 0, out.getvalue()
    lines = out.getvalue().splitlines()
    assert lines[0] == "codedeploy-agent doctor 0.1.0"
    checks = [m.group(2) for m in map(re.compile(r"\[(.{4})\] (\w+):").match, lines) if m]
    assert checks == [
        "config",
        "directories", "directories", "directories", "directories",
        "disk", "signing", "broker", "tls", "login", "thing", "clock",
        "tools", "tools", "tools", "tools",
        "agent", *(["agent"] if SYSTEMD else []), "logs",
    ]  # fmt: skip
    assert not [line for line in lines if line.startswith(("[FAIL]", "[WARN]"))]
    assert lines[-1].startswith("no problems found: 0 failed, 0 warnings, ")


@pytest.mark.broker
def test_unreachable_broker_fails_and_skips_the_login(
    host: Host, running_agent: RunningAgent
) -> None:
    """A broker that cannot be reached: FAIL, the login is skipped, exit status 1."""
    running_agent.start()
    out = io.StringIO()
    assert run_doctor(host.write(), out) == 1
    text = out.getvalue()
    assert "[FAIL] broker: cannot connect to 127.0.0.1:1: Connection refused\n" in text
    assert "[SKIP] login: not tried: the broker cannot be reached\n" in text
    assert "[ OK ] agent: running as PID" in text
    assert text.splitlines()[-1].startswith("problems found: 1 failed, 0 warnings, ")

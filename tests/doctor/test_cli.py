"""`codedeploy-agent doctor` as an operator runs it: a real subprocess, its output and exit status."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.doctor.conftest import Host, RunningAgent
from tests.fakes.broker_fixtures import MosquittoFactory
from tests.fakes.ntp import NtpServerFactory


def run_doctor_command(config: Path) -> subprocess.CompletedProcess[str]:
    """`python -m codedeploy_agent doctor -c CONFIG`, as the console script runs it."""
    return subprocess.run(
        [sys.executable, "-m", "codedeploy_agent", "doctor", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_missing_config_fails_with_the_fix(tmp_path: Path) -> None:
    """No config file at the -c path: exit 1, a FAIL line naming the file and a fix line."""
    missing = tmp_path / "conf" / "codedeployagent.yml"
    result = run_doctor_command(missing)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("codedeploy-agent doctor ")
    assert lines[1] == (
        f"[FAIL] config: The config file {missing} does not exist or is not readable (No such "
        "file or directory). Create it or pass an existing file with -c."
    )
    assert lines[2] == "       fix: correct the file, then run doctor again"
    assert lines[-1] == "problems found: 1 failed, 0 warnings, 0 ok"
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("mqtt: [1\n", r"Error message: while parsing a flow sequence at line 1, column 7"),
        (":max_revisions: 0\n", r":max_revisions: must be an integer >= 1"),
        ("mqtt:\n  endpoint: http://broker:1883\n", r"mqtt\.endpoint: .*must be a URL"),
    ],
    ids=["invalid-yaml", "invalid-value", "wrong-scheme"],
)
def test_broken_config_fails_with_the_fix(tmp_path: Path, text: str, problem: str) -> None:
    """A config that does not load: exit 1, the loader's message and the fix, nothing else tried."""
    config = tmp_path / "codedeployagent.yml"
    config.write_text(text)
    result = run_doctor_command(config)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].startswith("[FAIL] config: "), result.stdout
    assert str(config) in lines[1]
    assert re.search(problem, lines[1]), lines[1]
    assert lines[2] == "       fix: correct the file, then run doctor again"
    assert lines[-1] == "problems found: 1 failed, 0 warnings, 0 ok"


@pytest.mark.broker
def test_healthy_host_exits_0(
    host: Host,
    running_agent: RunningAgent,
    mosquitto_factory: MosquittoFactory,
    ntp_server: NtpServerFactory,
) -> None:
    """Directories, key, a real broker on loopback, NTP and a running agent: exit 0, no FAIL."""
    broker = mosquitto_factory()
    host.mqtt = {"endpoint": broker.endpoint}
    host.ntp_servers = [ntp_server(0.0).address]
    # This process holds the pid lock and writes the snapshot; the subprocess sees a running agent.
    running_agent.start(broker_endpoint=broker.endpoint)
    result = run_doctor_command(host.write())
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert not [line for line in lines if line.startswith(("[FAIL]", "[WARN]"))], result.stdout
    assert f"[ OK ] config: {host.config_file}" in result.stdout
    assert "[ OK ] thing: host-1 (from mqtt.thing_name)" in result.stdout
    assert re.search(r"^\[ OK \] agent: running as PID \d+", result.stdout, re.MULTILINE)
    assert lines[-1].startswith("no problems found: 0 failed, 0 warnings, ")


@pytest.mark.broker
def test_stopped_agent_exits_1(
    host: Host, mosquitto_factory: MosquittoFactory, ntp_server: NtpServerFactory
) -> None:
    """The same healthy host with no agent holding the pid lock: exit 1 and how to start it."""
    broker = mosquitto_factory()
    host.mqtt = {"endpoint": broker.endpoint}
    host.ntp_servers = [ntp_server(0.0).address]
    result = run_doctor_command(host.write())
    assert result.returncode == 1, result.stdout + result.stderr
    assert "[FAIL] agent: not running (nobody holds " in result.stdout
    assert "       fix: systemctl enable --now codedeploy-agent.service" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("problems found: ")

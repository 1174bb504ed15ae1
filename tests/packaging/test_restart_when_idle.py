"""packaging/libexec/restart-when-idle, run directly: an upgrade restarts the agent only when it
is known to be idle; a status that cannot be read counts as "deploying" while the agent runs.

The script runs under /bin/sh with a PATH of fakes for `systemctl`, `systemd-run` and `sleep`
(they record their calls) and either the real `codedeploy-agent status` (this checkout's CLI
against a host layout under tmp_path, with this process holding the agent's pid lock) or a
scripted `codedeploy-agent` for sequences of answers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from codedeploy_agent.host.pidfile import PidFile
from codedeploy_agent.host.status import AgentState, AgentStatus, status_path, write_status

SCRIPT = Path(__file__).resolve().parents[2] / "packaging" / "libexec" / "restart-when-idle"
UNIT = "codedeploy-agent.service"
WAITER = "codedeploy-agent-restart-when-idle.service"
#: What the scripts and the fakes need from the system; nothing else is on their PATH.
TOOLS = ("cat", "grep", "head", "tail", "rm")

SYSTEMCTL = """#!/bin/sh
echo "systemctl $*" >> "$FAKE_LOG"
case "$1" in
    is-active) grep -qx "$3" "$FAKE_STATE/active" ;;
    *) exit 0 ;;
esac
"""
SYSTEMD_RUN = """#!/bin/sh
echo "systemd-run $*" >> "$FAKE_LOG"
"""
SLEEP = """#!/bin/sh
echo "sleep $*" >> "$FAKE_LOG"
if [ -e "$FAKE_STATE/sleep-hook" ]; then . "$FAKE_STATE/sleep-hook"; fi
"""
#: Answers `status` with the next of status.1, status.2, ... (status.last once they run out).
SCRIPTED_AGENT = """#!/bin/sh
echo "codedeploy-agent $*" >> "$FAKE_LOG"
n=$(cat "$FAKE_STATE/calls" 2>/dev/null || echo 0)
n=$((n + 1))
echo "$n" > "$FAKE_STATE/calls"
answer="$FAKE_STATE/status.$n"
[ -e "$answer" ] || answer="$FAKE_STATE/status.last"
. "$answer"
"""

RUNNING = "The AWS CodeDeploy agent is running as PID 4242"
TRACEBACK = """Traceback (most recent call last):
  File "/opt/codedeploy-agent/venv/bin/codedeploy-agent", line 5, in <module>
ModuleNotFoundError: No module named 'msgspec'"""


@dataclass
class Harness:
    """A PATH of fakes and a host layout for the real `codedeploy-agent status`."""

    base: Path

    @property
    def bin(self) -> Path:
        return self.base / "bin"

    @property
    def state(self) -> Path:
        return self.base / "fake-state"

    @property
    def host(self) -> Path:
        return self.base / "host"

    @property
    def config(self) -> Path:
        return self.host / "codedeployagent.yml"

    def tool(self, name: str, text: str) -> None:
        path = self.bin / name
        path.write_text(text)
        path.chmod(0o755)

    def active(self, *units: str) -> None:
        """The units the fake `systemctl is-active` reports active."""
        (self.state / "active").write_text("".join(f"{unit}\n" for unit in units))

    def real_agent(self) -> None:
        """`codedeploy-agent` is this checkout's CLI with the host's config."""
        self.tool(
            "codedeploy-agent",
            f'#!/bin/sh\nexec "{sys.executable}" -m codedeploy_agent "$@" -c "{self.config}"\n',
        )

    def scripted_agent(self, *answers: tuple[str, int]) -> None:
        """`codedeploy-agent status` prints these (stdout, exit status) pairs, one per call."""
        self.tool("codedeploy-agent", SCRIPTED_AGENT)
        for index, (text, code) in enumerate(answers, start=1):
            body = f"cat <<'ANSWER'\n{text}\nANSWER\nexit {code}\n"
            (self.state / f"status.{index}").write_text(body)
            (self.state / "status.last").write_text(body)

    def on_sleep(self, shell: str) -> None:
        """Shell code every fake `sleep` runs (to change the world between two polls)."""
        (self.state / "sleep-hook").write_text(shell)

    def run(self, mode: str) -> subprocess.CompletedProcess[str]:
        (self.base / "calls.log").write_text("")
        env = {
            "PATH": str(self.bin),
            "FAKE_LOG": str(self.base / "calls.log"),
            "FAKE_STATE": str(self.state),
            "LANG": "C.UTF-8",
        }
        return subprocess.run(
            ["/bin/sh", str(SCRIPT), mode],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def calls(self) -> list[str]:
        """Every call the fakes saw, `systemctl is-active` included, in order."""
        return (self.base / "calls.log").read_text().splitlines()

    def actions(self) -> list[str]:
        """The calls that change something: restarts and the waiter unit."""
        return [
            call
            for call in self.calls()
            if call.startswith(("systemctl try-restart", "systemctl restart", "systemd-run"))
        ]


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    harness = Harness(tmp_path)
    harness.bin.mkdir()
    harness.state.mkdir()
    for name in TOOLS:
        found = shutil.which(name)
        assert found is not None, f"{name} is needed by the maintainer scripts"
        (harness.bin / name).symlink_to(found)
    harness.tool("systemctl", SYSTEMCTL)
    harness.tool("systemd-run", SYSTEMD_RUN)
    harness.tool("sleep", SLEEP)
    harness.host.mkdir()
    harness.config.write_text(
        yaml.safe_dump(
            {
                ":root_dir": str(harness.host / "deployment-root"),
                ":log_dir": str(harness.host / "log"),
                ":pid_dir": str(harness.host / "state" / ".pid"),
                "state_dir": str(harness.host / "state"),
                "mqtt": {"thing_name": "host-1"},
            }
        )
    )
    harness.active(UNIT)
    return harness


@pytest.fixture
def agent_lock(harness: Harness) -> Iterator[PidFile]:
    """This process holds the agent's pid lock, as the running agent does."""
    lock = PidFile(harness.host / "state" / ".pid", "codedeploy-agent")
    lock.acquire()
    yield lock
    lock.release()


def write_snapshot(harness: Harness, state: AgentState, **fields: Any) -> None:
    """The agent's status snapshot (written by this process, the lock holder, by default)."""
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "pid": os.getpid(),
        "started_at": now,
        "state": state,
        "agent_version": "0.1.0",
        "updated_at": now,
        **fields,
    }
    snapshot = AgentStatus(**values)
    write_status(status_path(harness.host / "state", "codedeploy-agent"), snapshot)


SCHEDULED_WAITER = (
    f"systemd-run --unit={WAITER.removesuffix('.service')} --collect --quiet "
    "--description=Restart codedeploy-agent once the running deployment has ended "
    "/opt/codedeploy-agent/libexec/restart-when-idle --wait"
)


def test_idle_agent_restarts_at_once(harness: Harness, agent_lock: PidFile) -> None:
    """The real status says idle: try-restart now, no waiter."""
    harness.real_agent()
    write_snapshot(harness, AgentState.IDLE)
    result = harness.run("--schedule")
    assert result.returncode == 0, result.stderr
    assert harness.actions() == [f"systemctl try-restart {UNIT}"]


def test_deploying_agent_gets_a_waiter(harness: Harness, agent_lock: PidFile) -> None:
    """The real status says deploying: no restart, the waiter unit is started."""
    harness.real_agent()
    write_snapshot(
        harness, AgentState.DEPLOYING, current_deployment_id="d-AAAAAAAA1", current_event="Install"
    )
    result = harness.run("--schedule")
    assert result.returncode == 0, result.stderr
    assert harness.actions() == [SCHEDULED_WAITER]
    assert result.stdout == (
        "codedeploy-agent: a deployment is running; the agent restarts when it has ended\n"
    )


def test_unreadable_snapshot_while_the_lock_is_held_counts_as_deploying(
    harness: Harness, agent_lock: PidFile
) -> None:
    """The agent holds its lock but its snapshot is corrupt: its state is unknown, so wait."""
    harness.real_agent()
    (harness.host / "state" / "codedeploy-agent.status.json").write_text("{not json")
    result = harness.run("--schedule")
    assert result.returncode == 0, result.stderr
    assert harness.actions() == [SCHEDULED_WAITER]
    assert result.stdout.startswith(
        "codedeploy-agent: cannot tell whether a deployment is running (snapshot: unavailable ("
    )
    assert "is not valid JSON" in result.stdout
    assert result.stdout.endswith("the agent restarts once its status says idle\n")


def test_stale_snapshot_counts_as_deploying(harness: Harness, agent_lock: PidFile) -> None:
    """An idle snapshot written by an earlier agent (another pid) says nothing about this one."""
    harness.real_agent()
    write_snapshot(harness, AgentState.IDLE, pid=1)
    result = harness.run("--schedule")
    assert harness.actions() == [SCHEDULED_WAITER], result.stdout + result.stderr
    assert "(snapshot: stale (written by PID 1, not the running agent))" in result.stdout


def test_no_agent_holding_the_lock_restarts(harness: Harness) -> None:
    """The unit is active but no agent holds the lock yet (starting): nothing to interrupt."""
    harness.real_agent()
    write_snapshot(harness, AgentState.DEPLOYING)  # left by an agent that died mid-deployment
    result = harness.run("--schedule")
    assert result.returncode == 0, result.stderr
    assert harness.actions() == [f"systemctl try-restart {UNIT}"]


def test_config_the_new_code_refuses_counts_as_deploying(
    harness: Harness, agent_lock: PidFile
) -> None:
    """`status` fails (the new version cannot load the config): the running agent is not
    restarted, neither into a deployment nor into a config it would refuse."""
    harness.real_agent()
    write_snapshot(harness, AgentState.IDLE)
    harness.config.write_text(":max_revisions: 0\n")
    result = harness.run("--schedule")
    assert result.returncode == 0, result.stderr
    assert harness.actions() == [SCHEDULED_WAITER]
    assert result.stdout.startswith(
        "codedeploy-agent: cannot tell whether a deployment is running (`codedeploy-agent "
        "status` failed (exit status 1): ERROR: Invalid configuration :max_revision=0 in "
    )


@pytest.mark.parametrize(
    "agent",
    [
        pytest.param(None, id="command-missing"),
        pytest.param((TRACEBACK, 1), id="traceback"),
        pytest.param(("", 0), id="empty-output"),
        pytest.param((f"{RUNNING}\nsomething else", 0), id="no-state-line"),
    ],
)
def test_status_that_cannot_be_read_never_restarts(
    harness: Harness, agent: tuple[str, int] | None
) -> None:
    """The old script restarted in all these cases (its grep failed, so "not deploying")."""
    if agent is not None:
        harness.scripted_agent(agent)
    result = harness.run("--schedule")
    assert result.returncode == 0, result.stderr
    assert harness.actions() == [SCHEDULED_WAITER], result.stdout + result.stderr
    assert result.stdout.startswith("codedeploy-agent: cannot tell whether a deployment is running")


def test_stopped_agent_stays_stopped(harness: Harness) -> None:
    """An inactive unit: no status query, no restart, no waiter."""
    harness.active()
    harness.scripted_agent((TRACEBACK, 1))
    result = harness.run("--schedule")
    assert result.returncode == 0, result.stderr
    assert harness.calls() == [f"systemctl is-active --quiet {UNIT}"]


def test_existing_waiter_is_not_doubled(harness: Harness) -> None:
    """A second upgrade during the same deployment leaves the first waiter alone."""
    harness.active(UNIT, WAITER)
    harness.scripted_agent((f"{RUNNING}\nstate: deploying", 0))
    result = harness.run("--schedule")
    assert result.returncode == 0, result.stderr
    assert harness.actions() == []
    assert result.stdout == ""


def test_waiter_polls_until_idle(harness: Harness) -> None:
    """--wait: unreadable twice (said once), deploying, then idle: three polls apart, a restart."""
    harness.scripted_agent(
        (TRACEBACK, 1),
        (TRACEBACK, 1),
        (f"{RUNNING}\nstate: deploying", 0),
        (f"{RUNNING}\nstate: idle", 0),
    )
    result = harness.run("--wait")
    assert result.returncode == 0, result.stderr
    steps = [call for call in harness.calls() if not call.startswith("systemctl is-active")]
    assert steps == [
        "codedeploy-agent status",
        "sleep 5",
        "codedeploy-agent status",
        "sleep 5",
        "codedeploy-agent status",
        "sleep 5",
        "codedeploy-agent status",
        f"systemctl try-restart {UNIT}",
    ]
    said = result.stderr.splitlines()
    assert len(said) == 1, result.stderr
    assert said[0].startswith(
        "cannot tell whether a deployment is running (`codedeploy-agent status` failed (exit "
        "status 1): ModuleNotFoundError: No module named 'msgspec'); waiting."
    )
    assert said[0].endswith(f"systemctl stop {WAITER} && systemctl restart {UNIT}")


def test_waiter_ends_when_the_agent_stops(harness: Harness) -> None:
    """--wait with a status that never reads: it waits while the unit is active, then ends."""
    harness.scripted_agent((TRACEBACK, 1))
    harness.on_sleep('rm "$FAKE_STATE/active"; : > "$FAKE_STATE/active"\n')
    result = harness.run("--wait")
    assert result.returncode == 0, result.stderr
    assert harness.actions() == [f"systemctl try-restart {UNIT}"]  # a no-op for a stopped unit
    assert [call for call in harness.calls() if call.startswith("sleep")] == ["sleep 5"]


def test_usage(harness: Harness) -> None:
    """Anything else: the usage line and exit status 2."""
    for argv in (["--now"], []):
        result = subprocess.run(
            ["/bin/sh", str(SCRIPT), *argv], capture_output=True, text=True, check=False
        )
        assert result.returncode == 2
        assert result.stderr.endswith("--schedule | --wait\n")

"""The `codedeploy` CLI against real agents: `deploy --wait` through a failure and its automatic
rollback, `stop` of a running hook, and `logs` (tails and `--follow`) of the scripts' real output.

Everything on loopback: `codedeploy-server run`, a private Mosquitto and three `codedeploy-agent
run` processes (conftest.py); the CLI runs as a subprocess, as an operator runs it. The same
commands against a scripted engine are in tests/server/opcli.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pytest

from tests.fakes.bundles import write_bundle
from tests.server.e2e.conftest import System
from tests.server.e2e.test_e2e import APP, GROUP, cli_env, deploy, push, setup_group, wait

pytestmark = [pytest.mark.broker, pytest.mark.slow]

CLI = (sys.executable, "-m", "codedeploy_server.opcli.main")
#: How long a background `codedeploy` may take to show a line or end (a loaded CI machine).
DEADLINE = 60.0
#: How often `deploy --wait` and `logs --follow` poll here (their defaults: 1 s and 2 s).
POLL = ("--poll-interval", "0.2")
STOP_MESSAGE = "No more commands will be scheduled for execution in the deployment instances"


def codedeploy(system: System, *args: str) -> subprocess.CompletedProcess[str]:
    """`codedeploy ARGS...` run to its end, with the operator's environment."""
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        env=cli_env(system),
        timeout=120,
        check=False,
    )


def s3_location(location: dict[str, str]) -> str:
    """The `--s3-location` argument for a location `push` registered."""
    return ",".join(f"{key}={value}" for key, value in location.items())


def deploy_args(location: dict[str, str]) -> list[str]:
    """`deploy` of `location` to the test's application and group."""
    return [
        "deploy",
        "--application-name",
        APP,
        "--deployment-group-name",
        GROUP,
        "--s3-location",
        s3_location(location),
    ]


class Background:
    """A `codedeploy` command running in the background, its stdout read line by line."""

    def __init__(self, system: System, *args: str) -> None:
        self.args = args
        self.process = subprocess.Popen(
            [*CLI, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=cli_env(system),
        )
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self.out: list[str] = []
        self._fresh: queue.Queue[str | None] = queue.Queue()
        self._err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read_out, args=(self.process.stdout,), daemon=True),
            threading.Thread(target=self._read_err, args=(self.process.stderr,), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_out(self, stream: IO[str]) -> None:
        for line in stream:
            self.out.append(line.rstrip("\n"))
            self._fresh.put(line.rstrip("\n"))
        self._fresh.put(None)

    def _read_err(self, stream: IO[str]) -> None:
        self._err.extend(line.rstrip("\n") for line in stream)

    def wait_for_line(self, pattern: str, timeout: float = DEADLINE) -> re.Match[str]:
        """The first new stdout line that `pattern` matches (fails when none came in time)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._fresh.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            if match := re.search(pattern, line):
                return match
        raise AssertionError(
            f"`codedeploy {' '.join(self.args)}` printed no line matching {pattern!r} within "
            f"{timeout:g} s; stdout:\n" + "\n".join(self.out) + "\nstderr:\n" + self.err
        )

    def finish(self, timeout: float = DEADLINE) -> int:
        """The exit status, once the command ended by itself and its output was read."""
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"`codedeploy {' '.join(self.args)}` still runs after {timeout:g} s; stdout:\n"
                + "\n".join(self.out)
                + "\nstderr:\n"
                + self.err
            ) from None
        for reader in self._readers:
            reader.join(10)
        return status

    @property
    def err(self) -> str:
        return "\n".join(self._err)

    def close(self) -> None:
        """Kill the command if it still runs; reap it and close its pipes."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        for reader in self._readers:
            reader.join(10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@contextmanager
def background(system: System, *args: str) -> Iterator[Background]:
    """Run `codedeploy ARGS...` in the background; killed and reaped on the way out."""
    command = Background(system, *args)
    try:
        yield command
    finally:
        command.close()


def wait_until_gone(pid: int, timeout: float = 30.0) -> None:
    """Return once process `pid` no longer exists; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError(f"the hook (pid {pid}) still runs {timeout:g} s after the stop")


def wait_for_file(path: Path, timeout: float = DEADLINE) -> str:
    """The content of `path` once a hook wrote it (a line ending in a newline)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and (text := path.read_text()).endswith("\n"):
            return text
        time.sleep(0.05)
    raise AssertionError(f"no hook wrote {path} within {timeout:g} s")


def test_deploy_wait_shows_the_failure_and_follows_the_rollback(
    system: System, tmp_path: Path
) -> None:
    """v2 fails ValidateService on web-2: `deploy --wait` prints the failure with its script,
    message and log tail, follows the automatic rollback to Succeeded, and exits 1."""
    system.start_agents()
    group_id = setup_group(
        system, autoRollbackConfiguration={"enabled": True, "events": ["DEPLOYMENT_FAILURE"]}
    )
    v1 = write_bundle(
        tmp_path / "v1",
        {"ValidateService": 'echo "v1 answers on $HOST_NAME"'},
        files={"VERSION": "1\n"},
    )
    v1_id = deploy(system, push(system, v1))
    assert wait(system, v1_id)["status"] == "Succeeded"
    # Only stderr on the failing host: the tail's order between two pipes is not fixed.
    validate = (
        'if [ "$HOST_NAME" = web-2 ]; then echo "v2 cannot answer on $HOST_NAME" >&2; exit 1; fi\n'
        'echo "v2 answers on $HOST_NAME"'
    )
    v2 = write_bundle(tmp_path / "v2", {"ValidateService": validate}, files={"VERSION": "2\n"})
    result = codedeploy(system, *deploy_args(push(system, v2)), "--wait", *POLL)

    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    created = re.fullmatch(r"Created deployment (d-[A-Z0-9]{9})", lines[0])
    assert created, output
    d = created.group(1)
    script = "scripts/ValidateService.sh"
    message = f"Script at specified location: {script} failed with exit code 1"
    # OneAtATime, hosts on the same revision in name order: web-1 succeeded, web-2 failed, so
    # web-3 was never reached.
    progress = [
        f"{d} web-1 Succeeded",
        f"{d} web-2 ValidateService Failed (ScriptFailed: {message})",
        f"{d} web-2 Failed",
        f"{d} web-3 Skipped",
        f"{d} Failed",
    ]
    assert [line for line in lines if line in progress] == progress, output
    summary_at = lines.index(f"Deployment {d} Failed")
    error, counts, *failure, rolled_back_line = lines[summary_at + 1 : summary_at + 11]
    assert error.startswith("  Error: HEALTH_CONSTRAINTS: "), output
    assert "Failed instances: web-2." in error
    assert counts == "  Instances: 1 Succeeded, 1 Failed, 1 Skipped, 0 InProgress, 0 Pending"
    assert failure == [
        "  web-2 ValidateService Failed (ScriptFailed)",
        f"    Script: {script}",
        f"    Message: {message}",
        "    Log tail:",
        "      LifecycleEvent - ValidateService",
        f"      Script - {script}",
        "      [stderr]v2 cannot answer on web-2",
    ], output
    rolled_back = re.fullmatch(
        rf"  Rolled back by: (d-[A-Z0-9]{{9}}) \(Automatic rollback deployment \1 .*"
        rf"\(from deployment {v1_id}\)\.\)",
        rolled_back_line,
    )
    assert rolled_back, output
    rollback = rolled_back.group(1)
    follow_at = lines.index(f"Following rollback deployment {rollback}")
    assert follow_at == summary_at + 11, output
    after = lines[follow_at + 1 :]
    # Every host back on v1: the failed one, the one that had v2, the one never reached.
    for host in ("web-1", "web-2", "web-3"):
        assert f"{rollback} {host} Succeeded" in after, output
    assert after[-4:] == [
        f"{rollback} Succeeded",
        f"Deployment {rollback} Succeeded",
        "  Instances: 3 Succeeded, 0 Failed, 0 Skipped, 0 InProgress, 0 Pending",
        f"  Rollback of: {d}",
    ], output

    # What the CLI printed is what the API and the hosts say.
    info = system.client.get_deployment(deploymentId=rollback)["deploymentInfo"]
    assert (info["status"], info["creator"]) == ("Succeeded", "codeDeployRollback")
    assert info["rollbackInfo"]["rollbackTriggeringDeploymentId"] == d
    for name in system.agents:
        current = system.last_successful(name, group_id)
        assert current is not None, name
        assert (current / "deployment-archive" / "VERSION").read_text() == "1\n", name


def test_stop_ends_the_running_hook_and_status_shows_stopped(
    system: System, tmp_path: Path
) -> None:
    """`stop` while a host runs a slow ApplicationStart: the hook is ended on the host, the
    operator's `deploy --wait` ends Stopped (exit 1), and `status` shows why, host by host."""
    system.start_agents()
    setup_group(system)  # no automatic rollback: the stop leaves the hosts as they are
    pid_file = tmp_path / "slow-hook.pid"
    slow = f'echo "starting on $HOST_NAME"\necho $$ > {pid_file}\nexec sleep 120'
    bundle = write_bundle(
        tmp_path / "slow", {"ApplicationStart": slow}, timeouts={"ApplicationStart": 300}
    )
    location = push(system, bundle)

    with background(system, *deploy_args(location), "--wait", *POLL) as waiter:
        d = waiter.wait_for_line(r"^Created deployment (d-[A-Z0-9]{9})$").group(1)
        hook_pid = int(wait_for_file(pid_file))
        stopped = codedeploy(system, "stop", d)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        # Succeeded: the cancellation went out at once; Pending: it goes out on the next tick.
        assert re.fullmatch(rf"(Succeeded|Pending): {STOP_MESSAGE}\n", stopped.stdout), (
            stopped.stdout + stopped.stderr
        )
        assert waiter.finish() == 1, waiter.err
    lines = waiter.out
    output = "\n".join(lines) + "\n" + waiter.err
    summary_at = lines.index(f"Deployment {d} Stopped")
    assert lines[summary_at + 1 : summary_at + 3] == [
        "  Error: MANUAL_STOP: The deployment was stopped by a StopDeployment request.",
        "  Instances: 0 Succeeded, 1 Failed, 2 Skipped, 0 InProgress, 0 Pending",
    ], output
    assert not any(line.startswith("Following rollback") for line in lines), output
    # The hook's process is gone: the agent ended it, it did not run out its `sleep 120`.
    wait_until_gone(hook_pid)

    status = codedeploy(system, "status", d)
    assert status.returncode == 0, status.stderr
    shown = status.stdout.splitlines()
    assert shown[0] == f"Deployment {d}  Stopped", status.stdout
    assert (
        "Error             MANUAL_STOP: The deployment was stopped by a StopDeployment request."
        in shown
    ), status.stdout
    rows = {line.split()[0]: line.split()[1:] for line in shown if line.startswith("web-")}
    running = [host for host, row in rows.items() if row[0] == "Failed"]
    assert len(running) == 1, status.stdout  # OneAtATime: one host was running the hook
    assert rows[running[0]][2:5] == ["ApplicationStart", "Failed", "(UnknownError)"]
    assert sorted(row[0] for row in rows.values()) == ["Failed", "Skipped", "Skipped"]
    failed_at = shown.index("Failed lifecycle events:")
    assert shown[failed_at + 1] == f"  {running[0]} ApplicationStart Failed (UnknownError)"
    assert shown[failed_at + 2].startswith("    Message: The deployment was stopped"), status.stdout

    # The cancelled hook reported no tail (its execution was CANCELED): `logs` says where the
    # output is instead of suggesting that some may still come.
    logs = codedeploy(system, "logs", d)
    assert (logs.returncode, logs.stdout) == (0, ""), logs.stderr
    assert logs.stderr.startswith(f"No script output reported for {d}: "), logs.stderr
    assert f"/{d}/logs/scripts.log" in logs.stderr


def test_logs_follows_live_lines_then_prints_each_hosts_tail(
    system: System, tmp_path: Path
) -> None:
    """`logs --follow` prints the lines a running hook writes on each host as they come and ends
    with the deployment; `logs` then prints each host's script output tail."""
    system.start_agents()
    setup_group(system, "CodeDeployDefault.AllAtOnce")
    gate = tmp_path / "gate"
    # Ticks until the test opens the gate (~60 s at most, should the test die first), then fails:
    # agents send a log tail only with a failed event, as AWS's agent does (codedeploy-agent-
    # behaviour.md §8.1). One stream only: the order of stdout and stderr lines is not fixed.
    ticking = (
        "i=0\n"
        f'while [ ! -e {gate} ] && [ $i -lt 300 ]; do echo "tick $i on $HOST_NAME"; '
        "i=$((i+1)); sleep 0.2; done\n"
        'echo "no answer on $HOST_NAME"\nexit 3'
    )
    hooks = {"ApplicationStart": 'echo "started on $HOST_NAME"', "ValidateService": ticking}
    location = push(system, write_bundle(tmp_path / "ticking", hooks))
    created = codedeploy(system, *deploy_args(location))
    assert created.returncode == 0, created.stderr
    d = created.stdout.strip()
    broker = system.server.broker.endpoint

    with background(system, "logs", d, "--follow", "--mqtt-endpoint", broker, *POLL) as follow:
        live: set[str] = set()
        while live != {"web-1", "web-2", "web-3"}:
            # `<instance> <line>`: a line the agent published on its logs topic just now.
            match = follow.wait_for_line(r"^(web-\d) \[stdout\]tick \d+ on \1$")
            live.add(match.group(1))
        gate.touch()
        assert follow.finish() == 0, follow.err
    assert follow.err.splitlines() == [
        f"Following live script output of {d} (Ctrl-C to stop)",
        f"Deployment {d} Failed",
    ], follow.err
    assert system.client.get_deployment(deploymentId=d)["deploymentInfo"]["status"] == "Failed"

    result = codedeploy(system, "logs", d)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    blocks = result.stdout.split("\n\n")
    assert len(blocks) == 3, result.stdout  # no tail for the ApplicationStart that succeeded
    for host, block in zip(("web-1", "web-2", "web-3"), blocks, strict=True):
        head, *tail = block.splitlines()
        assert head == f"==> {host} ValidateService (Failed) <==", result.stdout
        # The tail is the last 1,024 characters: its first lines may have been cut off.
        expected = r"LifecycleEvent - ValidateService|Script - scripts/ValidateService\.sh|"
        expected += rf"\[stdout\]tick \d+ on {host}"
        assert all(re.fullmatch(expected, line) for line in tail[:-1]), result.stdout
        assert any(line.startswith("[stdout]tick") for line in tail), result.stdout
        assert tail[-1] == f"[stdout]no answer on {host}", result.stdout

    one = codedeploy(system, "logs", d, "--instance", "web-2")
    assert one.returncode == 0, one.stderr
    assert one.stdout == blocks[1].rstrip("\n") + "\n"

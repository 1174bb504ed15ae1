"""HookRunner.run_event: CodeDeploy's pre-checks, codes, messages, environment and logs."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time

import pytest

from codedeploy_agent.appspec.model import Script
from codedeploy_agent.errors import ErrorCode, ScriptError
from codedeploy_agent.hooks.process import Account
from codedeploy_agent.hooks.runner import HookRunner, hook_environment, plan_launch
from tests.hooks.conftest import (
    DEPLOYMENT_ID,
    STANDARD_ENV,
    Deployment,
    WriteScript,
    alive,
    kill_quietly,
    read_pids,
)

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d "
DSTAMP = r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\] "


async def run(
    runner: HookRunner,
    deployment: Deployment,
    *scripts: Script,
    event: str = "ApplicationStart",
) -> str:
    return await runner.run_event(
        event, scripts, archive_dir=deployment.archive, environment=STANDARD_ENV
    )


async def fail(runner: HookRunner, deployment: Deployment, *scripts: Script) -> ScriptError:
    with pytest.raises(ScriptError) as caught:
        await run(runner, deployment, *scripts)
    return caught.value


@pytest.mark.asyncio
async def test_no_scripts_returns_empty_and_writes_nothing(
    runner: HookRunner, deployment: Deployment
) -> None:
    """An event without scripts is a noop: empty tail, no scripts.log, no deployments log."""
    assert await run(runner, deployment) == ""
    assert not deployment.scripts_log.exists()
    assert not deployment.deployments_log.exists()


@pytest.mark.asyncio
async def test_log_lines_and_tail_of_a_successful_script(
    runner: HookRunner, deployment: Deployment, write_script: WriteScript
) -> None:
    """scripts.log, the deployments log and the tail hold the event, script and output lines."""
    write_script(
        "scripts/start.sh",
        r"""
        echo hello
        sleep 0.1
        echo oops >&2
        sleep 0.1
        printf 'partial'
        """,
    )
    tail = await run(runner, deployment, Script("scripts/start.sh", timeout=5))
    assert tail == (
        "LifecycleEvent - ApplicationStart\nScript - scripts/start.sh\n"
        "[stdout]hello\n[stderr]oops\n[stdout]partial\n"
    )
    assert re.fullmatch(
        f"{STAMP}LifecycleEvent - ApplicationStart\n{STAMP}Script - scripts/start.sh\n"
        rf"{STAMP}\[stdout\]hello\n{STAMP}\[stderr\]oops\n{STAMP}\[stdout\]partial\n",
        deployment.scripts_log.read_text(),
    )
    assert re.fullmatch(
        rf"{DSTAMP}\[{DEPLOYMENT_ID}\]LifecycleEvent - ApplicationStart\n"
        rf"{DSTAMP}\[{DEPLOYMENT_ID}\]Script - scripts/start.sh\n"
        rf"{DSTAMP}\[{DEPLOYMENT_ID}\]\[stdout\]hello\n"
        rf"{DSTAMP}\[{DEPLOYMENT_ID}\]\[stderr\]oops\n"
        rf"{DSTAMP}\[{DEPLOYMENT_ID}\]\[stdout\]partial\n",
        deployment.deployments_log.read_text(),
    )


@pytest.mark.asyncio
async def test_scripts_run_in_order_and_the_first_failure_stops_the_rest(
    runner: HookRunner, deployment: Deployment, write_script: WriteScript
) -> None:
    """Second script fails with code 4 and its exit code; the third never runs."""
    write_script("one.sh", "echo one")
    write_script("two.sh", "echo two; exit 7")
    write_script("three.sh", "touch ran-three")
    error = await fail(
        runner, deployment, Script("one.sh", 5), Script("two.sh", 5), Script("three.sh", 5)
    )
    assert error.code is ErrorCode.SCRIPT_FAILED
    assert error.script_name == "two.sh"
    assert str(error) == "Script at specified location: two.sh failed with exit code 7"
    assert error.log == (
        "LifecycleEvent - ApplicationStart\nScript - one.sh\n[stdout]one\n"
        "Script - two.sh\n[stdout]two\n"
    )
    assert not (deployment.archive / "ran-three").exists()


@pytest.mark.asyncio
async def test_missing_script_is_code_1_with_the_expanded_path(
    runner: HookRunner, deployment: Deployment
) -> None:
    """A missing script: code 1 naming the absolute path (a leading / is archive-relative)."""
    error = await fail(runner, deployment, Script("/scripts/../nope.sh", 5))
    assert error.code is ErrorCode.SCRIPT_MISSING
    assert error.script_name == "/scripts/../nope.sh"
    assert (
        str(error) == f"Script does not exist at specified location: {deployment.archive}/nope.sh"
    )
    assert error.log == "LifecycleEvent - ApplicationStart\n"


@pytest.mark.asyncio
async def test_a_non_executable_script_is_made_executable(
    runner: HookRunner, deployment: Deployment, write_script: WriteScript
) -> None:
    """Mode 644: the runner adds +x for everyone (FileUtils.chmod('+x')) and runs it."""
    path = write_script("s.sh", "echo ran", mode=0o644)
    assert (await run(runner, deployment, Script("s.sh", 5))).endswith("[stdout]ran\n")
    assert path.stat().st_mode & 0o777 == 0o755


@pytest.mark.root
@pytest.mark.asyncio
async def test_a_script_that_cannot_be_made_executable_is_code_2(
    runner: HookRunner, deployment: Deployment, write_script: WriteScript
) -> None:
    """chmod fails (immutable file): code 2 with the real agent's message."""
    path = write_script("s.sh", "echo ran", mode=0o644)
    await asyncio.to_thread(subprocess.run, ["chattr", "+i", str(path)], check=True)
    try:
        error = await fail(runner, deployment, Script("s.sh", 5))
    finally:
        await asyncio.to_thread(subprocess.run, ["chattr", "-i", str(path)], check=True)
    assert error.code is ErrorCode.SCRIPT_NOT_EXECUTABLE
    assert str(error) == "Unable to set script at specified location: s.sh as executable"


@pytest.mark.asyncio
async def test_timeout_is_code_3(
    runner: HookRunner, deployment: Deployment, write_script: WriteScript
) -> None:
    """A script still running at its timeout: code 3, after about `timeout` seconds."""
    write_script("slow.sh", "echo started; exec sleep 30")
    started = time.monotonic()
    error = await fail(runner, deployment, Script("slow.sh", timeout=1))
    assert 0.9 < time.monotonic() - started < 3
    assert error.code is ErrorCode.SCRIPT_TIMED_OUT
    assert str(error) == "Script at specified location: slow.sh failed to complete in 1 seconds"
    assert error.log.endswith("Script - slow.sh\n[stdout]started\n")


@pytest.mark.asyncio
async def test_a_spawn_error_is_code_4_with_ruby_errno_names(
    runner: HookRunner, deployment: Deployment, write_script: WriteScript
) -> None:
    """exec fails: `failed with error Errno::X with message <strerror> - <path>` plus a hint."""
    write_script("interp.sh", "echo x", shebang="#!/nonexistent/bin/interp")
    error = await fail(runner, deployment, Script("interp.sh", 5))
    path = deployment.archive / "interp.sh"
    assert error.code is ErrorCode.SCRIPT_FAILED
    assert str(error) == (
        "Script at specified location: interp.sh failed with error Errno::ENOENT with message "
        f"No such file or directory - {path}. The interpreter /nonexistent/bin/interp named on "
        "its #! line does not exist on this host."
    )
    write_script("crlf.sh", "echo x\r", shebang="#!/bin/bash\r")
    error = await fail(runner, deployment, Script("crlf.sh", 5))
    assert str(error).endswith(
        f"Errno::ENOENT with message No such file or directory - {deployment.archive}/crlf.sh. "
        "Its #! line ends with a carriage return (Windows line endings): convert the script, "
        "e.g. with dos2unix."
    )
    (deployment.archive / "adir").mkdir()
    error = await fail(runner, deployment, Script("adir", 5))
    assert str(error).startswith(
        "Script at specified location: adir failed with error Errno::EACCES with message "
        f"Permission denied - {deployment.archive}/adir. "
    )


@pytest.mark.asyncio
async def test_a_script_without_shebang_runs_with_bin_sh(
    runner: HookRunner, deployment: Deployment, write_script: WriteScript
) -> None:
    """No #! line (ENOEXEC): run with /bin/sh, as Ruby's spawn, su and sudo do."""
    write_script("plain.sh", 'echo "via sh $0"', shebang="")
    tail = await run(runner, deployment, Script("plain.sh", 5))
    assert tail.endswith(f"[stdout]via sh {deployment.archive}/plain.sh\n")


@pytest.mark.asyncio
async def test_a_script_killed_by_a_signal_names_it(
    runner: HookRunner, deployment: Deployment, write_script: WriteScript
) -> None:
    """Killed by a signal: Ruby's text (empty exit code) followed by the signal's name."""
    write_script("die.sh", "kill -KILL $$")
    error = await fail(runner, deployment, Script("die.sh", 5))
    assert str(error) == (
        "Script at specified location: die.sh failed with exit code (killed by signal SIGKILL)"
    )


@pytest.mark.asyncio
async def test_output_left_open_is_code_6_and_the_holder_is_not_killed(
    runner: HookRunner, deployment: Deployment, write_script: WriteScript
) -> None:
    """A background child still holding STDOUT (then STDERR): code 6 at the deadline, alive."""
    write_script("leak.sh", "sleep 60 & echo $! > pid; echo done")
    started = time.monotonic()
    error = await fail(runner, deployment, Script("leak.sh", timeout=1))
    assert 0.9 < time.monotonic() - started < 3
    holder = read_pids(deployment.archive / "pid")[0]
    try:
        assert alive(holder)
        assert error.code is ErrorCode.OUTPUTS_LEFT_OPEN
        assert str(error) == (
            "Script at specified location: leak.sh failed to close STDOUT. It is still held by "
            f"pid {holder} (sleep), which the script started in the background: redirect the "
            "background process's output, e.g. `my-daemon > /dev/null 2>&1 < /dev/null &`."
        )
        assert error.log.endswith("[stdout]done\n")
    finally:
        kill_quietly([holder])
    write_script("leak2.sh", "sleep 60 > /dev/null & echo $! > pid")
    error = await fail(runner, deployment, Script("leak2.sh", timeout=1))
    kill_quietly(read_pids(deployment.archive / "pid"))
    assert error.code is ErrorCode.OUTPUTS_LEFT_OPEN
    assert str(error).startswith("Script at specified location: leak2.sh failed to close STDERR.")


@pytest.mark.asyncio
async def test_environment_cwd_and_stdin(
    runner: HookRunner,
    deployment: Deployment,
    write_script: WriteScript,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """CodeDeploy variables added, agent credentials removed, cwd = archive, stdin at EOF."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "agent-secret")
    monkeypatch.setenv("AWS_CREDENTIAL_FILE", "/etc/creds")
    monkeypatch.setenv("AGENT_OWN_VARIABLE", "kept")
    write_script(
        "env.sh",
        """
        env | sort > env.out
        /bin/pwd -P > cwd.out
        if read -r line; then echo "stdin: $line"; else echo "stdin: eof"; fi
        """,
    )
    started = time.monotonic()
    tail = await run(runner, deployment, Script("env.sh", 10))
    assert time.monotonic() - started < 3
    assert tail.endswith("[stdout]stdin: eof\n")
    env = dict(
        line.split("=", 1) for line in (deployment.archive / "env.out").read_text().splitlines()
    )
    for key, value in STANDARD_ENV.items():
        assert env[key] == value
    assert env["AGENT_OWN_VARIABLE"] == "kept"
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_CREDENTIAL_FILE"):
        assert key not in env
    cwd = (deployment.archive / "cwd.out").read_text().strip()
    assert cwd == str(deployment.archive.resolve())


def test_hook_environment_lets_the_executor_override() -> None:
    """Variables passed by the executor win over the agent's; credentials are dropped first."""
    agent = {"PATH": "/bin", "AWS_SECRET_ACCESS_KEY": "x", "DEPLOYMENT_ID": "old"}
    env = hook_environment(agent, {"DEPLOYMENT_ID": "d-1", "AWS_SECRET_ACCESS_KEY": "job"})
    assert env == {"PATH": "/bin", "DEPLOYMENT_ID": "d-1", "AWS_SECRET_ACCESS_KEY": "job"}


@pytest.mark.asyncio
async def test_secrets_never_reach_logs_or_tail(
    runner: HookRunner, deployment: Deployment, write_script: WriteScript
) -> None:
    """A script printing secret values: `***` in scripts.log, the deployments log and the tail."""
    write_script(
        "leak.sh",
        """
        echo "token=s3cr3t-value"
        printf -- '-----BEGIN KEY-----\\nAAAA1234\\n-----END KEY-----\\n' >&2
        exit 3
        """,
    )
    error = await fail(runner, deployment, Script("leak.sh", 5))
    for text in (
        error.log,
        deployment.scripts_log.read_text(),
        deployment.deployments_log.read_text(),
    ):
        assert "s3cr3t-value" not in text
        assert "AAAA1234" not in text
        assert "[stdout]token=***" in text
        assert "[stderr]***" in text


@pytest.mark.asyncio
async def test_a_long_line_is_logged_in_bounded_entries(
    runner: HookRunner, deployment: Deployment, write_script: WriteScript
) -> None:
    """150,000 bytes without newline: entries of 65,536 + 65,536 + 18,928 characters."""
    write_script("long.sh", r"head -c 150000 /dev/zero | tr '\0' 'y'")
    tail = await run(runner, deployment, Script("long.sh", 10))
    lines = deployment.scripts_log.read_text().splitlines()
    assert [len(line) - len("YYYY-MM-DD HH:MM:SS [stdout]") for line in lines[2:]] == [
        65536,
        65536,
        18928,
    ]
    # Each entry is 2,048 characters or more: the tail drops them, as the real agent's does.
    assert tail == ""


def test_plan_launch_for_root_and_non_root_agents() -> None:
    """runas/sudo combinations become argv (never `su -c`), or a clear error."""
    deploy = Account("deploy", 1001, 1001, (1001, 27), "/home/deploy", "/bin/bash")
    path = "/a/s.sh"
    assert plan_launch(Script("s.sh"), path, None, euid=0).argv == (path,)
    assert plan_launch(Script("s.sh", sudo=True), path, None, euid=0).argv == (path,)
    as_deploy = plan_launch(Script("s.sh", runas="deploy", sudo=True), path, deploy, euid=0)
    assert (as_deploy.argv, as_deploy.account) == ((path,), deploy)
    assert as_deploy.env == {
        "HOME": "/home/deploy",
        "USER": "deploy",
        "LOGNAME": "deploy",
        "SHELL": "/bin/bash",
    }
    assert plan_launch(Script("s.sh", sudo=True), path, None, euid=1001).argv == (
        "sudo",
        "-n",
        "--",
        path,
    )
    sudo_runas = plan_launch(Script("s.sh", runas="deploy", sudo=True), path, deploy, euid=1002)
    assert sudo_runas.argv == ("sudo", "-n", "-u", "deploy", "--", path)
    assert sudo_runas.account is None
    same_user = plan_launch(Script("s.sh", runas="deploy"), path, deploy, euid=1001)
    assert (same_user.argv, same_user.account) == ((path,), None)
    with pytest.raises(ScriptError) as caught:
        plan_launch(Script("s.sh", runas="deploy"), path, deploy, euid=1002)
    assert caught.value.code is ErrorCode.SCRIPT_FAILED
    assert str(caught.value).startswith(
        "Script at specified location: s.sh run as user deploy failed with error: the agent "
        "runs as "
    )
    assert "Run the agent as root, or set `sudo: true` on this script" in str(caught.value)


@pytest.mark.asyncio
async def test_a_missing_runas_user_is_code_4_naming_the_user(
    runner: HookRunner, deployment: Deployment, write_script: WriteScript
) -> None:
    """runas a user that does not exist: code 4, the user named, and how to fix it."""
    write_script("s.sh", "echo never")
    error = await fail(runner, deployment, Script("s.sh", 5, runas="no-such-user-cd"))
    assert error.code is ErrorCode.SCRIPT_FAILED
    assert str(error) == (
        "Script at specified location: s.sh run as user no-such-user-cd failed with error: user "
        "no-such-user-cd does not exist on this host. Create the user (for example `useradd "
        "--create-home no-such-user-cd`) or change `runas` in the hooks section of the AppSpec "
        "file, then try again."
    )
    assert error.log == "LifecycleEvent - ApplicationStart\nScript - s.sh\n"


@pytest.mark.asyncio
async def test_path_with_spaces_runs(
    runner: HookRunner, deployment: Deployment, write_script: WriteScript
) -> None:
    """argv, not a command string: a location with spaces works (it broke the real agent)."""
    write_script("my scripts/start it.sh", "echo spaced")
    tail = await run(runner, deployment, Script("my scripts/start it.sh", 5))
    assert tail.endswith("[stdout]spaced\n")


@pytest.mark.asyncio
async def test_cancelling_run_event_stops_the_script(
    runner: HookRunner, deployment: Deployment, write_script: WriteScript
) -> None:
    """Cancelling run_event stops the script and re-raises CancelledError promptly."""
    write_script("s.sh", "echo $$ > pid; exec sleep 30")
    task = asyncio.create_task(run(runner, deployment, Script("s.sh", 60)))
    pid_file = deployment.archive / "pid"
    for _ in range(200):
        if pid_file.exists() and pid_file.read_text().strip():
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not alive(read_pids(pid_file)[0])

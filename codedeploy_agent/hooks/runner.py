"""Runs the scripts of one lifecycle event the way CodeDeploy does (reference §4).

Scripts run in appspec order and the first failure ends the event with CodeDeploy's code and
message (1 missing, 2 not executable, 3 timed out, 4 failed, 6 outputs left open), carrying the
event's 2,048-character output tail. Differences from the real agent, each on purpose:
- argv, never a command string: paths with spaces work and nothing is parsed by a shell;
- `runas` switches uid, gid and supplementary groups in the child instead of `su U -c`;
- a timeout ends with SIGKILL after a grace period, for escaped descendants too, so a script
  that ignores SIGTERM cannot hang the agent;
- the working directory is the revision's archive, not whatever the agent was started in.
"""

from __future__ import annotations

import asyncio
import errno
import os
import pwd
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import structlog

from codedeploy_agent.appspec.model import Script
from codedeploy_agent.config import HookSettings
from codedeploy_agent.errors import ErrorCode, ScriptError
from codedeploy_agent.hooks.process import (
    Account,
    HookResult,
    HookStatus,
    enable_subreaper,
    lookup_account,
    run_hook_process,
)
from codedeploy_agent.hooks.scriptlog import DeploymentLogs, EventLog

# The real agent deletes these from its own environment at start-up, so that scripts never act
# with the agent's credentials (on premises: the IAM user it registered with). Our agent may
# still need them itself (boto3 for S3 bundles), so they are only left out of scripts'.
CLEARED_VARIABLES: Final = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_CREDENTIAL_FILE")

_log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Launch:
    """How one script is started: its argv, the account to switch to, extra variables."""

    argv: tuple[str, ...]
    account: Account | None = None
    env: Mapping[str, str] = field(default_factory=dict)


def error_prefix(script: Script) -> str:
    """`Script at specified location: <location>[ run as user <runas>]`, as the real agent."""
    prefix = f"Script at specified location: {script.location}"
    return f"{prefix} run as user {script.runas}" if script.runas is not None else prefix


def plan_launch(script: Script, path: str, account: Account | None, *, euid: int) -> Launch:
    """Decide how to start `script` (at `path`) for an agent running with `euid`.

    `account` is the `runas` user's, looked up by the caller (None when it does not exist).
    Raises ScriptError (code 4) for a `runas` user that does not exist, or that a non-root
    agent cannot become.
    """
    if script.runas is None:
        if script.sudo and euid != 0:
            return Launch(("sudo", "-n", "--", path))
        # `sudo: true` from root is a no-op: root already has every right sudo could grant, and
        # going through sudo would only add sudoers' env_reset, which drops the CodeDeploy
        # variables (a known quirk of the real agent's `sudo <script>`).
        return Launch((path,))
    if account is None:
        raise ScriptError(
            ErrorCode.SCRIPT_FAILED,
            script.location,
            f"{error_prefix(script)} failed with error: user {script.runas} does not exist on "
            f"this host. Create the user (for example `useradd --create-home {script.runas}`) or "
            "change `runas` in the hooks section of the AppSpec file, then try again.",
        )
    if euid == 0:
        # What `su U -c` (and `sudo su U -c`) gave the real agent's scripts, done in the child
        # before exec: uid, gid, supplementary groups and the user's HOME, USER, LOGNAME, SHELL.
        return Launch((path,), account, account.environment())
    if account.uid == euid:
        return Launch((path,), None, account.environment())
    if script.sudo:
        # -n: fail at once instead of waiting for a password nobody can type.
        return Launch(("sudo", "-n", "-u", script.runas, "--", path))
    agent_user = _user_name(euid)
    raise ScriptError(
        ErrorCode.SCRIPT_FAILED,
        script.location,
        f"{error_prefix(script)} failed with error: the agent runs as {agent_user}, not root, "
        f"and cannot start a script as user {script.runas}. Run the agent as root, or set "
        f"`sudo: true` on this script and add a sudoers rule that lets {agent_user} run it as "
        f"{script.runas} without a password (NOPASSWD).",
    )


def hook_environment(
    agent_environment: Mapping[str, str], environment: Mapping[str, str]
) -> dict[str, str]:
    """The agent's environment minus its AWS credentials, plus the CodeDeploy variables."""
    env = {k: v for k, v in agent_environment.items() if k not in CLEARED_VARIABLES}
    env.update(environment)
    return env


class HookRunner:
    """Runs lifecycle scripts, writing their output through one deployment's logs."""

    def __init__(self, settings: HookSettings, logs: DeploymentLogs) -> None:
        self._settings = settings
        self._logs = logs
        # Once per process: escaped descendants of timed-out scripts must stay findable.
        enable_subreaper()

    async def run_event(
        self,
        event: str,
        scripts: Sequence[Script],
        *,
        archive_dir: Path,
        environment: Mapping[str, str],
    ) -> str:
        """Run `scripts` in order; return the event's output tail, or raise ScriptError."""
        if not scripts:
            return ""
        event_log = EventLog(self._logs)
        await asyncio.to_thread(event_log.write, f"LifecycleEvent - {event}")
        env = hook_environment(os.environ, environment)
        log = _log.bind(lifecycle_event=event)
        for script in scripts:
            started = time.monotonic()
            launch = await asyncio.to_thread(self._prepare, script, archive_dir, event_log)
            result = await self._start(script, launch, archive_dir, env, event_log)
            log.info(
                "script finished",
                script=script.location,
                status=result.status.value,
                returncode=result.returncode,
                seconds=round(time.monotonic() - started, 3),
            )
            _check(script, result, event_log)
        return event_log.text()

    def _prepare(self, script: Script, archive_dir: Path, event_log: EventLog) -> Launch:
        """The real agent's pre-checks (§4.1), then the `Script -` entry and the launch plan."""
        # File.join semantics: a leading "/" is still relative to the archive.
        path = os.path.abspath(os.path.join(archive_dir, script.location.lstrip("/")))  # noqa: PTH100, PTH118
        if not os.path.exists(path):  # noqa: PTH110
            raise ScriptError(
                ErrorCode.SCRIPT_MISSING,
                script.location,
                f"Script does not exist at specified location: {path}",
                log=event_log.text(),
            )
        if not os.access(path, os.X_OK):
            _log.warning(
                f"Script at specified location: {script.location} is not executable.  "
                "Trying to make it executable."
            )
            try:
                # Ruby's FileUtils.chmod('+x'): executable for all, as the real agent does.
                os.chmod(path, os.stat(path).st_mode | 0o111)  # noqa: PTH101, PTH116, S103
            except OSError as exc:
                raise ScriptError(
                    ErrorCode.SCRIPT_NOT_EXECUTABLE,
                    script.location,
                    f"Unable to set script at specified location: {script.location} as executable",
                    log=event_log.text(),
                ) from exc
        event_log.write(f"Script - {script.location}")
        account = lookup_account(script.runas) if script.runas is not None else None
        try:
            return plan_launch(script, path, account, euid=os.geteuid())
        except ScriptError as exc:
            exc.log = event_log.text()
            raise

    async def _start(
        self,
        script: Script,
        launch: Launch,
        archive_dir: Path,
        env: Mapping[str, str],
        event_log: EventLog,
    ) -> HookResult:
        try:
            return await self._spawn(
                script,
                argv=launch.argv,
                launch=launch,
                cwd=archive_dir,
                env=env,
                event_log=event_log,
            )
        except OSError as exc:
            if exc.errno != errno.ENOEXEC or len(launch.argv) != 1:
                raise ScriptError(
                    ErrorCode.SCRIPT_FAILED,
                    script.location,
                    _spawn_error(script, exc, launch.argv[-1]),
                    log=event_log.text(),
                ) from exc
        # No #! line. The real agent's Ruby (like execvp) then runs the file with /bin/sh, and
        # so do su and sudo: scripts without a #! line work there, so they work here.
        _log.warning("script has no #! line; running it with /bin/sh", script=launch.argv[0])
        argv = ("/bin/sh", launch.argv[0])
        try:
            return await self._spawn(
                script, argv=argv, launch=launch, cwd=archive_dir, env=env, event_log=event_log
            )
        except OSError as exc:
            raise ScriptError(
                ErrorCode.SCRIPT_FAILED,
                script.location,
                _spawn_error(script, exc, launch.argv[-1]),
                log=event_log.text(),
            ) from exc

    async def _spawn(
        self,
        script: Script,
        *,
        argv: tuple[str, ...],
        launch: Launch,
        cwd: Path,
        env: Mapping[str, str],
        event_log: EventLog,
    ) -> HookResult:
        # cwd: the archive, so that relative paths in scripts work. The real agent leaves the
        # agent's own cwd (`/` under systemd), which no script could rely on anyway.
        return await run_hook_process(
            argv,
            cwd=cwd,
            env={**env, **launch.env},
            account=launch.account,
            time_limit=script.timeout,
            kill_grace=self._settings.kill_grace_seconds,
            sink=event_log.write_lines,
        )


def _check(script: Script, result: HookResult, event_log: EventLog) -> None:
    """Raise the real agent's error for a script's result; return for success."""
    if result.status is HookStatus.TIMED_OUT:
        message = (
            f"Script at specified location: {script.location} failed to complete in "
            f"{script.timeout} seconds"
        )
        raise ScriptError(ErrorCode.SCRIPT_TIMED_OUT, script.location, message, event_log.text())
    if result.status is HookStatus.OUTPUT_LEFT_OPEN:
        stream = (result.open_stream or "stdout").upper()
        holder = (
            f"It is still held by {', '.join(result.holders)}, which the script started"
            if result.holders
            else "A process the script started still held it at the deadline"
        )
        message = (
            f"Script at specified location: {script.location} failed to close {stream}. "
            f"{holder} in the background: redirect the background process's output, e.g. "
            "`my-daemon > /dev/null 2>&1 < /dev/null &`."
        )
        raise ScriptError(ErrorCode.OUTPUTS_LEFT_OPEN, script.location, message, event_log.text())
    code = result.returncode
    if code == 0:
        return
    if code is not None and code < 0:
        # The real agent prints nothing after "exit code " for a signal; we name the signal.
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        detail = f"(killed by signal {name})"
    else:
        detail = str(code)
    message = f"{error_prefix(script)} failed with exit code {detail}"
    raise ScriptError(ErrorCode.SCRIPT_FAILED, script.location, message, event_log.text())


def _spawn_error(script: Script, exc: OSError, path: str) -> str:
    """`... failed with error Errno::EACCES with message Permission denied - <file>` + hint."""
    name = errno.errorcode.get(exc.errno or 0)
    kind = f"Errno::{name}" if name else type(exc).__name__
    text = exc.strerror or str(exc)
    if exc.filename:
        text = f"{text} - {exc.filename}"
    message = f"{error_prefix(script)} failed with error {kind} with message {text}"
    hint = _spawn_hint(exc, path)
    return f"{message}. {hint}" if hint else message


def _spawn_hint(exc: OSError, path: str) -> str:
    if exc.errno == errno.ENOEXEC:
        return "The script must start with a #! line naming its interpreter, e.g. #!/bin/bash."
    if exc.errno == errno.EACCES:
        return (
            "Check that the file system holding the revision is not mounted noexec and that "
            "the script's interpreter is executable."
        )
    if exc.errno == errno.ENOENT and exc.filename == path:
        try:
            with open(path, "rb") as f:
                first = f.readline(256)
        except OSError:
            return ""
        if first.startswith(b"#!"):
            if first.rstrip(b"\n").endswith(b"\r"):
                return (
                    "Its #! line ends with a carriage return (Windows line endings): convert "
                    "the script, e.g. with dos2unix."
                )
            interpreter = first[2:].strip().split(b" ")[0].decode("utf-8", "replace")
            return (
                f"The interpreter {interpreter} named on its #! line does not exist on this host."
            )
    return ""


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)

"""`sudo: true` for real: `codedeploy-agent local` run by a non-root user, through sudo(8).

The runner's unit tests only check the argv it builds (`sudo -n -- <script>`,
`sudo -n -u <runas> -- <script>`). Here a real unprivileged user runs a real local deployment,
with a NOPASSWD rule in /etc/sudoers.d (removed afterwards, whatever happens), and each hook
writes `id -u` to a file: a plain hook runs as the agent's user, a `sudo: true` hook as root, a
`runas` + `sudo: true` hook as the runas user. Without the rule, the hook fails with the real
agent's message and sudo's own reason in the log tail.

Root only (creates users and a sudoers file); CI runs as root with sudo installed (.ci/run).
The agent's interpreter must be usable by the unprivileged user. A virtualenv made from a Python
under /root (pyenv, as on our CI machines) is not, because /root is 0700: the user's commands
then run in a private mount namespace where /root is a 0755 tmpfs holding only a bind mount of
the interpreter's tree (nothing changes outside that process). Only when that is impossible too
do the tests skip, saying why.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

SUDOERS_DIR = Path("/etc/sudoers.d")
#: The environment the unprivileged agent gets: nothing of root's (HOME, pytest's variables).
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class User:
    """A local account created for the test."""

    name: str
    uid: int
    gid: int


@dataclass
class SudoHost:
    """The unprivileged agent's user, the runas user, and a directory the agent's user owns."""

    agent: User
    runas: User
    base: Path
    #: The /root tree the interpreter lives in, when the user can only reach it through a
    #: private mount namespace (see the module docstring); None: run directly.
    hidden_tree: Path | None = None

    @property
    def config(self) -> Path:
        return self.base / "codedeployagent.yml"

    @property
    def out(self) -> Path:
        """Where the hooks write their `id -u` (writable by every user, sticky)."""
        return self.base / "out"

    @property
    def sudoers_file(self) -> Path:
        # No dot in the name: sudo skips files in sudoers.d whose name contains one.
        return SUDOERS_DIR / f"codedeploy-test-{self.agent.name}"

    def uid_written_by(self, event: str) -> int | None:
        path = self.out / f"{event}.uid"
        return int(path.read_text()) if path.exists() else None


def _create_user(name: str) -> User:
    subprocess.run(
        ["useradd", "--no-create-home", "--shell", "/bin/bash", "--user-group", name],
        check=True,
        capture_output=True,
    )
    entry = pwd.getpwnam(name)
    return User(name, entry.pw_uid, entry.pw_gid)


def _delete_user(name: str) -> None:
    subprocess.run(["userdel", name], check=False, capture_output=True)
    subprocess.run(["groupdel", name], check=False, capture_output=True)


@pytest.fixture
def sudo_host() -> Iterator[SudoHost]:
    """Two users (the agent's and a runas target) and /var/tmp/cd-sudo-* owned by the agent's
    user (pytest's tmp_path is root's, 0700); all removed afterwards."""
    if shutil.which("sudo") is None or shutil.which("runuser") is None:
        pytest.fail("sudo and runuser are needed: apt-get install sudo util-linux (see .ci/run)")
    suffix = str(os.getpid())[-6:]
    names = (f"cdsudo{suffix}", f"cdsuas{suffix}")
    created: list[str] = []
    users: list[User] = []
    base = Path(tempfile.mkdtemp(prefix="cd-sudo-", dir="/var/tmp"))
    try:
        for name in names:
            created.append(name)
            users.append(_create_user(name))
        agent, runas = users
        os.chown(base, agent.uid, agent.gid)
        base.chmod(0o755)
        host = SudoHost(agent, runas, base)
        host.out.mkdir()
        host.out.chmod(0o1777)
        host.config.write_text(
            f":root_dir: '{base / 'deployment-root'}'\n:log_dir: '{base / 'logs'}'\n"
            f":pid_dir: '{base / 'pid'}'\nstate_dir: '{base / 'state'}'\n:verbose: false\n"
        )
        _skip_unless_agent_runs_as(host)
        yield host
    finally:
        shutil.rmtree(base, ignore_errors=True)
        for name in created:
            _delete_user(name)


def _interpreter_tree_under_root() -> Path | None:
    """`/root/<top>` holding the real interpreter when it lives under the 0700 /root."""
    real = Path(os.path.realpath(sys.executable))
    root = Path("/root")
    if root not in real.parents or shutil.which("unshare") is None:
        return None
    return root / real.relative_to(root).parts[0]


def _skip_unless_agent_runs_as(host: SudoHost) -> None:
    """Skip (with the reason) when the agent's user cannot run this checkout's interpreter."""
    probe = run_as(host, "-c", "import codedeploy_agent", timeout=30)
    if probe.returncode != 0 and (tree := _interpreter_tree_under_root()) is not None:
        host.hidden_tree = tree
        probe = run_as(host, "-c", "import codedeploy_agent", timeout=30)
    if probe.returncode != 0:
        said = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(
            f"user {host.agent.name} cannot run the agent with {sys.executable} ({said}): the "
            "checkout, its virtualenv and the Python it was made from must be readable and "
            "executable by other users (a virtualenv made from a Python under /root is not). "
            "Make the virtualenv from a system Python (PYTHON=/usr/bin/python3 make venv)."
        )


def run_as(host: SudoHost, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`python <args>` as the agent's user, in its directory.

    runuser, not setpriv: setpriv keeps root's capabilities until the exec, so the exec itself
    could reach an interpreter the user cannot (under /root), hiding what the check is for.
    """
    user = host.agent
    command = ["runuser", "-u", user.name, "--", sys.executable, *args]
    if host.hidden_tree is not None:
        # Bind the interpreter's tree aside, lay a 0755 tmpfs over /root, bind the tree back:
        # all inside this process's own mount namespace, gone when it exits.
        aside = host.base / ".interpreter"
        script = (
            'mkdir -p "$1" && mount --bind "$2" "$1" && '
            "mount -t tmpfs -o mode=0755 tmpfs /root && "
            'mkdir -p "$2" && mount --bind "$1" "$2" && shift 2 && exec "$@"'
        )
        command = [
            "unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
            str(aside), str(host.hidden_tree), *command,
        ]  # fmt: skip
    return subprocess.run(
        command,
        cwd=host.base,
        env={
            "PATH": _PATH,
            "HOME": str(host.base),
            "USER": user.name,
            "LOGNAME": user.name,
            "LANG": "C.UTF-8",
        },
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def deploy(host: SudoHost, bundle: Path) -> subprocess.CompletedProcess[str]:
    """`codedeploy-agent local` of the directory `bundle`, as the agent's user."""
    return run_as(
        host,
        "-m", "codedeploy_agent", "local", "-l", str(bundle), "-t", "directory",
        "-c", str(host.config),
    )  # fmt: skip


@dataclass(frozen=True)
class Hook:
    """One appspec hook whose script writes `id -u` to `<out>/<event>.uid`."""

    event: str
    sudo: bool = False
    runas: str | None = None

    @property
    def location(self) -> str:
        return f"scripts/{self.event}.sh"


def write_bundle(host: SudoHost, *hooks: Hook) -> Path:
    """A revision directory with one hook per entry, readable by every user."""
    bundle = host.base / "bundle"
    (bundle / "scripts").mkdir(parents=True)
    lines = ["version: 0.0", "os: linux", "hooks:"]
    for hook in hooks:
        lines += [f"  {hook.event}:", f"    - location: {hook.location}", "      timeout: 60"]
        if hook.runas is not None:
            lines.append(f"      runas: {hook.runas}")
        if hook.sudo:
            lines.append("      sudo: true")
        script = bundle / hook.location
        script.write_text(f'#!/bin/bash\nid -u > "{host.out}/{hook.event}.uid"\n')
        script.chmod(0o755)
    (bundle / "appspec.yml").write_text("\n".join(lines) + "\n")
    return bundle


@pytest.fixture
def sudoers_rule(sudo_host: SudoHost) -> Iterator[Path]:
    """`<agent user> ALL=(root,<runas user>) NOPASSWD: ALL`, checked with visudo, removed after."""
    rule = sudo_host.sudoers_file
    text = f"{sudo_host.agent.name} ALL=(root,{sudo_host.runas.name}) NOPASSWD: ALL\n"
    fd = os.open(rule, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o440)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        checked = subprocess.run(
            ["visudo", "-c", "-f", str(rule)], capture_output=True, text=True, check=False
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        yield rule
    finally:
        rule.unlink(missing_ok=True)


def test_sudo_hooks_run_as_root_and_as_the_runas_user(
    sudo_host: SudoHost, sudoers_rule: Path
) -> None:
    """With a NOPASSWD rule: the plain hook runs as the agent's user, `sudo: true` as root,
    `runas` + `sudo: true` as the runas user, and the deployment succeeds."""
    del sudoers_rule
    bundle = write_bundle(
        sudo_host,
        Hook("BeforeInstall", sudo=True),
        Hook("AfterInstall", sudo=True, runas=sudo_host.runas.name),
        Hook("ApplicationStart"),
    )
    result = deploy(sudo_host, bundle)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "AppSpec file valid. Local deployment successful" in result.stdout
    assert sudo_host.uid_written_by("ApplicationStart") == sudo_host.agent.uid
    assert sudo_host.uid_written_by("BeforeInstall") == 0
    assert sudo_host.uid_written_by("AfterInstall") == sudo_host.runas.uid


@pytest.mark.parametrize("runas", [False, True], ids=["sudo", "runas-and-sudo"])
def test_sudo_without_a_sudoers_rule_fails_with_sudos_reason(
    sudo_host: SudoHost, runas: bool
) -> None:
    """No rule: `sudo -n` refuses at once (no password prompt that would hang the hook); the
    event fails with the real agent's message and sudo's reason is in the log tail."""
    assert not sudo_host.sudoers_file.exists()
    hook = Hook("BeforeInstall", sudo=True, runas=sudo_host.runas.name if runas else None)
    bundle = write_bundle(sudo_host, hook)
    result = deploy(sudo_host, bundle)
    assert result.returncode == 1, result.stdout + result.stderr
    as_user = f" run as user {sudo_host.runas.name}" if runas else ""
    lines = result.stdout.splitlines()
    assert any(line.startswith("  BeforeInstall        Failed") for line in lines), result.stdout
    assert (
        f"      ScriptFailed: Script at specified location: {hook.location}{as_user} failed "
        "with exit code 1"
    ) in lines, result.stdout
    assert "      | [stderr]sudo: a password is required" in lines, result.stdout
    assert sudo_host.uid_written_by("BeforeInstall") is None


def test_runas_without_sudo_names_the_fix(sudo_host: SudoHost) -> None:
    """A non-root agent cannot switch users by itself: a `runas` hook without `sudo: true`
    fails before it starts, with the fix (run as root, or sudo with a NOPASSWD rule)."""
    runas = sudo_host.runas.name
    hook = Hook("BeforeInstall", runas=runas)
    result = deploy(sudo_host, write_bundle(sudo_host, hook))
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        f"      ScriptFailed: Script at specified location: {hook.location} run as user {runas} "
        f"failed with error: the agent runs as {sudo_host.agent.name}, not root, and cannot "
        f"start a script as user {runas}. Run the agent as root, or set `sudo: true` on this "
        f"script and add a sudoers rule that lets {sudo_host.agent.name} run it as {runas} "
        "without a password (NOPASSWD)."
    ) in result.stdout.splitlines(), result.stdout
    assert sudo_host.uid_written_by("BeforeInstall") is None

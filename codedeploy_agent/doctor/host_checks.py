"""doctor's checks of the host itself: config, directories, disk, keys, tools, agent, logs."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Final

from codedeploy_agent.appspec.loader import load_appspec
from codedeploy_agent.config import AgentConfig, load_config
from codedeploy_agent.doctor.findings import JOURNAL, UNIT, Finding, Lines
from codedeploy_agent.errors import AgentError
from codedeploy_agent.host.layout import DeploymentRoot
from codedeploy_agent.host.pidfile import lock_file_path, read_running_pid
from codedeploy_agent.host.status import AgentStatus, status_path, try_read_status
from codedeploy_agent.protocol.signing import load_trusted_keys

#: Free space in the deployment root below which a warning (each revision is kept twice: the
#: bundle and its unpacked copy) or a failure (the next bundle will not fit) is reported.
DISK_WARN_BYTES: Final = 1024**3
DISK_WARN_RATIO: Final = 0.05
DISK_FAIL_BYTES: Final = 256 * 1024**2
#: Where the service finds tools: systemd's default PATH, not the operator's shell's.
SERVICE_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def check_config(path: Path | None) -> tuple[AgentConfig | None, list[Finding]]:
    """Load the config as the agent does; its warnings become WARN lines."""
    lines = Lines("config")
    try:
        config, warnings = load_config(path)
    except AgentError as exc:
        return None, lines.fail(str(exc), "correct the file, then run doctor again")
    lines.ok(f"{config.source or 'built-in defaults (no config file)'} parses")
    for warning in warnings:
        lines.warn(warning)
    return config, lines.findings


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_directories(config: AgentConfig, *, uid: int | None = None) -> list[Finding]:
    """Each directory the agent writes exists (or can be created), is writable and is safe.

    `uid` is the agent's user (default: ours; run doctor as the agent's user, root).
    """
    uid = os.geteuid() if uid is None else uid
    user = _user(uid)
    lines = Lines("directories")
    for name, path in (
        ("root_dir", config.root_dir),
        ("log_dir", config.log_dir),
        ("state_dir", config.state_dir),
        ("pid_dir", config.pid_dir),
    ):
        try:
            info = path.stat()
        except FileNotFoundError:
            parent = _existing_ancestor(path)
            if os.access(parent, os.W_OK | os.X_OK):
                lines.warn(
                    f"{name} {path} does not exist yet; the agent creates it when it needs it",
                    f"install -d -m 0755 {path} (the package creates the default directories)",
                )
            else:
                lines.fail(
                    f"{name} {path} does not exist and {parent} is not writable by {user}",
                    f"install -d -m 0755 -o {user} {path}",
                )
            continue
        except OSError as exc:
            lines.fail(f"{name} {path}: {exc.strerror}", f"make {path} reachable by {user}")
            continue
        mode = stat.S_IMODE(info.st_mode)
        shown = f"{name} {path} ({_user(info.st_uid)}, {mode:04o})"
        if not stat.S_ISDIR(info.st_mode):
            lines.fail(f"{name} {path} is not a directory", f"set :{name}: to a directory")
        elif info.st_uid not in (0, uid):
            lines.fail(
                f"{shown} belongs to {_user(info.st_uid)}, who could change what the agent "
                f"runs or records as {user}",
                f"chown {user}: {path}",
            )
        elif mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
            lines.fail(f"{shown} is writable by every user", f"chmod o-w {path}")
        elif not os.access(path, os.W_OK | os.X_OK):
            lines.fail(f"{shown} is not writable by {user}", f"chown {user} {path}")
        elif name == "root_dir" and not mode & stat.S_IXOTH:
            # Hooks with `runas` start in <root_dir>/<group>/<deployment>/deployment-archive.
            lines.warn(
                f"{shown} cannot be entered by other users: hooks with runas would fail",
                f"chmod 0755 {path}",
            )
        else:
            lines.ok(shown)
    return lines.findings


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if count < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"


def check_disk(
    config: AgentConfig,
    *,
    warn_bytes: int = DISK_WARN_BYTES,
    warn_ratio: float = DISK_WARN_RATIO,
    fail_bytes: int = DISK_FAIL_BYTES,
) -> list[Finding]:
    """Free space (and inodes) on the file system of the deployment root."""
    lines = Lines("disk")
    path = _existing_ancestor(config.root_dir)
    try:
        fs = os.statvfs(path)
    except OSError as exc:
        return lines.fail(f"cannot read the free space of {path}: {exc.strerror}")
    free, total = fs.f_bavail * fs.f_frsize, fs.f_blocks * fs.f_frsize
    ratio = free / total if total else 1.0
    text = f"{_size(free)} free of {_size(total)} ({ratio:.0%}) in {path}"
    fix = (
        "free space there: each revision is kept as its bundle and an unpacked copy "
        f"(:max_revisions: {config.max_revisions} per deployment group); lower :max_revisions: "
        "or move :root_dir: to a larger file system"
    )
    if free < fail_bytes:
        return lines.fail(f"{text}: the next bundle may not fit", fix)
    if free < warn_bytes or ratio < warn_ratio:
        return lines.warn(f"{text}: running low", fix)
    if fs.f_files > 0 and fs.f_favail / fs.f_files < warn_ratio:
        return lines.warn(f"{text}, but only {fs.f_favail} inodes are free", fix)
    return lines.ok(text)


def check_signing(config: AgentConfig) -> list[Finding]:
    """The public keys job documents must be signed with."""
    lines = Lines("signing")
    entries = config.security.trusted_keys
    if not entries:
        return lines.warn(
            "security.trusted_keys is empty: the agent runs unsigned job documents, so whoever "
            "can publish to this host's job topics can run commands on it as root",
            "add the control plane's public key: security: {trusted_keys: {ID: /path/key.pem}}",
        )
    try:
        load_trusted_keys(entries)
    except AgentError as exc:
        return lines.fail(str(exc), "point security.trusted_keys at Ed25519 public key files")
    return lines.ok(f"{len(entries)} trusted key(s): {', '.join(k for k, _ in entries)}")


def _deployed_needs(root: DeploymentRoot) -> tuple[list[str], list[str]]:
    """The deployed revisions (`group/deployment`) whose appspec sets acls / an SELinux context."""
    acls: list[str] = []
    contexts: list[str] = []
    for pointer in sorted(root.instructions.glob("*_last_successful_install")):
        group = pointer.name.removesuffix("_last_successful_install")
        with contextlib.suppress(AgentError, OSError):
            deployed = root.last_successful(group)
            if deployed is None:
                continue
            permissions = load_appspec(deployed.archive).permissions
            where = f"{group}/{deployed.path.name}"
            if any(p.acls for p in permissions):
                acls.append(where)
            if any(p.context is not None for p in permissions):
                contexts.append(where)
    return acls, contexts


def check_tools(
    config: AgentConfig, *, which: Callable[[str], str | None] | None = None
) -> list[Finding]:
    """git, setfacl, semanage and restorecon: found, missing but needed, or missing and unused."""
    lines = Lines("tools")
    find = which or (lambda name: shutil.which(name, path=SERVICE_PATH))
    acls, contexts = _deployed_needs(DeploymentRoot(config.root_dir))
    git = config.git
    git_set = git.executable != "git" or any(
        (git.username, git.password_file, git.ssh_key_file, git.codecommit_username,
         git.codecommit_password_file)
    )  # fmt: skip
    selinux = f"deployed revision(s) {', '.join(contexts)} set an SELinux context"
    tools = (
        (git.executable, "git revisions (CodeCommit, any git remote)", "git",
         "the config's git: section is set" if git_set else None),
        ("setfacl", "appspec permissions with acls", "acl",
         f"deployed revision(s) {', '.join(acls)} set acls" if acls else None),
        ("semanage", "appspec permissions with an SELinux context",
         "policycoreutils-python-utils", selinux if contexts else None),
        ("restorecon", "appspec permissions with an SELinux context", "policycoreutils",
         selinux if contexts else None),
    )  # fmt: skip
    for name, used_for, package, needed_because in tools:
        found = find(name)
        if found is not None:
            lines.ok(f"{Path(name).name} {found} (used for {used_for})")
        elif needed_because is not None:
            lines.fail(f"{name} is not installed, but {needed_because}", f"install {package}")
        else:
            lines.info(f"{name} is not installed; only {used_for} need it (package {package})")
    return lines.findings


def running_agent(config: AgentConfig) -> tuple[int | None, AgentStatus | None]:
    """The running agent's pid and its current status snapshot (None when there is none)."""
    pid = read_running_pid(config.pid_dir, config.program_name)
    if pid is None:
        return None, None
    snapshot, _problem = try_read_status(status_path(config.state_dir, config.program_name))
    return pid, snapshot if snapshot is not None and snapshot.pid == pid else None


def _check_unit(lines: Lines) -> None:
    """The unit's state, when systemd runs this host."""
    if not Path("/run/systemd/system").is_dir() or shutil.which("systemctl") is None:
        return
    try:
        shown = subprocess.run(
            ["systemctl", "show", UNIT, "-p", "LoadState,ActiveState,SubState,UnitFileState"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        lines.warn(f"cannot ask systemd about {UNIT}: {exc}")
        return
    props = dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)
    state = f"{props.get('ActiveState')} ({props.get('SubState')})"
    if props.get("LoadState") != "loaded":
        lines.warn(f"systemd does not know {UNIT}", "install the codedeploy-agent package")
    elif props.get("ActiveState") == "failed":
        lines.fail(f"{UNIT} is {state}", f"see why: {JOURNAL}")
    elif props.get("UnitFileState") != "enabled":
        lines.warn(
            f"{UNIT} is {state} but {props.get('UnitFileState')}: it will not start at boot",
            f"systemctl enable {UNIT}",
        )
    else:
        lines.ok(f"{UNIT} is {state} and enabled")


def check_agent(
    config: AgentConfig, pid: int | None, snapshot: AgentStatus | None
) -> list[Finding]:
    """Whether the agent runs, what it does, its last result, and its systemd unit."""
    lines = Lines("agent")
    if pid is None:
        lock = lock_file_path(config.pid_dir, config.program_name)
        lines.fail(
            f"not running (nobody holds {lock}): no deployment can reach this host",
            f"systemctl enable --now {UNIT}; if it does not stay up: {JOURNAL}",
        )
    elif snapshot is None:
        lines.warn(f"running as PID {pid}, but its status snapshot is missing", "restart it")
    else:
        doing = str(snapshot.state)
        if snapshot.current_deployment_id:
            doing += f" {snapshot.current_deployment_id} ({snapshot.current_event or '-'})"
        link = "connected to" if snapshot.broker_connected else "not connected to"
        lines.ok(
            f"running as PID {pid}, version {snapshot.agent_version}: {doing}, {link} "
            f"{snapshot.broker_endpoint}"
        )
        last = snapshot.last_result
        if last is not None and last.status != "SUCCEEDED":
            lines.info(
                f"last deployment {last.deployment_id} (job {last.job_id}) ended {last.status} "
                f"at {last.finished_at:%Y-%m-%d %H:%M:%S}Z: {last.message or '-'}"
            )
    _check_unit(lines)
    return lines.findings


def check_logs(config: AgentConfig) -> list[Finding]:
    """Where to look: the agent log, the deployments log, each deployment's scripts.log."""
    root = DeploymentRoot(config.root_dir, program_name=config.program_name)
    agent_log = config.log_dir / f"{config.program_name}.log"
    try:
        size = _size(agent_log.stat().st_size)
    except OSError:
        size = "not written yet"
    return Lines("logs").info(
        f"agent {agent_log} ({size}); every script's output {root.deployments_log}; one "
        f"deployment's {root.path}/<group>/<deployment>/logs/scripts.log; systemd's "
        f"`journalctl -u {UNIT}`"
    )

"""packaging/scripts/*.sh run the way RPM and dpkg run them, in the order their transactions do.

test_packages.py::test_rpm_scripts checks that the .rpm carries these files verbatim as %pre,
%post, %preun and %postun (nfpm's preinstall, postinstall, preremove, postremove); the booted
test runs the .deb's install, upgrade and purge. Here every branch runs: RPM's numeric argument
(%pre/%post: 1 install, 2 upgrade; %preun/%postun: 0 erase, 1 upgrade) and dpkg's words,
including the ones the booted test never reaches (remove without purge, the abort-* and
failed-upgrade paths).

The scripts write to absolute paths (/opt/codedeploy-agent, /var/log/aws, /etc/codedeploy-agent,
/run/systemd/system tells them systemd runs) and take no root prefix. So each one runs under
/bin/sh in a chroot made of the test's directory, entered in a private mount namespace
(`unshare --mount`): the host's /usr (and the lib and bin directories) bound read-only, an /etc
of symlinks into a read-only bind of the host's /etc (so /etc/codedeploy-agent is the
sandbox's own), a fresh tmpfs for /dev/shm. Everything else the scripts can write is the test's
directory. The namespace ends with the script: nothing is mounted on the host, nothing outside
the test's directory changes. Mounting needs root (CI runs as root): the tests are marked `root`.

PATH holds only fakes that append their argv to a log (`systemctl`, `systemd-run`, the account
tools, `codedeploy-agent` with a scripted status) and links to the few real tools the scripts
use. The package's payload is a stand-in: a virtualenv whose python3 is the host's interpreter
(the postinst really byte-compiles it) and the real libexec/restart-when-idle.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest

pytestmark = pytest.mark.root

REPO: Final = Path(__file__).resolve().parents[2]
SCRIPTS: Final = REPO / "packaging" / "scripts"
RESTART_WHEN_IDLE: Final = REPO / "packaging" / "libexec" / "restart-when-idle"
UNIT: Final = "codedeploy-agent.service"
WAITER: Final = "codedeploy-agent-restart-when-idle.service"
APP: Final = "/opt/codedeploy-agent"
PYTHON: Final = f"python{sys.version_info.major}.{sys.version_info.minor}"

#: Real tools the scripts, restart-when-idle and the fakes run (linked into the fake PATH).
TOOLS: Final = ("install", "find", "rm", "rmdir", "cat", "grep", "head", "tail")
#: Fakes that only record their call. The package creates no account (the agent runs as root so
#: that hooks can run as any user): a call to one of these shows up in the exact call lists.
RECORDERS: Final = (
    "systemd-run", "useradd", "groupadd", "userdel", "groupdel", "adduser", "addgroup",
    "deluser", "delgroup", "getent", "systemd-sysusers", "systemd-tmpfiles",
)  # fmt: skip
SYSTEMCTL: Final = """#!/bin/sh
echo "systemctl $*" >> "$FAKE_LOG"
case "$1" in
    is-active) grep -qx "$3" /fake/active ;;
    *) exit 0 ;;
esac
"""
RECORDER: Final = '#!/bin/sh\necho "${0##*/} $*" >> "$FAKE_LOG"\n'
#: `codedeploy-agent status` prints /fake/status (restart-when-idle's tests cover every answer).
AGENT: Final = '#!/bin/sh\necho "codedeploy-agent $*" >> "$FAKE_LOG"\ncat /fake/status\n'

RUNNING: Final = "The AWS CodeDeploy agent is running as PID 4242"
IDLE: Final = f"{RUNNING}\nstate: idle\n"
DEPLOYING: Final = f"{RUNNING}\nstate: deploying\ncurrent_deployment_id: d-AAAAAAAA1\n"
STOPPED: Final = "No AWS CodeDeploy agent running\n"

RELOAD: Final = "systemctl daemon-reload"
IS_ACTIVE: Final = f"systemctl is-active --quiet {UNIT}"
TRY_RESTART: Final = f"systemctl try-restart {UNIT}"
SCHEDULE_WAITER: Final = (
    f"systemd-run --unit={WAITER.removesuffix('.service')} --collect --quiet "
    "--description=Restart codedeploy-agent once the running deployment has ended "
    f"{APP}/libexec/restart-when-idle --wait"
)
STOP_AND_DISABLE: Final = [f"systemctl stop {WAITER}", f"systemctl disable --now {UNIT}"]
INSTALL_HINT: Final = (
    "codedeploy-agent: configure /etc/codedeploy-agent/conf/codedeployagent.yml, then run: "
    "systemctl enable --now codedeploy-agent && codedeploy-agent doctor\n"
)
#: The directories the postinst creates (root:root 0755).
AGENT_DIRS: Final = (
    f"{APP}/state",
    f"{APP}/state/.pid",
    f"{APP}/deployment-root",
    "/var/log/aws",
    "/var/log/aws/codedeploy-agent",
)
#: Files a deployment and the running agent made: every removal but purge keeps them.
AGENT_DATA: Final = (
    f"{APP}/state/codedeploy-agent.status.json",
    f"{APP}/deployment-root/deployment-instructions/group-1_last_successful_install",
    f"{APP}/deployment-root/group-1/d-AAAAAAAA1/deployment-archive/appspec.yml",
    f"{APP}/deployment-root/deployment-logs/codedeploy-agent-deployments.log",
    "/var/log/aws/codedeploy-agent/codedeploy-agent.log",
)
#: Files a deployment installed outside the agent's directories: nothing ever removes them.
DEPLOYED: Final = ("/opt/app/server.py", "/var/www/html/index.html")


def _top_level_system_entries() -> tuple[list[str], list[str]]:
    """The host's / entries the chroot needs: (symlinks to copy, directories to bind read-only)."""
    links, dirs = [], []
    for name in ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / name
        if path.is_symlink():
            links.append(name)
        elif path.is_dir():
            dirs.append(name)
    return links, dirs


def _interpreter() -> tuple[str, str | None]:
    """(the venv's python3 target, a directory outside /usr to bind for it, if any).

    The package's venv links /usr/bin/python3.X; use that when the host has the same version,
    else the interpreter running the tests (bound into the chroot at its own path).
    """
    system = Path("/usr/bin") / PYTHON
    if system.exists():
        return str(system), None
    prefix = Path(sys.base_prefix).resolve()
    if Path("/usr") in prefix.parents:
        return str(prefix / "bin" / PYTHON), None
    return str(prefix / "bin" / PYTHON), str(prefix)


@dataclass
class Host:
    """A chroot under the test's directory that plays the host the package is installed on."""

    base: Path

    @property
    def root(self) -> Path:
        return self.base / "root"

    def path(self, absolute: str) -> Path:
        """Where the host's absolute path `absolute` is in the test's directory."""
        return self.root / absolute.lstrip("/")

    # --- the world the scripts see ---------------------------------------------------------

    def systemd(self, running: bool) -> None:
        """Whether systemd runs (/run/systemd/system exists, as sd_booted() checks)."""
        marker = self.path("/run/systemd/system")
        if running:
            marker.mkdir(parents=True, exist_ok=True)
        elif marker.exists():
            marker.rmdir()

    def active(self, *units: str) -> None:
        """The units the fake `systemctl is-active` reports active."""
        self.path("/fake/active").write_text("".join(f"{unit}\n" for unit in units))

    def agent_status(self, text: str) -> None:
        """What the fake `codedeploy-agent status` prints."""
        self.path("/fake/status").write_text(text)

    def write(self, absolute: str, text: str = "x\n") -> None:
        target = self.path(absolute)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    # --- what the package manager does between the scripts ---------------------------------

    def package_files(self, packager: str) -> list[str]:
        """The stand-in payload's files, in the host's paths."""
        site = f"{APP}/venv/lib/{PYTHON}/site-packages"
        files = [
            f"{APP}/venv/pyvenv.cfg",
            f"{APP}/venv/bin/python3",
            f"{site}/codedeploy_agent/__init__.py",
            f"{site}/codedeploy_agent/cli.py",
            f"{site}/msgspec/__init__.py",
            f"{APP}/libexec/restart-when-idle",
            "/etc/codedeploy-agent/conf/codedeployagent.yml",
        ]
        return files if packager == "deb" else [*files, "/var/log/aws/codedeploy-agent/"]

    def unpack(self, packager: str) -> None:
        """Lay the payload down (an upgrade overwrites it; the config file stays as it is)."""
        python, _ = _interpreter()
        for name in self.package_files(packager):
            target = self.path(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            if name.endswith("/"):
                target.mkdir(exist_ok=True)
            elif name.endswith("/python3"):
                target.unlink(missing_ok=True)
                target.symlink_to(python)
            elif name.endswith("pyvenv.cfg"):
                target.write_text(f"home = {Path(python).parent}\nversion = {PYTHON[6:]}\n")
            elif name.endswith("restart-when-idle"):
                shutil.copy2(RESTART_WHEN_IDLE, target)
                target.chmod(0o755)  # nfpm.yaml's file_info (the checkout's file is 0644)
            elif name.endswith(".yml"):
                if not target.exists():
                    shutil.copy2(REPO / "packaging" / "codedeployagent.yml", target)
            else:
                target.write_text(f'"""{name}"""\nVALUE = 1\n')

    def remove_files(self, packager: str, *, conffiles: bool = False) -> None:
        """Delete the payload as dpkg/RPM do: files, then their directories, which must be empty
        by then (the byte code the postinst wrote belongs to no package: the prerm removes it)."""
        directories: set[Path] = set()
        for name in self.package_files(packager):
            target = self.path(name)
            if name.endswith(".yml") and not conffiles:
                continue
            if name.endswith("/"):
                directories.add(target)
                continue
            target.unlink()
            directories.update(p for p in target.parents if self.path(APP) in p.parents)
        for directory in sorted(directories, key=lambda p: len(p.parts), reverse=True):
            left = sorted(str(p.relative_to(self.root)) for p in directory.iterdir())
            if directory == self.path("/var/log/aws/codedeploy-agent") and left:
                continue  # RPM owns the log directory and keeps it while logs are in it
            assert not left, f"the package manager cannot remove {directory}: {left} are left"
            directory.rmdir()

    def byte_code(self) -> list[str]:
        return sorted(str(p.relative_to(self.root)) for p in self.path(APP).rglob("*.pyc"))

    # --- running a script ------------------------------------------------------------------

    def run(self, script: str, *args: str) -> subprocess.CompletedProcess[str]:
        """`/bin/sh <script> <args>` in the chroot, as RPM (and, by the #! line, dpkg) run it."""
        self.path("/fake/calls.log").write_text("")
        _, dirs = _top_level_system_entries()
        _, interpreter_tree = _interpreter()
        root = shlex.quote(str(self.root))
        # Belt and braces: never mount anything in the test process's own namespace.
        own_namespace = shlex.quote(str(Path("/proc/self/ns/mnt").readlink()))
        guard = (
            f'[ "$(readlink /proc/self/ns/mnt)" != {own_namespace} ] || '
            '{ echo "not in a private mount namespace: refusing to mount" >&2; exit 99; }'
        )
        lines = [
            "set -eu",
            guard,
            'ro_bind() { mount --bind "$1" "$2"; mount -o remount,bind,ro "$2"; }',
            *(f"ro_bind /{name} {root}/{name}" for name in dirs),
            f"ro_bind /etc {root}/.host-etc",
            f"mount --bind /dev/null {root}/dev/null",
            f"mount --bind /dev/urandom {root}/dev/urandom",
            f"mount -t tmpfs -o mode=1777,size=16m tmpfs {root}/dev/shm",
        ]
        if interpreter_tree is not None:
            lines.append(
                f"ro_bind {shlex.quote(interpreter_tree)} {root}{shlex.quote(interpreter_tree)}"
            )
        environment = "PATH=/fakebin FAKE_LOG=/fake/calls.log LANG=C.UTF-8 TMPDIR=/tmp"
        lines.append(
            f"exec chroot {root} /usr/bin/env -i {environment} /bin/sh /scripts/{script} "
            + " ".join(shlex.quote(arg) for arg in args)
        )
        return subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", "\n".join(lines)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def ok(self, script: str, *args: str) -> tuple[list[str], str]:
        """Run a script that must succeed; return (the fakes' calls, its stdout)."""
        result = self.run(script, *args)
        assert result.returncode == 0, (
            f"{script} {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
        )
        assert result.stderr == "", f"{script} {' '.join(args)} said: {result.stderr}"
        return self.path("/fake/calls.log").read_text().splitlines(), result.stdout


@pytest.fixture
def host(tmp_path: Path) -> Host:
    if shutil.which("unshare") is None or shutil.which("chroot") is None:
        pytest.fail("unshare and chroot (util-linux, coreutils) are needed to sandbox the scripts")
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if probe.returncode != 0:
        pytest.fail(
            f"cannot make a mount namespace ({probe.stderr.strip()}): the maintainer scripts run "
            "in one so that they cannot touch the real /etc, /opt and /var; run the tests as "
            "root with CAP_SYS_ADMIN (a container needs --privileged or --cap-add SYS_ADMIN)"
        )
    host = Host(tmp_path)
    root = host.root
    links, dirs = _top_level_system_entries()
    for name in links:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).symlink_to((Path("/") / name).readlink())
    for name in [*dirs, ".host-etc", "dev/shm", "tmp", "opt", "var/log", "run", "fake", "fakebin"]:
        (root / name).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    for name in ("null", "urandom"):
        (root / "dev" / name).touch()
    _, interpreter_tree = _interpreter()
    if interpreter_tree is not None:
        host.path(interpreter_tree).mkdir(parents=True)
    # /etc: the host's entries, read-only through /.host-etc; /etc/codedeploy-agent is ours.
    (root / "etc").mkdir()
    for entry in sorted(Path("/etc").iterdir()):
        if entry.name != "codedeploy-agent":
            (root / "etc" / entry.name).symlink_to(f"/.host-etc/{entry.name}")
    (root / "scripts").mkdir()
    for script in SCRIPTS.glob("*.sh"):
        shutil.copy2(script, root / "scripts" / script.name)
    fakebin = root / "fakebin"
    for name in TOOLS:
        found = shutil.which(name)
        assert found is not None, f"{name} is needed by the maintainer scripts"
        (fakebin / name).symlink_to(os.path.realpath(found))
    for name, text in (
        ("systemctl", SYSTEMCTL),
        ("codedeploy-agent", AGENT),
        *((name, RECORDER) for name in RECORDERS),
    ):
        (fakebin / name).write_text(text)
        (fakebin / name).chmod(0o755)
    host.systemd(running=True)
    host.active()
    host.agent_status(STOPPED)
    return host


def installed(host: Host, packager: str) -> None:
    """The package installed and configured, the agent running, a deployment done."""
    if packager == "rpm":
        host.ok("preinstall.sh", "1")
        host.unpack("rpm")
        host.ok("postinstall.sh", "1")
    else:
        host.ok("preinstall.sh", "install")
        host.unpack("deb")
        host.ok("postinstall.sh", "configure", "")
    for name in (*AGENT_DATA, *DEPLOYED):
        host.write(name)
    host.active(UNIT)
    host.agent_status(IDLE)


def assert_agent_dirs(host: Host) -> None:
    for name in AGENT_DIRS:
        info = host.path(name).lstat()
        assert stat.S_ISDIR(info.st_mode), f"{name} is not a directory"
        assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (0o755, 0, 0), name


def assert_kept(host: Host, names: Sequence[str]) -> None:
    missing = [name for name in names if not host.path(name).is_file()]
    assert not missing, f"removed, but must stay: {missing}"


# --- fresh install -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("packager", "pre", "post"),
    [
        pytest.param("rpm", ["1"], ["1"], id="rpm"),
        pytest.param("deb", ["install"], ["configure", ""], id="deb"),
    ],
)
def test_install_creates_the_directories_and_leaves_the_agent_off(
    host: Host, packager: str, pre: list[str], post: list[str]
) -> None:
    """Install: directories root:root 0755, byte code written, systemd reloaded; the unit is
    neither enabled nor started (it needs a broker, thing name and key first), no account."""
    assert host.ok("preinstall.sh", *pre) == ([], "")
    host.unpack(packager)
    calls, said = host.ok("postinstall.sh", *post)
    assert calls == [RELOAD]
    assert said == INSTALL_HINT
    assert_agent_dirs(host)
    site = f"opt/codedeploy-agent/venv/lib/{PYTHON}/site-packages"
    tag = sys.implementation.cache_tag
    assert host.byte_code() == [
        f"{site}/codedeploy_agent/__pycache__/__init__.{tag}.pyc",
        f"{site}/codedeploy_agent/__pycache__/cli.{tag}.pyc",
        f"{site}/msgspec/__pycache__/__init__.{tag}.pyc",
    ]


@pytest.mark.parametrize("post", [["1"], ["configure", ""]], ids=["rpm", "deb"])
def test_install_without_systemd_touches_no_service(host: Host, post: list[str]) -> None:
    """In an image build or a container without systemd: the files, no systemctl call."""
    host.systemd(running=False)
    host.unpack("rpm" if post == ["1"] else "deb")
    assert host.ok("postinstall.sh", *post) == ([], "")
    assert_agent_dirs(host)
    assert host.byte_code(), "the postinst did not byte-compile the virtualenv"


@pytest.mark.parametrize("argument", ["1", "install", "upgrade"])
def test_preinstall_creates_a_missing_opt(host: Host, argument: str) -> None:
    """The .deb does not own /opt (purge would remove it), so the preinst makes it if needed."""
    host.path("/opt").rmdir()
    assert host.ok("preinstall.sh", argument) == ([], "")
    info = host.path("/opt").lstat()
    assert (stat.S_ISDIR(info.st_mode), stat.S_IMODE(info.st_mode), info.st_uid) == (True, 0o755, 0)
    host.write("/opt/other/file")
    assert host.ok("preinstall.sh", argument) == ([], "")
    assert_kept(host, ["/opt/other/file"])


# --- upgrade -------------------------------------------------------------------------------

#: (agent status, units active) -> what the upgrade does to the agent.
UPGRADE_CASES: Final = [
    pytest.param(IDLE, (UNIT,), [IS_ACTIVE, "codedeploy-agent status", TRY_RESTART], id="idle"),
    pytest.param(
        DEPLOYING,
        (UNIT,),
        [
            IS_ACTIVE,
            "codedeploy-agent status",
            f"systemctl is-active --quiet {WAITER}",
            SCHEDULE_WAITER,
        ],
        id="deploying",
    ),
    pytest.param(STOPPED, (), [IS_ACTIVE], id="stopped"),
]


@pytest.mark.parametrize(("status", "units", "restart"), UPGRADE_CASES)
def test_rpm_upgrade_restarts_through_restart_when_idle(
    host: Host, status: str, units: tuple[str, ...], restart: list[str]
) -> None:
    """rpm -U: new %pre 2, files, new %post 2, old %preun 1, old files gone, old %postun 1.
    Only the old package's %postun restarts, and only through restart-when-idle; nothing stops
    or disables the agent, and config, state, deployments and logs stay."""
    installed(host, "rpm")
    host.write("/etc/codedeploy-agent/conf/codedeployagent.yml", "# edited by the operator\n")
    host.agent_status(status)
    host.active(*units)
    assert host.ok("preinstall.sh", "2") == ([], "")
    host.unpack("rpm")
    assert host.ok("postinstall.sh", "2") == ([RELOAD], "")
    compiled = host.byte_code()
    assert compiled, "the new %post did not byte-compile the virtualenv"
    assert host.ok("preremove.sh", "1") == ([], "")
    assert host.byte_code() == compiled, "the old %preun removed the new version's byte code"
    calls, said = host.ok("postremove.sh", "1")
    assert calls == [RELOAD, *restart]
    if status == DEPLOYING:
        assert said == (
            "codedeploy-agent: a deployment is running; the agent restarts when it has ended\n"
        )
    assert_agent_dirs(host)
    assert_kept(host, [*AGENT_DATA, *DEPLOYED])
    config = host.path("/etc/codedeploy-agent/conf/codedeployagent.yml")
    assert config.read_text() == "# edited by the operator\n"


@pytest.mark.parametrize(("status", "units", "restart"), UPGRADE_CASES)
def test_deb_upgrade_restarts_through_restart_when_idle(
    host: Host, status: str, units: tuple[str, ...], restart: list[str]
) -> None:
    """apt upgrade: old prerm upgrade NEW, new preinst upgrade OLD, unpack, old postrm upgrade
    NEW, new postinst configure OLD. The postinst restarts through restart-when-idle; the old
    prerm drops its byte code (dpkg could not remove changed directories otherwise)."""
    installed(host, "deb")
    host.agent_status(status)
    host.active(*units)
    assert host.ok("preremove.sh", "upgrade", "0.1.0-2") == ([], "")
    assert host.byte_code() == []
    assert host.ok("preinstall.sh", "upgrade", "0.1.0-1") == ([], "")
    host.unpack("deb")
    assert host.ok("postremove.sh", "upgrade", "0.1.0-2") == ([], "")
    calls, _ = host.ok("postinstall.sh", "configure", "0.1.0-1")
    assert calls == [RELOAD, *restart]
    assert host.byte_code(), "the postinst did not byte-compile the new virtualenv"
    assert_kept(host, [*AGENT_DATA, *DEPLOYED])


def test_upgrade_without_systemd_restarts_nothing(host: Host) -> None:
    """RPM and deb upgrades in a container without systemd: no systemctl, no restart-when-idle."""
    installed(host, "rpm")
    host.systemd(running=False)
    for script, args in (
        ("postinstall.sh", ["2"]),
        ("preremove.sh", ["1"]),
        ("postremove.sh", ["1"]),
        ("preremove.sh", ["upgrade", "0.1.0-2"]),
        ("postinstall.sh", ["configure", "0.1.0-1"]),
    ):
        assert host.ok(script, *args) == ([], ""), f"{script} {args}"


# --- removal -------------------------------------------------------------------------------


@pytest.mark.parametrize("systemd", [True, False], ids=["systemd", "no-systemd"])
def test_rpm_erase_stops_and_disables_and_keeps_the_data(host: Host, systemd: bool) -> None:
    """rpm -e: %preun 0 stops the waiter, then disables and stops the agent, and removes the
    byte code (RPM removes the directories next); %postun 0 reloads systemd. Config, state,
    deployment root, logs and deployed files stay (RPM has no purge)."""
    installed(host, "rpm")
    host.systemd(running=systemd)
    calls, said = host.ok("preremove.sh", "0")
    assert calls == (STOP_AND_DISABLE if systemd else [])
    assert said == ""
    assert host.byte_code() == []
    host.remove_files("rpm")
    assert host.ok("postremove.sh", "0") == (([RELOAD] if systemd else []), "")
    assert_kept(host, [*AGENT_DATA, *DEPLOYED, "/etc/codedeploy-agent/conf/codedeployagent.yml"])
    assert not host.path(f"{APP}/venv").exists()


def test_deb_remove_then_purge(host: Host) -> None:
    """apt remove: prerm remove stops and disables, postrm remove reloads; the data stays.
    apt purge: the package's directories go, /opt, deployed files, an operator's key in
    /etc/codedeploy-agent and other programs' logs in /var/log/aws stay."""
    installed(host, "deb")
    host.write("/etc/codedeploy-agent/tls/host-1.key")
    host.write("/var/log/aws/amazon-ssm-agent/amazon-ssm-agent.log")
    assert host.ok("preremove.sh", "remove") == (STOP_AND_DISABLE, "")
    assert host.byte_code() == []
    host.remove_files("deb")
    assert host.ok("postremove.sh", "remove") == ([RELOAD], "")
    assert_kept(host, [*AGENT_DATA, *DEPLOYED, "/etc/codedeploy-agent/conf/codedeployagent.yml"])

    host.path("/etc/codedeploy-agent/conf/codedeployagent.yml").unlink()  # dpkg: conffiles
    assert host.ok("postremove.sh", "purge") == ([RELOAD], "")
    for gone in (APP, "/var/log/aws/codedeploy-agent", "/etc/codedeploy-agent/conf"):
        assert not host.path(gone).exists(), f"purge left {gone}"
    assert_kept(
        host,
        [
            *DEPLOYED,
            "/etc/codedeploy-agent/tls/host-1.key",
            "/var/log/aws/amazon-ssm-agent/amazon-ssm-agent.log",
        ],
    )


def test_deb_purge_removes_every_directory_it_made(host: Host) -> None:
    """With nothing of anyone else's left, purge leaves no trace but /opt itself."""
    installed(host, "deb")
    for name in DEPLOYED:
        host.path(name).unlink()
    host.path("/opt/app").rmdir()
    host.ok("preremove.sh", "remove")
    host.remove_files("deb", conffiles=True)
    host.ok("postremove.sh", "remove")
    host.systemd(running=False)  # purged later, from a rescue shell: still no error
    assert host.ok("postremove.sh", "purge") == ([], "")
    assert sorted(p.name for p in host.path("/opt").iterdir()) == []
    assert not host.path("/var/log/aws").exists()
    assert not host.path("/etc/codedeploy-agent").exists()


# --- dpkg's other arguments, and arguments nobody passes ------------------------------------


@pytest.mark.parametrize(
    ("script", "args", "expected"),
    [
        ("preremove.sh", ["deconfigure", "in-favour", "other", "1"], STOP_AND_DISABLE),
        ("preremove.sh", ["failed-upgrade", "0.1.0-2"], []),
        ("postinstall.sh", ["abort-upgrade", "0.1.0-2"], []),
        ("postinstall.sh", ["abort-remove"], []),
        ("postinstall.sh", ["abort-deconfigure", "in-favour", "other", "1"], []),
        ("postremove.sh", ["failed-upgrade", "0.1.0-2"], []),
        ("postremove.sh", ["abort-install"], []),
        ("postremove.sh", ["abort-upgrade", "0.1.0-1"], []),
        ("postremove.sh", ["disappear", "other", "1"], []),
    ],
    ids=lambda value: "-".join(value) if isinstance(value, list) else None,
)
def test_dpkg_error_unwinding_arguments(
    host: Host, script: str, args: list[str], expected: list[str]
) -> None:
    """dpkg's unwinding and deconfigure calls: deconfigure stops the agent, the others change
    nothing (no restart, no stop, nothing removed)."""
    installed(host, "deb")
    host.active(UNIT)
    assert host.ok(script, *args) == (expected, "")
    assert_kept(host, [*AGENT_DATA, *DEPLOYED, "/etc/codedeploy-agent/conf/codedeployagent.yml"])
    assert host.path(f"{APP}/venv/pyvenv.cfg").is_file()


@pytest.mark.parametrize("script", ["postinstall.sh", "preremove.sh", "postremove.sh"])
@pytest.mark.parametrize("argument", ["", "reinstall", "-1"])
def test_unknown_argument_fails_and_changes_nothing(host: Host, script: str, argument: str) -> None:
    """An argument neither RPM nor dpkg passes: exit status 1 and a message, no change."""
    host.active(UNIT)
    result = host.run(script, argument)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.endswith(f"called with unknown argument '{argument}'\n")
    assert host.path("/fake/calls.log").read_text() == ""
    assert not host.path(APP).exists()

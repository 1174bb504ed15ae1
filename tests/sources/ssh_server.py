"""A private OpenSSH server on 127.0.0.1 serving git repositories, for the ssh remote tests.

`SshGitServer.start(...)` (or the `ssh_server` fixture) runs the system `sshd -D -e -f <config>`
as root on a free loopback port, with its own ed25519 host key and nothing of the host's ssh
configuration: only public-key authentication (no passwords, no PAM), only one dedicated user
created for the test, whose login shell is `git-shell` (as on a real git server) and whose home
is a private folder under /var/tmp holding the bare repositories and `authorized_keys`. pytest's
tmp_path is root's and 0700, which that user could not enter.

Everything is removed at teardown: the sshd process and every connection process it forked
(they run in sessions of their own), the user and its folder. `sshd` and `git` come from the
system (.ci/run installs openssh-server and git).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import psutil
import pytest

from tests.sources.git_server import git

SSHD: Final = "/usr/sbin/sshd"
#: sshd's compiled-in privilege separation folder; the package's init script creates it at boot,
#: which a container never runs.
PRIVSEP_DIR: Final = Path("/run/sshd")
#: How long sshd may take to listen, on a loaded CI machine.
START_DEADLINE: Final = 20.0
#: How long sshd and its connection processes get to exit after SIGTERM.
STOP_DEADLINE: Final = 10.0


def keygen(path: Path, comment: str) -> Path:
    """A new ed25519 key pair without passphrase at `path` (and `path`.pub); returns `path`."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


def public_key(private: Path) -> str:
    """The `type base64` part of the public key next to `private` (no comment)."""
    kind, data, *_ = Path(f"{private}.pub").read_text(encoding="utf-8").split()
    return f"{kind} {data}"


def fingerprint(private: Path) -> str:
    """The SHA256 fingerprint of the key pair at `private`, as sshd logs it."""
    done = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", f"{private}.pub"],
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.split()[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class SshGitServer:
    """sshd on 127.0.0.1:`port`, letting `user` in with `client_key` only."""

    #: Root-owned scratch folder: sshd_config, host key, client keys, sshd's log.
    folder: Path
    #: The dedicated user's home (owned by it): repositories and authorized_keys.
    home: Path
    user: str
    port: int
    host_key: Path
    #: The private key whose public half is in authorized_keys.
    client_key: Path
    log_file: Path
    process: subprocess.Popen[bytes]

    def url(self, repository: str) -> str:
        """The ssh:// clone URL of `repository` (a bare repository in the user's home)."""
        return f"ssh://{self.user}@127.0.0.1:{self.port}{self.home}/{repository}"

    def known_hosts_line(self, host_public_key: str | None = None) -> str:
        """A known_hosts line for this server ([host]:port form), with its host key or another."""
        return f"[127.0.0.1]:{self.port} {host_public_key or public_key(self.host_key)}\n"

    def log_size(self) -> int:
        """A mark in sshd's log, for `log_since`."""
        return self.log_file.stat().st_size

    def log_since(self, mark: int) -> str:
        """What sshd logged after `mark` (`log_size()` taken earlier)."""
        with open(self.log_file, "rb") as handle:
            handle.seek(mark)
            return handle.read().decode(errors="replace")

    def add_repository(self, name: str, work: Path) -> Path:
        """A bare clone of the work tree `work` as `<home>/<name>`, owned by the user."""
        bare = self.home / name
        git("clone", "--quiet", "--bare", str(work), str(bare))
        # Commits by id over protocol v0 too, as GitHub, GitLab and CodeCommit allow.
        git("config", "uploadpack.allowReachableSHA1InWant", "true", cwd=bare)
        entry = pwd.getpwnam(self.user)
        for path in [bare, *bare.rglob("*")]:
            os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
        return bare

    @classmethod
    def start(cls, folder: Path) -> SshGitServer:
        """Create the user, keys and config in `folder` (root's), then start sshd."""
        if os.geteuid() != 0:
            pytest.fail("the ssh server fixture needs root: it runs sshd and creates a user")
        for program in (SSHD, "/usr/bin/git-shell"):
            if not Path(program).exists():
                pytest.fail(f"{program} is missing: apt-get install openssh-server git (.ci/run)")
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        user = f"cdgit{os.getpid() % 1000000}{secrets.token_hex(2)}"
        home = Path(f"/var/tmp/cd-ssh-{user}")
        home.mkdir(mode=0o700)
        # A `*` password: no password login, yet not locked (`!`), which sshd without PAM refuses.
        subprocess.run(
            [
                "useradd", "--no-create-home", "--home-dir", str(home), "--user-group",
                "--shell", "/usr/bin/git-shell", "--password", "*", user,
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        try:
            return cls._start(folder, user, home)
        except BaseException:
            _remove_user(user, home)
            raise

    @classmethod
    def _start(cls, folder: Path, user: str, home: Path) -> SshGitServer:
        entry = pwd.getpwnam(user)
        host_key = keygen(folder / "ssh_host_ed25519_key", "test host key")
        client_key = keygen(folder / "deploy_key", "codedeploy-agent test")
        authorized = home / "authorized_keys"
        authorized.write_text(public_key(client_key) + "\n", encoding="utf-8")
        authorized.chmod(0o600)
        for path in (home, authorized):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        log_file = folder / "sshd.log"
        for _attempt in range(5):
            port = _free_port()
            config = folder / "sshd_config"
            config.write_text(_config(folder, port, host_key, authorized, user), encoding="utf-8")
            with open(log_file, "ab") as log:
                process = subprocess.Popen(
                    [SSHD, "-D", "-e", "-f", str(config)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )
            server = cls(folder, home, user, port, host_key, client_key, log_file, process)
            if server._wait_until_listening():
                return server
            if "Address already in use" not in log_file.read_text(errors="replace"):
                break  # not the port race of _free_port: trying again would not help
        pytest.fail(
            f"sshd did not start (exit code {process.returncode}); its log:\n"
            + log_file.read_text(errors="replace")
        )

    def _wait_until_listening(self) -> bool:
        """True once sshd sends its banner; False when it exited first."""
        deadline = time.monotonic() + START_DEADLINE
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock,
            ):
                if sock.recv(64).startswith(b"SSH-2.0-"):
                    return True
            time.sleep(0.1)
        self.stop()
        return False

    def stop(self) -> None:
        """Stop sshd and the connection processes it forked; reap them all."""
        try:
            main = psutil.Process(self.process.pid)
            forked = main.children(recursive=True)
        except psutil.NoSuchProcess:
            forked = []
        self.process.terminate()
        try:
            self.process.wait(STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_DEADLINE)
        for child in forked:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        psutil.wait_procs(forked, timeout=STOP_DEADLINE)

    def remove(self) -> None:
        """Stop sshd, then delete the user and its home."""
        try:
            self.stop()
        finally:
            _remove_user(self.user, self.home)


def _config(folder: Path, port: int, host_key: Path, authorized: Path, user: str) -> str:
    """An sshd_config that reads nothing of the host's /etc/ssh."""
    return f"""\
ListenAddress 127.0.0.1:{port}
HostKey {host_key}
PidFile {folder / "sshd.pid"}
AuthorizedKeysFile {authorized}
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
HostbasedAuthentication no
UsePAM no
PermitRootLogin no
AllowUsers {user}
DisableForwarding yes
PermitTTY no
PrintMotd no
PrintLastLog no
UseDNS no
# Protocol v2 over ssh, as GitHub, GitLab and Bitbucket accept it.
AcceptEnv GIT_PROTOCOL
# VERBOSE logs refused keys ("Failed publickey"), which the tests look for.
LogLevel VERBOSE
"""


def _remove_user(user: str, home: Path) -> None:
    subprocess.run(["userdel", user], check=False, capture_output=True)
    subprocess.run(["groupdel", user], check=False, capture_output=True)
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def ssh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshGitServer]:
    """A running SshGitServer (no repositories yet), shared by the tests of a module."""
    server = SshGitServer.start(tmp_path_factory.mktemp("sshd"))
    try:
        yield server
    finally:
        server.remove()

"""Git revisions over ssh, against a real sshd on 127.0.0.1 (tests/sources/ssh_server.py).

The agent's ssh settings for real: `git.ssh_key_file` is the only key offered, the server's host
key must be in `git.ssh_known_hosts_file` (never accepted on first sight), and a refused key or
host key fails with a message that says which setting to check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from codedeploy_agent.config import AgentConfig, ClockSettings, GitSettings
from codedeploy_agent.errors import BundleError
from codedeploy_agent.executor import DeploymentExecutor
from codedeploy_agent.sources.git import fetch_git
from codedeploy_agent.sources.redact import MASK
from codedeploy_agent.spec import DeploymentSpec, GitRevision
from tests.fakes.bundles import write_bundle
from tests.sources.git_server import git, make_deployment
from tests.sources.ssh_server import SshGitServer, fingerprint, keygen, public_key, ssh_server

__all__ = ["ssh_server"]  # the fixture, imported for pytest

pytestmark = [pytest.mark.root, pytest.mark.asyncio]

#: What the agent's config file is called in messages when the test config has no source.
CONFIG_NAME = "codedeployagent.yml"


@dataclass(frozen=True)
class Shop:
    """The repository served over ssh: `pinned` is deployed; a later commit is the branch head."""

    url: str
    #: The URL as the agent's messages show it: the user name is masked, like any URL's.
    shown: str
    pinned: str
    #: Where the pinned commit's ApplicationStart hook writes `pinned $BUNDLE_COMMIT`.
    proof: Path


@pytest.fixture(scope="module")
def shop(ssh_server: SshGitServer, tmp_path_factory: pytest.TempPathFactory) -> Shop:
    """`shop.git` in the ssh user's home: two commits on `main`, the first one pinned."""
    base = tmp_path_factory.mktemp("shop")
    proof = base / "proof"
    work = write_bundle(
        base / "work",
        {"ApplicationStart": f'echo "pinned $BUNDLE_COMMIT" > {proof}'},
        files={"app/version.txt": "pinned\n"},
    )
    git("init", "--quiet", "--initial-branch=main", cwd=work)
    git("add", "--all", cwd=work)
    git("commit", "--quiet", "-m", "the deployed commit", cwd=work)
    pinned = git("rev-parse", "HEAD", cwd=work)
    (work / "app" / "version.txt").write_text("head\n")
    (work / "scripts" / "ApplicationStart.sh").write_text(f"#!/bin/bash\necho head > {proof}\n")
    git("commit", "--quiet", "--all", "-m", "a later commit: the branch head", cwd=work)
    ssh_server.add_repository("shop.git", work)
    url = ssh_server.url("shop.git")
    return Shop(url, url.replace(f"//{ssh_server.user}@", f"//{MASK}@"), pinned, proof)


def known_hosts(path: Path, *lines: str) -> Path:
    """A known_hosts file with `lines`."""
    path.write_text("".join(lines), encoding="utf-8")
    return path


def make_config(tmp_path: Path, key: Path, known: Path) -> AgentConfig:
    """An agent config rooted in `tmp_path` whose git settings name `key` and `known`."""
    git_settings = GitSettings(ssh_key_file=key, ssh_known_hosts_file=known, timeout_seconds=60)
    return AgentConfig(
        root_dir=tmp_path / "root",
        log_dir=tmp_path / "logs",
        git=git_settings,
        clock=ClockSettings(ntp_servers=()),
    )


async def test_deploys_the_pinned_commit_over_ssh(
    tmp_path: Path, ssh_server: SshGitServer, shop: Shop
) -> None:
    """A whole deployment of an ssh:// revision: the key of git.ssh_key_file logs in, the host
    key is checked against git.ssh_known_hosts_file, the pinned commit (not the branch head) is
    checked out without .git, and its hook runs with BUNDLE_COMMIT."""
    known = known_hosts(tmp_path / "known_hosts", ssh_server.known_hosts_line())
    config = make_config(tmp_path, ssh_server.client_key, known)
    spec = DeploymentSpec(
        deployment_id="d-SSHGIT001",
        deployment_group_id="dg-1",
        deployment_group_name="web",
        application_name="shop",
        revision=GitRevision(shop.url, shop.pinned),
    )
    mark = ssh_server.log_size()
    with capture_logs() as logs:
        result = await DeploymentExecutor(config).run(spec)
    assert result.succeeded, result.failure
    assert shop.proof.read_text() == f"pinned {shop.pinned}\n"
    archive = result.deployment_dir.archive
    assert (archive / "app" / "version.txt").read_text() == "pinned\n"
    assert not (archive / ".git").exists()
    assert not (result.deployment_dir.path / "git-checkout").exists()
    placed = [entry for entry in logs if entry["event"] == "git checkout placed"]
    assert [entry["commit"] for entry in placed] == [shop.pinned]
    # The server let the dedicated user in with the configured key, at the first try.
    said = ssh_server.log_since(mark)
    key = fingerprint(ssh_server.client_key)
    assert re.search(
        rf"Accepted publickey for {ssh_server.user} from 127\.0\.0\.1 .*{re.escape(key)}", said
    )
    assert "Failed publickey" not in said
    assert known.read_text() == ssh_server.known_hosts_line()


@pytest.mark.parametrize("case", ["unknown", "changed"])
async def test_a_host_key_not_in_known_hosts_is_refused(
    tmp_path: Path, ssh_server: SshGitServer, shop: Shop, case: str
) -> None:
    """A server whose host key is missing from git.ssh_known_hosts_file (or differs from the one
    recorded there) is refused before any login, the file stays as it was, and the message
    says where to add the key."""
    if case == "unknown":
        other_host = keygen(tmp_path / "other_host_key", "another server")
        line = f"[127.0.0.1]:1 {public_key(other_host)}\n"  # another server's entry only
    else:
        impostor = keygen(tmp_path / "impostor_key", "not this server's key")
        line = ssh_server.known_hosts_line(public_key(impostor))
    known = known_hosts(tmp_path / "known_hosts", line)
    config = make_config(tmp_path, ssh_server.client_key, known)
    deployment = make_deployment(tmp_path)
    mark = ssh_server.log_size()
    with pytest.raises(BundleError) as raised:
        await fetch_git(GitRevision(shop.url, shop.pinned), deployment, config)
    message = str(raised.value)
    assert message.startswith(
        f"Cannot fetch commit {shop.pinned} from the git remote {shop.shown}: the server's ssh "
        "host key is unknown or has changed. git said: "
    )
    assert "Host key verification failed" in message
    assert message.endswith(
        "Add the server's host key (checked out of band) to the agent user's "
        f"~/.ssh/known_hosts, or to a file named by git.ssh_known_hosts_file in {CONFIG_NAME}."
    )
    assert known.read_text() == line  # nothing was added or replaced
    assert "Accepted publickey" not in ssh_server.log_since(mark)
    assert not deployment.archive.exists()
    assert not (deployment.path / "git-checkout").exists()


async def test_a_key_the_server_does_not_know_is_refused(
    tmp_path: Path, ssh_server: SshGitServer, shop: Shop
) -> None:
    """A git.ssh_key_file whose public key is not authorized: the server refuses it (and no
    other key is tried), and the message names the setting to check."""
    wrong = keygen(tmp_path / "wrong_key", "not authorized")
    known = known_hosts(tmp_path / "known_hosts", ssh_server.known_hosts_line())
    config = make_config(tmp_path, wrong, known)
    deployment = make_deployment(tmp_path)
    mark = ssh_server.log_size()
    with pytest.raises(BundleError) as raised:
        await fetch_git(GitRevision(shop.url, shop.pinned), deployment, config)
    message = str(raised.value)
    assert message.startswith(
        f"Cannot fetch commit {shop.pinned} from the git remote {shop.shown}: the remote refused "
        "the credentials. git said: "
    )
    assert "Permission denied (publickey)" in message
    assert message.endswith(
        f"Check git.ssh_key_file in {CONFIG_NAME} and that its public key may read the repository."
    )
    said = ssh_server.log_since(mark)
    assert f"Failed publickey for {ssh_server.user}" in said
    offered = re.findall(r"Failed publickey for \S+ from .* (SHA256:\S+)", said)
    assert set(offered) == {fingerprint(wrong)}  # IdentitiesOnly: that key alone
    assert "Accepted publickey" not in said
    assert not deployment.archive.exists()


async def test_a_key_file_others_can_read_is_not_used(
    tmp_path: Path, ssh_server: SshGitServer, shop: Shop
) -> None:
    """The authorized key in a file other users can read: ssh will not use it (a common slip
    when the key is copied into /etc), and the message carries ssh's reason and the setting."""
    key = tmp_path / "deploy_key"
    key.write_bytes(ssh_server.client_key.read_bytes())
    key.chmod(0o644)
    known = known_hosts(tmp_path / "known_hosts", ssh_server.known_hosts_line())
    deployment = make_deployment(tmp_path)
    mark = ssh_server.log_size()
    with pytest.raises(BundleError) as raised:
        await fetch_git(
            GitRevision(shop.url, shop.pinned), deployment, make_config(tmp_path, key, known)
        )
    message = str(raised.value)
    assert message.startswith(
        f"Cannot fetch commit {shop.pinned} from the git remote {shop.shown}: the remote refused "
        "the credentials. git said: "
    )
    assert f"Permissions 0644 for '{key}' are too open" in message
    assert f'Load key "{key}": bad permissions' in message
    assert message.endswith(
        f"Check git.ssh_key_file in {CONFIG_NAME} and that its public key may read the repository."
    )
    assert "Accepted publickey" not in ssh_server.log_since(mark)
    assert not deployment.archive.exists()

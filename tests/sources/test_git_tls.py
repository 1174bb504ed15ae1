"""Git and CodeCommit revisions over HTTPS with a private CA: `git http-backend` behind TLS on
127.0.0.1, its certificate signed by a throwaway CA that only SSL_CERT_FILE / SSL_CERT_DIR (or
the operator's GIT_SSL_*) make trusted.

The system git of Debian and Ubuntu is built on libcurl-gnutls, which ignores OpenSSL's
SSL_CERT_FILE and SSL_CERT_DIR; the agent hands them to git as GIT_SSL_CAINFO / GIT_SSL_CAPATH.
Without that, every test here that expects a checkout fails with "server certificate
verification failed".
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from codedeploy_agent.config import AgentConfig, ClockSettings, GitSettings
from codedeploy_agent.errors import BundleError
from codedeploy_agent.sources.codecommit import fetch_codecommit
from codedeploy_agent.sources.git import fetch_git
from codedeploy_agent.spec import CodeCommitRevision, GitRevision
from tests.fakes.brokers import make_test_pki
from tests.sources.conftest import TestCA as CertificateAuthority
from tests.sources.git_server import (
    GitHttpServer,
    GitRepos,
    Repository,
    git_repos,
    make_deployment,
    tree,
)
from tests.sources.test_codecommit import (
    KEY_ID,
    REGION,
    SECRET,
    SigV4Check,
    codecommit_root,
    host_credentials,
)

__all__ = ["codecommit_root", "git_repos", "host_credentials"]  # fixtures, imported for pytest

#: The tree of the commit `second` of every test repository.
SECOND = {
    "README": "second\n",
    "app/link": "-> run.sh",
    "app/run.sh": "#!/bin/sh\necho run\n",
    "appspec.yml": "version: 0.0\nos: linux\n",
}
_CA_VARIABLES = ("SSL_CERT_FILE", "SSL_CERT_DIR", "GIT_SSL_CAINFO", "GIT_SSL_CAPATH")


@pytest.fixture
def no_ca_settings(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """None of the CA variables is set: each test sets the ones it is about."""
    for name in _CA_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def tls_git_server(git_repos: GitRepos, test_ca: CertificateAuthority) -> Iterator[GitHttpServer]:
    """`git http-backend` over HTTPS; its certificate (for 127.0.0.1) is signed by `test_ca`."""
    server = GitHttpServer(git_repos.root, tls=test_ca.server_context).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def tls_codecommit(
    codecommit_root: tuple[Path, Repository], test_ca: CertificateAuthority
) -> Iterator[GitHttpServer]:
    """The stand-in CodeCommit endpoint over HTTPS, checking SigV4-derived passwords."""
    server = GitHttpServer(codecommit_root[0], tls=test_ca.server_context).start()
    server.authorize = SigV4Check({KEY_ID: (SECRET, None)})
    try:
        yield server
    finally:
        server.stop()


def make_config(tmp_path: Path, **git: object) -> AgentConfig:
    """An AgentConfig rooted in `tmp_path` (no NTP, no on-premises file)."""
    settings = GitSettings(**{"timeout_seconds": 30.0, **git})  # type: ignore[arg-type]
    return AgentConfig(
        root_dir=tmp_path / "root",
        git=settings,
        clock=ClockSettings(ntp_servers=()),
        on_premises_config_file=tmp_path / "no-onprem.yml",
    )


def ca_directory(tmp_path: Path, ca_file: Path) -> Path:
    """A CA directory (as SSL_CERT_DIR names) holding `ca_file`."""
    folder = tmp_path / "ca-dir"
    folder.mkdir()
    shutil.copyfile(ca_file, folder / "test-ca.pem")
    return folder


@pytest.mark.asyncio
async def test_git_trusts_the_agents_ca_file(
    tmp_path: Path,
    git_repos: GitRepos,
    tls_git_server: GitHttpServer,
    test_ca: CertificateAuthority,
    no_ca_settings: pytest.MonkeyPatch,
) -> None:
    """SSL_CERT_FILE, which the agent's own downloads use, makes git trust the private CA."""
    no_ca_settings.setenv("SSL_CERT_FILE", str(test_ca.ca_file))
    deployment = make_deployment(tmp_path)
    url = tls_git_server.url("app.git")
    assert url.startswith("https://127.0.0.1:")
    await fetch_git(
        GitRevision(url, git_repos.fast.commits["second"]), deployment, make_config(tmp_path)
    )
    assert tree(deployment.archive) == SECOND
    assert {r.status for r in tls_git_server.requests} == {200}


@pytest.mark.asyncio
async def test_git_trusts_the_agents_ca_directory(
    tmp_path: Path,
    git_repos: GitRepos,
    tls_git_server: GitHttpServer,
    test_ca: CertificateAuthority,
    no_ca_settings: pytest.MonkeyPatch,
) -> None:
    """SSL_CERT_DIR alone works too (git gets it as GIT_SSL_CAPATH)."""
    no_ca_settings.setenv("SSL_CERT_DIR", str(ca_directory(tmp_path, test_ca.ca_file)))
    deployment = make_deployment(tmp_path)
    revision = GitRevision(tls_git_server.url("app.git"), git_repos.fast.commits["second"])
    await fetch_git(revision, deployment, make_config(tmp_path))
    assert tree(deployment.archive) == SECOND


@pytest.mark.asyncio
async def test_the_operators_git_ssl_cainfo_wins(
    tmp_path: Path,
    git_repos: GitRepos,
    tls_git_server: GitHttpServer,
    test_ca: CertificateAuthority,
    no_ca_settings: pytest.MonkeyPatch,
) -> None:
    """GIT_SSL_CAINFO set by the operator is kept, even when SSL_CERT_FILE names another CA."""
    other = make_test_pki(tmp_path / "other-pki")
    no_ca_settings.setenv("SSL_CERT_FILE", str(other.ca_file))
    no_ca_settings.setenv("GIT_SSL_CAINFO", str(test_ca.ca_file))
    deployment = make_deployment(tmp_path)
    revision = GitRevision(tls_git_server.url("app.git"), git_repos.fast.commits["second"])
    await fetch_git(revision, deployment, make_config(tmp_path))
    assert tree(deployment.archive) == SECOND


@pytest.mark.asyncio
async def test_an_untrusted_certificate_is_a_clear_error(
    tmp_path: Path,
    git_repos: GitRepos,
    tls_git_server: GitHttpServer,
    no_ca_settings: pytest.MonkeyPatch,
) -> None:
    """A CA nobody told the agent about: the message says the certificate was refused and where
    the agent takes its CAs from."""
    other = make_test_pki(tmp_path / "other-pki")
    no_ca_settings.setenv("SSL_CERT_FILE", str(other.ca_file))
    commit = git_repos.fast.commits["second"]
    url = tls_git_server.url("app.git")
    with pytest.raises(BundleError) as caught:
        await fetch_git(GitRevision(url, commit), make_deployment(tmp_path), make_config(tmp_path))
    message = str(caught.value)
    assert message.startswith(
        f"Cannot fetch commit {commit} from the git remote {url}: the remote's TLS certificate "
        "was not accepted. git said: "
    ), message
    assert message.endswith(
        "Check the host name in the URL and that a CA this host trusts signed the certificate: "
        "the system's CA certificates, or SSL_CERT_FILE / SSL_CERT_DIR in the agent's "
        "environment (git gets them as GIT_SSL_CAINFO / GIT_SSL_CAPATH unless those are set), "
        "and any TLS-inspecting proxy."
    )
    assert not (tmp_path / "root" / "dg-1" / "d-1" / "deployment-archive").exists()


@pytest.mark.asyncio
async def test_codecommit_over_https_with_a_private_ca(
    tmp_path: Path,
    codecommit_root: tuple[Path, Repository],
    tls_codecommit: GitHttpServer,
    test_ca: CertificateAuthority,
    host_credentials: pytest.MonkeyPatch,
) -> None:
    """CodeCommit-style HTTPS (SigV4-derived password) through a private CA in SSL_CERT_FILE."""
    for name in _CA_VARIABLES:
        host_credentials.delenv(name, raising=False)
    host_credentials.setenv("SSL_CERT_FILE", str(test_ca.ca_file))
    template = f"https://127.0.0.1:{tls_codecommit.port}/v1/repos/{{repository}}"
    config = make_config(tmp_path, codecommit_url_template=template)
    deployment = make_deployment(tmp_path)
    commit = codecommit_root[1].commits["second"]
    await fetch_codecommit(CodeCommitRevision("MyDemoRepo", commit, REGION), deployment, config)
    assert tree(deployment.archive) == SECOND
    assert {r.user for r in tls_codecommit.requests if r.status == 200} == {KEY_ID}

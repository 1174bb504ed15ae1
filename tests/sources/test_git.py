"""Git revisions against real remotes on this machine: `git http-backend` on 127.0.0.1 and
file:// repositories (ssh remotes against a private sshd: test_git_ssh.py)."""

from __future__ import annotations

import asyncio
import stat
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil
import pytest
from blockbuster import blockbuster_ctx
from structlog.testing import capture_logs

from codedeploy_agent.config import AgentConfig, ClockSettings, GitSettings
from codedeploy_agent.errors import ArchiveError, BundleError
from codedeploy_agent.sources.git import fetch_git, split_userinfo, ssh_command, url_transport
from codedeploy_agent.spec import GitRevision
from tests.sources.conftest import LocalProxy
from tests.sources.git_server import (
    CommandLines,
    GitHttpServer,
    GitRepos,
    git_repos,
    git_server,
    make_deployment,
    make_one_commit_repository,
    recording_git,
    tree,
)

__all__ = ["git_repos", "git_server"]  # fixtures, imported for pytest

PASSWORD = "s3cret-Pa55word"  # noqa: S105 - a test password
#: The tree of the commit `second` of every test repository.
SECOND = {
    "README": "second\n",
    "app/link": "-> run.sh",
    "app/run.sh": "#!/bin/sh\necho run\n",
    "appspec.yml": "version: 0.0\nos: linux\n",
}


def make_config(tmp_path: Path, **git: object) -> AgentConfig:
    """An AgentConfig rooted in `tmp_path` with `git:` settings `git` (no NTP, no network)."""
    settings = GitSettings(**{"timeout_seconds": 30.0, **git})  # type: ignore[arg-type]
    return AgentConfig(
        root_dir=tmp_path / "root", git=settings, clock=ClockSettings(ntp_servers=())
    )


def names(folder: Path) -> list[str]:
    """The names in `folder`, sorted."""
    return sorted(path.name for path in folder.iterdir())


def events(logs: Sequence[Mapping[str, Any]]) -> list[object]:
    """The log events in order."""
    return [entry["event"] for entry in logs]


def password_file(tmp_path: Path, password: str = PASSWORD) -> Path:
    """A password file with a trailing newline, as editors write it."""
    path = tmp_path / "git-password"
    path.write_text(f"{password}\n")
    return path


@pytest.mark.asyncio
async def test_fetches_the_pinned_commit_by_id(
    tmp_path: Path, git_repos: GitRepos, git_server: GitHttpServer
) -> None:
    """A commit that is not the branch head is fetched by id and becomes the archive, without .git."""
    deployment = make_deployment(tmp_path)
    revision = GitRevision(git_server.url("app.git"), git_repos.fast.commits["second"])
    with capture_logs() as logs:
        await fetch_git(revision, deployment, make_config(tmp_path))
    assert tree(deployment.archive) == SECOND
    assert stat.S_IMODE((deployment.archive / "app/run.sh").stat().st_mode) == 0o755
    assert names(deployment.path) == ["deployment-archive"]
    assert events(logs) == ["git fetch started", "git checkout placed"]
    assert logs[-1]["commit"] == git_repos.fast.commits["second"]


@pytest.mark.asyncio
async def test_the_event_loop_is_never_blocked(
    tmp_path: Path, git_repos: GitRepos, git_server: GitHttpServer
) -> None:
    """Files, credentials and the copy run in threads; git runs as an async subprocess."""
    git_server.authorize = lambda user, password, _path: (user, password) == ("deployer", PASSWORD)
    config = make_config(tmp_path, username="deployer", password_file=password_file(tmp_path))
    deployment = make_deployment(tmp_path)
    revision = GitRevision(git_server.url("strict.git"), git_repos.refusing.commits["second"])
    with blockbuster_ctx("codedeploy_agent"):
        await fetch_git(revision, deployment, config)
    assert tree(deployment.archive) == SECOND


@pytest.mark.asyncio
async def test_falls_back_to_all_branches_when_the_server_refuses_ids(
    tmp_path: Path, git_repos: GitRepos, git_server: GitHttpServer
) -> None:
    """A server that refuses unadvertised objects still gives the commit, and the log says why."""
    deployment = make_deployment(tmp_path)
    revision = GitRevision(git_server.url("strict.git"), git_repos.refusing.commits["second"])
    with capture_logs() as logs:
        await fetch_git(revision, deployment, make_config(tmp_path))
    assert tree(deployment.archive) == SECOND
    assert events(logs) == [
        "git fetch started",
        "the server does not hand out this commit by id; fetching all branches and tags",
        "git checkout placed",
    ]


@pytest.mark.asyncio
async def test_abbreviated_commit_id(
    tmp_path: Path, git_repos: GitRepos, git_server: GitHttpServer
) -> None:
    """An abbreviated (upper-case) commit id is resolved after fetching every branch and tag."""
    deployment = make_deployment(tmp_path)
    commit = git_repos.fast.commits["second"]
    revision = GitRevision(git_server.url("app.git"), commit[:10].upper())
    with capture_logs() as logs:
        await fetch_git(revision, deployment, make_config(tmp_path))
    assert tree(deployment.archive) == SECOND
    assert events(logs)[1] == "abbreviated commit id; fetching all branches and tags to find it"
    assert logs[-1]["commit"] == commit


@pytest.mark.asyncio
@pytest.mark.parametrize("form", ["file-url", "path"])
async def test_local_repository(tmp_path: Path, git_repos: GitRepos, form: str) -> None:
    """A file:// URL and an absolute path the job names are cloned like any remote."""
    deployment = make_deployment(tmp_path)
    path = str(git_repos.refusing.path)
    url = f"file://{path}" if form == "file-url" else path
    await fetch_git(
        GitRevision(url, git_repos.refusing.commits["second"]), deployment, make_config(tmp_path)
    )
    assert tree(deployment.archive) == SECOND


@pytest.mark.asyncio
async def test_basic_auth_with_configured_credentials(
    tmp_path: Path, git_repos: GitRepos, git_server: GitHttpServer
) -> None:
    """The configured user and password file reach the server, but no command line or log."""
    git_server.authorize = lambda user, password, _path: (user, password) == ("deployer", PASSWORD)
    wrapper, argv_log = recording_git(tmp_path / "bin")
    config = make_config(
        tmp_path,
        executable=str(wrapper),
        username="deployer",
        password_file=password_file(tmp_path),
    )
    deployment = make_deployment(tmp_path)
    revision = GitRevision(git_server.url("app.git"), git_repos.fast.commits["second"])
    with capture_logs() as logs, CommandLines() as lines:
        await fetch_git(revision, deployment, config)
    assert tree(deployment.archive) == SECOND
    assert {r.user for r in git_server.requests if r.status == 200} == {"deployer"}
    assert [line.split(" ", 1)[1] for line in argv_log.read_text().splitlines()] == [
        "init --quiet --template= --object-format=sha1",
        f"fetch --depth 1 --no-tags origin {git_repos.fast.commits['second']}",
        "checkout --quiet --detach FETCH_HEAD --",
        "rev-parse HEAD",
    ]
    assert lines.containing("git-remote-http")  # the sampler did see the fetch
    assert lines.containing(PASSWORD) == []
    assert PASSWORD not in repr(logs)


@pytest.mark.asyncio
async def test_wrong_password_is_a_clear_error_without_the_password(
    tmp_path: Path, git_repos: GitRepos, git_server: GitHttpServer
) -> None:
    """A refused password gives git's message and the fix, and appears nowhere."""
    git_server.authorize = lambda user, password, _path: (user, password) == ("deployer", "right")
    wrapper, argv_log = recording_git(tmp_path / "bin")
    config = make_config(
        tmp_path,
        executable=str(wrapper),
        username="deployer",
        password_file=password_file(tmp_path),
    )
    deployment = make_deployment(tmp_path)
    commit = git_repos.fast.commits["second"]
    url = git_server.url("app.git")
    with capture_logs() as logs, CommandLines() as lines, pytest.raises(BundleError) as caught:
        await fetch_git(GitRevision(url, commit), deployment, config)
    assert str(caught.value) == (
        f"Cannot fetch commit {commit} from the git remote {url}: the remote refused the "
        f"credentials. git said: fatal: Authentication failed for '{url}/'. Check "
        "git.username and git.password_file in codedeployagent.yml (a token with read access "
        "to the repository), or the credentials in the URL."
    )
    assert [r.user for r in git_server.requests] == [None, "deployer"]
    assert PASSWORD not in repr(logs)
    assert PASSWORD not in argv_log.read_text()
    assert lines.containing(PASSWORD) == []
    assert names(deployment.path) == []


@pytest.mark.asyncio
async def test_credentials_in_the_url_stay_off_command_lines(
    tmp_path: Path, git_repos: GitRepos, git_server: GitHttpServer
) -> None:
    """`user:password@` in the URL authenticates through the helper, never through argv."""
    git_server.authorize = lambda user, password, _path: (user, password) == ("ci", "p@ss:word")
    deployment = make_deployment(tmp_path)
    url = git_server.url("app.git", userinfo="ci:p%40ss%3Aword")
    with capture_logs() as logs, CommandLines() as lines:
        await fetch_git(
            GitRevision(url, git_repos.fast.commits["second"]), deployment, make_config(tmp_path)
        )
    assert tree(deployment.archive) == SECOND
    assert lines.containing("git-remote-http")
    assert lines.containing("p%40ss") == []
    assert lines.containing("p@ss:word") == []
    assert "p%40ss" not in repr(logs)
    assert logs[0]["remote"] == f"http://127.0.0.1:{git_server.port}/app.git"


@pytest.mark.asyncio
async def test_token_as_user_name_stays_off_command_lines(
    tmp_path: Path, git_repos: GitRepos, git_server: GitHttpServer
) -> None:
    """A token given as the URL's user name (GitHub style) is sent, but never through argv."""
    git_server.authorize = lambda user, password, _path: (user, password) == ("ghp_T0KEN", "")
    deployment = make_deployment(tmp_path)
    url = git_server.url("app.git", userinfo="ghp_T0KEN")
    with capture_logs() as logs, CommandLines() as lines:
        await fetch_git(
            GitRevision(url, git_repos.fast.commits["second"]), deployment, make_config(tmp_path)
        )
    assert tree(deployment.archive) == SECOND
    assert lines.containing("git-remote-http")
    assert lines.containing("ghp_T0KEN") == []
    assert "ghp_T0KEN" not in repr(logs)


@pytest.mark.asyncio
async def test_user_name_in_the_url_with_the_configured_password(
    tmp_path: Path, git_repos: GitRepos, git_server: GitHttpServer
) -> None:
    """A user name in the URL is combined with git.password_file, like git itself does."""
    git_server.authorize = lambda user, password, _path: (user, password) == ("ci", PASSWORD)
    config = make_config(tmp_path, username="deployer", password_file=password_file(tmp_path))
    deployment = make_deployment(tmp_path)
    url = git_server.url("app.git", userinfo="ci")
    await fetch_git(GitRevision(url, git_repos.fast.commits["second"]), deployment, config)
    assert tree(deployment.archive) == SECOND


@pytest.mark.asyncio
async def test_authentication_required_but_no_credentials(
    tmp_path: Path, git_repos: GitRepos, git_server: GitHttpServer
) -> None:
    """With no credentials configured git does not prompt; the error says what to configure."""
    git_server.authorize = lambda _user, _password, _path: False
    deployment = make_deployment(tmp_path)
    commit = git_repos.fast.commits["second"]
    url = git_server.url("app.git")
    with pytest.raises(BundleError) as caught:
        await fetch_git(GitRevision(url, commit), deployment, make_config(tmp_path))
    assert str(caught.value) == (
        f"Cannot fetch commit {commit} from the git remote {url}: the remote refused the "
        "credentials. git said: fatal: could not read Username for "
        f"'http://127.0.0.1:{git_server.port}': terminal prompts disabled. Check git.username "
        "and git.password_file in codedeployagent.yml (a token with read access to the "
        "repository), or the credentials in the URL."
    )


@pytest.mark.asyncio
async def test_half_configured_credentials(tmp_path: Path, git_server: GitHttpServer) -> None:
    """A user name without a password file is a configuration error, before any git runs."""
    deployment = make_deployment(tmp_path)
    config = make_config(tmp_path, username="deployer")
    with pytest.raises(BundleError) as caught:
        await fetch_git(GitRevision(git_server.url("app.git"), "a" * 40), deployment, config)
    assert str(caught.value) == (
        "git.username is set in codedeployagent.yml but git.password_file is not; git "
        "credentials need both. Set both, or neither."
    )
    assert git_server.requests == []


@pytest.mark.asyncio
@pytest.mark.parametrize("repository", ["app.git", "strict.git"])
async def test_missing_commit(tmp_path: Path, git_server: GitHttpServer, repository: str) -> None:
    """A commit the remote does not have is reported as not pushed, on both server kinds."""
    deployment = make_deployment(tmp_path)
    url = git_server.url(repository)
    with pytest.raises(BundleError) as caught:
        await fetch_git(GitRevision(url, "0123456789" * 4), deployment, make_config(tmp_path))
    assert str(caught.value) == (
        f"Cannot fetch commit {'0123456789' * 4} from the git remote {url}: no branch or tag "
        "of the remote contains that commit. Check the commit id (an abbreviated id must be "
        "unambiguous) and that the commit has been pushed."
    )
    assert names(deployment.path) == []


@pytest.mark.asyncio
async def test_missing_repository(tmp_path: Path, git_server: GitHttpServer) -> None:
    """A URL that names no repository says so, with git's words."""
    url = git_server.url("nothing.git")
    with pytest.raises(BundleError) as caught:
        await fetch_git(
            GitRevision(url, "a" * 40), make_deployment(tmp_path), make_config(tmp_path)
        )
    assert str(caught.value) == (
        f"Cannot fetch commit {'a' * 40} from the git remote {url}: the repository was not "
        f"found. git said: fatal: repository '{url}/' not found. Check the URL and that the "
        "credentials may read the repository."
    )


@pytest.mark.asyncio
async def test_timeout_kills_the_git_process_group(
    tmp_path: Path, git_repos: GitRepos, git_server: GitHttpServer
) -> None:
    """A remote that never answers is cut off at git.timeout_seconds, with nothing left running."""
    git_server.stall = True
    wrapper, argv_log = recording_git(tmp_path / "bin")
    config = make_config(tmp_path, executable=str(wrapper), timeout_seconds=1.5)
    deployment = make_deployment(tmp_path)
    commit = git_repos.fast.commits["second"]
    url = git_server.url("app.git")
    started = time.monotonic()
    with pytest.raises(BundleError) as caught:
        await fetch_git(GitRevision(url, commit), deployment, config)
    assert time.monotonic() - started < 10
    assert str(caught.value) == (
        f"Cannot fetch commit {commit} from the git remote {url}: git fetch did not finish "
        "within 1.5 seconds (git.timeout_seconds) and was stopped. Check the network path to "
        "the remote, or raise git.timeout_seconds in codedeployagent.yml for a very large "
        "repository."
    )
    fetch_pid = int(argv_log.read_text().splitlines()[-1].split()[0])
    assert not psutil.pid_exists(fetch_pid)
    assert _processes_mentioning(url) == []
    assert names(deployment.path) == []


@pytest.mark.asyncio
async def test_cancellation_kills_git(
    tmp_path: Path, git_repos: GitRepos, git_server: GitHttpServer
) -> None:
    """Cancelling the fetch (a stopped deployment) kills git and removes the checkout folder."""
    git_server.stall = True
    wrapper, argv_log = recording_git(tmp_path / "bin")
    deployment = make_deployment(tmp_path)
    url = git_server.url("app.git")
    task = asyncio.create_task(
        fetch_git(
            GitRevision(url, git_repos.fast.commits["second"]),
            deployment,
            make_config(tmp_path, executable=str(wrapper)),
        )
    )
    while "fetch" not in (argv_log.read_text() if argv_log.exists() else ""):  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    fetch_pid = int(argv_log.read_text().splitlines()[-1].split()[0])
    assert not psutil.pid_exists(fetch_pid)
    assert _processes_mentioning(url) == []
    assert names(deployment.path) == []


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if text in cmdline:
            found.append(cmdline)
    return found


@pytest.mark.asyncio
async def test_sha256_repository(tmp_path: Path) -> None:
    """A 64-character commit id of a SHA-256 repository is fetched and verified."""
    repo = make_one_commit_repository(
        tmp_path / "remotes", "sha256", {"appspec.yml": "v\n"}, object_format="sha256"
    )
    commit = repo.commits["only"]
    assert len(commit) == 64
    deployment = make_deployment(tmp_path)
    with capture_logs() as logs:
        await fetch_git(
            GitRevision(f"file://{repo.path}", commit), deployment, make_config(tmp_path)
        )
    assert tree(deployment.archive) == {"appspec.yml": "v\n"}
    assert logs[-1]["commit"] == commit


@pytest.mark.asyncio
async def test_link_out_of_the_revision_is_refused(tmp_path: Path) -> None:
    """A repository symlink pointing outside the revision is refused like in any bundle."""
    repo = make_one_commit_repository(
        tmp_path / "remotes",
        "hostile",
        {"appspec.yml": "version: 0.0\nos: linux\n"},
        symlinks={"config/passwd": "/etc/passwd"},
    )
    deployment = make_deployment(tmp_path)
    with pytest.raises(ArchiveError) as caught:
        await fetch_git(
            GitRevision(str(repo.path), repo.commits["only"]), deployment, make_config(tmp_path)
        )
    assert caught.value.member == "config/passwd"
    assert names(deployment.path) == []


@pytest.mark.asyncio
async def test_submodules_are_not_fetched(tmp_path: Path) -> None:
    """A revision with .gitmodules is checked out as it is, with a warning in the log."""
    gitmodules = '[submodule "lib"]\n\tpath = lib\n\turl = https://example.invalid/lib.git\n'
    repo = make_one_commit_repository(
        tmp_path / "remotes", "modules", {".gitmodules": gitmodules, "appspec.yml": "x\n"}
    )
    deployment = make_deployment(tmp_path)
    with capture_logs() as logs:
        await fetch_git(
            GitRevision(str(repo.path), repo.commits["only"]), deployment, make_config(tmp_path)
        )
    assert tree(deployment.archive) == {".gitmodules": gitmodules, "appspec.yml": "x\n"}
    warnings = [entry["event"] for entry in logs if entry["log_level"] == "warning"]
    assert warnings == [
        (
            "the revision has submodules (.gitmodules); they are not fetched: vendor them into "
            "the repository or fetch them in a hook"
        )
    ]


@pytest.mark.asyncio
async def test_a_retry_replaces_what_an_earlier_attempt_left(
    tmp_path: Path, git_repos: GitRepos, git_server: GitHttpServer
) -> None:
    """Leftovers of an interrupted attempt (archive files, a checkout folder) are replaced."""
    deployment = make_deployment(tmp_path)
    (deployment.archive).mkdir()
    (deployment.archive / "stale.txt").write_text("old\n")
    (deployment.path / "git-checkout" / "tree").mkdir(parents=True)
    (deployment.path / "git-checkout" / "tree" / "junk").write_text("junk\n")
    revision = GitRevision(git_server.url("app.git"), git_repos.fast.commits["second"])
    await fetch_git(revision, deployment, make_config(tmp_path))
    assert tree(deployment.archive) == SECOND
    assert names(deployment.path) == ["deployment-archive"]


@pytest.mark.asyncio
async def test_git_not_installed(tmp_path: Path, git_server: GitHttpServer) -> None:
    """A missing git program says how to install it or where to configure it."""
    config = make_config(tmp_path, executable=str(tmp_path / "no-such-git"))
    with pytest.raises(BundleError) as caught:
        await fetch_git(
            GitRevision(git_server.url("app.git"), "a" * 40), make_deployment(tmp_path), config
        )
    assert str(caught.value) == (
        f"The git program '{tmp_path / 'no-such-git'}' was not found. Install git (apt-get "
        "install git, dnf install git) or set git.executable in codedeployagent.yml."
    )


@pytest.mark.asyncio
async def test_fetch_through_the_configured_proxy(
    tmp_path: Path,
    git_repos: GitRepos,
    git_server: GitHttpServer,
    proxy_server: LocalProxy,
) -> None:
    """A remote that is not loopback is reached through proxy_uri (the proxy maps it here)."""
    config = AgentConfig(
        root_dir=tmp_path / "root",
        proxy_uri=proxy_server.url,
        clock=ClockSettings(ntp_servers=()),
    )
    deployment = make_deployment(tmp_path)
    url = f"http://git.example.test:{git_server.port}/app.git"
    await fetch_git(GitRevision(url, git_repos.fast.commits["second"]), deployment, config)
    assert tree(deployment.archive) == SECOND
    assert proxy_server.requests[0].target == f"{url}/info/refs?service=git-upload-pack"


@pytest.mark.asyncio
async def test_credentials_are_withheld_over_plain_http_to_other_hosts(
    tmp_path: Path,
    git_repos: GitRepos,
    git_server: GitHttpServer,
    proxy_server: LocalProxy,
) -> None:
    """Configured credentials are not sent in clear text to a host that is not loopback."""
    git_server.authorize = lambda _user, password, _path: password == PASSWORD
    config = AgentConfig(
        root_dir=tmp_path / "root",
        proxy_uri=proxy_server.url,
        git=GitSettings(username="deployer", password_file=password_file(tmp_path)),
        clock=ClockSettings(ntp_servers=()),
    )
    url = f"http://git.example.test:{git_server.port}/app.git"
    with capture_logs() as logs, pytest.raises(BundleError) as caught:
        await fetch_git(
            GitRevision(url, git_repos.fast.commits["second"]), make_deployment(tmp_path), config
        )
    assert "could not read Username" in str(caught.value)
    assert logs[0]["event"] == "git credentials withheld: plain http to a host that is not loopback"
    assert {r.user for r in git_server.requests} == {None}


@pytest.mark.parametrize(
    ("url", "transport"),
    [
        ("https://github.com/o/r.git", "https"),
        ("HTTP://127.0.0.1:8080/r", "http"),
        ("ssh://git@example.com:2222/o/r.git", "ssh"),
        ("git@github.com:o/r.git", "ssh"),
        ("git://example.com/r.git", "git"),
        ("file:///srv/repos/r.git", "file"),
        ("/srv/repos/r.git", "file"),
    ],
)
def test_transport_of_valid_urls(url: str, transport: str) -> None:
    """Each URL form the job document allows maps to the one transport git is allowed."""
    assert url_transport(url) == transport


@pytest.mark.parametrize(
    "url",
    [
        "ext::sh -c touch% /tmp/pwned",
        "ext::sh",
        "fd::3",
        "--upload-pack=touch /tmp/pwned",
        "-oProxyCommand=x",
        "ssh://-oProxyCommand=x/r.git",
        "git@-oProxyCommand=x:r.git",
        "https::https://example.com/r.git",
        "ftp://example.com/r.git",
        "relative/path.git",
        "https://example.com/r.git\nurl=evil",
        "",
    ],
)
def test_hostile_urls_are_refused(url: str) -> None:
    """Remote-helper syntax, option-like URLs and hosts, and unknown schemes never reach git."""
    with pytest.raises(BundleError) as caught:
        url_transport(url)
    assert str(caught.value) == (
        f"The git URL {url!r} is not allowed: use an https://, http://, ssh://, git:// or "
        "file:// URL, an scp-like user@host:path, or an absolute path."
    )


@pytest.mark.asyncio
async def test_hostile_url_in_a_revision_runs_nothing(tmp_path: Path) -> None:
    """fetch_git refuses an `ext::` URL before running any git command."""
    wrapper, argv_log = recording_git(tmp_path / "bin")
    config = make_config(tmp_path, executable=str(wrapper))
    with pytest.raises(BundleError):
        await fetch_git(GitRevision("ext::sh", "a" * 40), make_deployment(tmp_path), config)
    assert not argv_log.exists()


def test_split_userinfo() -> None:
    """User info is taken out of the URL (decoded), for the credential helper."""
    assert split_userinfo("https://me:p%40ss@example.com/o/r.git") == (
        "https://example.com/o/r.git",
        "me",
        "p@ss",
    )
    assert split_userinfo("https://ghp_T0KEN@example.com/r") == (
        "https://example.com/r",
        "ghp_T0KEN",
        None,
    )
    assert split_userinfo("https://example.com/r") == ("https://example.com/r", None, None)


def test_ssh_command_uses_the_key_in_batch_mode(tmp_path: Path) -> None:
    """GIT_SSH_COMMAND names the key (shell-quoted), only that key, no prompts, unknown host
    keys refused, known_hosts (real clones over ssh: test_git_ssh.py)."""
    config = make_config(
        tmp_path,
        ssh_key_file=Path("/etc/codedeploy agent/deploy key"),
        ssh_known_hosts_file=Path("/etc/codedeploy-agent/known_hosts"),
    )
    assert ssh_command(config) == (
        "ssh -i '/etc/codedeploy agent/deploy key' -o IdentitiesOnly=yes -o BatchMode=yes "
        "-o StrictHostKeyChecking=yes -o UserKnownHostsFile=/etc/codedeploy-agent/known_hosts"
    )
    assert ssh_command(make_config(tmp_path)) == "ssh -o BatchMode=yes -o StrictHostKeyChecking=yes"

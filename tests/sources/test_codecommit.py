"""CodeCommit revisions against `git http-backend` on 127.0.0.1 standing in for CodeCommit.

The server checks the SigV4-derived password the way CodeCommit does, with its own
implementation of the published algorithm (below, independent of the agent's), for known test
credentials; `git.codecommit_url_template` points the agent at it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from codedeploy_agent.config import AgentConfig, ClockSettings, GitSettings, load_config
from codedeploy_agent.errors import BundleError, ConfigError
from codedeploy_agent.sources.codecommit import (
    AwsCredentials,
    codecommit_git_credentials,
    codecommit_url,
    fetch_codecommit,
)
from codedeploy_agent.spec import CodeCommitRevision
from tests.sources.git_server import (
    GitHttpServer,
    Repository,
    make_deployment,
    make_repository,
    tree,
)

REGION = "eu-west-3"
KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # noqa: S105 - AWS's documented example
TOKEN = "FwoGZXIvYXdzEXAMPLE//////////wEaDEXAMPLETOKEN+/="  # noqa: S105
#: The tree of the commit `second`.
SECOND = {
    "README": "second\n",
    "app/link": "-> run.sh",
    "app/run.sh": "#!/bin/sh\necho run\n",
    "appspec.yml": "version: 0.0\nos: linux\n",
}


# ---------------------------------------------------------------------------------------------
# The server side: CodeCommit's check of a SigV4-derived Git password, written from AWS's
# published SigV4 algorithm and the credential helper's documented canonical request.


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def expected_signature(secret: str, timestamp: str, region: str, host: str, path: str) -> str:
    """The signature CodeCommit expects for a password made at `timestamp` (YYYYMMDDTHHMMSS)."""
    canonical = "\n".join(["GIT", path, "", f"host:{host}", "", "host", ""])
    day = timestamp[:8]
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            timestamp,
            "/".join([day, region, "codecommit", "aws4_request"]),
            hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
        ]
    )
    signing_key = _hmac(
        _hmac(_hmac(_hmac(("AWS4" + secret).encode("utf-8"), day), region), "codecommit"),
        "aws4_request",
    )
    return hmac.new(signing_key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


class SigV4Check:
    """The server's authorizer: known key ids with their secret and (optional) session token."""

    def __init__(self, keys: dict[str, tuple[str, str | None]]) -> None:
        self.keys = keys
        self.accepted: list[str] = []

    def __call__(self, user: str, password: str, path: str) -> bool:
        key_id, _, token = user.partition("%")
        if key_id not in self.keys or len(password) != 16 + 64 or password[15] != "Z":
            return False
        secret, expected_token = self.keys[key_id]
        if (token or None) != expected_token:
            return False
        timestamp = password[:15]
        made = datetime.strptime(timestamp, "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
        if abs(datetime.now(UTC) - made) > timedelta(minutes=15):
            return False
        repository_path = re.sub(r"/(info/refs|git-upload-pack)$", "", path)
        signature = expected_signature(secret, timestamp, REGION, "127.0.0.1", repository_path)
        if not hmac.compare_digest(password[16:], signature):
            return False
        self.accepted.append(password)
        return True


@pytest.fixture(scope="module")
def codecommit_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Repository]:
    """A project root laid out like CodeCommit's URLs: `/v1/repos/<name>` (no `.git`)."""
    root = tmp_path_factory.mktemp("codecommit")
    repos = root / "v1" / "repos"
    repos.mkdir(parents=True)
    made = make_repository(repos, "MyDemoRepo", allow_sha_fetch=True)
    path = made.path.rename(repos / "MyDemoRepo")
    return root, Repository(path, made.commits)


@pytest.fixture
def codecommit(codecommit_root: tuple[Path, Repository]) -> Iterator[GitHttpServer]:
    """The stand-in CodeCommit endpoint (set `authorize` to check credentials)."""
    server = GitHttpServer(codecommit_root[0]).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def host_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """AWS credentials from the environment only: no shared files, no instance metadata."""
    for name in [name for name in os.environ if name.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_REGION", "us-east-1")  # the host's; the revision names its own
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return monkeypatch


def make_config(tmp_path: Path, server: GitHttpServer, **git: object) -> AgentConfig:
    """A config whose CodeCommit URL template points at `server`; no NTP, no on-premises file."""
    template = f"http://127.0.0.1:{server.port}/v1/repos/{{repository}}"
    settings = GitSettings(
        **{"codecommit_url_template": template, "timeout_seconds": 30.0, **git}  # type: ignore[arg-type]
    )
    return AgentConfig(
        root_dir=tmp_path / "root",
        git=settings,
        clock=ClockSettings(ntp_servers=()),
        on_premises_config_file=tmp_path / "no-onprem.yml",
    )


# ---------------------------------------------------------------------------------------------
# The derivation itself.


def test_password_matches_the_aws_cli_credential_helper() -> None:
    """Known vectors computed with botocore's SigV4Auth exactly as `aws codecommit
    credential-helper` calls it (timestamp without `Z` in the string to sign, host without port)."""
    now = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    keys = AwsCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    real = codecommit_git_credentials(
        "https://git-codecommit.us-east-1.amazonaws.com/v1/repos/MyDemoRepo", "us-east-1", keys, now
    )
    assert (real.username, real.password) == (
        "AKIDEXAMPLE",
        "20240102T030405Z0f588bef74e2ac4b70b72a0ebf8baa7cf6bcc51c76b85e8a76837044b6fb5ade",
    )
    local = codecommit_git_credentials("http://127.0.0.1:8443/v1/repos/app", REGION, keys, now)
    vector = "20240102T030405Z8e9a30090d4722eb448c88440fe9ab5cdb813fda9eae5dac685a15645ccf541b"
    assert local.password == vector


def test_session_token_goes_in_the_user_name() -> None:
    """Temporary credentials give `<key id>%<session token>`, and the user name becomes secret."""
    now = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    signed = codecommit_git_credentials(
        "https://h/v1/repos/r", REGION, AwsCredentials(KEY_ID, SECRET, TOKEN), now
    )
    assert signed.username == f"{KEY_ID}%{TOKEN}"
    assert signed.secrets == (signed.password, signed.username)
    assert signed.password[16:] == expected_signature(
        SECRET, "20240102T030405", REGION, "h", "/v1/repos/r"
    )


@pytest.mark.parametrize(
    ("template", "region", "fips", "url"),
    [
        (None, "us-east-1", False, "https://git-codecommit.us-east-1.amazonaws.com/v1/repos/r"),
        (None, "us-east-1", True, "https://git-codecommit-fips.us-east-1.amazonaws.com/v1/repos/r"),
        (
            None,
            "cn-north-1",
            False,
            "https://git-codecommit.cn-north-1.amazonaws.com.cn/v1/repos/r",
        ),
        (
            "https://vpce-0a1-b2.git-codecommit.{region}.vpce.amazonaws.com/v1/repos/{repository}",
            "eu-west-1",
            True,
            "https://vpce-0a1-b2.git-codecommit.eu-west-1.vpce.amazonaws.com/v1/repos/r",
        ),
    ],
)
def test_clone_url(template: str | None, region: str, fips: bool, url: str) -> None:
    """The default template follows FIPS mode and China's domain; a custom one is used as is."""
    settings = GitSettings() if template is None else GitSettings(codecommit_url_template=template)
    revision = CodeCommitRevision("r", "a" * 40, region)
    assert codecommit_url(settings, revision, fips=fips) == url


def test_url_template_must_name_the_repository(tmp_path: Path) -> None:
    """A template without `{repository}` is refused when the config file is loaded."""
    path = tmp_path / "codedeployagent.yml"
    path.write_text("git:\n  codecommit_url_template: https://example.com/{region}/repo\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (
        "Invalid configuration git.codecommit_url_template: 'https://example.com/{region}/repo' "
        f"in {path}: must be an http:// or https:// URL containing {{repository}} (and, if "
        "needed, {region}), such as "
        "https://git-codecommit.{region}.amazonaws.com/v1/repos/{repository}"
    )


def test_importing_the_source_does_not_load_the_aws_sdk() -> None:
    """The daemon imports the sources at start: boto3/botocore must wait for a CodeCommit job."""
    code = (
        "import sys, codedeploy_agent.sources.codecommit, codedeploy_agent.sources.git\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# Clones.


@pytest.mark.asyncio
@pytest.mark.parametrize("token", [None, TOKEN], ids=["long-term-keys", "session-token"])
async def test_clone_with_sigv4_derived_credentials(
    tmp_path: Path,
    codecommit_root: tuple[Path, Repository],
    codecommit: GitHttpServer,
    host_credentials: pytest.MonkeyPatch,
    token: str | None,
) -> None:
    """The host's AWS keys sign a password the server accepts; nothing secret is logged."""
    if token is not None:
        host_credentials.setenv("AWS_SESSION_TOKEN", token)
    check = SigV4Check({KEY_ID: (SECRET, token)})
    codecommit.authorize = check
    commit = codecommit_root[1].commits["second"]
    deployment = make_deployment(tmp_path)
    with capture_logs() as logs:
        await fetch_codecommit(
            CodeCommitRevision("MyDemoRepo", commit, REGION),
            deployment,
            make_config(tmp_path, codecommit),
        )
    assert tree(deployment.archive) == SECOND
    user = f"{KEY_ID}%{token}" if token else KEY_ID
    assert {r.user for r in codecommit.requests if r.status == 200} == {user}
    assert check.accepted
    for secret in (SECRET, TOKEN, *check.accepted):
        assert secret not in repr(logs)


@pytest.mark.asyncio
async def test_on_premises_keys_are_used(
    tmp_path: Path,
    codecommit_root: tuple[Path, Repository],
    codecommit: GitHttpServer,
    host_credentials: pytest.MonkeyPatch,
) -> None:
    """An on-premises instance's IAM user keys (reference §7.2) sign the password."""
    host_credentials.delenv("AWS_ACCESS_KEY_ID")
    host_credentials.delenv("AWS_SECRET_ACCESS_KEY")
    onprem = tmp_path / "codedeploy.onpremises.yml"
    onprem.write_text(
        "---\nregion: us-east-1\niam_user_arn: arn:aws:iam::123456789012:user/host\n"
        "aws_access_key_id: AKIAONPREMEXAMPLE\naws_secret_access_key: onprem-secret\n"
    )
    codecommit.authorize = SigV4Check({"AKIAONPREMEXAMPLE": ("onprem-secret", None)})
    config = make_config(tmp_path, codecommit)
    config = AgentConfig(
        root_dir=config.root_dir,
        git=config.git,
        clock=config.clock,
        on_premises_config_file=onprem,
    )
    deployment = make_deployment(tmp_path)
    commit = codecommit_root[1].commits["second"]
    await fetch_codecommit(CodeCommitRevision("MyDemoRepo", commit, REGION), deployment, config)
    assert tree(deployment.archive) == SECOND


@pytest.mark.asyncio
async def test_wrong_secret_key_is_a_clear_error(
    tmp_path: Path,
    codecommit_root: tuple[Path, Repository],
    codecommit: GitHttpServer,
    host_credentials: pytest.MonkeyPatch,
) -> None:
    """A signature the server rejects names the repository and what to check, with no secret."""
    host_credentials.setenv("AWS_SESSION_TOKEN", TOKEN)
    codecommit.authorize = SigV4Check({KEY_ID: ("another-secret", TOKEN)})
    commit = codecommit_root[1].commits["second"]
    url = f"http://127.0.0.1:{codecommit.port}/v1/repos/MyDemoRepo"
    with capture_logs() as logs, pytest.raises(BundleError) as caught:
        await fetch_codecommit(
            CodeCommitRevision("MyDemoRepo", commit, REGION),
            make_deployment(tmp_path),
            make_config(tmp_path, codecommit),
        )
    assert str(caught.value) == (
        f"Cannot fetch commit {commit} from the CodeCommit repository MyDemoRepo in {REGION} "
        f"({url}): the remote refused the credentials. git said: fatal: Authentication failed "
        f"for '{url}/'. Check the host's AWS credentials (on-premises credentials file, "
        "instance profile or environment) and that they allow codecommit:GitPull on the "
        "repository, and that the host clock is right."
    )
    assert TOKEN not in repr(logs)
    assert SECRET not in repr(logs)


@pytest.mark.asyncio
async def test_git_credentials_from_the_config(
    tmp_path: Path, codecommit_root: tuple[Path, Repository], codecommit: GitHttpServer
) -> None:
    """HTTPS Git credentials of an IAM user, from the config, are used instead of signing."""
    codecommit.authorize = lambda user, password, _path: (
        (user, password)
        == (
            "ops-at-123456789012",
            "gitpass+/=",
        )
    )
    password = tmp_path / "codecommit-password"
    password.write_text("gitpass+/=\n")
    config = make_config(
        tmp_path,
        codecommit,
        codecommit_username="ops-at-123456789012",
        codecommit_password_file=password,
    )
    deployment = make_deployment(tmp_path)
    commit = codecommit_root[1].commits["second"]
    await fetch_codecommit(CodeCommitRevision("MyDemoRepo", commit, REGION), deployment, config)
    assert tree(deployment.archive) == SECOND


@pytest.mark.asyncio
async def test_no_aws_credentials(
    tmp_path: Path, codecommit: GitHttpServer, host_credentials: pytest.MonkeyPatch
) -> None:
    """A host without AWS credentials (and no Git credentials configured) is told both ways out."""
    host_credentials.delenv("AWS_ACCESS_KEY_ID")
    host_credentials.delenv("AWS_SECRET_ACCESS_KEY")
    config = make_config(tmp_path, codecommit)
    with pytest.raises(BundleError) as caught:
        await fetch_codecommit(
            CodeCommitRevision("MyDemoRepo", "a" * 40, REGION), make_deployment(tmp_path), config
        )
    assert str(caught.value) == (
        "No AWS credentials were found on this host, so the CodeCommit password cannot be "
        f"derived. Register the host as an on-premises instance ({tmp_path / 'no-onprem.yml'}), "
        "attach an instance profile (EC2), give the agent AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY, or set git.codecommit_username and "
        "git.codecommit_password_file in codedeployagent.yml."
    )
    assert codecommit.requests == []


@pytest.mark.asyncio
async def test_unusable_host_aws_setup(
    tmp_path: Path, codecommit: GitHttpServer, host_credentials: pytest.MonkeyPatch
) -> None:
    """When the host's AWS setup cannot be loaded, the error says so and offers Git credentials."""
    host_credentials.delenv("AWS_REGION")  # and the instance metadata service is disabled
    config = make_config(tmp_path, codecommit)
    with pytest.raises(BundleError) as caught:
        await fetch_codecommit(
            CodeCommitRevision("MyDemoRepo", "a" * 40, REGION), make_deployment(tmp_path), config
        )
    message = str(caught.value)
    assert message.startswith(
        "CodeCommit needs this host's AWS credentials, and they cannot be loaded: No AWS region"
    )
    assert message.endswith(
        " Or set git.codecommit_username and git.codecommit_password_file (HTTPS Git credentials "
        "of an IAM user) in codedeployagent.yml."
    )
    assert codecommit.requests == []

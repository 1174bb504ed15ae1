"""CodeCommit revisions: one commit of an AWS CodeCommit repository, over HTTPS.

The clone URL comes from `git.codecommit_url_template` (default
`https://git-codecommit.{region}.amazonaws.com/v1/repos/{repository}`; with the default, FIPS
mode uses `git-codecommit-fips` and China regions `amazonaws.com.cn`). Credentials, in order:

1. Git credentials of an IAM user from the config (`git.codecommit_username` and
   `git.codecommit_password_file`);
2. otherwise credentials derived from the host's AWS credentials (`sources.aws.aws_session`:
   on-premises file, instance role, environment), exactly as `aws codecommit credential-helper`
   derives them: the user name is the access key id, followed by `%<session token>` when there
   is one; the password is `<YYYYMMDDTHHMMSS>Z<signature>`, the signature being SigV4 (service
   `codecommit`, the revision's region) over the canonical request
   `GIT\\n<path>\\n\\nhost:<host>\\n\\nhost\\n` (host without port). Note the string to sign
   carries the timestamp *without* the `Z`, as the AWS CLI's does. A fresh password is signed
   for each git command, and the clock is checked first (`aws.check_clock`).

The clone itself is `git.clone_commit`. botocore is imported only through `sources.aws`, inside
functions, when a job needs it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from codedeploy_agent.config import AgentConfig, GitSettings
from codedeploy_agent.errors import AgentError, BundleError
from codedeploy_agent.host.layout import DeploymentDir
from codedeploy_agent.sources.git import (
    CredentialSource,
    HttpCredentials,
    Remote,
    clone_commit,
    config_name,
    constant_credentials,
    read_credentials,
    url_transport,
)
from codedeploy_agent.spec import CodeCommitRevision

if TYPE_CHECKING:
    from boto3.session import Session  # type: ignore[import-untyped,unused-ignore]

#: The default template (the real endpoint); FIPS and China variants derive from it.
DEFAULT_URL_TEMPLATE: Final = GitSettings().codecommit_url_template
_SERVICE: Final = "codecommit"


@dataclass(frozen=True, slots=True)
class AwsCredentials:
    """An access key pair, with the session token of temporary credentials."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


async def fetch_codecommit(
    revision: CodeCommitRevision, deployment: DeploymentDir, config: AgentConfig
) -> None:
    """Check out `revision.commit_id` of the CodeCommit repository into `deployment-archive/`.

    Raises BundleError (ClockSkewError when the host clock is too far off to sign).
    """
    settings, where = config.git, config_name(config)
    url = codecommit_url(settings, revision, fips=config.use_fips_mode)
    if url_transport(url) not in ("https", "http"):
        raise BundleError(
            f"git.codecommit_url_template in {where} must give an https:// URL, not {url!r}."
        )
    static = await asyncio.to_thread(
        read_credentials,
        settings.codecommit_username,
        settings.codecommit_password_file,
        "git.codecommit_",
        config,
    )
    if static is not None:
        credentials = constant_credentials(static)
        hint = (
            f"Check git.codecommit_username and git.codecommit_password_file in {where}: the "
            "HTTPS Git credentials of an IAM user allowed codecommit:GitPull on the repository"
        )
    else:
        credentials = await _signed_credentials(config, url, revision.region)
        hint = (
            "Check the host's AWS credentials (on-premises credentials file, instance profile "
            "or environment) and that they allow codecommit:GitPull on the repository, and "
            "that the host clock is right"
        )
    remote = Remote(
        url=url,
        description=(
            f"the CodeCommit repository {revision.repository} in {revision.region} ({url})"
        ),
        auth_hint=hint,
        credentials=credentials,
    )
    await clone_commit(remote, revision.commit_id, deployment, config)


def codecommit_url(settings: GitSettings, revision: CodeCommitRevision, *, fips: bool) -> str:
    """The clone URL of `revision`'s repository."""
    template = settings.codecommit_url_template
    if template == DEFAULT_URL_TEMPLATE:
        if fips:
            template = template.replace("git-codecommit.", "git-codecommit-fips.")
        if revision.region.startswith("cn-"):
            template = template.replace(".amazonaws.com/", ".amazonaws.com.cn/")
    return template.format(region=revision.region, repository=revision.repository)


def codecommit_git_credentials(
    url: str, region: str, credentials: AwsCredentials, now: datetime
) -> HttpCredentials:
    """The user name and password `aws codecommit credential-helper` would give for `url`."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2].split(":")[0]
    timestamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%S")
    canonical_request = f"GIT\n{parts.path}\n\nhost:{host}\n\nhost\n"
    scope = f"{timestamp[:8]}/{region}/{_SERVICE}/aws4_request"
    string_to_sign = "\n".join(
        (
            "AWS4-HMAC-SHA256",
            timestamp,
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        )
    )
    key = f"AWS4{credentials.secret_access_key}".encode()
    for part in (timestamp[:8], region, _SERVICE, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    username = credentials.access_key_id
    if credentials.session_token:
        username += f"%{credentials.session_token}"
    return HttpCredentials(
        username, f"{timestamp}Z{signature}", username_is_secret=bool(credentials.session_token)
    )


async def _signed_credentials(config: AgentConfig, url: str, region: str) -> CredentialSource:
    """A credential source that signs a fresh password from the host's AWS credentials."""
    from codedeploy_agent.sources import aws  # noqa: PLC0415 - loads botocore: only when needed

    session = await asyncio.to_thread(_session, config)

    async def source() -> HttpCredentials:
        await aws.check_clock(config)
        keys = await asyncio.to_thread(_frozen, session, config)
        return codecommit_git_credentials(url, region, keys, datetime.now(UTC))

    return source


def _session(config: AgentConfig) -> Session:
    from codedeploy_agent.sources import aws  # noqa: PLC0415

    try:
        return aws.aws_session(config)
    except AgentError as exc:
        raise BundleError(
            f"CodeCommit needs this host's AWS credentials, and they cannot be loaded: {exc} "
            "Or set git.codecommit_username and git.codecommit_password_file (HTTPS Git "
            f"credentials of an IAM user) in {config_name(config)}."
        ) from exc


def _frozen(session: Session, config: AgentConfig) -> AwsCredentials:
    """The session's current keys (botocore may refresh them: blocking, call in a thread)."""
    credentials = session.get_credentials()
    if credentials is None:
        raise BundleError(
            "No AWS credentials were found on this host, so the CodeCommit password cannot be "
            f"derived. Register the host as an on-premises instance "
            f"({config.on_premises_config_file}), attach an instance profile (EC2), give the "
            "agent AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or set "
            f"git.codecommit_username and git.codecommit_password_file in {config_name(config)}."
        )
    frozen = credentials.get_frozen_credentials()
    return AwsCredentials(frozen.access_key, frozen.secret_key, frozen.token or None)

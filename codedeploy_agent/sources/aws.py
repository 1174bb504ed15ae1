"""AWS plumbing for the S3 and Parameter Store sources: session, clients, clock check, errors.

This module and the two adapters (`s3.py`, `secrets.py`) are the only places that touch boto3
and botocore, and they import them inside functions: the resident daemon never loads the SDK
(about 40 MB) unless a job needs an AWS-signed call.

Credentials, in order (reference §7.2): the on-premises file `on_premises_config_file` when it is
readable (`iam_user_arn` with its access keys, or `iam_session_arn` with a shared-credentials
file that is re-read every 1800 s, like the real agent), else boto3's default chain
(environment, shared config and credentials files, container or EC2 instance role).
Region: `AWS_REGION`, `AWS_DEFAULT_REGION`, the on-premises file's `region`, the shared config
file, then (EC2 only) the instance metadata service; none of them gives a clear error.

Endpoints: `s3_endpoint_override` for S3; otherwise botocore itself honours `AWS_ENDPOINT_URL_S3`,
`AWS_ENDPOINT_URL_SSM` and `AWS_ENDPOINT_URL`; `use_fips_mode` selects FIPS endpoints. The proxy
for each client comes from `proxy.proxy_for` on the client's endpoint, so `NO_PROXY` is honoured
per endpoint (the real agent applies `proxy_uri` to everything, a known pain point).

Every botocore error is classified here (`classify`) so that the adapters can say which object
failed and what to check; credentials are never logged.
"""

from __future__ import annotations

import configparser
import math
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Generic, Protocol, TypeVar, cast

from codedeploy_agent.clock import TIME_SYNC_HINT, ClockSkewError, SkewReading, measure_skew
from codedeploy_agent.config import (
    FIPS_REGIONS,
    AgentConfig,
    ClockSettings,
    OnPremConfig,
    load_onprem_config,
)
from codedeploy_agent.errors import ConfigError
from codedeploy_agent.log import get_logger
from codedeploy_agent.sources.proxy import proxy_for
from codedeploy_agent.sources.redact import redact_url

if TYPE_CHECKING:
    from boto3.session import Session  # type: ignore[import-untyped,unused-ignore]

_log = get_logger(__name__)

#: The real agent re-reads an IAM session's credentials file this often (onpremise_config.rb).
SESSION_CREDENTIALS_REFRESH_SECONDS: Final = 1800
#: botocore refreshes credentials this long before their expiry time (its advisory window).
_BOTOCORE_ADVISORY_SECONDS: Final = 15 * 60
_SESSION_PROVIDER_METHOD: Final = "codedeploy-onpremises-session"


class AwsService(StrEnum):
    """The AWS services this agent calls from a host."""

    S3 = "s3"
    SSM = "ssm"


class S3Api(Protocol):
    """The part of boto3's S3 client the S3 source uses."""

    def get_object(self, **kwargs: Any) -> Mapping[str, Any]:
        """GetObject; `Body` is a botocore StreamingBody."""


class SsmApi(Protocol):
    """The part of boto3's SSM client the secrets resolver uses."""

    def get_parameters(self, **kwargs: Any) -> Mapping[str, Any]:
        """GetParameters (at most 10 names per call)."""


ApiT = TypeVar("ApiT", S3Api, SsmApi)


@dataclass(frozen=True, slots=True)
class AwsClient(Generic[ApiT]):
    """A boto3 client with what error messages need to say about it."""

    api: ApiT
    region: str
    endpoint_url: str
    #: Where the credentials come from, in words (never the credentials themselves).
    credentials: str
    #: The proxy the client goes through, if any.
    proxy: str | None = None


# --- session ----------------------------------------------------------------------------------


def aws_session(config: AgentConfig) -> Session:
    """A boto3 Session with this host's credentials and region (see the module docstring).

    Raises ConfigError when the on-premises file is invalid, its credentials file is unreadable,
    no region can be found, FIPS mode is asked for outside the USA, or no credentials exist.
    """
    # Lazily: the daemon must not load the SDK at start.
    import boto3  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415
    import botocore.session  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415

    onprem = load_onprem_config(config.on_premises_config_file)
    core = botocore.session.Session()
    if config.disable_imds_v1:
        core.set_config_variable("ec2_metadata_v1_disabled", True)
    if onprem is not None and onprem.iam_session_arn and onprem.aws_credentials_file:
        resolver = core.get_component("credential_provider")
        resolver.insert_before("env", _SessionFileProvider(onprem.aws_credentials_file, onprem))
    region = _region(core, onprem)
    if config.use_fips_mode and region not in FIPS_REGIONS:
        raise ConfigError(
            "use_fips_mode can be set to true only in regions located in the USA "
            f"(this host's region is {region}). Turn use_fips_mode off or set a US region."
        )
    if onprem is not None and onprem.iam_user_arn:
        return boto3.Session(
            aws_access_key_id=onprem.aws_access_key_id,
            aws_secret_access_key=onprem.aws_secret_access_key,
            region_name=region,
            botocore_session=core,
        )
    return boto3.Session(region_name=region, botocore_session=core)


def _region(core: Any, onprem: OnPremConfig | None) -> str:
    for variable in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        value = os.environ.get(variable, "").strip()
        if value:
            return value
    if onprem is not None and onprem.region:
        return onprem.region
    configured = core.get_config_variable("region")
    if isinstance(configured, str) and configured:
        return configured
    if onprem is None:
        # On EC2 the region comes from the instance metadata service. botocore's provider
        # honours AWS_EC2_METADATA_DISABLED and AWS_EC2_METADATA_SERVICE_ENDPOINT (tests point
        # it at a local server) and gives up after one short attempt.
        from botocore.utils import (  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415
            IMDSRegionProvider,
        )

        found = IMDSRegionProvider(session=core).provide()
        if isinstance(found, str) and found:
            return found
    where = (
        f"`region` in {onprem.source}"
        if onprem is not None
        else "a region in the AWS shared config file (~/.aws/config)"
    )
    raise ConfigError(
        "No AWS region is known for this host, so S3 and Parameter Store cannot be reached. "
        f"Set AWS_REGION in the agent's environment or {where}; on EC2 the agent asks the "
        "instance metadata service, which did not answer (or is disabled)."
    )


def _read_session_credentials(path: Path, onprem: OnPremConfig) -> dict[str, str]:
    """The `default` profile of an IAM session's shared-credentials file, as botocore metadata."""
    where = f"The credentials file {path} (aws_credentials_file in {onprem.source})"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise ConfigError(
            f"Cannot read {where[0].lower()}{where[1:]}: {reason}. The IAM session's "
            "credentials must be readable by the agent (the process that refreshes them "
            "writes this file)."
        ) from exc
    parser = configparser.RawConfigParser()
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error as exc:
        raise ConfigError(f"{where} is not a valid shared-credentials (INI) file.") from exc
    if not parser.has_section("default"):
        raise ConfigError(f"{where} has no [default] profile with the IAM session's keys.")
    profile = parser["default"]
    missing = [
        key for key in ("aws_access_key_id", "aws_secret_access_key") if not profile.get(key)
    ]
    if missing:
        raise ConfigError(f"{where} lacks {' and '.join(missing)} in its [default] profile.")
    expiry = datetime.now(UTC) + timedelta(
        seconds=SESSION_CREDENTIALS_REFRESH_SECONDS + _BOTOCORE_ADVISORY_SECONDS
    )
    return {
        "access_key": profile["aws_access_key_id"].strip(),
        "secret_key": profile["aws_secret_access_key"].strip(),
        "token": (profile.get("aws_session_token") or "").strip(),
        "expiry_time": expiry.isoformat(),
    }


class _SessionFileProvider:
    """A botocore credential provider for `iam_session_arn` hosts.

    It returns refreshable credentials whose expiry is set so that botocore re-reads the file
    every SESSION_CREDENTIALS_REFRESH_SECONDS: a long download picks up rotated keys.
    """

    METHOD = _SESSION_PROVIDER_METHOD
    CANONICAL_NAME = "CodeDeployOnPremisesSession"

    def __init__(self, path: Path, onprem: OnPremConfig) -> None:
        self._path = path
        self._onprem = onprem

    def load(self) -> object:
        from botocore.credentials import (  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415
            RefreshableCredentials,
        )

        def refresh() -> dict[str, str]:
            return _read_session_credentials(self._path, self._onprem)

        return RefreshableCredentials.create_from_metadata(
            metadata=refresh(), refresh_using=refresh, method=self.METHOD
        )


def _describe_credentials(method: str, config: AgentConfig) -> str:
    if method == _SESSION_PROVIDER_METHOD:
        return f"the IAM session credentials file named in {config.on_premises_config_file}"
    described = {
        "explicit": f"the IAM user keys in {config.on_premises_config_file}",
        "env": "the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)",
        "shared-credentials-file": "the shared credentials file (~/.aws/credentials)",
        "config-file": "the AWS shared config file (~/.aws/config)",
        "iam-role": "the EC2 instance profile",
        "container-role": "the container's task role",
    }
    return described.get(method, f"boto3's {method!r} credential provider")


# --- clients ----------------------------------------------------------------------------------


def s3_client(config: AgentConfig) -> AwsClient[S3Api]:
    """An S3 client for this host (ConfigError as for `aws_session`)."""
    api, details = _client(config, AwsService.S3)
    return AwsClient(api=cast(S3Api, api), **details)


def ssm_client(config: AgentConfig) -> AwsClient[SsmApi]:
    """A Systems Manager client for this host (ConfigError as for `aws_session`)."""
    api, details = _client(config, AwsService.SSM)
    return AwsClient(api=cast(SsmApi, api), **details)


def _client(config: AgentConfig, service: AwsService) -> tuple[object, dict[str, Any]]:
    from botocore.config import Config  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415

    session = aws_session(config)
    credentials = session.get_credentials()
    if credentials is None:
        raise ConfigError(
            "No AWS credentials were found on this host. Register it as an on-premises "
            f"instance ({config.on_premises_config_file}), attach an instance profile (EC2), "
            "or give the agent AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY."
        )
    endpoint = config.s3_endpoint_override if service is AwsService.S3 else None
    settings: dict[str, Any] = {
        "connect_timeout": config.download.connect_timeout_seconds,
        "read_timeout": config.http_read_timeout,
        # Attempts per request; interrupted bodies are retried (and resumed) by the S3 source.
        "retries": {"total_max_attempts": max(config.download.retries, 1), "mode": "standard"},
        "max_pool_connections": max(10, config.download.parallel_parts + 2),
        # {} rather than None: botocore would otherwise apply HTTPS_PROXY itself, ignoring
        # the agent's own no_proxy list.
        "proxies": {},
    }
    if config.use_fips_mode:
        settings["use_fips_endpoint"] = True
    if service is AwsService.S3:
        # Regional in us-east-1 too (botocore's default there is the global endpoint), so the
        # endpoint in messages, proxy choices and VPC endpoint policies is the one requests use.
        s3_settings = {"us_east_1_regional_endpoint": "regional"}
        custom = (
            endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        )
        if custom:
            # S3-compatible stores (MinIO, Ceph) rarely serve bucket sub-domains; path style
            # works with every one of them and with AWS.
            s3_settings["addressing_style"] = "path"
        settings["s3"] = s3_settings
    client = session.client(service.value, endpoint_url=endpoint, config=Config(**settings))
    endpoint_url = str(client.meta.endpoint_url)
    proxy = proxy_for(endpoint_url, config, os.environ)
    if proxy is not None:
        settings["proxies"] = {"http": proxy, "https": proxy}
        client = session.client(service.value, endpoint_url=endpoint, config=Config(**settings))
    source = _describe_credentials(str(credentials.method), config)
    shown_proxy = None if proxy is None else redact_url(proxy)
    _log.debug(
        "aws_client",
        service=service.value,
        region=session.region_name,
        endpoint=endpoint_url,
        credentials=source,
        proxy=shown_proxy,
    )
    return client, {
        "region": str(session.region_name),
        "endpoint_url": endpoint_url,
        "credentials": source,
        "proxy": shown_proxy,
    }


# --- clock ------------------------------------------------------------------------------------

_clock_lock = threading.Lock()
#: ClockSettings -> (reading or None, its offset against the monotonic clock, monotonic time).
_clock_readings: dict[ClockSettings, tuple[SkewReading | None, float, float]] = {}


async def check_clock(config: AgentConfig) -> None:
    """Refuse SigV4 calls when the clock is off by more than `clock.max_skew_seconds`.

    Measures the skew once per process and `clock.check_interval_seconds` (once only when that
    is 0 or less) with `clock.measure_skew`; the cached value is corrected for steps of the
    local clock since, so fixing the clock takes effect at once. Unknown skew (no NTP server
    configured or reachable) allows the call: AWS then answers for itself, and `classify`
    turns its answer into the same advice. Raises ClockSkewError.
    """
    settings = config.clock
    if not settings.ntp_servers:
        return
    now = time.monotonic()
    with _clock_lock:
        cached = _clock_readings.get(settings)
    interval = settings.check_interval_seconds
    if cached is None or (interval > 0 and now - cached[2] >= interval):
        reading = await measure_skew(settings)
        base = time.time() - time.monotonic()
        offset = math.nan if reading is None else reading.offset_seconds + base
        cached = (reading, offset, time.monotonic())
        with _clock_lock:
            _clock_readings[settings] = cached
    reading, offset_vs_monotonic, _measured = cached
    if reading is None:
        return
    skew = offset_vs_monotonic - (time.time() - time.monotonic())
    if abs(skew) > settings.max_skew_seconds:
        current = SkewReading(
            offset_seconds=skew,
            server=reading.server,
            measured_at=reading.measured_at,
            source=reading.source,
            uncertainty_seconds=reading.uncertainty_seconds,
        )
        raise ClockSkewError(current, settings.max_skew_seconds)


# --- errors -----------------------------------------------------------------------------------


class FailureKind(StrEnum):
    """What went wrong with an AWS call, as far as the operator's next step is concerned."""

    NOT_FOUND = "not-found"
    ACCESS_DENIED = "access-denied"
    CREDENTIALS = "credentials"
    CLOCK = "clock"
    NETWORK = "network"
    #: The response body broke off mid-way: retry (and resume) it.
    INTERRUPTED = "interrupted"
    #: If-Match failed: the object changed.
    CHANGED = "changed"
    #: The server is busy or failing (5xx, throttling): retry later.
    UNAVAILABLE = "unavailable"
    OTHER = "other"


_NOT_FOUND_CODES: Final = frozenset(
    {"NoSuchKey", "NoSuchBucket", "NoSuchVersion", "404", "NotFound", "ParameterNotFound"}
)
_DENIED_CODES: Final = frozenset(
    {"AccessDenied", "AccessDeniedException", "403", "Forbidden", "AllAccessDisabled"}
)
_CREDENTIAL_CODES: Final = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidToken",
        "TokenRefreshRequired",
        "IncompleteSignature",
        "MissingAuthenticationToken",
    }
)
_CLOCK_CODES: Final = frozenset({"RequestTimeTooSkewed", "RequestExpired", "SignatureExpired"})
_UNAVAILABLE_CODES: Final = frozenset(
    {
        "SlowDown",
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "InternalError",
        "InternalServerError",
        "ServiceUnavailable",
        "RequestTimeout",
    }
)


@dataclass(frozen=True, slots=True)
class AwsFailure:
    """A classified AWS error: `code` is AWS's error code or the exception's class name."""

    kind: FailureKind
    code: str
    detail: str
    status: int | None = None

    @property
    def summary(self) -> str:
        """`Code: message` as AWS said it (no credentials are ever part of it)."""
        return f"{self.code}: {self.detail}" if self.detail else self.code

    @property
    def sentence(self) -> str:
        """`summary` ending with one full stop."""
        text = self.summary
        return text if text.endswith((".", "!", "?")) else f"{text}."


def classify(exc: BaseException) -> AwsFailure | None:
    """Classify a botocore/boto3 exception; None for anything else (a bug, not AWS's answer)."""
    # Loaded already when exc came from it.
    from botocore import exceptions as bx  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415

    if isinstance(exc, bx.ClientError):
        response = exc.response if isinstance(exc.response, dict) else {}
        error = response.get("Error") or {}
        metadata = response.get("ResponseMetadata") or {}
        code = str(error.get("Code") or "Unknown")
        detail = str(error.get("Message") or "")
        raw_status = metadata.get("HTTPStatusCode")
        status = raw_status if isinstance(raw_status, int) else None
        return AwsFailure(_kind_of(code, detail, status), code, detail, status)
    name = type(exc).__name__
    detail = str(exc)
    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
        return AwsFailure(FailureKind.CREDENTIALS, name, detail)
    if isinstance(exc, bx.CredentialRetrievalError):
        return AwsFailure(FailureKind.CREDENTIALS, name, detail)
    interrupted = (
        bx.ResponseStreamingError,
        bx.IncompleteReadError,
        bx.ReadTimeoutError,
        bx.ConnectionClosedError,
    )
    if isinstance(exc, interrupted):
        return AwsFailure(FailureKind.INTERRUPTED, name, detail)
    if isinstance(exc, bx.ConnectionError | bx.HTTPClientError):
        return AwsFailure(FailureKind.NETWORK, name, detail)
    if isinstance(exc, bx.BotoCoreError):
        return AwsFailure(FailureKind.OTHER, name, detail)
    return None


def _kind_of(code: str, detail: str, status: int | None) -> FailureKind:
    if code in _CLOCK_CODES:
        return FailureKind.CLOCK
    if code == "InvalidSignatureException":
        # SSM says this both for a wrong secret key and for an expired (clock-skewed) signature.
        return FailureKind.CLOCK if "expired" in detail.lower() else FailureKind.CREDENTIALS
    if code in _CREDENTIAL_CODES:
        return FailureKind.CREDENTIALS
    if code in _NOT_FOUND_CODES or status == 404:
        return FailureKind.NOT_FOUND
    if code in _DENIED_CODES or status == 403:
        return FailureKind.ACCESS_DENIED
    if code in {"PreconditionFailed", "412"} or status == 412:
        return FailureKind.CHANGED
    if code in _UNAVAILABLE_CODES or (status is not None and status >= 500):
        return FailureKind.UNAVAILABLE
    return FailureKind.OTHER


def advice(failure: AwsFailure, client: AwsClient[Any], *, permissions: str) -> str:
    """The sentence that says what to check for `failure` (not-found is the caller's to word).

    `permissions` names the IAM actions and resources the call needs, for access-denied.
    """
    if failure.kind is FailureKind.ACCESS_DENIED:
        return (
            f"The host's AWS identity (credentials from {client.credentials}) needs {permissions}."
        )
    if failure.kind is FailureKind.CREDENTIALS:
        return (
            f"AWS rejected the host's credentials (from {client.credentials}): check that "
            "the access key exists, is active and matches its secret, and that temporary "
            "credentials have not expired."
        )
    if failure.kind is FailureKind.CLOCK:
        return (
            "AWS refused the signature because this host's clock is wrong (SigV4 allows about "
            "5 minutes; InvalidSignatureException: Signature expired). " + TIME_SYNC_HINT
        )
    if failure.kind in {FailureKind.NETWORK, FailureKind.INTERRUPTED}:
        via = f" through the proxy {client.proxy}" if client.proxy else ""
        return (
            f"Check that this host can reach {client.endpoint_url}{via}: the network, the "
            "proxy settings (proxy_uri, HTTPS_PROXY, NO_PROXY, download.no_proxy) and the "
            "endpoint (s3_endpoint_override, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL)."
        )
    if failure.kind is FailureKind.UNAVAILABLE:
        return "The service is busy or failing; the deployment can be retried."
    return f"Region {client.region}, endpoint {client.endpoint_url}."

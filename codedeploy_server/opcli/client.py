"""boto3 clients for the operator CLI, and the one place botocore's exceptions become ours.

The endpoint is `--endpoint-url`, else `CODEDEPLOY_ENDPOINT_URL`, else whatever botocore itself
resolves (`AWS_ENDPOINT_URL_CODEDEPLOY`, `AWS_ENDPOINT_URL`, the profile's `endpoint_url`, then AWS
CodeDeploy's own endpoint: the plain API commands work against AWS too). Credentials and region
come from the standard AWS chain (`--profile`/`AWS_PROFILE`, `AWS_ACCESS_KEY_ID`...,
`--region`/`AWS_DEFAULT_REGION`). A self-hosted server does not care about the region, so with an
explicit endpoint and no region configured anywhere, `us-east-1` is used rather than failing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar
from urllib.parse import urlsplit

import boto3  # type: ignore[import-untyped,unused-ignore]
import botocore.config  # type: ignore[import-untyped,unused-ignore]
import botocore.exceptions as boto_errors  # type: ignore[import-untyped,unused-ignore]

from codedeploy_server import __version__
from codedeploy_server.opcli.errors import ApiError, UsageError

ENDPOINT_ENV: Final = "CODEDEPLOY_ENDPOINT_URL"
#: The signing region used with an explicit endpoint when none is configured.
FALLBACK_REGION: Final = "us-east-1"
#: The largest batch the Batch* operations take for targets, deployments and instances.
BATCH_SIZE: Final = 25
_CREDENTIALS_FIX: Final = (
    "Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (for codedeploy-server: an access key "
    "listed under `credentials` in its config), choose a profile with --profile or AWS_PROFILE, "
    'or run "aws configure".'
)

T = TypeVar("T")


class CodeDeployApi(Protocol):
    """The operations of boto3's `codedeploy` client that the CLI calls (botocore-shaped dicts)."""

    def create_deployment(self, **kwargs: Any) -> dict[str, Any]: ...
    def get_deployment(self, **kwargs: Any) -> dict[str, Any]: ...
    def list_deployments(self, **kwargs: Any) -> dict[str, Any]: ...
    def batch_get_deployments(self, **kwargs: Any) -> dict[str, Any]: ...
    def stop_deployment(self, **kwargs: Any) -> dict[str, Any]: ...
    def list_deployment_targets(self, **kwargs: Any) -> dict[str, Any]: ...
    def batch_get_deployment_targets(self, **kwargs: Any) -> dict[str, Any]: ...
    def list_on_premises_instances(self, **kwargs: Any) -> dict[str, Any]: ...
    def batch_get_on_premises_instances(self, **kwargs: Any) -> dict[str, Any]: ...
    def register_application_revision(self, **kwargs: Any) -> dict[str, Any]: ...


class S3Api(Protocol):
    """The one S3 operation `push --s3-location` needs."""

    def put_object(self, **kwargs: Any) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """How to reach the API: the global options, already merged with `CODEDEPLOY_ENDPOINT_URL`."""

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    verify_ssl: bool = True

    @classmethod
    def resolve(
        cls,
        *,
        endpoint_url: str | None,
        region: str | None,
        profile: str | None,
        verify_ssl: bool = True,
        environ: Mapping[str, str] = os.environ,
    ) -> ClientSettings:
        """The settings from the options, `CODEDEPLOY_ENDPOINT_URL` filling a missing endpoint."""
        endpoint = endpoint_url or environ.get(ENDPOINT_ENV) or None
        if endpoint is not None:
            parts = urlsplit(endpoint)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise UsageError(
                    f"Invalid endpoint URL {endpoint!r}: give the server's URL, for example "
                    "http://127.0.0.1:8443 (--endpoint-url or CODEDEPLOY_ENDPOINT_URL)."
                )
        return cls(endpoint, region or None, profile or None, verify_ssl)


@dataclass(frozen=True, slots=True)
class SigningCredentials:
    """Frozen credentials for signing a request by hand (the bundle store upload)."""

    access_key: str
    secret_key: str
    token: str | None


class Clients:
    """One boto3 session and the clients made from it, created on first use."""

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        self._session: Any = None
        self._codedeploy: Any = None
        self._s3: Any = None

    @property
    def session(self) -> Any:
        """The boto3 Session (profile and region applied)."""
        if self._session is None:
            with api_errors():
                self._session = boto3.Session(
                    profile_name=self.settings.profile, region_name=self.settings.region
                )
        return self._session

    @property
    def region(self) -> str | None:
        """The configured region, or `us-east-1` when an explicit endpoint needs one to sign."""
        region: str | None = self.session.region_name
        if region is None and self.settings.endpoint_url is not None:
            return FALLBACK_REGION
        return region

    @property
    def verify(self) -> bool | str:
        """botocore's `verify`: False with --no-verify-ssl, else the CA bundle of AWS_CA_BUNDLE
        (or the profile's `ca_bundle`) when one is set, else True (botocore's default trust
        store). An explicit True would make botocore ignore AWS_CA_BUNDLE."""
        if not self.settings.verify_ssl:
            return False
        with api_errors():
            # boto3's Session does not expose botocore's config chain (env, then profile).
            bundle = self.session._session.get_config_variable("ca_bundle")
        return str(bundle) if bundle else True

    def _config(self) -> Any:
        return botocore.config.Config(user_agent_extra=f"codedeploy-cli/{__version__}")

    @property
    def codedeploy(self) -> CodeDeployApi:
        """boto3's `codedeploy` client for the resolved endpoint."""
        if self._codedeploy is None:
            with api_errors():
                self._codedeploy = self.session.client(
                    "codedeploy",
                    endpoint_url=self.settings.endpoint_url,
                    region_name=self.region,
                    verify=self.verify,
                    config=self._config(),
                )
        client: CodeDeployApi = self._codedeploy
        return client

    @property
    def s3(self) -> S3Api:
        """boto3's `s3` client (its endpoint may be overridden with `AWS_ENDPOINT_URL_S3`)."""
        if self._s3 is None:
            with api_errors():
                self._s3 = self.session.client(
                    "s3",
                    region_name=self.region,
                    verify=self.verify,
                    config=self._config(),
                )
        client: S3Api = self._s3
        return client

    @property
    def endpoint_url(self) -> str:
        """The CodeDeploy endpoint the client resolved (explicit, from botocore config, or AWS)."""
        url: str = self._codedeploy_meta().endpoint_url
        return url

    def _codedeploy_meta(self) -> Any:
        return self.codedeploy.meta  # type: ignore[attr-defined]

    def is_aws(self) -> bool:
        """True when the endpoint is AWS CodeDeploy itself (no bundle store there)."""
        host = urlsplit(self.endpoint_url).hostname or ""
        return host.endswith((".amazonaws.com", ".amazonaws.com.cn", ".api.aws"))

    def signing_credentials(self) -> SigningCredentials:
        """The session's credentials, frozen, for SigV4-signing a request by hand."""
        with api_errors():
            found = self.session.get_credentials()
            if found is None:
                raise boto_errors.NoCredentialsError
            frozen = found.get_frozen_credentials()
        return SigningCredentials(frozen.access_key, frozen.secret_key, frozen.token)


@contextmanager
def api_errors() -> Iterator[None]:
    """Turn botocore's exceptions into ApiError/UsageError with the AWS CLI's texts and a fix."""
    try:
        yield
    except boto_errors.ClientError as err:
        # "An error occurred (<Code>) when calling the <Op> operation: <message>", as the AWS CLI.
        raise ApiError(str(err)) from None
    except boto_errors.NoCredentialsError:
        raise ApiError(f"Unable to locate credentials. {_CREDENTIALS_FIX}") from None
    except boto_errors.PartialCredentialsError as err:
        raise ApiError(f"{err}. {_CREDENTIALS_FIX}") from None
    except (boto_errors.EndpointConnectionError, boto_errors.ConnectTimeoutError) as err:
        raise ApiError(
            f"{err}. Check that codedeploy-server is running and listening there, and that "
            "--endpoint-url (or CODEDEPLOY_ENDPOINT_URL) names it."
        ) from None
    except boto_errors.SSLError as err:
        raise ApiError(
            f"{err}. If the server uses a private CA, give it with AWS_CA_BUNDLE; "
            "--no-verify-ssl skips the check (not recommended)."
        ) from None
    except boto_errors.NoRegionError:
        raise ApiError(
            "You must specify a region. Use --region, set AWS_DEFAULT_REGION, or set a region "
            "in your AWS profile."
        ) from None
    except boto_errors.ProfileNotFound as err:
        raise ApiError(
            f"{err}. Check --profile (or AWS_PROFILE) against ~/.aws/config and ~/.aws/credentials."
        ) from None
    except boto_errors.ParamValidationError as err:
        raise UsageError(str(err)) from None
    except boto_errors.BotoCoreError as err:
        raise ApiError(str(err)) from None


def paginate(call: Callable[..., dict[str, Any]], key: str, **params: Any) -> list[Any]:
    """Every item under `key` of a `nextToken`-paginated List* operation."""
    items: list[Any] = []
    token: str | None = None
    while True:
        page = call(**params, **({"nextToken": token} if token else {}))
        items.extend(page.get(key) or [])
        token = page.get("nextToken")
        if not token:
            return items


def chunks(items: Sequence[T], size: int = BATCH_SIZE) -> Iterator[Sequence[T]]:
    """`items` in slices of at most `size` (the Batch* operations' limit)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]

"""AWS plumbing: lazy boto3 import, region and credential sources (on-premises files included),
endpoints (override, environment, FIPS), proxies, the clock check and error classification."""

from __future__ import annotations

import dataclasses
import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from codedeploy_agent.clock import ClockSkewError
from codedeploy_agent.config import AgentConfig, ClockSettings
from codedeploy_agent.errors import BundleError, ConfigError
from codedeploy_agent.host.layout import DeploymentDir
from codedeploy_agent.sources.aws import (
    FailureKind,
    aws_session,
    check_clock,
    classify,
    s3_client,
    ssm_client,
)
from codedeploy_agent.sources.s3 import fetch_s3
from codedeploy_agent.spec import BundleType, S3Revision
from tests.fakes.ntp import FakeNtpServer
from tests.sources.aws_fixtures import (  # noqa: F401 - *_fixture: pytest fixtures
    admin_client,
    aws_config_fixture,
    aws_env_fixture,
    deployment_fixture,
    iam_user,
    make_config,
    moto_fixture,
)
from tests.sources.conftest import LocalProxy
from tests.sources.moto_server import MotoServer

REPO = Path(__file__).resolve().parents[2]


def _put(moto: MotoServer, body: bytes = b"bundle") -> None:
    s3 = admin_client(moto, "s3")
    s3.create_bucket(Bucket="bundles")
    s3.put_object(Bucket="bundles", Key="app.tar", Body=body)


REVISION = S3Revision(bucket="bundles", key="app.tar", bundle_type=BundleType.TAR)


# --- lazy import --------------------------------------------------------------------------------

_PROBE = """
import asyncio, json, sys
from pathlib import Path

def aws_modules():
    return sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in ("boto3", "botocore")})

import codedeploy_agent.executor
import codedeploy_agent.daemon.service
import codedeploy_agent.sources.aws
import codedeploy_agent.sources.s3
import codedeploy_agent.sources.secrets
print("modules", json.dumps(aws_modules()))

from codedeploy_agent.config import AgentConfig, ClockSettings
from codedeploy_agent.host.layout import DeploymentDir
from codedeploy_agent.sources.s3 import fetch_s3
from codedeploy_agent.sources.secrets import resolve_environment
from codedeploy_agent.spec import BundleType, S3Revision

root = Path(sys.argv[1])
config = AgentConfig(
    root_dir=root, on_premises_config_file=root / "none.yml", clock=ClockSettings(ntp_servers=())
)
assert asyncio.run(resolve_environment({}, config)) == {}
print("modules", json.dumps(aws_modules()))
deployment = DeploymentDir(root)
revision = S3Revision(bucket="bundles", key="app.tar", bundle_type=BundleType.TAR)
asyncio.run(fetch_s3(revision, deployment, config))
print("modules", json.dumps(aws_modules()))
print("bundle", deployment.bundle.read_text())
"""


def test_boto3_is_imported_only_when_a_fetch_needs_it(aws_env: MotoServer, tmp_path: Path) -> None:
    """Importing the executor, the daemon and the AWS sources loads no boto3/botocore, nor does
    resolving an empty Environment; the first S3 fetch does."""
    _put(aws_env, b"fetched")
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # Log lines go to stdout too; keep the probe's own.
    lines = [line.split(" ", 1) for line in result.stdout.splitlines()]
    seen = [json.loads(text) for tag, text in lines if tag == "modules"]
    assert seen == [[], [], ["boto3", "botocore"]]
    assert [text for tag, text in lines if tag == "bundle"] == ["fetched"]


# --- region -------------------------------------------------------------------------------------


def _onprem(tmp_path: Path, text: str) -> AgentConfig:
    onprem = tmp_path / "codedeploy.onpremises.yml"
    onprem.write_text(text)
    return dataclasses.replace(make_config(tmp_path), on_premises_config_file=onprem)


def test_region_from_the_environment(
    aws_env: MotoServer, aws_config: AgentConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AWS_REGION wins; AWS_DEFAULT_REGION is used without it."""
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    assert aws_session(aws_config).region_name == "eu-central-1"
    monkeypatch.delenv("AWS_REGION")
    assert aws_session(aws_config).region_name == "ap-south-1"


def test_region_from_the_onpremises_file(
    aws_env: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without AWS_REGION the on-premises file's region is used."""
    monkeypatch.delenv("AWS_REGION")
    config = _onprem(tmp_path, "region: ca-central-1\n")
    assert aws_session(config).region_name == "ca-central-1"


class _Imds(http.server.BaseHTTPRequestHandler):
    """IMDSv2: a token for PUT /latest/api/token, the availability zone for requests with it."""

    seen: list[str]

    def do_PUT(self) -> None:
        self.seen.append(f"PUT {self.path}")
        self._answer(200, b"token-123")

    def do_GET(self) -> None:
        self.seen.append(f"GET {self.path} token={self.headers.get('X-aws-ec2-metadata-token')}")
        if self.path == "/latest/meta-data/placement/availability-zone/":
            self._answer(200, b"eu-west-3b")
        else:
            self._answer(404, b"")

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib's name
        del format, args


@pytest.fixture
def imds(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A local instance metadata service; AWS_EC2_METADATA_SERVICE_ENDPOINT points at it."""
    seen: list[str] = []
    handler = type("Imds", (_Imds,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv(
        "AWS_EC2_METADATA_SERVICE_ENDPOINT", f"http://127.0.0.1:{server.server_port}/"
    )
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "false")
    yield seen
    server.shutdown()
    server.server_close()


def test_region_from_the_instance_metadata_service(
    aws_env: MotoServer,
    aws_config: AgentConfig,
    imds: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On EC2 (no region set anywhere) the region comes from IMDSv2's availability zone."""
    monkeypatch.delenv("AWS_REGION")
    assert aws_session(aws_config).region_name == "eu-west-3"
    assert imds == [
        "PUT /latest/api/token",
        "GET /latest/meta-data/placement/availability-zone/ token=token-123",
    ]


def test_no_region_is_a_clear_error(
    aws_env: MotoServer, aws_config: AgentConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no region anywhere (and IMDS disabled) the error says where to set one."""
    monkeypatch.delenv("AWS_REGION")
    with pytest.raises(ConfigError) as caught:
        aws_session(aws_config)
    assert str(caught.value) == (
        "No AWS region is known for this host, so S3 and Parameter Store cannot be reached. "
        "Set AWS_REGION in the agent's environment or a region in the AWS shared config file "
        "(~/.aws/config); on EC2 the agent asks the instance metadata service, which did not "
        "answer (or is disabled)."
    )


# --- endpoints and proxies ----------------------------------------------------------------------


def test_fips_endpoints(
    aws_env: MotoServer, aws_config: AgentConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """use_fips_mode selects the FIPS endpoints of S3 and SSM in a US region."""
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    config = dataclasses.replace(aws_config, use_fips_mode=True)
    assert s3_client(config).endpoint_url == "https://s3-fips.us-east-1.amazonaws.com"
    assert ssm_client(config).endpoint_url == "https://ssm-fips.us-east-1.amazonaws.com"


def test_fips_outside_the_usa_is_refused(
    aws_env: MotoServer, aws_config: AgentConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """use_fips_mode in a region outside the USA fails with the real agent's words."""
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    with pytest.raises(ConfigError) as caught:
        aws_session(dataclasses.replace(aws_config, use_fips_mode=True))
    assert str(caught.value) == (
        "use_fips_mode can be set to true only in regions located in the USA (this host's "
        "region is eu-west-1). Turn use_fips_mode off or set a US region."
    )


def test_endpoint_sources(
    aws_env: MotoServer, aws_config: AgentConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """s3_endpoint_override beats AWS_ENDPOINT_URL_S3, which beats AWS_ENDPOINT_URL; SSM
    follows AWS_ENDPOINT_URL; without any, the regional endpoints."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1001")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:1002")
    override = dataclasses.replace(aws_config, s3_endpoint_override="http://127.0.0.1:1003")
    assert s3_client(override).endpoint_url == "http://127.0.0.1:1003"
    assert s3_client(aws_config).endpoint_url == "http://127.0.0.1:1002"
    assert ssm_client(aws_config).endpoint_url == "http://127.0.0.1:1001"
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    assert s3_client(aws_config).endpoint_url == "https://s3.us-east-1.amazonaws.com"
    assert ssm_client(aws_config).endpoint_url == "https://ssm.us-east-1.amazonaws.com"


def test_proxy_is_chosen_per_endpoint(
    aws_env: MotoServer, aws_config: AgentConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTPS_PROXY applies to the AWS endpoints unless NO_PROXY names them; the proxy's password
    never shows."""
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("HTTPS_PROXY", "http://user:pw@proxy.example.test:3128")
    monkeypatch.setenv("NO_PROXY", "ssm.us-east-1.amazonaws.com")
    assert s3_client(aws_config).proxy == "http://user:REDACTED@proxy.example.test:3128"
    assert ssm_client(aws_config).proxy is None
    config = dataclasses.replace(
        aws_config, download=dataclasses.replace(aws_config.download, no_proxy=(".amazonaws.com",))
    )
    assert s3_client(config).proxy is None


@pytest.mark.asyncio
async def test_s3_download_goes_through_the_proxy(
    aws_env: MotoServer,
    aws_config: AgentConfig,
    deployment: DeploymentDir,
    proxy_server: LocalProxy,
) -> None:
    """With proxy_uri set, GetObject goes through the proxy to the endpoint it names."""
    _put(aws_env, b"via proxy")
    config = dataclasses.replace(
        aws_config,
        proxy_uri=proxy_server.url,
        # A name without dots: moto then reads the bucket from the path.
        s3_endpoint_override=f"http://bundle-store:{aws_env.port}",
    )
    await fetch_s3(REVISION, deployment, config)
    assert deployment.bundle.read_bytes() == b"via proxy"
    assert [(r.method, r.target) for r in proxy_server.requests] == [
        ("GET", f"http://bundle-store:{aws_env.port}/bundles/app.tar")
    ]


# --- credentials --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_onpremises_iam_user_keys_are_used(
    aws_env: MotoServer, tmp_path: Path, deployment: DeploymentDir
) -> None:
    """An on-premises file with iam_user_arn supplies the keys (the environment's are wrong)."""
    _put(aws_env)
    key_id, secret = iam_user(aws_env, "onprem", ["s3:GetObject"])
    config = _onprem(
        tmp_path,
        "iam_user_arn: arn:aws:iam::123456789012:user/onprem\n"
        f"aws_access_key_id: {key_id}\naws_secret_access_key: {secret}\nregion: us-east-1\n",
    )
    aws_env.require_auth(True)
    await fetch_s3(REVISION, deployment, config)
    assert deployment.bundle.read_bytes() == b"bundle"
    assert s3_client(config).credentials == f"the IAM user keys in {config.on_premises_config_file}"


@pytest.mark.asyncio
async def test_onpremises_session_credentials_file_is_reread(
    aws_env: MotoServer, tmp_path: Path, deployment: DeploymentDir
) -> None:
    """iam_session_arn hosts use the shared-credentials file, read afresh: rotated keys work
    at the next deployment without a restart."""
    _put(aws_env)
    first = iam_user(aws_env, "session-a", ["s3:GetObject"])
    second = iam_user(aws_env, "session-b", ["s3:GetObject"])
    credentials = tmp_path / "session-credentials"
    config = _onprem(
        tmp_path,
        "iam_session_arn: arn:aws:sts::123456789012:assumed-role/r/host\n"
        f"aws_credentials_file: {credentials}\nregion: us-east-1\n",
    )
    aws_env.require_auth(True)
    for key_id, secret in (first, second):
        credentials.write_text(
            f"[default]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n"
        )
        deployment.bundle.unlink(missing_ok=True)
        await fetch_s3(REVISION, deployment, config)
        assert deployment.bundle.read_bytes() == b"bundle"

    credentials.write_text("[default]\naws_access_key_id = x\n")
    with pytest.raises(BundleError) as caught:
        await fetch_s3(REVISION, deployment, config)
    assert str(caught.value) == (
        f"Cannot download s3://bundles/app.tar: The credentials file {credentials} "
        f"(aws_credentials_file in {config.on_premises_config_file}) lacks "
        "aws_secret_access_key in its [default] profile."
    )


def test_no_credentials_is_a_clear_error(
    aws_env: MotoServer, aws_config: AgentConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without any credentials the error lists the ways to give the host some."""
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(ConfigError) as caught:
        s3_client(aws_config)
    assert str(caught.value) == (
        "No AWS credentials were found on this host. Register it as an on-premises instance "
        f"({aws_config.on_premises_config_file}), attach an instance profile (EC2), or give "
        "the agent AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY."
    )


# --- clock --------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_clock_check_refuses_past_the_tolerance_and_caches(tmp_path: Path) -> None:
    """A 600 s skew refuses SigV4 calls with the fix in the message; the NTP server is asked
    once per check interval; a 2 s skew is fine."""
    with FakeNtpServer(offset_seconds=600.0) as ntp:
        config = dataclasses.replace(
            make_config(tmp_path), clock=ClockSettings(ntp_servers=(ntp.address,))
        )
        for _ in range(2):
            with pytest.raises(ClockSkewError) as caught:
                await check_clock(config)
        assert ntp.requests == 1
        assert "InvalidSignatureException (Signature expired)" in str(caught.value)
        assert "chronyc tracking" in str(caught.value)
    with FakeNtpServer(offset_seconds=2.0) as ntp:
        config = dataclasses.replace(
            make_config(tmp_path), clock=ClockSettings(ntp_servers=(ntp.address,))
        )
        await check_clock(config)
        assert ntp.requests == 1


# --- errors -------------------------------------------------------------------------------------


def test_classify_tells_an_expired_signature_from_a_wrong_secret() -> None:
    """SSM's InvalidSignatureException means the clock when it says "expired", else the key."""
    from botocore.exceptions import ClientError  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415

    def error(message: str) -> BaseException:
        response = {
            "Error": {"Code": "InvalidSignatureException", "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }
        exc: BaseException = ClientError(response, "GetParameters")
        return exc

    expired = classify(error("Signature expired: 20260101T000000Z is now earlier than ..."))
    wrong = classify(error("The request signature we calculated does not match ..."))
    assert expired is not None
    assert wrong is not None
    assert (expired.kind, wrong.kind) == (FailureKind.CLOCK, FailureKind.CREDENTIALS)
    assert classify(ValueError("not AWS")) is None


def test_environment_is_isolated(aws_env: MotoServer) -> None:
    """The fixture leaves no way to real AWS: endpoint is moto's, IMDS is off."""
    assert os.environ["AWS_ENDPOINT_URL"] == aws_env.url
    assert os.environ["AWS_EC2_METADATA_DISABLED"] == "true"

"""Fixtures for the S3 and Parameter Store tests: moto on loopback, a clean AWS environment.

Import the fixtures you use into a test module (`from tests.sources.aws_fixtures import
aws_env_fixture`): each is registered under the name without `_fixture`, which the tests use.
`aws_env` removes every AWS_* and proxy variable of the machine, points the SDK at moto through
`AWS_ENDPOINT_URL`, sets fake credentials and a region, and disables the instance metadata
service, so nothing can reach real AWS or 169.254.169.254.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from codedeploy_agent.config import AgentConfig, ClockSettings, DownloadSettings
from codedeploy_agent.host.layout import DeploymentDir
from tests.sources.moto_server import MotoServer, TcpTap

REGION = "us-east-1"
ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # noqa: S105 - AWS's documented example
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "no_proxy", "all_proxy")


@pytest.fixture(name="moto", scope="module")
def moto_fixture() -> Iterator[MotoServer]:
    """moto's server on a free port of 127.0.0.1, for the module."""
    with MotoServer() as server:
        yield server


@pytest.fixture(name="aws_env")
def aws_env_fixture(
    moto: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> MotoServer:
    """A fresh moto (no resources, no auth) and an environment that can only reach it."""
    moto.require_auth(False)
    moto.reset()
    for name in list(os.environ):
        if name.startswith("AWS_") or name.lower() in _PROXY_VARIABLES:
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.url)
    # The machine's own ~/.aws must not leak in.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config-absent"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials-absent"))
    return moto


@pytest.fixture(name="tap")
def tap_fixture(aws_env: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[TcpTap]:
    """A TCP tap in front of moto; the agent's AWS calls go through it (AWS_ENDPOINT_URL)."""
    with TcpTap(aws_env.port) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        yield proxy


def make_config(tmp_path: Path, **download: Any) -> AgentConfig:
    """An agent config for these tests: no NTP servers, no on-premises file, small parts."""
    settings: dict[str, Any] = {"part_size": 1024 * 1024, "parallel_parts": 4, "retries": 3}
    settings.update(download)
    return AgentConfig(
        root_dir=tmp_path / "root",
        on_premises_config_file=tmp_path / "codedeploy.onpremises.yml",
        clock=ClockSettings(ntp_servers=()),
        download=DownloadSettings(**settings),
    )


@pytest.fixture(name="aws_config")
def aws_config_fixture(tmp_path: Path) -> AgentConfig:
    """`make_config` with its defaults (1 MiB parts, 4 at once, 3 attempts)."""
    return make_config(tmp_path)


@pytest.fixture(name="deployment")
def deployment_fixture(tmp_path: Path) -> DeploymentDir:
    """An empty deployment directory `<root>/dg-1/d-EXAMPLE`."""
    path = tmp_path / "root" / "dg-1" / "d-EXAMPLE"
    path.mkdir(parents=True)
    return DeploymentDir(path)


def admin_client(moto: MotoServer, service: str) -> Any:
    """A boto3 client that talks to moto directly, for setting up test data."""
    import boto3  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415

    return boto3.client(
        service,
        endpoint_url=moto.url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


def iam_user(moto: MotoServer, name: str, actions: list[str]) -> tuple[str, str]:
    """Create IAM user `name` allowed `actions` on everything; return its (key id, secret)."""
    import json  # noqa: PLC0415

    iam = admin_client(moto, "iam")
    iam.create_user(UserName=name)
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
    }
    iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return str(key["AccessKeyId"]), str(key["SecretAccessKey"])

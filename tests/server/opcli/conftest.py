"""Fixtures for the operator CLI: a clean AWS environment, moto's server, and a CLI runner."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import boto3  # type: ignore[import-untyped,unused-ignore]
import pytest
import structlog
from moto.server import ThreadedMotoServer

from codedeploy_server.opcli.main import main
from tests.fakes.broker_fixtures import mosquitto, mosquitto_factory  # noqa: F401
from tests.server.opcli.api_server import ApiServer, ServerThread
from tests.server.opcli.e2e import make_fleet

ACCESS_KEY = "AKIDOPCLITEST0000001"
SECRET_KEY = "opcli-test-secret-key"  # noqa: S105 - a test credential


@dataclass(frozen=True, slots=True)
class CliResult:
    """What one `codedeploy` run did."""

    status: int
    out: str
    err: str


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Test credentials and region, no AWS config files, no endpoint overrides, UTC clock."""
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ENDPOINT_URL_CODEDEPLOY",
        "AWS_REGION",
        "CODEDEPLOY_ENDPOINT_URL",
        "CODEDEPLOY_MQTT_ENDPOINT",
        "SOURCE_DATE_EPOCH",
        "COLUMNS",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    # boto3's default session keeps the credentials it first resolved: a session made by an
    # earlier test (with other keys in the environment) would sign these tests' requests.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)


@pytest.fixture
def moto_url(aws_env: None) -> Iterator[str]:
    """moto's server on 127.0.0.1 (S3, and its partial CodeDeploy), as an endpoint URL."""
    del aws_env
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    # moto's backends are process-wide: start every test from empty ones.
    reset = urllib.request.Request(f"{url}/moto-api/reset", method="POST")  # noqa: S310
    with urllib.request.urlopen(reset, timeout=10):  # noqa: S310 - a loopback http URL
        pass
    yield url
    server.stop()


@pytest.fixture
def api(aws_env: None, tmp_path: Path) -> Iterator[ApiServer]:
    """The real API app on 127.0.0.1 (SQLite store, bundle store, scripted rollout engine)."""
    del aws_env
    (tmp_path / "server").mkdir()
    # The server logs with structlog to stdout by default: that is where the CLI under test
    # writes too (capsys), so the server's log goes to a file instead.
    with (tmp_path / "server" / "server.log").open("w") as log:
        structlog.configure(logger_factory=structlog.WriteLoggerFactory(file=log))
        thread = ServerThread(tmp_path / "server", {ACCESS_KEY: SECRET_KEY})
        server = thread.start()
        try:
            yield server
        finally:
            thread.stop()
            structlog.reset_defaults()


@pytest.fixture
def fleet(api: ApiServer) -> ApiServer:
    """The API with application `web`, group `prod` (host-1, host-2) and host-3 outside it."""
    return make_fleet(api)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> CliRunner:
    """Run `codedeploy ARGS...` in-process and collect its exit status and output."""
    return CliRunner(capsys)


class CliRunner:
    """Calls `codedeploy_server.opcli.main.main`; argparse's exits become statuses."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys

    def __call__(self, *argv: str) -> CliResult:
        """Run once; stdout and stderr are what this run wrote."""
        self._capsys.readouterr()
        status = run_main(list(argv))
        captured = self._capsys.readouterr()
        return CliResult(status, captured.out, captured.err)


def run_main(argv: Sequence[str]) -> int:
    """`main(argv)`, with argparse's SystemExit turned into its status."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)

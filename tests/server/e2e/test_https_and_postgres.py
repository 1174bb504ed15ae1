"""`codedeploy-server run` over HTTPS (`tls_cert`/`tls_key`) and on PostgreSQL, as real
processes driven by boto3, with a real agent and a private Mosquitto; loopback only (issue 5).

The HTTPS server uses a throwaway CA (`make_test_pki`): boto3 trusts it with `verify=`, the
`codedeploy` CLI with AWS_CA_BUNDLE and the agent with SSL_CERT_FILE, as an operator would set
them up with a private CA.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import psycopg
import pytest
import yaml
from botocore.config import Config

from tests.daemon.conftest import Agent
from tests.fakes.brokers import MosquittoBroker, Pki, make_test_pki
from tests.fakes.bundles import write_bundle
from tests.server.e2e.conftest import ACCESS_KEY, REGION, SECRET_KEY, Server

pytestmark = [pytest.mark.broker]

APP = "shop"
GROUP = "web"
THING = "web-1"
KEY_ID = "control-plane-1"  # the e2e Server's signing_key_id
BUNDLE_LINK = re.compile(r"(?P<scheme>[a-z]+)://127\.0\.0\.1:(?P<port>\d+)/bundles/[0-9a-f]{64}\?")


@dataclass
class ConfiguredServer(Server):
    """The e2e `Server`, optionally with `tls_cert`/`tls_key` from `pki` and another
    `database` (a PostgreSQL URL) than its SQLite file."""

    pki: Pki | None = None
    database: str | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.pki is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def write_config(self) -> Path:
        path = super().write_config()
        config = yaml.safe_load(path.read_text())
        if self.pki is not None:
            config["tls_cert"] = str(self.pki.server_cert)
            config["tls_key"] = str(self.pki.server_key)
        if self.database is not None:
            config["database"] = self.database
        path.write_text(yaml.safe_dump(config))
        return path


def client(url: str, *, verify: str | bool | None = None) -> Any:
    """boto3's CodeDeploy client (no retries, bounded timeouts: a failure shows at once)."""
    return boto3.client(
        "codedeploy",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        verify=verify,
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=10, read_timeout=30),
    )


@pytest.fixture(autouse=True)
def _no_ca_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore would take a CA bundle from these instead of its default trust store."""
    for name in ("AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def broker(mosquitto_factory: Callable[..., MosquittoBroker]) -> MosquittoBroker:
    return mosquitto_factory()


@pytest.fixture
def started() -> Iterator[list[ConfiguredServer | Agent]]:
    """Processes the test starts: stopped (agents first) and their output printed at the end."""
    processes: list[ConfiguredServer | Agent] = []
    yield processes
    for process in sorted(processes, key=lambda p: isinstance(p, ConfiguredServer)):
        process.stop()
        print(f"---- {type(process).__name__} {process.base.name} ----")
        print(process.output()[-10000:])


def start_server(
    base: Path, broker: MosquittoBroker, started: list[ConfiguredServer | Agent], **options: Any
) -> ConfiguredServer:
    server = ConfiguredServer(base, broker, pickup_deadline_seconds=30.0, **options)
    started.append(server)
    server.start()
    return server


def start_agent(
    base: Path,
    server: ConfiguredServer,
    started: list[ConfiguredServer | Agent],
    env: dict[str, str] | None = None,
) -> Agent:
    """A real agent named `web-1` trusting the server's job signing key."""
    agent = Agent(base, server.broker.endpoint, thing=THING)
    agent.extra["security"] = {"trusted_keys": {KEY_ID: str(server.public_key)}}
    agent.env = {"HOST_NAME": THING, **(env or {})}
    (agent.base / "keys").mkdir(parents=True)
    started.append(agent)
    agent.start()
    return agent


def push(
    server: ConfiguredServer, source: Path, env: dict[str, str] | None = None
) -> dict[str, str]:
    """`codedeploy push` of `source` to the server's bundle store; the S3 location it
    registered (bucket, key, bundleType, eTag)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "AWS_"))}
    environment.update(
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE="/nonexistent",
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
        CODEDEPLOY_ENDPOINT_URL=server.url,
        **(env or {}),
    )
    command = [sys.executable, "-m", "codedeploy_server.opcli.main", "push"]
    command += ["--application-name", APP, "--source", str(source)]
    result = subprocess.run(
        command, capture_output=True, text=True, env=environment, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    match = re.search(r"--s3-location (\S+)", result.stdout)
    assert match, result.stdout
    return dict(part.split("=", 1) for part in match.group(1).split(","))


def setup_group(api: Any) -> None:
    """Application `shop`, web-1 registered and tagged, group `web` selecting it by tag."""
    api.create_application(applicationName=APP, computePlatform="Server")
    api.register_on_premises_instance(
        instanceName=THING, iamUserArn=f"arn:aws:iam::000000000000:user/{THING}"
    )
    api.add_tags_to_on_premises_instances(
        tags=[{"Key": "role", "Value": "web"}], instanceNames=[THING]
    )
    api.create_deployment_group(
        applicationName=APP,
        deploymentGroupName=GROUP,
        deploymentConfigName="CodeDeployDefault.OneAtATime",
        onPremisesInstanceTagFilters=[{"Key": "role", "Value": "web", "Type": "KEY_AND_VALUE"}],
        serviceRoleArn="arn:aws:iam::000000000000:role/codedeploy",
    )


def deploy_and_wait(api: Any, location: dict[str, str]) -> str:
    """CreateDeployment of the pushed bundle; returns once the deployment_successful waiter
    saw it succeed."""
    deployment_id: str = api.create_deployment(
        applicationName=APP,
        deploymentGroupName=GROUP,
        revision={"revisionType": "S3", "s3Location": location},
    )["deploymentId"]
    try:
        api.get_waiter("deployment_successful").wait(
            deploymentId=deployment_id, WaiterConfig={"Delay": 1, "MaxAttempts": 45}
        )
    except botocore.exceptions.WaiterError as exc:
        target = api.get_deployment_target(deploymentId=deployment_id, targetId=THING)
        raise AssertionError(f"{deployment_id}: {exc}\n{target}") from exc
    return deployment_id


def revision_source(tmp_path: Path, version: str) -> Path:
    """A bundle whose ValidateService checks that the installed VERSION is `version`."""
    return write_bundle(
        tmp_path / f"source-{version}",
        {
            "BeforeInstall": "echo before install",
            "ValidateService": f'test "$(cat VERSION)" = {version}',
        },
        files={"VERSION": f"{version}\n"},
    )


def test_https_api_and_bundle_links(
    tmp_path: Path, broker: MosquittoBroker, started: list[ConfiguredServer | Agent]
) -> None:
    """With tls_cert/tls_key the API answers on https://: boto3 trusting the test CA creates an
    application, registers and lists a revision; boto3 without the CA gets an SSL error at once;
    the bundle links of the job document are https:// (the default public_url follows
    tls_cert), and an agent trusting the CA downloads its bundle through one."""
    pki = make_test_pki(tmp_path / "pki", server_dns=("localhost",))
    server = start_server(tmp_path / "server", broker, started, pki=pki)
    assert f"listening on https://127.0.0.1:{server.port}" in server.output()
    api = client(server.url, verify=str(pki.ca_file))

    setup_group(api)
    assert api.list_applications()["applications"] == [APP]
    registered = {
        "revisionType": "S3",
        "s3Location": {"bucket": "releases", "key": "shop-1.zip", "bundleType": "zip"},
    }
    api.register_application_revision(
        applicationName=APP, revision=registered, description="registered over https"
    )
    listed = api.list_application_revisions(applicationName=APP)["revisions"]
    assert listed == [registered]
    info = api.get_application_revision(applicationName=APP, revision=registered)
    assert info["revisionInfo"]["description"] == "registered over https"

    # Without the test CA, boto3 refuses the server's certificate: an SSL error, not a hang.
    began = time.monotonic()
    with pytest.raises(botocore.exceptions.SSLError) as refused:
        client(server.url).list_applications()
    assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value)
    assert time.monotonic() - began < 30  # well under the 10 s + 30 s timeouts of the client

    # The `codedeploy` CLI uploads over https with the CA from AWS_CA_BUNDLE, as its error
    # message about private CAs says.
    location = push(server, revision_source(tmp_path, "1"), env={"AWS_CA_BUNDLE": str(pki.ca_file)})
    start_agent(tmp_path / THING, server, started, env={"SSL_CERT_FILE": str(pki.ca_file)})
    deployment_id = deploy_and_wait(api, location)

    with sqlite3.connect(server.base / "state.db") as db:
        (doc,) = db.execute(
            "SELECT doc FROM deployments WHERE deployment_id = ?", (deployment_id,)
        ).fetchone()
    links = BUNDLE_LINK.findall(json.dumps(json.loads(doc)["_jobDocument"]))
    assert links == [("https", str(server.port))], doc


def test_postgresql_deployment_end_to_end(
    tmp_path: Path,
    postgres_url: str,  # before `started`: the database is dropped after the server stopped
    broker: MosquittoBroker,
    started: list[ConfiguredServer | Agent],
) -> None:
    """`codedeploy-server run` on a fresh PostgreSQL database with one real agent: a
    deployment succeeds through boto3 and the deployment_successful waiter, and its rows are in
    PostgreSQL (not in a SQLite file)."""
    server = start_server(tmp_path / "server", broker, started, database=postgres_url)
    api = client(server.url)
    setup_group(api)
    location = push(server, revision_source(tmp_path, "1"))
    agent = start_agent(tmp_path / THING, server, started)
    deployment_id = deploy_and_wait(api, location)

    target = api.get_deployment_target(deploymentId=deployment_id, targetId=THING)
    events = target["deploymentTarget"]["instanceTarget"]["lifecycleEvents"]
    assert [e["status"] for e in events] == ["Succeeded"] * 7, events
    group = api.get_deployment_group(applicationName=APP, deploymentGroupName=GROUP)
    info = group["deploymentGroupInfo"]
    assert info["lastSuccessfulDeployment"]["deploymentId"] == deployment_id
    assert info["targetRevision"]["s3Location"]["key"] == location["key"]
    installed = (agent.root_dir / "deployment-instructions").glob("*_last_successful_install")
    (pointer,) = installed
    archive = Path(pointer.read_text().strip()) / "deployment-archive"
    assert (archive / "VERSION").read_text() == "1\n"

    assert not (server.base / "state.db").exists()
    with psycopg.connect(postgres_url) as conn:
        row = conn.execute(
            "SELECT status FROM deployments WHERE deployment_id = %s", (deployment_id,)
        ).fetchone()
    assert row == ("Succeeded",)

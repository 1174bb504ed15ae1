"""The daemon runs job documents whose revision lives in S3 and whose hooks get Parameter Store
secrets, against moto's server on 127.0.0.1 (the real agent process, the host's own
credentials: here, environment variables pointing at moto)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from codedeploy_agent.protocol.jobdoc import build_job_document
from codedeploy_agent.protocol.messages import JobStatus
from codedeploy_agent.protocol.signing import load_private_key, sign_document
from codedeploy_agent.spec import BundleType, S3Revision
from tests.daemon.conftest import KEY_ID, THING, Agent
from tests.fakes.bundles import make_tgz, write_bundle
from tests.fakes.jobs_service import FakeJobsService
from tests.sources.moto_server import MotoServer

pytestmark = [pytest.mark.broker, pytest.mark.asyncio]

SECRET = "db-pa55-7431"  # noqa: S105 - a test value stored in moto
AWS = {
    "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",  # AWS's documented example
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@pytest.fixture
def moto() -> Iterator[MotoServer]:
    """moto's server for this test."""
    with MotoServer() as server:
        yield server


def _client(moto: MotoServer, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=moto.url,
        region_name=AWS["AWS_REGION"],
        aws_access_key_id=AWS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS["AWS_SECRET_ACCESS_KEY"],
    )


async def test_s3_revision_with_secrets(
    agent: Agent,
    service: FakeJobsService,
    keys: tuple[Path, Path],
    moto: MotoServer,
    tmp_path: Path,
) -> None:
    """The agent fetches the bundle with GetObject (its own credentials), checks the ETag, the
    hooks see BUNDLE_* and the secret, and no log contains the secret."""
    proof = tmp_path / "proof"
    bundle = write_bundle(
        tmp_path / "bundle",
        {
            "ApplicationStart": (
                f'echo "$BUNDLE_BUCKET/$BUNDLE_KEY etag=$BUNDLE_ETAG pw=$DB_PASSWORD"\n'
                f'printf %s "$DB_PASSWORD" | sha256sum | cut -d" " -f1 > {proof}'
            )
        },
    )
    archive = make_tgz(bundle, tmp_path / "app.tgz")
    s3 = _client(moto, "s3")
    s3.create_bucket(Bucket="releases")
    put = s3.put_object(Bucket="releases", Key="shop/app.tgz", Body=archive.read_bytes())
    _client(moto, "ssm").put_parameter(Name="/shop/db", Value=SECRET, Type="SecureString")
    now = datetime.now(UTC)
    document = build_job_document(
        deployment_id="d-S3SECRET1",
        deployment_group_id="dg-web",
        deployment_group_name="web",
        application_name="shop",
        revision=S3Revision("releases", "shop/app.tgz", BundleType.TGZ, etag=put["ETag"]),
        issued_at=now,
        expires_at=now + timedelta(hours=1),
        environment={"DB_PASSWORD": "/shop/db"},
    )
    service.queue_job(THING, "job-s3", sign_document(document, load_private_key(keys[0]), KEY_ID))
    agent.env = {**AWS, "AWS_ENDPOINT_URL": moto.url}
    agent.start()
    execution = await service.wait_for_status(
        THING, "job-s3", {JobStatus.SUCCEEDED, JobStatus.FAILED}, timeout=60
    )
    assert execution.status is JobStatus.SUCCEEDED, execution.status_details
    assert proof.read_text().strip() == hashlib.sha256(SECRET.encode()).hexdigest()
    scripts_log = (agent.root_dir / "dg-web" / "d-S3SECRET1" / "logs" / "scripts.log").read_text()
    etag = put["ETag"].strip('"')
    assert "[stdout]releases/shop/app.tgz etag=" in scripts_log
    assert etag in scripts_log
    assert "pw=***" in scripts_log
    everything = "".join(p.read_text(errors="replace") for p in agent.base.rglob("*.log"))
    assert SECRET not in everything + agent.output()
    assert service.violations == []


async def test_missing_secret_fails_before_any_hook(
    agent: Agent,
    service: FakeJobsService,
    keys: tuple[Path, Path],
    moto: MotoServer,
    tmp_path: Path,
) -> None:
    """A job whose Parameter Store parameter is missing fails, naming it, before DownloadBundle."""
    bundle = write_bundle(tmp_path / "bundle", {"ApplicationStart": "echo never"})
    now = datetime.now(UTC)
    document = build_job_document(
        deployment_id="d-S3SECRET2",
        deployment_group_id="dg-web",
        deployment_group_name="web",
        application_name="shop",
        revision=S3Revision("releases", "none.tgz", BundleType.TGZ),
        issued_at=now,
        expires_at=now + timedelta(hours=1),
        environment={"DB_PASSWORD": "/shop/absent"},
    )
    del bundle
    service.queue_job(THING, "job-miss", sign_document(document, load_private_key(keys[0]), KEY_ID))
    agent.env = {**AWS, "AWS_ENDPOINT_URL": moto.url}
    agent.start()
    execution = await service.wait_for_status(THING, "job-miss", {JobStatus.FAILED}, timeout=60)
    assert "/shop/absent" in execution.status_details["message"]
    assert not (agent.root_dir / "dg-web" / "d-S3SECRET2").exists()

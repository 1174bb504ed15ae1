"""`push` to S3 (moto's server on 127.0.0.1): the upload, and nothing uploaded for a bad appspec."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped,unused-ignore]
import pytest

from codedeploy_server.opcli.bundle import collect_entries, write_bundle
from codedeploy_server.opcli.client import Clients, ClientSettings
from codedeploy_server.opcli.locations import S3Url
from codedeploy_server.opcli.upload import upload_to_s3
from tests.server.opcli.conftest import CliRunner
from tests.server.opcli.test_bundle import make_source

BUCKET = "revisions"


@pytest.fixture
def s3(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A versioned bucket on moto; boto3's S3 clients reach moto through AWS_ENDPOINT_URL_S3."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_url)
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return client


def test_upload_to_s3_keeps_etag_and_version(s3: Any, moto_url: str, tmp_path: Path) -> None:
    """The bundle lands byte for byte; the ETag (unquoted) and VersionId are what S3 gave."""
    bundle = write_bundle(collect_entries(make_source(tmp_path / "src")), tmp_path / "b.zip")
    clients = Clients(ClientSettings(endpoint_url=moto_url))
    uploaded = upload_to_s3(clients, bundle, S3Url(BUCKET, "web/app.zip"))
    stored = s3.get_object(Bucket=BUCKET, Key="web/app.zip")
    assert stored["Body"].read() == bundle.path.read_bytes()
    assert uploaded.etag == hashlib.md5(bundle.path.read_bytes()).hexdigest()  # noqa: S324
    assert uploaded.version == stored["VersionId"]
    assert uploaded.s3_location() == {
        "bucket": BUCKET,
        "key": "web/app.zip",
        "bundleType": "zip",
        "eTag": uploaded.etag,
        "version": stored["VersionId"],
    }


def test_invalid_appspec_uploads_nothing(
    s3: Any, moto_url: str, tmp_path: Path, cli: CliRunner
) -> None:
    """Appspec errors are printed, the status is 1 and the bucket stays empty."""
    source = make_source(tmp_path / "src")
    (source / "appspec.yml").write_text(
        "version: 0.0\nos: linux\nhooks:\n  ApplicationStart:\n    - location: scripts/nope.sh\n"
    )
    result = cli(
        "push",
        "--endpoint-url",
        moto_url,
        "--application-name",
        "web",
        "--source",
        str(source),
        "--s3-location",
        f"s3://{BUCKET}/web/app.zip",
    )
    assert result.status == 1
    assert result.out == ""
    assert result.err == (
        "ERROR  hooks.ApplicationStart[0].location: Script does not exist at specified "
        f"location: {source}/scripts/nope.sh\n"
        f"{source}/appspec.yml: 1 error, 0 warnings\n"
        "The appspec has errors; nothing was uploaded. Fix them, and push again.\n"
    )
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)

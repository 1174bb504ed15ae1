"""`codedeploy push` against the real API app: the bundle store, S3 (moto), registration."""

from __future__ import annotations

from pathlib import Path

import boto3  # type: ignore[import-untyped,unused-ignore]
import pytest

from codedeploy_server.opcli.bundle import collect_entries, write_bundle
from tests.server.opcli.api_server import ApiServer
from tests.server.opcli.conftest import CliRunner
from tests.server.opcli.e2e import client
from tests.server.opcli.test_bundle import make_source


def test_push_to_the_bundle_store_registers_the_revision(
    fleet: ApiServer, cli: CliRunner, tmp_path: Path
) -> None:
    """push uploads the zip to /bundles/<sha256>, registers it, and prints the deploy command."""
    source = make_source(tmp_path / "src")
    result = cli(
        "push",
        "--endpoint-url",
        fleet.url,
        "--application-name",
        "web",
        "--source",
        str(source),
        "--description",
        "release 1",
    )
    sha = write_bundle(collect_entries(source), tmp_path / "same.zip").sha256
    assert (result.status, result.err) == (0, "")
    assert result.out == (
        "To deploy with this revision, run:\n"
        "codedeploy deploy --application-name web --s3-location "
        f"bucket=codedeploy-server-bundles,key={sha},bundleType=zip,eTag={sha} "
        "--deployment-group-name <deployment-group-name> "
        "--deployment-config-name <deployment-config-name> --description <description>\n"
    )
    stored = fleet.bundles / sha[:2] / sha
    assert stored.read_bytes() == (tmp_path / "same.zip").read_bytes()
    location = {
        "bucket": "codedeploy-server-bundles",
        "key": sha,
        "bundleType": "zip",
        "eTag": sha,
    }
    revisions = client(fleet).list_application_revisions(applicationName="web")["revisions"]
    assert revisions == [{"revisionType": "S3", "s3Location": location}]
    info = client(fleet).get_application_revision(
        applicationName="web", revision={"revisionType": "S3", "s3Location": location}
    )["revisionInfo"]
    assert info["description"] == "release 1"


def test_push_of_an_unchanged_tree_is_the_same_revision(
    fleet: ApiServer, cli: CliRunner, tmp_path: Path
) -> None:
    """Pushing the same folder twice uploads the same bundle and registers one revision."""
    source = make_source(tmp_path / "src")
    args = (
        "push",
        "--endpoint-url",
        fleet.url,
        "--application-name",
        "web",
        "--source",
        str(source),
    )
    first, second = cli(*args), cli(*args)
    assert (first.status, second.status) == (0, 0)
    assert first.out == second.out
    assert len(client(fleet).list_application_revisions(applicationName="web")["revisions"]) == 1


def test_push_with_wrong_secret_is_refused_by_the_bundle_store(
    fleet: ApiServer, cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad signature on the upload: the server's error, AWS CLI style, status 255."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    result = cli(
        "push",
        "--endpoint-url",
        fleet.url,
        "--application-name",
        "web",
        "--source",
        str(make_source(tmp_path / "src")),
    )
    assert result.status == 255
    assert result.err.startswith(
        "An error occurred (InvalidSignatureException) when calling the PutBundle operation: "
    )
    assert list(fleet.bundles.glob("??/*")) == []


def test_push_to_s3_registers_etag_and_version(
    fleet: ApiServer, moto_url: str, cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """push --s3-location uploads to S3 (moto) and registers the ETag and VersionId S3 gave."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_url)
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="revisions")
    s3.put_bucket_versioning(Bucket="revisions", VersioningConfiguration={"Status": "Enabled"})
    result = cli(
        "push",
        "--endpoint-url",
        fleet.url,
        "--application-name",
        "web",
        "--source",
        str(make_source(tmp_path / "src")),
        "--s3-location",
        "s3://revisions/web.zip",
    )
    assert result.status == 0, result.err
    head = s3.head_object(Bucket="revisions", Key="web.zip")
    etag, version = head["ETag"].strip('"'), head["VersionId"]
    assert (
        f"--s3-location bucket=revisions,key=web.zip,bundleType=zip,eTag={etag},version={version} "
        in result.out
    )
    revisions = client(fleet).list_application_revisions(applicationName="web")["revisions"]
    assert revisions == [
        {
            "revisionType": "S3",
            "s3Location": {
                "bucket": "revisions",
                "key": "web.zip",
                "bundleType": "zip",
                "eTag": etag,
                "version": version,
            },
        }
    ]

"""codedeploy-local's `--bundle-location` forms (reference §9.2): `s3://bucket/key` with
`versionId` and `etag`, the GitHub URLs, local paths; and one `codedeploy-agent local -l s3://...`
run against moto's server on 127.0.0.1, pinned to a version that is not the latest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from codedeploy_agent.errors import LocalUsageError
from codedeploy_agent.local import revision_from_location
from codedeploy_agent.spec import (
    BundleType,
    GitHubRevision,
    LocalRevision,
    Revision,
    RevisionType,
    S3Revision,
)
from tests.fakes.bundles import write_bundle
from tests.local.helpers import zip_bundle
from tests.sources.aws_fixtures import (  # noqa: F401 - *_fixture: pytest fixtures
    admin_client,
    aws_env_fixture,
    moto_fixture,
)
from tests.sources.moto_server import MotoServer

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    ("location", "bundle_type", "expected"),
    [
        ("s3://bucket/app.zip", "zip", S3Revision("bucket", "app.zip", BundleType.ZIP)),
        (
            "s3://bucket/releases/v1/app.tgz",
            "tgz",
            S3Revision("bucket", "releases/v1/app.tgz", BundleType.TGZ),
        ),
        (
            "s3://bucket/app.tar?versionId=3HL4kqtJlcpXroDT&etag=9a0364b9e99bb480dd25e1f0284c8555",
            "tar",
            S3Revision(
                "bucket",
                "app.tar",
                BundleType.TAR,
                version="3HL4kqtJlcpXroDT",
                etag="9a0364b9e99bb480dd25e1f0284c8555",
            ),
        ),
        (
            "s3://bucket/app.zip?etag=abc-2",
            "zip",
            S3Revision("bucket", "app.zip", BundleType.ZIP, etag="abc-2"),
        ),
        (
            "s3://bucket/app.zip?versionId=v%2B1",
            "zip",
            S3Revision("bucket", "app.zip", BundleType.ZIP, version="v+1"),
        ),
        (
            "https://github.com/octo/shop",
            "zip",
            GitHubRevision("octo", "shop", "HEAD", BundleType.ZIP),
        ),
        (
            "https://github.com/octo/shop",
            "tar",
            GitHubRevision("octo", "shop", "HEAD", BundleType.TAR),
        ),
        # GitHub serves only tarballs and zipballs: other types become zip, as in codedeploy-local.
        (
            "https://github.com/octo/shop",
            "directory",
            GitHubRevision("octo", "shop", "HEAD", BundleType.ZIP),
        ),
        (
            "https://github.com/octo/shop",
            "tgz",
            GitHubRevision("octo", "shop", "HEAD", BundleType.ZIP),
        ),
        (
            f"https://api.github.com/repos/octo/shop/tarball/{SHA}",
            "tar",
            GitHubRevision("octo", "shop", SHA, BundleType.TAR),
        ),
        (
            f"https://api.github.com/repos/octo/shop/zipball/{SHA}",
            "zip",
            GitHubRevision("octo", "shop", SHA, BundleType.ZIP),
        ),
        (
            "/srv/bundles/app.zip",
            "zip",
            LocalRevision("/srv/bundles/app.zip", BundleType.ZIP, RevisionType.LOCAL_FILE),
        ),
        (
            "file:///srv/bundles/app.tgz",
            "tgz",
            LocalRevision("/srv/bundles/app.tgz", BundleType.TGZ, RevisionType.LOCAL_FILE),
        ),
        (
            "/srv/bundles/app",
            "directory",
            LocalRevision("/srv/bundles/app", BundleType.DIRECTORY, RevisionType.LOCAL_DIRECTORY),
        ),
    ],
)
def test_location_forms(location: str, bundle_type: str, expected: Revision) -> None:
    """Each documented form becomes the revision codedeploy-local would deploy."""
    assert revision_from_location(location, bundle_type) == expected


def test_a_relative_path_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative local path names a file under the working directory."""
    monkeypatch.chdir(tmp_path)
    assert revision_from_location("bundles/app.tar", "tar") == LocalRevision(
        str(tmp_path / "bundles" / "app.tar"), BundleType.TAR, RevisionType.LOCAL_FILE
    )


_GITHUB_FORMAT = (
    "not in the expected format of "
    "'https://github.com/<owner>/<repository_name>'(assumes HEAD commit) or "
    "'https://api.github.com/repos/<owner>/<repository_name>/tarball/<commit>' or "
    "'https://api.github.com/repos/<owner>/<repository_name>/zipball/<commit>'"
)


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("s3://bucket", "s3 location s3://bucket not in the expected format of 's3://bucket/key'"),
        (
            "s3://bucket/",
            "s3 location s3://bucket/ not in the expected format of 's3://bucket/key'",
        ),
        ("https://github.com/octo", f"github location https://github.com/octo {_GITHUB_FORMAT}"),
        (
            "https://api.github.com/repos/octo/shop",
            f"github location https://api.github.com/repos/octo/shop {_GITHUB_FORMAT}",
        ),
        (
            "https://example.com/app.zip",
            (
                "unknown location https://example.com/app.zip cannot be determined to be S3, "
                "Github, or a local file / directory"
            ),
        ),
        (
            "ftp://example.com/app.zip",
            (
                "unknown location ftp://example.com/app.zip cannot be determined to be S3, "
                "Github, or a local file / directory"
            ),
        ),
    ],
)
def test_malformed_locations(location: str, message: str) -> None:
    """Locations that fit no form get codedeploy-local's messages."""
    with pytest.raises(LocalUsageError) as caught:
        revision_from_location(location, "zip")
    assert str(caught.value) == message


# ---------------------------------------------------------------------------------------------
# `codedeploy-agent local -l s3://...` against moto.


def _version_bundle(tmp_path: Path, version: str, proof: Path) -> Path:
    """A zip whose ApplicationStart records its version and the BUNDLE_* variables."""
    bundle = write_bundle(
        tmp_path / f"bundle-{version}",
        {
            "ApplicationStart": (
                f'echo "{version} $BUNDLE_BUCKET $BUNDLE_KEY $BUNDLE_VERSION $BUNDLE_ETAG" '
                f"> {proof}"
            )
        },
    )
    return zip_bundle(bundle, tmp_path / f"app-{version}.zip")


def _local(tmp_path: Path, location: str) -> subprocess.CompletedProcess[str]:
    """`codedeploy-agent local -l <location> -t zip` with a config that asks no NTP server."""
    config = tmp_path / "agent.yml"
    config.write_text(
        f":root_dir: '{tmp_path / 'root'}'\n:log_dir: '{tmp_path / 'logs'}'\n"
        "clock:\n  ntp_servers: []\n"
    )
    argv = [sys.executable, "-m", "codedeploy_agent", "local", "-l", location, "-t", "zip"]
    return subprocess.run(
        [*argv, "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("PYTEST")},
        check=False,
    )


def test_local_deploys_a_pinned_s3_version(aws_env: MotoServer, tmp_path: Path) -> None:
    """`-l s3://bucket/key?versionId=..&etag=..` deploys that version (not the latest), the
    ETag checked, and the hooks see BUNDLE_BUCKET/KEY/VERSION/ETAG."""
    proof = tmp_path / "proof"
    s3 = admin_client(aws_env, "s3")
    s3.create_bucket(Bucket="releases")
    s3.put_bucket_versioning(Bucket="releases", VersioningConfiguration={"Status": "Enabled"})
    first = s3.put_object(
        Bucket="releases",
        Key="shop/app.zip",
        Body=_version_bundle(tmp_path, "v1", proof).read_bytes(),
    )
    s3.put_object(
        Bucket="releases",
        Key="shop/app.zip",
        Body=_version_bundle(tmp_path, "v2", proof).read_bytes(),
    )
    version, etag = first["VersionId"], first["ETag"].strip('"')

    result = _local(tmp_path, f"s3://releases/shop/app.zip?versionId={version}&etag={etag}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Local deployment successful" in result.stdout
    assert proof.read_text().split() == ["v1", "releases", "shop/app.zip", version, etag]


def test_local_refuses_an_s3_object_whose_etag_changed(aws_env: MotoServer, tmp_path: Path) -> None:
    """A wrong `etag` fails the deployment with the real agent's message; no hook runs."""
    proof = tmp_path / "proof"
    s3 = admin_client(aws_env, "s3")
    s3.create_bucket(Bucket="releases")
    put = s3.put_object(
        Bucket="releases",
        Key="app.zip",
        Body=_version_bundle(tmp_path, "v1", proof).read_bytes(),
    )
    result = _local(tmp_path, "s3://releases/app.zip?etag=0123456789abcdef")
    assert result.returncode == 1
    assert (
        f"Expected deployment artifact bundle etag 0123456789abcdef but was actually {put['ETag']}"
        in result.stdout + result.stderr
    )
    assert not proof.exists()

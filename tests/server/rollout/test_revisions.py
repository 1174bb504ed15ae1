"""revisions.py: bundle-store links, S3 presigned URLs (moto's server), GitHub passthrough; and
real agents deploying from the bundle store and from S3 through the engine (SQLite)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import aiohttp
import boto3  # type: ignore[import-untyped,unused-ignore]
import pytest

from codedeploy_agent.spec import BundleType, GitHubRevision, S3Revision
from codedeploy_server.bundles import BUNDLE_BUCKET
from codedeploy_server.revisions import RevisionError, RevisionResolver
from tests.fakes.bundles import make_tgz, write_bundle
from tests.server.rollout.bundle_server import serve_bundles, upload
from tests.server.rollout.conftest import HOOKS, Fleet
from tests.sources.aws_fixtures import aws_env_fixture, moto_fixture  # noqa: F401 - fixtures
from tests.sources.moto_server import MotoServer

NOW = 1_800_000_000.0


@pytest.fixture
def database(tmp_path: Path) -> str:
    """SQLite only for this module."""
    return str(tmp_path / "state.db")


def _tgz(directory: Path, name: str, hooks: dict[str, str] | None = None) -> bytes:
    scripts = {event: f"echo {event} of {name}\n" for event in HOOKS}
    scripts.update(hooks or {})
    source = write_bundle(directory / "src" / name, scripts, files={"VERSION": f"{name}\n"})
    return make_tgz(source, directory / f"{name}.tgz").read_bytes()


def _store_location(sha: str) -> dict[str, Any]:
    return {
        "revisionType": "S3",
        "s3Location": {"bucket": BUNDLE_BUCKET, "key": sha, "bundleType": "tgz", "eTag": sha},
    }


@pytest.mark.asyncio
async def test_bundle_store_revision(tmp_path: Path) -> None:
    """A bundle-store location becomes an S3 revision with a signed link valid until the job
    expires, its Sha256 and Size, and no ETag; a bundle not in the store is REVISION_MISSING."""
    body = _tgz(tmp_path, "v1")
    sha = hashlib.sha256(body).hexdigest()
    async with serve_bundles(tmp_path / "bundles") as store:
        assert (await upload(store, body))[0] == 200
        resolver = RevisionResolver(bundles=store)
        revision = await resolver.resolve(_store_location(sha), expires_at=NOW + 100, now=NOW)
        assert revision == S3Revision(
            bucket=BUNDLE_BUCKET,
            key=sha,
            bundle_type=BundleType.TGZ,
            download_url=store.signed_url(sha, int(NOW) + 101),
            sha256=sha,
            size=len(body),
        )
        missing = "a" * 64
        with pytest.raises(RevisionError) as caught:
            await resolver.resolve(_store_location(missing), expires_at=NOW + 100, now=NOW)
        assert caught.value.code == "REVISION_MISSING"
        assert str(caught.value) == (
            f"The bundle {missing} is not in the server's bundle store: upload it again with "
            "`codedeploy push` (or PUT /bundles/<sha256>)."
        )
    with pytest.raises(RevisionError, match="not configured on this server") as caught:
        await RevisionResolver(bundles=None).resolve(
            _store_location(sha), expires_at=NOW + 100, now=NOW
        )
    assert caught.value.code == "REVISION_MISSING"


@pytest.mark.asyncio
async def test_other_locations() -> None:
    """GitHub passes through; a missing bundleType comes from the key's extension; Lambda/ECS
    bundle types and revision types are refused with INVALID_REVISION and the reason."""
    resolver = RevisionResolver(
        bundles=None, presign=lambda *a: "https://s3/x", head_object=lambda *a: 7
    )
    github = {
        "revisionType": "GitHub",
        "gitHubLocation": {"repository": "octo/shop", "commitId": "0123456789abcdef"},
    }
    assert await resolver.resolve(github, expires_at=NOW, now=NOW) == GitHubRevision(
        account="octo", repository="shop", commit_id="0123456789abcdef"
    )
    inferred = {"revisionType": "S3", "s3Location": {"bucket": "b", "key": "app.tar.gz"}}
    revision = await resolver.resolve(inferred, expires_at=NOW + 10, now=NOW)
    assert revision == S3Revision(
        bucket="b",
        key="app.tar.gz",
        bundle_type=BundleType.TGZ,
        download_url="https://s3/x",
        size=7,
    )
    cases = {
        "bundleType YAML is for Lambda and ECS AppSpec files": {
            "revisionType": "S3",
            "s3Location": {"bucket": "b", "key": "appspec.yaml", "bundleType": "YAML"},
        },
        "Revisions of type AppSpecContent cannot be deployed to servers": {
            "revisionType": "AppSpecContent",
            "appSpecContent": {"content": "{}"},
        },
        "gitHubLocation.repository must be 'owner/repository'": {
            "revisionType": "GitHub",
            "gitHubLocation": {"repository": "shop", "commitId": "0123456"},
        },
        "its name does not say": {"revisionType": "S3", "s3Location": {"bucket": "b", "key": "x"}},
    }
    for message, location in cases.items():
        with pytest.raises(RevisionError, match=message) as caught:
            await resolver.resolve(location, expires_at=NOW, now=NOW)
        assert caught.value.code == "INVALID_REVISION"


@pytest.mark.asyncio
async def test_s3_presigned_url(aws_env: MotoServer, tmp_path: Path) -> None:
    """For S3 (here moto, as `s3_endpoint`) the server presigns GetObject with the credentials
    of its environment, for the object's version, and HEAD gives its size; a missing object is
    REVISION_MISSING."""
    s3 = boto3.client("s3", endpoint_url=aws_env.url, region_name="us-east-1")
    s3.create_bucket(Bucket="releases")
    s3.put_bucket_versioning(Bucket="releases", VersioningConfiguration={"Status": "Enabled"})
    first = s3.put_object(Bucket="releases", Key="app.tgz", Body=b"first")["VersionId"]
    s3.put_object(Bucket="releases", Key="app.tgz", Body=b"second!")
    resolver = RevisionResolver(bundles=None, s3_endpoint=aws_env.url, region="us-east-1")
    location = {
        "revisionType": "S3",
        "s3Location": {
            "bucket": "releases",
            "key": "app.tgz",
            "bundleType": "tgz",
            "version": first,
        },
    }
    now = time.time()
    revision = await resolver.resolve(location, expires_at=now + 3600, now=now)
    assert isinstance(revision, S3Revision)
    assert revision.size == 5
    assert revision.version == first
    assert revision.download_url is not None
    assert "X-Amz-Expires=3600" in revision.download_url
    async with aiohttp.ClientSession() as session, session.get(revision.download_url) as reply:
        assert await reply.read() == b"first"
    location["s3Location"] = {"bucket": "releases", "key": "gone.tgz", "bundleType": "tgz"}
    with pytest.raises(RevisionError, match="does not exist") as caught:
        await resolver.resolve(location, expires_at=now + 3600, now=now)
    assert caught.value.code == "REVISION_MISSING"


@pytest.mark.asyncio
@pytest.mark.broker
async def test_agents_deploy_from_the_bundle_store(fleet: Fleet) -> None:
    """Real agents download a pushed bundle through its signed link (Sha256 checked): the
    deployment succeeds; the same bundle altered on disk fails DownloadBundle everywhere."""
    hosts = ["host-1", "host-2"]
    for thing in hosts:
        fleet.add_agent(thing)
    body = _tgz(fleet.base, "v1")
    sha = hashlib.sha256(body).hexdigest()
    async with serve_bundles(fleet.base / "store") as store:
        assert (await upload(store, body))[0] == 200
        await fleet.start_server(resolver=RevisionResolver(bundles=store))
        await fleet.create_group(hosts)
        ok = await fleet.deploy(_store_location(sha), hosts, config="CodeDeployDefault.AllAtOnce")
        doc = await fleet.wait_for(ok)
        assert doc["status"] == "Succeeded", await fleet.targets(ok)
        assert doc["_jobDocument"]["Revision"]["Download"]["Sha256"] == sha
        assert all(fleet.installed_version(thing) == "v1" for thing in hosts)

        store.path(sha).write_bytes(body[:-1] + bytes([body[-1] ^ 1]))
        bad = await fleet.deploy(_store_location(sha), hosts, config="CodeDeployDefault.AllAtOnce")
        doc = await fleet.wait_for(bad)
        assert doc["status"] == "Failed"
        for target in await fleet.targets(bad):
            download = target["lifecycleEvents"][1]
            assert download["lifecycleEventName"] == "DownloadBundle"
            assert download["status"] == "Failed"
            assert sha in download["diagnostics"]["message"]


@pytest.mark.asyncio
@pytest.mark.broker
async def test_agents_deploy_from_s3(fleet: Fleet, aws_env: MotoServer) -> None:
    """Real agents fetch an S3 revision (moto) through the URL the server presigned."""
    hosts = ["host-1", "host-2"]
    for thing in hosts:
        fleet.add_agent(thing)
    body = _tgz(fleet.base, "v1")
    s3 = boto3.client("s3", endpoint_url=aws_env.url, region_name="us-east-1")
    s3.create_bucket(Bucket="releases")
    etag = s3.put_object(Bucket="releases", Key="shop/v1.tgz", Body=body)["ETag"]
    resolver = RevisionResolver(bundles=None, s3_endpoint=aws_env.url, region="us-east-1")
    await fleet.start_server(resolver=resolver)
    await fleet.create_group(hosts)
    location = {
        "revisionType": "S3",
        "s3Location": {
            "bucket": "releases",
            "key": "shop/v1.tgz",
            "bundleType": "tgz",
            "eTag": etag,
        },
    }
    deployment_id = await fleet.deploy(location, hosts, config="CodeDeployDefault.AllAtOnce")
    doc = await fleet.wait_for(deployment_id)
    assert doc["status"] == "Succeeded", await fleet.targets(deployment_id)
    download = doc["_jobDocument"]["Revision"]["Download"]
    assert download["Size"] == len(body)
    assert download["Url"].startswith(f"{aws_env.url}/releases/shop/v1.tgz?")
    assert all(fleet.installed_version(thing) == "v1" for thing in hosts)

"""S3 revisions against moto's server on 127.0.0.1: versions, ETag, SHA-256, errors, parallel
ranged download, resuming a cut download, presigned URLs, and the clock check."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import re
from pathlib import Path
from typing import Any

import pytest

from codedeploy_agent.clock import ClockSkewError
from codedeploy_agent.config import AgentConfig, ClockSettings
from codedeploy_agent.errors import BundleError
from codedeploy_agent.host.layout import DeploymentDir
from codedeploy_agent.sources.s3 import fetch_s3
from codedeploy_agent.spec import BundleType, S3Revision
from tests.fakes.ntp import FakeNtpServer
from tests.sources.aws_fixtures import (  # noqa: F401 - *_fixture: pytest fixtures
    REGION,
    admin_client,
    aws_config_fixture,
    aws_env_fixture,
    deployment_fixture,
    iam_user,
    make_config,
    moto_fixture,
    tap_fixture,
)
from tests.sources.moto_server import MotoServer, TcpTap

MiB = 1024 * 1024
BUCKET = "bundles"


def _data(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)  # noqa: S311 - reproducible test data


def _bucket(moto: MotoServer, *, versioned: bool = False) -> Any:
    s3 = admin_client(moto, "s3")
    s3.create_bucket(Bucket=BUCKET)
    if versioned:
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return s3


def _revision(key: str = "app.tar", **fields: Any) -> S3Revision:
    return S3Revision(bucket=BUCKET, key=key, bundle_type=BundleType.TAR, **fields)


def _ranges(tap: TcpTap, key: str = "app.tar") -> list[str | None]:
    return [r.range for r in tap.requests_for(f"/{BUCKET}/{key}")]


@pytest.mark.asyncio
async def test_version_id_picks_the_right_version(
    aws_env: MotoServer, aws_config: AgentConfig, deployment: DeploymentDir
) -> None:
    """With a version the bundle is that version's bytes; without one, the latest version's."""
    s3 = _bucket(aws_env, versioned=True)
    first = s3.put_object(Bucket=BUCKET, Key="app.tar", Body=b"version one")
    s3.put_object(Bucket=BUCKET, Key="app.tar", Body=b"version two")

    await fetch_s3(_revision(version=first["VersionId"]), deployment, aws_config)
    assert deployment.bundle.read_bytes() == b"version one"

    await fetch_s3(_revision(), deployment, aws_config)
    assert deployment.bundle.read_bytes() == b"version two"
    assert not deployment.bundle.with_name("bundle.tar.parts").exists()


@pytest.mark.asyncio
@pytest.mark.parametrize("quoted", [True, False])
async def test_etag_matches_quoted_or_not(
    aws_env: MotoServer, aws_config: AgentConfig, deployment: DeploymentDir, quoted: bool
) -> None:
    """The revision's ETag matches the object's with or without its double quotes."""
    s3 = _bucket(aws_env)
    etag = s3.put_object(Bucket=BUCKET, Key="app.tar", Body=b"bundle")["ETag"]
    assert etag.startswith('"')
    await fetch_s3(_revision(etag=etag if quoted else etag.strip('"')), deployment, aws_config)
    assert deployment.bundle.read_bytes() == b"bundle"


@pytest.mark.asyncio
async def test_multipart_etag_is_compared_as_a_string(
    aws_env: MotoServer, aws_config: AgentConfig, deployment: DeploymentDir
) -> None:
    """A multipart upload's ETag (`"...-2"`) is compared as text, not recomputed as an MD5."""
    s3 = _bucket(aws_env)
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key="app.tar")
    parts = []
    for number, body in ((1, _data(5 * MiB, 1)), (2, b"tail")):
        part = s3.upload_part(
            Bucket=BUCKET, Key="app.tar", PartNumber=number, UploadId=upload["UploadId"], Body=body
        )
        parts.append({"ETag": part["ETag"], "PartNumber": number})
    done = s3.complete_multipart_upload(
        Bucket=BUCKET,
        Key="app.tar",
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": parts},
    )
    assert done["ETag"].endswith('-2"')
    await fetch_s3(_revision(etag=done["ETag"].strip('"')), deployment, aws_config)
    assert deployment.bundle.read_bytes() == _data(5 * MiB, 1) + b"tail"


@pytest.mark.asyncio
async def test_etag_mismatch_gives_the_real_agents_message(
    aws_env: MotoServer, aws_config: AgentConfig, deployment: DeploymentDir
) -> None:
    """A different ETag fails with CodeDeploy's text (expected as given, actual as S3 sends it)
    before any byte is written."""
    s3 = _bucket(aws_env)
    etag = s3.put_object(Bucket=BUCKET, Key="app.tar", Body=b"bundle")["ETag"]
    with pytest.raises(BundleError) as caught:
        await fetch_s3(_revision(etag="0123456789abcdef"), deployment, aws_config)
    assert str(caught.value) == (
        f"Expected deployment artifact bundle etag 0123456789abcdef but was actually {etag} "
        "(object s3://bundles/app.tar). The object was replaced after the revision was "
        "registered: register the revision again, or deploy a pinned version."
    )
    assert sorted(p.name for p in deployment.path.iterdir()) == []


@pytest.mark.asyncio
async def test_sha256_is_verified(
    aws_env: MotoServer, aws_config: AgentConfig, deployment: DeploymentDir
) -> None:
    """A matching Sha256 passes (parallel parts hashed in order); a wrong one fails and the
    bundle is removed."""
    s3 = _bucket(aws_env)
    body = _data(3 * MiB + 5)
    s3.put_object(Bucket=BUCKET, Key="app.tar", Body=body)
    digest = hashlib.sha256(body).hexdigest()
    await fetch_s3(_revision(sha256=digest.upper()), deployment, aws_config)
    assert deployment.bundle.read_bytes() == body

    wrong = "0" * 64
    with pytest.raises(BundleError) as caught:
        await fetch_s3(_revision(sha256=wrong), deployment, aws_config)
    assert str(caught.value) == (
        f"The bundle s3://bundles/app.tar has SHA-256 {digest}, but the revision says {wrong}. "
        "The object is not the one registered: register the revision again with the right "
        "Sha256, or restore the object."
    )
    assert not deployment.bundle.exists()
    assert not deployment.bundle.with_name("bundle.tar.parts").exists()


@pytest.mark.asyncio
async def test_empty_object(
    aws_env: MotoServer, aws_config: AgentConfig, deployment: DeploymentDir
) -> None:
    """A zero-byte object (which S3 cannot serve a range of) becomes an empty bundle."""
    s3 = _bucket(aws_env)
    s3.put_object(Bucket=BUCKET, Key="app.tar", Body=b"")
    await fetch_s3(_revision(sha256=hashlib.sha256(b"").hexdigest()), deployment, aws_config)
    assert deployment.bundle.read_bytes() == b""


@pytest.mark.asyncio
async def test_missing_bucket_key_and_version(
    aws_env: MotoServer, aws_config: AgentConfig, deployment: DeploymentDir
) -> None:
    """A missing bucket, key or version each say which one does not exist and what to check."""
    where = f"(region {REGION}, endpoint {aws_env.url})"
    with pytest.raises(BundleError) as caught:
        await fetch_s3(_revision(), deployment, aws_config)
    assert str(caught.value) == (
        f"The S3 bucket bundles does not exist {where}, so the bundle s3://bundles/app.tar "
        "cannot be downloaded. Check the bucket name and the region."
    )

    s3 = _bucket(aws_env, versioned=True)
    with pytest.raises(BundleError) as caught:
        await fetch_s3(_revision(key="App.tar"), deployment, aws_config)
    assert str(caught.value) == (
        "The bundle s3://bundles/App.tar does not exist: the bucket bundles has no object with "
        f"the key App.tar {where}. Check the key (it is case-sensitive)."
    )

    s3.put_object(Bucket=BUCKET, Key="app.tar", Body=b"x")
    with pytest.raises(BundleError) as caught:
        await fetch_s3(
            _revision(version="3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"), deployment, aws_config
        )
    message = str(caught.value)
    assert message.startswith(
        "Version 3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY of s3://bundles/app.tar does not exist ("
    ), message
    assert message.endswith(
        "). Check the version id (`aws s3api list-object-versions` lists them) and that the "
        "bucket is versioned."
    )


@pytest.mark.asyncio
async def test_unknown_access_key_is_a_credentials_error(
    aws_env: MotoServer, aws_config: AgentConfig, deployment: DeploymentDir
) -> None:
    """moto (checking signatures) refuses an unknown key with InvalidAccessKeyId; the message
    says where the credentials came from and what to check."""
    _bucket(aws_env).put_object(Bucket=BUCKET, Key="app.tar", Body=b"x")
    aws_env.require_auth(True)
    with pytest.raises(BundleError) as caught:
        await fetch_s3(_revision(), deployment, aws_config)
    assert str(caught.value) == (
        "Cannot download the bundle s3://bundles/app.tar: InvalidAccessKeyId: The AWS Access "
        "Key Id you provided does not exist in our records. AWS rejected the host's "
        "credentials (from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)): check "
        "that the access key exists, is active and matches its secret, and that temporary "
        "credentials have not expired."
    )


@pytest.mark.asyncio
async def test_wrong_secret_is_a_credentials_error(
    aws_env: MotoServer,
    aws_config: AgentConfig,
    deployment: DeploymentDir,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A known key with the wrong secret fails with SignatureDoesNotMatch, as a credentials
    problem."""
    _bucket(aws_env).put_object(Bucket=BUCKET, Key="app.tar", Body=b"x")
    key_id, _secret = iam_user(aws_env, "deployer", ["s3:*"])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    aws_env.require_auth(True)
    with pytest.raises(BundleError) as caught:
        await fetch_s3(_revision(), deployment, aws_config)
    message = str(caught.value)
    assert message.startswith(
        "Cannot download the bundle s3://bundles/app.tar: SignatureDoesNotMatch: "
    ), message
    assert "AWS rejected the host's credentials (from the environment" in message


@pytest.mark.asyncio
async def test_access_denied_names_the_permission(
    aws_env: MotoServer,
    aws_config: AgentConfig,
    deployment: DeploymentDir,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An identity without s3:GetObject gets a message naming the permission and the object."""
    s3 = _bucket(aws_env, versioned=True)
    version = s3.put_object(Bucket=BUCKET, Key="app.tar", Body=b"x")["VersionId"]
    key_id, secret = iam_user(aws_env, "lister", ["s3:ListBucket"])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    aws_env.require_auth(True)
    with pytest.raises(BundleError) as caught:
        await fetch_s3(_revision(version=version), deployment, aws_config)
    message = str(caught.value)
    assert message.startswith(
        f"Cannot download the bundle s3://bundles/app.tar (version {version}): AccessDenied: "
    ), message
    assert message.endswith(
        "The host's AWS identity (credentials from the environment (AWS_ACCESS_KEY_ID, "
        "AWS_SECRET_ACCESS_KEY)) needs s3:GetObject on arn:aws:s3:::bundles/app.tar and "
        "s3:GetObjectVersion (the revision names a version); kms:Decrypt on the bucket's KMS "
        "key if it uses SSE-KMS."
    )


@pytest.mark.asyncio
async def test_unreachable_endpoint_is_a_network_error(
    aws_env: MotoServer, tmp_path: Path, deployment: DeploymentDir
) -> None:
    """An endpoint nobody listens on gives a message about network, proxy and endpoint."""
    import socket  # noqa: PLC0415

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = dataclasses.replace(
        make_config(tmp_path, retries=1), s3_endpoint_override=f"http://127.0.0.1:{port}"
    )
    with pytest.raises(BundleError) as caught:
        await fetch_s3(_revision(), deployment, config)
    message = str(caught.value)
    assert message.startswith(
        "Cannot download the bundle s3://bundles/app.tar: EndpointConnectionError: "
    ), message
    assert message.endswith(
        f"Check that this host can reach http://127.0.0.1:{port}: the network, the proxy "
        "settings (proxy_uri, HTTPS_PROXY, NO_PROXY, download.no_proxy) and the endpoint "
        "(s3_endpoint_override, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL)."
    )


@pytest.mark.asyncio
async def test_endpoint_override_wins_over_the_environment(
    tap: TcpTap, tmp_path: Path, deployment: DeploymentDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`s3_endpoint_override` is used even when AWS_ENDPOINT_URL points elsewhere."""
    moto_url = os.environ["AWS_ENDPOINT_URL"]
    _bucket_via(moto_url).put_object(Bucket=BUCKET, Key="app.tar", Body=b"over")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # discard: nothing answers
    config = dataclasses.replace(make_config(tmp_path), s3_endpoint_override=tap.url)
    await fetch_s3(_revision(), deployment, config)
    assert deployment.bundle.read_bytes() == b"over"
    assert _ranges(tap) == ["bytes=0-1048575"]


def _bucket_via(url: str) -> Any:
    import boto3  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415

    from tests.sources.aws_fixtures import ACCESS_KEY, SECRET_KEY  # noqa: PLC0415

    s3 = boto3.client(
        "s3",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    s3.create_bucket(Bucket=BUCKET)
    return s3


@pytest.mark.asyncio
async def test_large_object_is_fetched_in_parallel_ranges(
    tap: TcpTap,
    aws_env: MotoServer,
    aws_config: AgentConfig,
    deployment: DeploymentDir,
    no_blocking: None,
) -> None:
    """An object of 4.5 parts is fetched in 5 ranged requests without blocking the loop."""
    body = _data(4 * MiB + MiB // 2)
    _bucket(aws_env).put_object(Bucket=BUCKET, Key="app.tar", Body=body)
    await fetch_s3(_revision(sha256=hashlib.sha256(body).hexdigest()), deployment, aws_config)
    assert deployment.bundle.read_bytes() == body
    assert sorted(_ranges(tap), key=str) == [
        "bytes=0-1048575",
        "bytes=1048576-2097151",
        "bytes=2097152-3145727",
        "bytes=3145728-4194303",
        "bytes=4194304-4718591",
    ]


@pytest.mark.asyncio
async def test_cut_download_resumes_within_the_attempt(
    tap: TcpTap, aws_env: MotoServer, tmp_path: Path, deployment: DeploymentDir
) -> None:
    """A body cut mid-way is retried from where it broke off, not from the start."""
    body = _data(6 * MiB, 7)
    _bucket(aws_env).put_object(Bucket=BUCKET, Key="app.tar", Body=body)
    config = make_config(tmp_path, part_size=8 * MiB)  # one request for the whole object
    tap.cut(f"/{BUCKET}/app.tar", after_bytes=3 * MiB + 1000)
    await fetch_s3(_revision(sha256=hashlib.sha256(body).hexdigest()), deployment, config)

    assert deployment.bundle.read_bytes() == body
    assert tap.cuts_done == 1
    first, retry = _ranges(tap)
    assert first == "bytes=0-8388607"
    assert retry is not None
    start = int(retry.removeprefix("bytes=").split("-")[0])
    # Every body byte that got through before the cut (3 MiB + 1000 less the headers) was kept.
    assert 3 * MiB + 1000 - 2000 < start < 3 * MiB + 1000
    assert retry == f"bytes={start}-{6 * MiB - 1}"
    assert not deployment.bundle.with_name("bundle.tar.parts").exists()


@pytest.mark.asyncio
async def test_cut_download_resumes_in_a_later_attempt(
    tap: TcpTap, aws_env: MotoServer, tmp_path: Path, deployment: DeploymentDir
) -> None:
    """When the attempts run out, the progress file keeps what was fetched and the next
    attempt (after an agent restart) asks only for the missing bytes."""
    body = _data(6 * MiB, 8)
    _bucket(aws_env).put_object(Bucket=BUCKET, Key="app.tar", Body=body)
    tap.cut(f"/{BUCKET}/app.tar", after_bytes=2 * MiB + 500)
    with pytest.raises(BundleError) as caught:
        await fetch_s3(_revision(), deployment, make_config(tmp_path, part_size=8 * MiB, retries=1))
    progress_file = deployment.bundle.with_name("bundle.tar.parts")
    progress = json.loads(progress_file.read_text())
    [[start, end]] = progress["done"]
    assert start == 0
    assert 2 * MiB + 500 - 2000 < end < 2 * MiB + 500  # all body bytes before the cut
    assert progress["size"] == 6 * MiB
    assert re.match(
        r"The download of s3://bundles/app\.tar broke off "
        r"\((IncompleteReadError|ResponseStreamingError): .*\) after 1 attempt\(s\) "
        r"\(download\.retries\); ",
        str(caught.value),
    ), str(caught.value)
    assert (
        f"; {end} of {6 * MiB} bytes are kept in {deployment.bundle} and the next attempt "
        in str(caught.value)
    )

    await fetch_s3(
        _revision(sha256=hashlib.sha256(body).hexdigest()),
        deployment,
        make_config(tmp_path, part_size=8 * MiB),
    )
    assert deployment.bundle.read_bytes() == body
    assert _ranges(tap) == ["bytes=0-8388607", f"bytes={end}-{6 * MiB - 1}"]
    assert not progress_file.exists()


@pytest.mark.asyncio
async def test_cut_part_of_a_parallel_download_resumes_alone(
    tap: TcpTap, aws_env: MotoServer, aws_config: AgentConfig, deployment: DeploymentDir
) -> None:
    """In a parallel download only the cut part is asked for again, from where it broke."""
    body = _data(3 * MiB, 9)
    _bucket(aws_env).put_object(Bucket=BUCKET, Key="app.tar", Body=body)
    tap.cut(f"/{BUCKET}/app.tar", after_bytes=MiB // 2)  # the first part, 0-1 MiB
    await fetch_s3(_revision(), deployment, aws_config)
    assert deployment.bundle.read_bytes() == body
    first, *others = _ranges(tap)
    assert first == "bytes=0-1048575"
    resumed = next(r for r in others if r is not None and r.endswith("-1048575"))
    start = int(resumed.removeprefix("bytes=").split("-")[0])
    assert MiB // 2 - 2000 < start < MiB // 2  # the body bytes that got through were kept
    assert sorted(others, key=str) == sorted(
        [resumed, "bytes=1048576-2097151", "bytes=2097152-3145727"], key=str
    )


@pytest.mark.asyncio
async def test_changed_object_restarts_instead_of_mixing(
    tap: TcpTap, aws_env: MotoServer, tmp_path: Path, deployment: DeploymentDir
) -> None:
    """If the object was replaced since the interrupted attempt, If-Match fails and the
    download starts over: the bundle is entirely the new object."""
    s3 = _bucket(aws_env)
    s3.put_object(Bucket=BUCKET, Key="app.tar", Body=_data(4 * MiB, 1))
    tap.cut(f"/{BUCKET}/app.tar", after_bytes=2 * MiB)
    with pytest.raises(BundleError):
        await fetch_s3(_revision(), deployment, make_config(tmp_path, part_size=8 * MiB, retries=1))
    assert deployment.bundle.with_name("bundle.tar.parts").exists()

    new = _data(4 * MiB, 2)
    s3.put_object(Bucket=BUCKET, Key="app.tar", Body=new)
    await fetch_s3(_revision(), deployment, make_config(tmp_path, part_size=8 * MiB))
    assert deployment.bundle.read_bytes() == new
    # The resume request (If-Match the old ETag) failed, then a fresh start from byte 0.
    ranges = _ranges(tap)
    assert ranges[0] == "bytes=0-8388607"
    assert ranges[2] == "bytes=0-8388607"
    assert len(ranges) == 3


@pytest.mark.asyncio
async def test_size_limit(aws_env: MotoServer, tmp_path: Path, deployment: DeploymentDir) -> None:
    """An object larger than download.max_bytes is refused before it is written."""
    _bucket(aws_env).put_object(Bucket=BUCKET, Key="app.tar", Body=b"x" * 2000)
    with pytest.raises(BundleError) as caught:
        await fetch_s3(_revision(), deployment, make_config(tmp_path, max_bytes=1000))
    assert str(caught.value) == (
        "The bundle s3://bundles/app.tar is 2000 bytes, more than download.max_bytes (1000). "
        "Raise download.max_bytes in the agent config if the bundle is meant to be this large."
    )
    assert not deployment.bundle.exists()


@pytest.mark.asyncio
async def test_presigned_url_needs_no_credentials_and_no_clock_check(
    aws_env: MotoServer,
    tmp_path: Path,
    deployment: DeploymentDir,
    monkeypatch: pytest.MonkeyPatch,
    no_blocking: None,
) -> None:
    """A presigned URL is fetched over HTTP with its Sha256 checked; the host's credentials and
    clock (here 10 minutes off) play no part."""
    s3 = _bucket(aws_env)
    body = _data(2 * MiB + 3, 4)
    etag = s3.put_object(Bucket=BUCKET, Key="app.tar", Body=body)["ETag"]
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": "app.tar"}, ExpiresIn=600
    )
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with FakeNtpServer(offset_seconds=600.0) as ntp:
        config = dataclasses.replace(
            make_config(tmp_path), clock=ClockSettings(ntp_servers=(ntp.address,))
        )
        revision = _revision(
            download_url=url,
            sha256=hashlib.sha256(body).hexdigest(),
            size=len(body),
            etag=etag,
        )
        await fetch_s3(revision, deployment, config)
        assert ntp.requests == 0
    assert deployment.bundle.read_bytes() == body


@pytest.mark.asyncio
async def test_skewed_clock_refuses_before_any_request(
    tap: TcpTap, aws_env: MotoServer, tmp_path: Path, deployment: DeploymentDir
) -> None:
    """With the clock 600 s off, no GetObject is sent and the error names the fix."""
    _bucket(aws_env).put_object(Bucket=BUCKET, Key="app.tar", Body=b"x")
    with FakeNtpServer(offset_seconds=600.0) as ntp:
        config = dataclasses.replace(
            make_config(tmp_path), clock=ClockSettings(ntp_servers=(ntp.address,))
        )
        with pytest.raises(ClockSkewError) as caught:
            await fetch_s3(_revision(), deployment, config)
        address = ntp.address
    message = str(caught.value)
    assert message.startswith(f"The local clock is 600.0 s behind the NTP server {address}")
    assert "InvalidSignatureException (Signature expired)" in message
    assert tap.requests == []


@pytest.mark.slow
@pytest.mark.asyncio
async def test_300_mb_object_in_parallel_ranges(
    tap: TcpTap, aws_env: MotoServer, tmp_path: Path, deployment: DeploymentDir
) -> None:
    """A 300 MB object comes down in 64 MiB ranged requests, four at a time, with the right
    SHA-256."""
    size = 300 * 1000 * 1000
    body = os.urandom(size)
    digest = hashlib.sha256(body).hexdigest()
    s3 = _bucket(aws_env)
    s3.put_object(Bucket=BUCKET, Key="big.tar", Body=body)
    del body
    config = make_config(tmp_path, part_size=64 * MiB, parallel_parts=4)
    await fetch_s3(_revision(key="big.tar", sha256=digest), deployment, config)
    assert deployment.bundle.stat().st_size == size
    ranges = _ranges(tap, "big.tar")
    assert len(ranges) == 5
    assert {r for r in ranges if r is not None} == {
        f"bytes={i * 64 * MiB}-{min((i + 1) * 64 * MiB, size) - 1}" for i in range(5)
    }

"""`codedeploy-server sign-job`, run as a real process: documents for AWS IoT Core Jobs, signed
so that the agent's own checks accept them, and one-line errors for documents it would refuse."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from codedeploy_agent.protocol.errors import JobRejected
from codedeploy_agent.protocol.jobdoc import accept_job_document, parse_time
from codedeploy_agent.protocol.keys import Ed25519PublicKey
from codedeploy_agent.protocol.signing import load_public_key, verify_document

KEY_ID = "control-plane-1"
IN_PLACE = [
    "ApplicationStop",
    "DownloadBundle",
    "BeforeInstall",
    "Install",
    "AfterInstall",
    "ApplicationStart",
    "ValidateService",
]
#: A job document as an operator writes it for `aws iot create-job` (PROTOCOL.md example).
JOB: dict[str, Any] = {
    "Schema": "codedeploy-agent/job/1",
    "DeploymentId": "d-IOTCORE01",
    "DeploymentGroupId": "dg-web",
    "DeploymentGroupName": "web",
    "ApplicationName": "shop",
    "Revision": {
        "RevisionType": "S3",
        "S3Revision": {"Bucket": "shop-releases", "Key": "app-1.4.2.zip", "BundleType": "zip"},
    },
    "LifecycleEvents": IN_PLACE,
}


def run(*args: str | Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m codedeploy_server ARGS`, its output as text."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    return subprocess.run(
        [sys.executable, "-m", "codedeploy_server", *map(str, args)],
        input=None if stdin is None else stdin.decode(),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A key pair made by `codedeploy-server keygen`: (private, public)."""
    directory = tmp_path_factory.mktemp("keys")
    private, public = directory / "jobs.ed25519", directory / "jobs.ed25519.pub"
    result = run("keygen", "--private", private, "--public", public)
    assert result.returncode == 0, result.stderr
    return private, public


@pytest.fixture(scope="module")
def trusted(keys: tuple[Path, Path]) -> dict[str, Ed25519PublicKey]:
    """The agent's view of the public key: key id -> key."""
    return {KEY_ID: load_public_key(keys[1])}


def write_job(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document, indent=2))
    return path


def seconds(document: dict[str, Any], key: str) -> float:
    return parse_time(document[key]).timestamp()


def test_signed_output_verifies_with_the_keygen_public_key(
    keys: tuple[Path, Path], trusted: dict[str, Ed25519PublicKey], tmp_path: Path
) -> None:
    """The written document carries the times and a signature the agent verifies and accepts."""
    job, out = write_job(tmp_path / "job.json", JOB), tmp_path / "job.signed.json"
    before = datetime.now(UTC).replace(microsecond=0)
    result = run("sign-job", "--key", keys[0], "--key-id", KEY_ID, "-o", out, job)
    assert (result.returncode, result.stderr) == (0, "")
    data = out.read_bytes()
    assert result.stdout == f"signed job document: {out} ({len(data)} bytes, key id {KEY_ID})\n"
    signed = json.loads(data)
    assert data == (json.dumps(signed, separators=(",", ":")) + "\n").encode()
    verify_document(signed, trusted)
    assert {k: v for k, v in signed.items() if k not in {"IssuedAt", "ExpiresAt", "Signature"}} == (
        JOB
    )
    assert before.timestamp() <= seconds(signed, "IssuedAt") <= before.timestamp() + 30
    assert seconds(signed, "ExpiresAt") - seconds(signed, "IssuedAt") == 3600
    assert signed["Signature"]["Algorithm"] == "Ed25519"
    assert signed["Signature"]["KeyId"] == KEY_ID
    doc = accept_job_document(signed, trusted_keys=trusted, now=datetime.now(UTC))
    assert doc.deployment_id == "d-IOTCORE01"


def test_a_changed_signed_document_no_longer_verifies(
    keys: tuple[Path, Path], trusted: dict[str, Ed25519PublicKey], tmp_path: Path
) -> None:
    """The signature covers the content: editing a signed document breaks it."""
    job, out = write_job(tmp_path / "job.json", JOB), tmp_path / "out.json"
    assert run("sign-job", "--key", keys[0], "--key-id", KEY_ID, "-o", out, job).returncode == 0
    signed = json.loads(out.read_text())
    signed["Revision"]["S3Revision"]["Key"] = "evil.zip"
    with pytest.raises(JobRejected, match="signature does not match its content"):
        verify_document(signed, trusted)


def test_stdin_to_stdout_with_expires_in(
    keys: tuple[Path, Path], trusted: dict[str, Ed25519PublicKey]
) -> None:
    """`-` reads standard input, no `-o` writes the signed JSON alone to standard output, and
    --expires-in sets how long it stays valid."""
    result = run(
        "sign-job", "--key", keys[0], "--key-id", KEY_ID, "--expires-in", "600", "-",
        stdin=json.dumps(JOB).encode(),
    )  # fmt: skip
    assert (result.returncode, result.stderr) == (0, "")
    signed = json.loads(result.stdout)
    verify_document(signed, trusted)
    assert seconds(signed, "ExpiresAt") - seconds(signed, "IssuedAt") == 600


def test_times_already_present_are_kept(
    keys: tuple[Path, Path], trusted: dict[str, Ed25519PublicKey], tmp_path: Path
) -> None:
    """IssuedAt and ExpiresAt given in the document are signed as written, and an old
    Signature is replaced."""
    now = datetime.now(UTC).replace(microsecond=0)
    issued = (now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    expires = (now + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    stale = {"Algorithm": "Ed25519", "KeyId": "old", "Value": "AAAA"}
    job = write_job(
        tmp_path / "job.json", {**JOB, "IssuedAt": issued, "ExpiresAt": expires, "Signature": stale}
    )
    result = run("sign-job", "--key", keys[0], "--key-id", KEY_ID, job)
    assert result.returncode == 0, result.stderr
    signed = json.loads(result.stdout)
    assert (signed["IssuedAt"], signed["ExpiresAt"]) == (issued, expires)
    assert signed["Signature"]["KeyId"] == KEY_ID
    verify_document(signed, trusted)


def padded(size: int) -> dict[str, Any]:
    """JOB with an extra key making its compact JSON exactly `size` bytes once the times and a
    signature are added (IssuedAt/ExpiresAt given, so the size does not depend on the clock)."""
    times = {"IssuedAt": "2026-01-01T00:00:00Z", "ExpiresAt": "2999-01-01T00:00:00Z"}
    base = {**JOB, **times, "Padding": ""}
    signature = {"Algorithm": "Ed25519", "KeyId": KEY_ID, "Value": "A" * 88}
    empty = len(json.dumps({**base, "Signature": signature}, separators=(",", ":"))) + 1
    return {**base, "Padding": "x" * (size - empty)}


def test_a_document_of_exactly_32_kb_is_signed(keys: tuple[Path, Path], tmp_path: Path) -> None:
    """The IoT Jobs limit is inclusive: a signed output of 32768 bytes is written."""
    job, out = write_job(tmp_path / "job.json", padded(32768)), tmp_path / "out.json"
    result = run("sign-job", "--key", keys[0], "--key-id", KEY_ID, "-o", out, job)
    assert result.returncode == 0, result.stderr
    assert len(out.read_bytes()) == 32768


NOT_JSON = "The job document is not valid JSON: JSON is malformed: invalid character (byte 0)"
LARGE = {**JOB, "Padding": "x" * 40000}
#: What the agent's decoder measures: the compact JSON, with the two times sign-job adds.
LARGE_SIZE = len(
    json.dumps(
        {**LARGE, "IssuedAt": "2026-01-01T00:00:00Z", "ExpiresAt": "2026-01-01T01:00:00Z"},
        separators=(",", ":"),
    )
)
# id: (document text, the message after "ERROR: <file>: ")
BAD_DOCUMENTS = {
    "not-json": ("<xml/>", NOT_JSON),
    "truncated": (
        json.dumps(JOB)[:40],
        "The job document is not valid JSON: Input data was truncated",
    ),
    "not-an-object": ("[1, 2]", "The job document must be a JSON object, got list"),
    "missing-deployment-id": (
        json.dumps({k: v for k, v in JOB.items() if k != "DeploymentId"}),
        "Deployment Spec has no DeploymentId",
    ),
    "unknown-schema-major": (
        json.dumps({**JOB, "Schema": "codedeploy-agent/job/2"}),
        (
            "Unsupported job document Schema 'codedeploy-agent/job/2': this agent reads major "
            "version 1 ('codedeploy-agent/job/1'); upgrade the agent to run this job"
        ),
    ),
    "too-large-unsigned": (
        json.dumps(LARGE),
        (
            f"The job document is {LARGE_SIZE} bytes; the limit is 32768 bytes (keep bundles out "
            "of the document: reference them by URL)"
        ),
    ),
    "too-large-once-signed": (
        json.dumps(padded(32769)),
        (
            "The signed job document is 32769 bytes; AWS IoT Jobs accepts job documents of at most "
            "32768 bytes (32 KB). Keep bundles and large values out of the document: reference "
            "the revision by URL"
        ),
    ),
    "expired": (
        json.dumps(
            {**JOB, "IssuedAt": "2020-01-01T00:00:00Z", "ExpiresAt": "2020-01-01T01:00:00Z"}
        ),
        (
            "ExpiresAt 2020-01-01T01:00:00Z is already past (now {now}): every agent would "
            "reject the job as expired; remove ExpiresAt to get now + --expires-in, or set a "
            "later time"
        ),
    ),
    "float": (
        json.dumps({**JOB, "Weight": 0.5}),
        "$.Weight: floats are not allowed in signed documents (0.5)",
    ),
    "presigned-url-placeholder": (
        json.dumps(
            {
                **JOB,
                "Revision": {
                    "RevisionType": "URL",
                    "UrlRevision": {
                        "Url": "${aws:iot:s3-presigned-url:https://s3.amazonaws.com/b/app.zip}",
                        "BundleType": "zip",
                        "Sha256": "0" * 64,
                    },
                },
            }
        ),
        (
            "The job document uses the IoT Jobs placeholder ${aws:iot:s3-presigned-url:...}: IoT "
            "Jobs replaces it after signing, so agents would reject the signature; put a download "
            "URL in Revision.Download, or use an S3Revision the agent fetches itself"
        ),
    ),
}


@pytest.mark.parametrize(("text", "message"), BAD_DOCUMENTS.values(), ids=BAD_DOCUMENTS.keys())
def test_bad_documents_fail_with_one_line(
    keys: tuple[Path, Path], tmp_path: Path, text: str, message: str
) -> None:
    """A document the agent would refuse exits 1 with one line naming the problem, and writes
    nothing."""
    job, out = tmp_path / "job.json", tmp_path / "out.json"
    job.write_text(text)
    result = run("sign-job", "--key", keys[0], "--key-id", KEY_ID, "-o", out, job)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.count("\n") == 1
    line = result.stderr.rstrip("\n")
    prefix = f"ERROR: {job}: "
    assert line.startswith(prefix)
    expected = message
    if "{now}" in message:  # the signing time, read back and checked to be a time
        now = line.partition("(now ")[2].partition(")")[0]
        assert abs(parse_time(now) - datetime.now(UTC)) < timedelta(minutes=1)
        expected = message.replace("{now}", now)
    assert line == prefix + expected
    assert not out.exists()


def test_unreadable_files_fail_with_one_line(keys: tuple[Path, Path], tmp_path: Path) -> None:
    """A missing key file or job document is a one-line error with exit status 1."""
    job = write_job(tmp_path / "job.json", JOB)
    missing = tmp_path / "missing.json"
    result = run("sign-job", "--key", tmp_path / "nokey", "--key-id", KEY_ID, job)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"ERROR: Cannot read private key file {tmp_path / 'nokey'}: No such file or directory\n"
    )
    result = run("sign-job", "--key", keys[0], "--key-id", KEY_ID, missing)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"ERROR: Cannot read the job document {missing}: No such file or directory\n"
    )


def test_expires_in_must_be_positive(keys: tuple[Path, Path], tmp_path: Path) -> None:
    """--expires-in 0 is a usage error naming the option."""
    job = write_job(tmp_path / "job.json", JOB)
    result = run("sign-job", "--key", keys[0], "--key-id", KEY_ID, "--expires-in", "0", job)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "codedeploy-server sign-job: error: argument --expires-in: must be a whole number of "
        "seconds >= 1, not '0'"
    )

"""Bundles are never held whole in memory: a separate agent process fetches a 200 MB object
through the S3 source (GetObject from moto's server, parallel ranged parts) and through the URL
source (a local HTTP server with Range support), and its peak resident set size grows far less
than the object.

The fetching process reports its peak RSS (`VmHWM`) after a small warm-up fetch (imports,
the boto3 client, thread pools: everything but the bytes of the object) and again after the big
one; the difference bounds what the big fetch held at once. A source that read the body into
memory would grow by at least the object's size.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest

from tests.sources.aws_fixtures import (  # noqa: F401 - *_fixture: pytest fixtures
    admin_client,
    aws_env_fixture,
    moto_fixture,
)
from tests.sources.conftest import Exchange, LocalServer
from tests.sources.moto_server import MotoServer

pytestmark = pytest.mark.slow

MiB: Final = 1024 * 1024
SIZE: Final = 200 * 1000 * 1000
#: The most the fetch may add to the process's peak RSS: 1 MiB buffers per part connection, the
#: hasher's reads, HTTP and TLS buffers; an order of magnitude below the object.
MAX_GROWTH: Final = 48 * MiB

#: Run in the child process: argv = source, JSON arguments. Prints the peak RSS (KiB) after the
#: warm-up and after the big fetch as one JSON line.
_CHILD: Final = r"""
import asyncio, json, sys
from pathlib import Path

from codedeploy_agent.config import AgentConfig, ClockSettings
from codedeploy_agent.host.layout import DeploymentDir
from codedeploy_agent.spec import BundleType, S3Revision, UrlRevision

source, args = sys.argv[1], json.loads(sys.argv[2])
root = Path(args["root"])
config = AgentConfig(
    root_dir=root,
    on_premises_config_file=root / "absent-onpremises.yml",
    clock=ClockSettings(ntp_servers=()),
)


def deployment(name):
    folder = DeploymentDir(root / "dg" / name)
    folder.path.mkdir(parents=True)
    return folder


async def fetch(target, sha256, folder):
    if source == "s3":
        from codedeploy_agent.sources.s3 import fetch_s3
        revision = S3Revision(args["bucket"], target, BundleType.TAR, sha256=sha256)
        await fetch_s3(revision, folder, config)
    else:
        from codedeploy_agent.sources.url import fetch_url
        await fetch_url(UrlRevision(target, BundleType.TAR, sha256), folder, config)


def peak_kib():
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent (fork and execve), so
    # it would report the test runner's peak, not this process's.
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0])


async def main():
    await fetch(args["small"], args["small_sha256"], deployment("d-warm"))
    warm = peak_kib()
    big = deployment("d-big")
    await fetch(args["big"], args["big_sha256"], big)
    print(json.dumps({"warm_kib": warm, "peak_kib": peak_kib(), "size": big.bundle.stat().st_size}))


asyncio.run(main())
"""


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A 200 MB file of random bytes on disk and its SHA-256 (written 1 MiB at a time)."""
    path = tmp_path_factory.mktemp("big") / "big.tar"
    digest = hashlib.sha256()
    with path.open("wb") as handle:
        left = SIZE
        while left:
            chunk = os.urandom(min(MiB, left))
            digest.update(chunk)
            handle.write(chunk)
            left -= len(chunk)
    return path, digest.hexdigest()


def serve_file(path: Path) -> Any:
    """A route serving `path` from disk, 1 MiB at a time, with single-range support (206)."""
    size = path.stat().st_size

    def route(ex: Exchange) -> None:
        start, end, status = 0, size, 200
        headers = {"Accept-Ranges": "bytes", "ETag": '"big-1"'}
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", ex.headers.get("range", "").strip())
        if match is not None:
            start = int(match.group(1))
            end = min(int(match.group(2)) + 1, size) if match.group(2) else size
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        ex.respond_headers(status, {**headers, "Content-Length": str(end - start)})
        with path.open("rb") as handle:
            handle.seek(start)
            left = end - start
            try:
                while left:
                    chunk = handle.read(min(MiB, left))
                    ex.write(chunk)
                    left -= len(chunk)
            except OSError:
                return

    return route


@pytest.fixture
def file_server() -> Iterator[LocalServer]:
    """A plain HTTP server on 127.0.0.1 (URL revisions may use http to loopback)."""
    server = LocalServer().start()
    yield server
    server.stop()


def run_child(source: str, arguments: dict[str, str], env: dict[str, str]) -> dict[str, int]:
    """Run the fetching process; return what it measured."""
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, source, json.dumps(arguments)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def assert_streamed(measured: dict[str, int]) -> None:
    """The big fetch wrote the whole object and grew the peak RSS by less than MAX_GROWTH."""
    assert measured["size"] == SIZE
    growth = (measured["peak_kib"] - measured["warm_kib"]) * 1024
    assert growth < MAX_GROWTH, (
        f"peak RSS grew by {growth / MiB:.1f} MiB while fetching {SIZE / MiB:.0f} MiB "
        f"(warm {measured['warm_kib'] / 1024:.1f} MiB, peak {measured['peak_kib'] / 1024:.1f} MiB)"
    )


def test_s3_getobject_streams_to_disk(
    aws_env: MotoServer, big_file: tuple[Path, str], tmp_path: Path
) -> None:
    """GetObject of a 200 MB object (4 parallel ranged parts of 64 MiB) stays far below 200 MB
    of extra memory in the agent process."""
    path, digest = big_file
    s3 = admin_client(aws_env, "s3")
    s3.create_bucket(Bucket="bundles")
    s3.upload_file(str(path), "bundles", "big.tar")  # multipart, from disk
    s3.put_object(Bucket="bundles", Key="small.tar", Body=b"warm-up")
    arguments = {
        "root": str(tmp_path / "root"),
        "bucket": "bundles",
        "small": "small.tar",
        "small_sha256": hashlib.sha256(b"warm-up").hexdigest(),
        "big": "big.tar",
        "big_sha256": digest,
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    assert_streamed(run_child("s3", arguments, env))


def test_url_download_streams_to_disk(
    file_server: LocalServer, big_file: tuple[Path, str], tmp_path: Path
) -> None:
    """A URL revision of 200 MB (ranged parts from a local server) stays far below 200 MB of
    extra memory in the agent process."""
    path, digest = big_file
    file_server.serve_bytes("/small.tar", b"warm-up")
    big_url = file_server.route("/big.tar", serve_file(path))
    arguments = {
        "root": str(tmp_path / "root"),
        "small": f"{file_server.url}/small.tar",
        "small_sha256": hashlib.sha256(b"warm-up").hexdigest(),
        "big": big_url,
        "big_sha256": digest,
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    assert_streamed(run_child("url", arguments, env))
    ranges = [seen.headers.get("range") for seen in file_server.requests_to("/big.tar")]
    assert len(ranges) == 3  # 64 MiB parts: the body came in parallel ranges, not one stream

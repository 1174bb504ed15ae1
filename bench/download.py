"""Benchmark: fetching a 1 GB bundle over HTTP with its SHA-256, against `curl -o` + `sha256sum`.

A separate process serves the file from a local HTTP server (threaded, `os.sendfile`, Range
support like S3). Each round runs, on the same file and server:

- the peer: `curl -s -o FILE URL` followed by `sha256sum FILE`;
- ours: `sources.http.download` (hash computed during the transfer), with the default settings
  (ranged parts of 64 MiB on 4 connections) and on one connection (`parallel_parts: 1`);
- for reference, hashing the finished file once more with hashlib: what a second pass over
  the file would have added had the hash not been computed during the download.

Target: ours <= 1.2x the peer. Run: `.venv/bin/python bench/download.py [--megabytes N]`.
Prints a Markdown table; the numbers go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from codedeploy_agent.config import AgentConfig, DownloadSettings
from codedeploy_agent.log import configure_logging
from codedeploy_agent.sources.http import download

# --- the server (runs in its own process: `download.py --serve FILE`) --------------------------


class _FileHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    path_on_disk: Path

    def do_GET(self) -> None:
        size = self.path_on_disk.stat().st_size
        start, end, status = 0, size, 200
        wanted = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if wanted:
            start = int(wanted.group(1))
            end = min(int(wanted.group(2)) + 1, size) if wanted.group(2) else size
            status = 206
        self.send_response(status)
        self.send_header("Content-Length", str(end - start))
        self.send_header("ETag", '"bench-1"')
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.flush()
        with self.path_on_disk.open("rb") as source:
            offset = start
            while offset < end:
                sent = os.sendfile(self.connection.fileno(), source.fileno(), offset, end - offset)
                if sent == 0:
                    break
                offset += sent

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        del format, args


def serve(path: Path) -> None:
    _FileHandler.path_on_disk = path
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FileHandler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


# --- the measurements --------------------------------------------------------------------------


def timed_peer(url: str, out: Path) -> tuple[float, str]:
    start = time.perf_counter()
    subprocess.run(["curl", "-s", "-f", "-o", str(out), url], check=True)
    line = subprocess.run(["sha256sum", str(out)], check=True, capture_output=True, text=True)
    return time.perf_counter() - start, line.stdout.split()[0]


def timed_ours(url: str, out: Path, *, config: AgentConfig) -> tuple[float, str]:
    start = time.perf_counter()
    result = download(url, out, config=config, label="bench bundle", environ={})
    return time.perf_counter() - start, result.sha256


def timed_rehash(path: Path) -> float:
    start = time.perf_counter()
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
    return time.perf_counter() - start


def make_file(path: Path, megabytes: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for _ in range(megabytes):
            block = os.urandom(1 << 20)
            digest.update(block)
            out.write(block)
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--megabytes", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return
    log_file = Path(tempfile.gettempdir()) / "codedeploy-bench-agent.log"
    configure_logging(log_file=log_file, fmt="text", verbose=False, stderr=False)
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        work = Path(tmp)
        source = work / "bundle.bin"
        expected = make_file(source, args.megabytes)
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(source)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert server.stdout is not None
            port = int(server.stdout.readline())
            url = f"http://127.0.0.1:{port}/bundle.bin"
            _wait_for(port)
            base = AgentConfig(root_dir=work / "root")
            one = replace(base, download=DownloadSettings(parallel_parts=1))
            runners: dict[str, Callable[[Path], tuple[float, str]]] = {
                "peer": functools.partial(timed_peer, url),
                "parallel": functools.partial(timed_ours, url, config=base),
                "single": functools.partial(timed_ours, url, config=one),
            }
            runs: dict[str, list[float]] = {"peer": [], "parallel": [], "single": [], "rehash": []}
            for n in range(args.rounds):
                # The order rotates each round: a run right after another (page cache,
                # freeing the previous file) must not always be the same one.
                names = list(runners)
                for name in names[n % len(names) :] + names[: n % len(names)]:
                    run = runners[name]
                    out = work / f"{name}-{n}.bin"
                    seconds, digest = run(out)
                    assert digest == expected, (name, digest, expected)
                    runs[name].append(seconds)
                    if name == "single":
                        runs["rehash"].append(timed_rehash(out))
                    out.unlink()
                print(
                    f"round {n + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in runs.items()),
                    file=sys.stderr,
                )
        finally:
            server.terminate()
            server.wait()
    peer, parallel, single, rehash = (statistics.median(runs[k]) for k in runs)
    size = f"{args.megabytes} MB"
    print(
        f"\ncodedeploy-agent {os.uname().machine}, {os.cpu_count()} CPUs, loopback HTTP, median of {args.rounds} rounds"
    )
    print("| measurement | ours | peer | ratio | target |")
    print("|---|---|---|---|---|")
    print(
        f"| {size} download + sha256, 4 x 64 MiB ranged parts (default) vs `curl -o` + `sha256sum` | {parallel:.2f} s | {peer:.2f} s | {parallel / peer:.2f}x | <= 1.2x |"
    )
    print(
        f"| {size} download + sha256, one connection vs `curl -o` + `sha256sum` | {single:.2f} s | {peer:.2f} s | {single / peer:.2f}x | <= 1.2x |"
    )
    print(
        f"| a second sha256 pass over the finished {size} file (avoided by hashing during the download) | {rehash:.2f} s | | | |"
    )


def _wait_for(port: int) -> None:
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            time.sleep(0.05)
        else:
            return
    raise SystemExit("the benchmark server did not start")


if __name__ == "__main__":
    main()

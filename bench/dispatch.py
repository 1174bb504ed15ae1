"""Benchmark: how fast the daemon turns a Jobs notification into a running hook, and how small
it stays while idle.

1. Dispatch latency: from the service publishing `notify-next` for a job with a local 10 KB
   bundle to the first hook process starting (ApplicationStop of the previous revision), median
   over N jobs. Peer: a bare aiomqtt client that spawns the same script on `notify-next` (the
   floor set by MQTT delivery and process start). Target: <= 50 ms on loopback.
2. Idle RSS of the daemon after those deployments, against a bare Python process with aiomqtt
   connected to the same broker. Target: <= 40 MB, and boto3 never imported.

Everything runs on 127.0.0.1: a private Mosquitto, the test-side Jobs service, the real
`codedeploy-agent run` process. Run: `.venv/bin/python bench/dispatch.py [--jobs N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiomqtt
import psutil
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from codedeploy_agent.protocol.messages import JobStatus
from tests.fakes.brokers import MosquittoBroker
from tests.fakes.bundles import make_keys, signed_job_document, write_bundle
from tests.fakes.jobs_service import FakeJobsService

THING = "bench-host"
MARK_SCRIPT = 'printf "%s" "$EPOCHREALTIME" > "$MARK"'  # bash builtin: no process start of its own


def read_mark(path: Path) -> float:
    return float(path.read_text())


async def wait_file(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text():
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        await asyncio.sleep(0.002)


def start_agent(
    base: Path, broker: MosquittoBroker, public_key: Path, mark: Path
) -> subprocess.Popen[bytes]:
    config = {
        ":root_dir": str(base / "root"),
        ":log_dir": str(base / "logs"),
        ":pid_dir": str(base / "pid"),
        "state_dir": str(base / "state"),
        "mqtt": {"endpoint": broker.endpoint, "thing_name": THING},
        "clock": {"ntp_servers": []},
        "security": {"trusted_keys": {"bench": str(public_key)}},
    }
    base.mkdir(parents=True, exist_ok=True)
    (base / "agent.yml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "MARK": str(mark)}
    return subprocess.Popen(
        [sys.executable, "-m", "codedeploy_agent", "run", "-c", str(base / "agent.yml")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )


async def bench_agent(
    work: Path, broker: MosquittoBroker, jobs: int
) -> tuple[list[float], float, float]:
    private, public = make_keys(work / "keys")
    mark = work / "mark"
    bundle = write_bundle(
        work / "bundle",
        {"ApplicationStop": MARK_SCRIPT},
        files={"payload.bin": os.urandom(5 * 1024).hex()},  # ~10 KB bundle
    )
    agent = start_agent(work / "agent", broker, public, mark)
    latencies = []
    rss_after_one = 0.0
    process = psutil.Process(agent.pid)
    try:
        async with FakeJobsService("127.0.0.1", broker.port, things={THING}) as service:
            for n in range(jobs + 1):
                mark.unlink(missing_ok=True)
                doc = signed_job_document(
                    private,
                    "bench",
                    deployment_id=f"d-BENCH{n:04d}",
                    group_id="bench",
                    location=bundle,
                    bundle_type="directory",
                )
                sent = time.time()
                service.queue_job(THING, f"job-{n}", doc)
                await service.wait_for_status(THING, f"job-{n}", {JobStatus.SUCCEEDED}, timeout=60)
                if n > 0:  # the first deployment has no previous revision to stop
                    latencies.append(read_mark(mark) - sent)
                else:
                    await asyncio.sleep(3)  # idle after one deployment
                    rss_after_one = process.memory_info().rss / 2**20
            await asyncio.sleep(3)  # idle
            rss = process.memory_info().rss / 2**20
    finally:
        agent.terminate()
        agent.wait(30)
    return latencies, rss_after_one, rss


async def bench_peer(work: Path, broker: MosquittoBroker, jobs: int) -> tuple[list[float], float]:
    """A bare client: on notify-next, spawn the script; nothing else."""
    mark = work / "peer-mark"
    script = work / "peer.sh"
    script.write_text(f"#!/bin/bash\n{MARK_SCRIPT}\n")
    script.chmod(0o755)
    latencies = []
    topic = f"codedeploy/things/{THING}-peer/jobs/notify-next"
    async with (
        aiomqtt.Client(
            "127.0.0.1", broker.port, identifier="peer", protocol=aiomqtt.ProtocolVersion.V5
        ) as sub,
        aiomqtt.Client("127.0.0.1", broker.port, identifier="peer-pub") as pub,
    ):
        await sub.subscribe(topic, qos=1)
        env = {**os.environ, "MARK": str(mark)}
        for _ in range(jobs):
            mark.unlink(missing_ok=True)
            sent = time.time()
            await pub.publish(topic, b'{"timestamp": 0, "execution": {}}', qos=1)
            async for _message in sub.messages:
                proc = await asyncio.create_subprocess_exec(str(script), env=env)
                await proc.wait()
                break
            await wait_file(mark)
            latencies.append(read_mark(mark) - sent)
        rss = psutil.Process().memory_info().rss  # this bench process is larger than a bare client
    bare = subprocess.run(
        [
            sys.executable,
            "-c",
            (
                "import asyncio, aiomqtt, psutil\n"
                "async def main():\n"
                f"    async with aiomqtt.Client('127.0.0.1', {broker.port}, identifier='bare'):\n"
                "        await asyncio.sleep(1)\n"
                "        print(psutil.Process().memory_info().rss)\n"
                "asyncio.run(main())\n"
            ),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    del rss
    return latencies, int(bare.stdout) / 2**20


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        broker = MosquittoBroker(work / "broker")
        broker.start()
        try:
            ours, ours_rss_one, ours_rss = await bench_agent(work, broker, args.jobs)
            peer, peer_rss = await bench_peer(work, broker, args.jobs)
        finally:
            broker.stop()
    ms = [x * 1000 for x in ours]
    peer_ms = [x * 1000 for x in peer]
    print(
        f"\ncodedeploy-agent daemon, {os.cpu_count()} CPUs, {args.jobs} jobs, Mosquitto on 127.0.0.1"
    )
    print("| measurement | ours | peer | target |")
    print("|---|---|---|---|")
    print(
        f"| notify-next -> first hook process running, median (p90) | {statistics.median(ms):.1f} ms ({statistics.quantiles(ms, n=10)[-1]:.1f}) | {statistics.median(peer_ms):.1f} ms ({statistics.quantiles(peer_ms, n=10)[-1]:.1f}) (bare aiomqtt + spawn) | <= 50 ms |"
    )
    print(
        f"| idle RSS after one deployment | {ours_rss_one:.1f} MB | {peer_rss:.1f} MB (bare Python + aiomqtt) | <= 40 MB |"
    )
    print(
        f"| idle RSS after {args.jobs + 1} deployments | {ours_rss:.1f} MB | {peer_rss:.1f} MB | |"
    )


if __name__ == "__main__":
    asyncio.run(main())

"""Benchmark: a local deployment against the plain tools that do the same work.

1. DownloadBundle + Install of a 200 MB / 20,000-file tgz, against `tar -xzf` followed by
   `cp -a` of the same tree (target: ours <= 1.5x the peer).
2. Per-hook overhead of a deployment whose 9 hooks are `exit 0`, against spawning the same
   scripts with `subprocess.run` (target: under 15 ms per hook).

Run: `make bench` (or `.venv/bin/python bench/local_deploy.py [--files N --megabytes M]`).
Prints a table; the numbers go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from codedeploy_agent.config import AgentConfig, HookSettings
from codedeploy_agent.executor import DeploymentExecutor
from codedeploy_agent.lifecycle import DEFAULT_ORDER, HOOK_EVENTS
from codedeploy_agent.log import configure_logging
from codedeploy_agent.spec import BundleType, DeploymentSpec, LocalRevision, RevisionType

HOOKS = HOOK_EVENTS


def make_tree(root: Path, files: int, total_bytes: int) -> None:
    """`files` files in 100-file folders; half random bytes, half text, `total_bytes` in all."""
    rng = random.Random(42)
    size = total_bytes // files
    text = (b"lorem ipsum dolor sit amet, consectetur adipiscing elit\n" * (size // 56 + 1))[:size]
    for i in range(files):
        folder = root / "app" / f"d{i // 100:04d}"
        if i % 100 == 0:
            folder.mkdir(parents=True)
        data = rng.randbytes(size) if i % 2 else text
        (folder / f"f{i:05d}.dat").write_bytes(data)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def peer_extract_and_copy(bundle: Path, work: Path, dest: Path) -> None:
    out = work / "peer-extract"
    out.mkdir()
    subprocess.run(["tar", "-xzf", str(bundle), "-C", str(out)], check=True)
    subprocess.run(["cp", "-a", f"{out}/.", str(dest)], check=True)


def spec_for(
    bundle: Path, kind: BundleType, deployment_id: str, events: tuple[str, ...]
) -> DeploymentSpec:
    return DeploymentSpec(
        deployment_id=deployment_id,
        deployment_group_id="bench",
        deployment_group_name="bench",
        application_name="bench",
        revision=LocalRevision(
            str(bundle),
            kind,
            RevisionType.LOCAL_DIRECTORY
            if kind is BundleType.DIRECTORY
            else RevisionType.LOCAL_FILE,
        ),
        lifecycle_events=events,
        file_exists_behavior="OVERWRITE",
    )


def ours_download_and_install(bundle: Path, root: Path, n: int) -> float:
    config = AgentConfig(root_dir=root, log_dir=root / "logs", enable_deployments_log=True)
    spec = spec_for(bundle, BundleType.TGZ, f"d-BENCH{n:05d}", ("DownloadBundle", "Install"))
    result = asyncio.run(DeploymentExecutor(config).run(spec))
    if not result.succeeded:
        raise SystemExit(f"deployment failed: {result.failure}")
    return sum(e.duration for e in result.events)


def bench_bundle(files: int, megabytes: int, rounds: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        work = Path(tmp)
        src = work / "src"
        make_tree(src, files, megabytes * 1024 * 1024)
        dest_ours = work / "installed-ours"
        dest_peer = work / "installed-peer"
        (src / "appspec.yml").write_text(
            f"version: 0.0\nos: linux\nfiles:\n  - source: app\n    destination: {dest_ours}\n"
        )
        bundle = work / "bundle.tgz"
        subprocess.run(["tar", "-czf", str(bundle), "-C", str(src), "."], check=True)
        print(
            f"bundle: {bundle.stat().st_size / 1e6:.0f} MB compressed, {files} files, {megabytes} MB",
            file=sys.stderr,
        )
        peer_times, our_times = [], []
        for n in range(rounds):
            for path in (dest_peer, work / "peer-extract"):
                shutil.rmtree(path, ignore_errors=True)
            dest_peer.mkdir()
            peer_times.append(timed(lambda: peer_extract_and_copy(bundle, work, dest_peer)))
            # Each round is a fresh host: the installer's cleanup would otherwise delete first.
            shutil.rmtree(work / "root", ignore_errors=True)
            shutil.rmtree(dest_ours, ignore_errors=True)
            our_times.append(ours_download_and_install(bundle, work / "root", n))
        return statistics.median(our_times), statistics.median(peer_times)


def bench_hooks(deployments: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        work = Path(tmp)
        bundle = work / "bundle"
        (bundle / "scripts").mkdir(parents=True)
        lines = ["version: 0.0", "os: linux", "hooks:"]
        for hook in HOOKS:
            script = bundle / "scripts" / f"{hook}.sh"
            script.write_text("#!/bin/sh\nexit 0\n")
            script.chmod(0o755)
            lines += [f"  {hook}:", f"    - location: scripts/{hook}.sh"]
        (bundle / "appspec.yml").write_text("\n".join(lines) + "\n")
        config = AgentConfig(
            root_dir=work / "root", log_dir=work / "logs", hooks=HookSettings(kill_grace_seconds=1)
        )
        per_hook = []
        for n in range(deployments):
            spec = spec_for(bundle, BundleType.DIRECTORY, f"d-HOOKS{n:04d}", DEFAULT_ORDER)
            result = asyncio.run(DeploymentExecutor(config).run(spec))
            ran = [e for e in result.events if e.event in HOOKS and e.status.value == "Succeeded"]
            if n > 0:  # the first deployment skips the Stop/Block hooks (no previous revision)
                assert len(ran) == len(HOOKS), [(e.event, e.status) for e in result.events]
                per_hook.append(sum(e.duration for e in ran) / len(ran))
        scripts = [str(bundle / "scripts" / f"{hook}.sh") for hook in HOOKS]
        raw = [
            timed(lambda: [subprocess.run([s], check=True) for s in scripts]) / len(scripts)
            for _ in range(deployments)
        ]
        return statistics.median(per_hook), statistics.median(raw)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--deployments", type=int, default=20)
    args = parser.parse_args()
    # The agent logs every event; the benchmark keeps that in a file, as the daemon would.
    log_file = Path(tempfile.gettempdir()) / "codedeploy-bench-agent.log"
    configure_logging(log_file=log_file, fmt="text", verbose=False, stderr=False)
    ours, peer = bench_bundle(args.files, args.megabytes, args.rounds)
    hook, raw = bench_hooks(args.deployments)
    print(
        f"\ncodedeploy-agent {os.uname().machine}, {os.cpu_count()} CPUs, median of {args.rounds} rounds / {args.deployments} deployments"
    )
    print("| measurement | ours | peer | ratio | target |")
    print("|---|---|---|---|---|")
    print(
        f"| {args.megabytes} MB / {args.files} files tgz: DownloadBundle+Install vs tar -xzf + cp -a | {ours:.2f} s | {peer:.2f} s | {ours / peer:.2f}x | <= 1.5x |"
    )
    print(
        f"| per hook (`exit 0`), whole lifecycle event vs subprocess.run of the script | {hook * 1000:.1f} ms | {raw * 1000:.1f} ms | +{(hook - raw) * 1000:.1f} ms | < 15 ms |"
    )


if __name__ == "__main__":
    main()

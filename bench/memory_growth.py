"""Benchmark: what the idle daemon keeps from one deployment to the next.

The real daemon (`codedeploy_agent.daemon.service.Daemon`, standalone, as `codedeploy-agent run`
starts it) runs in a child process of this script, so that nothing of the test-side Jobs
service or of this script is counted; it talks to a private Mosquitto on 127.0.0.1 and to the
test-side Jobs service, which hands it N one-hook deployments (a ~10 KB directory bundle whose
ApplicationStart hook prints a line), one after the other.

Two passes, each with a fresh agent (new state and deployment root):

1. RSS: no tracing; RSS after every deployment, and by mapping after B and N.
2. tracemalloc, `--frames` deep (0 skips this pass): traced memory after every deployment,
   snapshots after deployment B (the baseline) and N compared by traceback, and the gc-tracked
   objects counted by type at both points.

Every measurement is taken with the agent idle: the job SUCCEEDED on the service, then a pause
(`--settle` seconds before a snapshot) and a `gc.collect()`. Printed: growth per deployment
(bytes) from tracemalloc and from RSS, both along the run (to tell a cache that fills up from a
leak), the 10 allocation sites that grew most and the object types whose count grew.

Reading it (BENCHMARKS.md has the numbers): one block of ~940 KB allocated at pathlib's
`sys.intern` is CPython's interned-string table rebuilt at twice its size (pathlib interns every
file name it parses; the table is rebuilt for the strings alive at that moment), a one-off step.
`clock.py` grows until its 256 observations are in; the job ledger (`state.py`, and the ids it
keeps from `messages.py`) until its 1,000 entries (`--full-ledger` starts with them all there);
a few blocks here and there are free lists and caches of CPython and paho.

Run: `.venv/bin/python bench/memory_growth.py [--deployments 40 --baseline 5]`. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import gc
import json
import os
import sys
import tempfile
import time
import tracemalloc
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

if TYPE_CHECKING:
    from tests.fakes.brokers import MosquittoBroker

# The child (the agent) imports only what `codedeploy-agent run` imports: the test-side service,
# the broker helpers and the signing key code are imported by the parent, in its functions.

THING = "memory-host"
#: Traces of tracemalloc itself and of the import machinery (module code, not per deployment).
_NOT_THE_AGENT = (
    tracemalloc.Filter(False, tracemalloc.__file__),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
    tracemalloc.Filter(False, "<unknown>"),
)


# --- the child: the agent, plus a tiny command channel on stdin/stdout ---------------------------


def _type_counts() -> dict[str, int]:
    counts = collections.Counter(
        f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects()
    )
    return dict(counts)


def _rss_by_mapping() -> dict[str, int]:
    """Resident KB by mapping (/proc/self/smaps): [heap] is glibc's main arena, [anonymous] the
    rest of the memory not backed by a file (pymalloc arenas, thread stacks and malloc's thread
    arenas: the kernel merges adjacent ones, so their sizes tell nothing), then each file."""
    totals: collections.Counter[str] = collections.Counter()
    label = ""
    with open("/proc/self/smaps", encoding="ascii", errors="replace") as smaps:
        for line in smaps:
            fields = line.split()
            # A mapping's header is "range perms offset dev inode [path]"; then "Key: value" lines.
            if not fields[0].endswith(":"):
                label = fields[5] if len(fields) > 5 else "[anonymous]"
            elif fields[0] == "Rss:":
                totals[label] += int(fields[1])
    return dict(totals)


def _measure(command: str, argument: str) -> dict[str, Any]:
    """One idle measurement: `stat` (numbers only) or `snap PATH` (plus snapshot and types)."""
    gc.collect()
    reply: dict[str, Any] = {"rss": psutil.Process().memory_info().rss}
    if tracemalloc.is_tracing():
        reply["traced"] = tracemalloc.get_traced_memory()[0]
    if command == "snap":
        reply["mappings"] = _rss_by_mapping()
        Path(argument + ".types.json").write_text(json.dumps(_type_counts()))
        gc.collect()
        if tracemalloc.is_tracing():
            tracemalloc.take_snapshot().dump(argument)
    return reply


async def run_agent(config_path: Path, frames: int) -> None:
    """Child mode: serve as the daemon, answer the parent's commands until stdin closes."""
    if frames:
        tracemalloc.start(frames)
    from codedeploy_agent.config import load_config  # noqa: PLC0415
    from codedeploy_agent.daemon.service import Daemon  # noqa: PLC0415
    from codedeploy_agent.log import configure_logging  # noqa: PLC0415

    config, _warnings = load_config(config_path)
    config.log_dir.mkdir(parents=True, exist_ok=True)
    configure_logging(
        log_file=config.log_dir / "codedeploy-agent.log",
        fmt=config.log_format,
        verbose=False,
        program_name=config.program_name,
        stderr=False,
    )
    daemon = Daemon(config)
    serving = asyncio.create_task(daemon.serve())
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().strip():
        command, _, argument = line.partition(" ")
        reply = _measure(command, argument)
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    daemon.request_stop("benchmark over")
    await serving


# --- the parent: broker, Jobs service, deployments, report -------------------------------------


def fill_ledger(state_dir: Path) -> None:
    """`state_dir/jobs.json` holding LEDGER_LIMIT ended jobs (job ids a UUID long)."""
    from codedeploy_agent.daemon.state import LEDGER_LIMIT, LedgerEntry  # noqa: PLC0415

    now = time.time()
    entries = [
        LedgerEntry(
            job_id=f"{uuid.UUID(int=n)}-codedeploy",
            deployment_id=f"d-OLD{n:06d}",
            state="SUCCEEDED",
            lifecycle_event="ValidateService",
            updated_at=datetime.fromtimestamp(now - 3600 + n, UTC).isoformat(),
        )
        for n in range(LEDGER_LIMIT)
    ]
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "jobs.json").write_text(
        json.dumps({"jobs": [dataclasses.asdict(e) for e in entries]}, indent=1)
    )


class Agent:
    """The child process and its command channel."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def ask(self, line: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()
        reply = await asyncio.wait_for(self.process.stdout.readline(), 120)
        if not reply:
            raise RuntimeError(f"the agent process exited ({self.process.returncode}); see its log")
        result: dict[str, Any] = json.loads(reply)
        return result

    async def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 30)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


async def start_agent(
    base: Path, broker: MosquittoBroker, public_key: Path, frames: int, *, full_ledger: bool
) -> Agent:
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
    if full_ledger:
        fill_ledger(base / "state")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--agent",
        str(base / "agent.yml"),
        "--frames",
        str(frames),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    return Agent(process)


async def run_pass(  # noqa: PLR0917 - one call site per pass
    work: Path,
    broker: MosquittoBroker,
    private: Path,
    public: Path,
    bundle: Path,
    args: argparse.Namespace,
    frames: int,
) -> dict[int, dict[str, Any]]:
    """N deployments to a fresh agent; the measurements after each, by deployment number."""
    from codedeploy_agent.protocol.messages import JobStatus  # noqa: PLC0415
    from tests.fakes.bundles import signed_job_document  # noqa: PLC0415
    from tests.fakes.jobs_service import FakeJobsService  # noqa: PLC0415

    agent = await start_agent(
        work / f"agent-{frames}", broker, public, frames, full_ledger=args.full_ledger
    )
    result: dict[int, dict[str, Any]] = {}
    try:
        async with FakeJobsService("127.0.0.1", broker.port, things={THING}) as service:
            for n in range(1, args.deployments + 1):
                doc = signed_job_document(
                    private,
                    "bench",
                    deployment_id=f"d-MEMORY{n:04d}",
                    group_id="memory",
                    location=bundle,
                    bundle_type="directory",
                )
                service.queue_job(THING, f"job-{n}", doc)
                await service.wait_for_status(THING, f"job-{n}", {JobStatus.SUCCEEDED}, timeout=60)
                settle = args.settle if n in (args.baseline, args.deployments) else 0.3
                await asyncio.sleep(settle)
                if n in (args.baseline, args.deployments):
                    snap = work / f"snap-{frames}-{n}"
                    result[n] = await agent.ask(f"snap {snap}")
                    result[n]["snapshot"] = snap
                    result[n]["types"] = json.loads(Path(f"{snap}.types.json").read_text())
                else:
                    result[n] = await agent.ask("stat")
    finally:
        await agent.close()
    return result


def _short(filename: str) -> str:
    if "/site-packages/" in filename:
        return filename.split("/site-packages/", 1)[1]
    stdlib = f"{Path(os.__file__).parent}/"
    if filename.startswith(stdlib):
        return filename.removeprefix(stdlib)
    root = str(Path(__file__).resolve().parents[1]) + "/"
    return filename.removeprefix(root)


def _site(traceback: tracemalloc.Traceback) -> str:
    """The innermost frame, and the innermost frame in the agent's own code when different."""
    frames = list(traceback)  # oldest first
    inner = frames[-1]
    text = f"{_short(inner.filename)}:{inner.lineno}"
    ours = next((f for f in reversed(frames) if "/codedeploy_agent/" in f.filename), None)
    if ours is not None and ours is not inner:
        text += f" <- {_short(ours.filename)}:{ours.lineno}"
    return text


def _growth(before: dict[str, int], after: dict[str, int]) -> list[tuple[int, str]]:
    """(growth, key), largest first."""
    return sorted(
        ((after.get(k, 0) - before.get(k, 0), k) for k in set(before) | set(after)), reverse=True
    )


def _curve_points(args: argparse.Namespace) -> list[int]:
    step = max(5, args.deployments // 20)
    b, n = args.baseline, args.deployments
    return [k for k in range(1, n + 1) if k % step == 0 or k in (1, b, n)]


def report_rss(rss_pass: dict[int, dict[str, Any]], args: argparse.Namespace) -> None:
    b, n = args.baseline, args.deployments
    span = n - b
    print(f"\nidle codedeploy-agent daemon, {n} one-hook deployments, {os.cpu_count()} CPUs")
    print(f"| measurement | after deployment {b} | after deployment {n} | per deployment |")
    print("|---|---|---|---|")
    print(
        f"| RSS, untraced run | {rss_pass[b]['rss'] / 2**20:.2f} MB | "
        f"{rss_pass[n]['rss'] / 2**20:.2f} MB | "
        f"{(rss_pass[n]['rss'] - rss_pass[b]['rss']) / span:+,.0f} B |"
    )
    print("\nRSS of the untraced run along the run (KB):")
    points = (f"{k}: {rss_pass[k]['rss'] / 1024:,.0f}" for k in _curve_points(args))
    print("  " + "; ".join(points))
    mapped = _growth(rss_pass[b]["mappings"], rss_pass[n]["mappings"])
    print(f"RSS by mapping, deployment {b} -> {n} (KB):")
    print("  " + "; ".join(f"{_short(name)} {delta:+,}" for delta, name in mapped if delta))


def report_trace(trace_pass: dict[int, dict[str, Any]], args: argparse.Namespace) -> None:
    b, n = args.baseline, args.deployments
    span = n - b
    print(
        f"\n| traced run (tracing costs memory) | after deployment {b} | after deployment {n} | per deployment |"
    )
    print("|---|---|---|---|")
    for key, label in (("traced", "tracemalloc"), ("rss", "RSS")):
        print(
            f"| {label} | {trace_pass[b][key] / 2**10:,.0f} KB | "
            f"{trace_pass[n][key] / 2**10:,.0f} KB | "
            f"{(trace_pass[n][key] - trace_pass[b][key]) / span:+,.0f} B |"
        )
    print("\ntraced memory along the run (KB):")
    points = (f"{k}: {trace_pass[k]['traced'] / 1024:,.0f}" for k in _curve_points(args))
    print("  " + "; ".join(points))

    old = tracemalloc.Snapshot.load(str(trace_pass[b]["snapshot"])).filter_traces(_NOT_THE_AGENT)
    new = tracemalloc.Snapshot.load(str(trace_pass[n]["snapshot"])).filter_traces(_NOT_THE_AGENT)
    diffs = new.compare_to(old, "traceback")
    print(f"\ntop {args.top} growing allocation sites, deployment {b} -> {n} (by traceback):")
    print("| bytes | per deployment | blocks | site (innermost <- agent code) |")
    print("|---|---|---|---|")
    for diff in diffs[: args.top]:
        print(
            f"| {diff.size_diff:+,} | {diff.size_diff / span:+,.0f} | {diff.count_diff:+,} | "
            f"{_site(diff.traceback)} |"
        )
    if args.verbose:
        for diff in diffs[: args.top]:
            print(f"\n{diff.size_diff:+,} B, {diff.count_diff:+,} blocks:")
            print("\n".join("  " + line for line in diff.traceback.format()[-2 * args.frames :]))
    print("\ngrowth by file (innermost frame), top 5:")
    for diff in new.compare_to(old, "filename")[:5]:
        print(f"  {diff.size_diff:+,} B  {_short(diff.traceback[0].filename)}")

    types_old, types_new = trace_pass[b]["types"], trace_pass[n]["types"]
    print(f"\ngc-tracked objects whose count grew, deployment {b} -> {n}:")
    shown = [f"{name} {delta:+}" for delta, name in _growth(types_old, types_new) if delta > 0]
    print("  " + ("; ".join(shown[:15]) if shown else "none"))
    print(
        f"  total: {sum(types_old.values()):,} -> {sum(types_new.values()):,} "
        f"({(sum(types_new.values()) - sum(types_old.values())) / span:+.1f} per deployment)"
    )


async def main(args: argparse.Namespace) -> None:
    from tests.fakes.brokers import MosquittoBroker  # noqa: PLC0415
    from tests.fakes.bundles import make_keys, write_bundle  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        private, public = make_keys(work / "keys")
        bundle = write_bundle(
            work / "bundle",
            {"ApplicationStart": 'echo "started $DEPLOYMENT_ID"'},
            files={"payload.bin": os.urandom(5 * 1024).hex()},  # ~10 KB bundle
        )
        broker = MosquittoBroker(work / "broker")
        broker.start()
        try:
            started = time.monotonic()
            rss_pass = await run_pass(work, broker, private, public, bundle, args, frames=0)
            trace_pass = (
                await run_pass(work, broker, private, public, bundle, args, args.frames)
                if args.frames
                else None
            )
            elapsed = time.monotonic() - started
        finally:
            broker.stop()
        report_rss(rss_pass, args)
        if trace_pass is not None:
            report_trace(trace_pass, args)
        print(f"\n({elapsed:.0f} s in all)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--deployments", type=int, default=40)
    parser.add_argument("--baseline", type=int, default=5, help="the first snapshot's deployment")
    parser.add_argument(
        "--frames",
        type=int,
        default=25,
        help="tracemalloc traceback depth; 0 skips the traced pass (RSS only)",
    )
    parser.add_argument("--settle", type=float, default=2.0, help="idle seconds before a snapshot")
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--verbose", action="store_true", help="print the full tracebacks")
    parser.add_argument(
        "--full-ledger",
        action="store_true",
        help="start the agent with a job ledger already at its limit (1,000 ended jobs), to see "
        "in a short run what still grows once it is full",
    )
    parser.add_argument("--agent", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.agent is None and not 1 <= args.baseline < args.deployments:
        parser.error("--baseline must be at least 1 and less than --deployments")
    return args


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.agent is not None:
        asyncio.run(run_agent(arguments.agent, arguments.frames))
    else:
        asyncio.run(main(arguments))

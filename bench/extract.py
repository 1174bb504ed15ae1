"""Extraction speed: `unpack_bundle` against `tar -xzf` (and `cp -a`, the Install step's copy).

Builds a ~200 MB, 20,000-file gzipped tar once (cached under the work folder), then times each
contender on the same bundle and file system with a warm page cache: runs are interleaved, each
writes a fresh folder after `sync`, and the best run counts (on a shared machine noise only ever
adds time). Prints wall and CPU seconds (children included, so gzip counts for tar).
Usage: `.venv/bin/python bench/extract.py [--files N] [--mb M] [--runs R] [--work DIR]`.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import structlog

from codedeploy_agent.archive import unpack_bundle
from codedeploy_agent.config import ArchiveLimits
from codedeploy_agent.spec import BundleType

_WORDS = b"deploy agent revision bundle appspec hook script install lifecycle event ".split()


class Sample(NamedTuple):
    """One timed run."""

    wall: float
    cpu: float


def build_tree(root: Path, files: int, total_mb: int, seed: int = 7) -> None:
    """A source-tree-like folder: nested directories, mixed text and binary, varied sizes."""
    rng = random.Random(seed)
    mean = total_mb * 1024 * 1024 // files
    (root / "appspec.yml").write_text("version: 0.0\nos: linux\n")
    for index in range(files):
        folder = root / f"pkg{index % 40:02d}" / f"mod{index % 23:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        size = max(1, int(rng.lognormvariate(0, 1.0) * mean / 1.65))
        if index % 3 == 0:
            data = rng.randbytes(size)  # binary: incompressible
        else:
            words = [rng.choice(_WORDS) for _ in range(size // 6 + 1)]
            data = b" ".join(words)[:size]
        (folder / f"file{index:05d}.dat").write_bytes(data)


def timed(action: Callable[[Path], object], outputs: Path, label: str, run: int) -> Sample:
    """Wall and CPU time (ours plus children's) of `action(fresh folder)`."""
    target = outputs / f"{label}-{run}"
    os.sync()  # earlier runs' dirty pages must not be written back during this one
    before = _cpu()
    start = time.perf_counter()
    action(target)
    return Sample(time.perf_counter() - start, _cpu() - before)


def _cpu() -> float:
    self_, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return sum(u.ru_utime + u.ru_stime for u in (self_, children))


def main() -> None:
    """Build (or reuse) the bundle, time each contender, print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "cda-bench")
    args = parser.parse_args()
    # Keep the table readable: the per-run debug event is not what is measured.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    work: Path = args.work
    bundle = work / f"bundle-{args.files}-{args.mb}.tgz"
    if not bundle.exists():
        source = work / "source"
        shutil.rmtree(source, ignore_errors=True)
        source.mkdir(parents=True)
        build_tree(source, args.files, args.mb)
        subprocess.run(["tar", "-czf", str(bundle), "-C", str(source), "."], check=True)
        shutil.rmtree(source)
    outputs = work / "runs"
    shutil.rmtree(outputs, ignore_errors=True)
    outputs.mkdir()
    trees: list[Path] = []

    def ours(target: Path) -> None:
        temp = target.with_name(target.name + "-temp")
        unpack_bundle(bundle, BundleType.TGZ, target, limits=ArchiveLimits(), temp_dir=temp)

    def tar(target: Path) -> None:
        target.mkdir()
        subprocess.run(["tar", "-xzf", str(bundle), "-C", str(target)], check=True)
        trees.append(target)

    def cp(target: Path) -> None:
        subprocess.run(["cp", "-a", str(trees[-1]), str(target)], check=True)

    samples: dict[str, list[Sample]] = {"ours": [], "tar": [], "cp": []}
    runs: int = args.runs
    try:
        # Interleaved, each into a fresh folder: no contender pays for another's deletions.
        for run in range(runs):
            for label, action in (("tar", tar), ("ours", ours), ("cp", cp)):
                samples[label].append(timed(action, outputs, label, run))
    finally:
        shutil.rmtree(outputs, ignore_errors=True)
    best = {k: Sample(min(s.wall for s in v), min(s.cpu for s in v)) for k, v in samples.items()}
    tar_s, ours_s, cp_s = best["tar"], best["ours"], best["cp"]
    size_mb = bundle.stat().st_size / 1024**2
    print(f"bundle: {bundle.name}, {size_mb:.1f} MB compressed, {args.files:,} files")
    print(f"best of {runs} interleaved runs, each into a fresh folder after sync")
    print(f"{'contender':<28}{'wall s':>9}{'vs tar':>9}{'cpu s':>9}")
    rows = [
        ("tar -xzf", tar_s.wall, tar_s.cpu),
        ("unpack_bundle (ours)", ours_s.wall, ours_s.cpu),
        ("cp -a of the tree", cp_s.wall, cp_s.cpu),
        ("tar -xzf + cp -a", tar_s.wall + cp_s.wall, tar_s.cpu + cp_s.cpu),
        ("unpack_bundle + cp -a", ours_s.wall + cp_s.wall, ours_s.cpu + cp_s.cpu),
    ]
    for label, wall, cpu in rows:
        print(f"{label:<28}{wall:>9.2f}{wall / tar_s.wall:>8.2f}x{cpu:>9.2f}")
    total = (ours_s.wall + cp_s.wall) / (tar_s.wall + cp_s.wall)
    print(f"ours / tar: {ours_s.wall / tar_s.wall:.2f}x; with cp -a: {total:.2f}x")


if __name__ == "__main__":
    main()

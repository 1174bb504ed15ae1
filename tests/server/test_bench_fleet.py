"""Smoke test of `bench/fleet.py` with a handful of agents: it runs end to end, prints its
table, and its exit status says whether the deployment met the target."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.broker]

REPO = Path(__file__).resolve().parents[2]
AGENTS = 5


def _bench(*options: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(REPO / "bench" / "fleet.py"), "--agents", str(AGENTS)]
    command += ["--processes", "1", *options]
    return subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=100, check=False
    )


def _assert_table(result: subprocess.CompletedProcess[str], target: str) -> None:
    output = result.stdout
    assert "| measurement | ours | peer | target |" in output, (output, result.stderr)
    assert (
        f"| AllAtOnce no-op deployment to {AGENTS} agents, CreateDeployment -> Succeeded | "
        in output
    ), output
    assert f"({AGENTS} succeeded) | | <= {target} s |" in output, output
    assert "| GetDeployment latency during it, median / p99 | " in output, output


def test_within_the_target_exits_0() -> None:
    """Five agents finish far within the 10 s target: the table, exit status 0."""
    result = _bench()
    _assert_table(result, "10")
    assert result.returncode == 0, result.stderr
    assert "FAILED" not in result.stderr


def test_a_missed_target_exits_1() -> None:
    """Past the target the table is still printed, then the run fails, saying by how much
    and how to only report."""
    result = _bench("--target-seconds", "0.001")
    _assert_table(result, "0.001")
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "FAILED: the deployment took " in result.stderr
    assert "more than the 0.001 s target" in result.stderr
    assert "--report-only" in result.stderr


def test_report_only_does_not_fail_on_the_target() -> None:
    """--report-only prints the table and a note, and exits 0 on a missed target."""
    result = _bench("--target-seconds", "0.001", "--report-only")
    _assert_table(result, "0.001")
    assert result.returncode == 0, result.stderr
    assert "NOTE: the deployment took " in result.stderr

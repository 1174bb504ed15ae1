"""`make demo` keeps working: the hello-app example deploys, fails, rolls back, and cleans up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_local_demo_runs_end_to_end() -> None:
    """The demo exits 0, shows v1, v2, the failed v3 and the return to v2, and leaves no app."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo_local.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    greetings = [line.split("-> ")[1] for line in out.splitlines() if line.startswith("GET ")]
    assert [g.split(" on ")[0] for g in greetings] == [
        "Hello from hello-app v1",
        "Hello from hello-app v2",
        "Hello from hello-app v2",
    ]
    assert "ScriptFailed: Script at specified location: scripts/validate_service.sh" in out
    assert "[stderr]hello-app did not answer" in out
    assert "[stdout]stopping hello-app" not in out  # output is in scripts.log, not the console
    leftovers = [
        p.info["pid"]
        for p in psutil.process_iter(["pid", "cmdline"])
        if any("hello-app/current/server.py" in part for part in (p.info["cmdline"] or []))
        and str(ROOT / ".demo") in " ".join(p.info["cmdline"] or [])
    ]
    assert leftovers == []

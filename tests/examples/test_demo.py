"""`make demo` keeps working: the hello-app example deploys, fails, rolls back, and cleans up."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
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


def _leftovers() -> list[int]:
    """Processes the fleet demo started that are still alive."""
    fleet = str(ROOT / ".demo" / "fleet")
    return [
        p.info["pid"]
        for p in psutil.process_iter(["pid", "cmdline"])
        if fleet in " ".join(p.info["cmdline"] or [])
    ]


@pytest.mark.slow
@pytest.mark.broker
def test_fleet_demo_deploys_fails_and_rolls_back() -> None:
    """`make demo`: v1 everywhere, v2 fails and is rolled back, every host serves v1, nothing
    left running, in under a minute."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py")],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert time.monotonic() - started < 60
    assert "CodeDeployDefault.HalfAtATime" in out
    assert re.search(r"d-[A-Z0-9]{9}  Succeeded  hello-app v1 ", out)
    assert re.search(r"d-[A-Z0-9]{9}  Failed     hello-app v2 \(broken\)", out)
    assert re.search(r"d-[A-Z0-9]{9}  Succeeded  rollback of d-[A-Z0-9]{9}", out)
    assert "ValidateService Failed (ScriptFailed" in out
    assert "every host serves hello-app v1 again: yes" in out
    assert _leftovers() == []


@pytest.mark.slow
@pytest.mark.broker
def test_fleet_demo_stops_everything_on_ctrl_c() -> None:
    """Ctrl-C (SIGINT) in the middle: exit 130 and no process of the demo left behind."""
    with subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "demo.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as demo:
        assert demo.stdout is not None
        for line in demo.stdout:
            if line.startswith("=== 2."):
                break
        demo.send_signal(signal.SIGINT)
        rest = demo.stdout.read()
        assert demo.wait(60) == 130, rest
    assert "interrupted: everything the demo started has been stopped" in rest
    time.sleep(0.5)
    assert _leftovers() == []

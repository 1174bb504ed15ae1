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


HOSTS = ("web-1", "web-2", "web-3")
EVENTS = (
    "ApplicationStop",
    "DownloadBundle",
    "BeforeInstall",
    "Install",
    "AfterInstall",
    "ApplicationStart",
    "ValidateService",
)


def _summary_id(out: str, rest: str) -> str:
    """The deployment id of the summary line `d-XXXXXXXXX  <rest>`."""
    match = re.search(rf"^(d-[A-Z0-9]{{9}})  {rest}", out, re.MULTILINE)
    assert match is not None, f"no summary line matching {rest!r} in:\n{out}"
    return match.group(1)


def _progress(lines: list[str], deployment: str, host: str) -> list[str]:
    """The live progress lines of one host in one deployment, without `Pending` and `InProgress`
    (whether a poll catches a host waiting or an event running depends on timing; the endings
    are always shown)."""
    prefix = f"{deployment} {host} "
    changes = [line.removeprefix(prefix) for line in lines if line.startswith(prefix)]
    return [
        c for c in changes if c not in ("Pending", "InProgress") and not c.endswith(" InProgress")
    ]


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
    # Through the Makefile target itself, with this run's virtualenv (already installed, so
    # make goes straight to the demo).
    result = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), "demo", f"VENV={sys.prefix}"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert time.monotonic() - started < 60
    assert "examples/demo.py" in out.splitlines()[0]  # make's echo of the command it ran
    assert "CodeDeployDefault.HalfAtATime" in out
    v1 = _summary_id(out, r"Succeeded  hello-app v1 ")
    v2 = _summary_id(out, r"Failed     hello-app v2 \(broken\)")
    rollback = _summary_id(out, rf"Succeeded  rollback of {v2} ")
    lines = out.splitlines()

    # v1 and the rollback: every host runs every event, each one's progress shown as it ends.
    for deployment in (v1, rollback):
        for host in HOSTS:
            assert _progress(lines, deployment, host) == [
                *(f"{event} Succeeded" for event in EVENTS),
                "Succeeded",
            ], f"{deployment} {host}:\n" + out
        assert f"Deployment {deployment} Succeeded" in lines
    assert "  Instances: 3 Succeeded, 0 Failed, 0 Skipped, 0 InProgress, 0 Pending" in lines

    # v2: the first host fails ValidateService, the others are skipped, the rollback follows.
    failed = [host for host in HOSTS if f"{v2} {host} Failed" in lines]
    assert len(failed) == 1, out
    assert _progress(lines, v2, failed[0]) == [
        *(f"{event} Succeeded" for event in EVENTS[:-1]),
        (
            "ValidateService Failed (ScriptFailed: Script at specified location: "
            "scripts/validate_service.sh failed with exit code 1)"
        ),
        "Failed",
    ]
    for host in set(HOSTS) - set(failed):
        assert _progress(lines, v2, host) == ["Skipped"], out
    assert "  Instances: 0 Succeeded, 1 Failed, 2 Skipped, 0 InProgress, 0 Pending" in lines
    assert any(line.startswith(f"  Rolled back by: {rollback} (") for line in lines)
    following = lines.index(f"Following rollback deployment {rollback}")
    assert lines.index(f"Deployment {v2} Failed") < following
    assert following < min(i for i, line in enumerate(lines) if line.startswith(f"{rollback} "))
    assert f"  Rollback of: {v2}" in lines

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

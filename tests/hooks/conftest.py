"""Fixtures for the hook runner tests: a revision archive, deployment logs and a runner."""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from blockbuster import blockbuster_ctx

from codedeploy_agent.config import HookSettings
from codedeploy_agent.hooks.runner import HookRunner
from codedeploy_agent.hooks.scriptlog import DeploymentLogs

DEPLOYMENT_ID = "d-TEST12345"
#: Small enough to keep timeout tests short, large enough for `trap` handlers to run.
KILL_GRACE = 0.5

#: What the executor passes for an S3 revision (reference §4.4).
STANDARD_ENV = {
    "LIFECYCLE_EVENT": "ApplicationStart",
    "DEPLOYMENT_ID": DEPLOYMENT_ID,
    "APPLICATION_NAME": "app",
    "DEPLOYMENT_GROUP_NAME": "group",
    "DEPLOYMENT_GROUP_ID": "dg-1234",
    "BUNDLE_BUCKET": "bucket",
    "BUNDLE_KEY": "app.tgz",
}

WriteScript = Callable[..., Path]


@dataclass(frozen=True)
class Deployment:
    """One deployment's paths: the archive scripts live in and the two log files."""

    archive: Path
    scripts_log: Path
    deployments_log: Path


@pytest.fixture(autouse=True)
def no_blocking_on_the_event_loop() -> Iterator[None]:
    """Fail any test in which agent code blocks a running event loop (file, socket, sleep)."""
    with blockbuster_ctx("codedeploy_agent"):
        yield


@pytest.fixture
def deployment(tmp_path: Path) -> Deployment:
    """Empty archive; log files that do not exist yet."""
    archive = tmp_path / "deployment-archive"
    archive.mkdir()
    return Deployment(
        archive,
        tmp_path / "logs" / "scripts.log",
        tmp_path / "deployment-logs" / "codedeploy-agent-deployments.log",
    )


@pytest.fixture
def write_script(deployment: Deployment) -> WriteScript:
    """Return a writer: `write_script("scripts/x.sh", body, mode=0o755)` (body is dedented)."""

    def write(location: str, body: str, mode: int = 0o755, shebang: str = "#!/bin/bash") -> Path:
        path = deployment.archive / location
        path.parent.mkdir(parents=True, exist_ok=True)
        text = textwrap.dedent(body).lstrip("\n")
        path.write_text(f"{shebang}\n{text}" if shebang else text)
        path.chmod(mode)
        return path

    return write


@pytest.fixture
def logs(deployment: Deployment) -> Iterator[DeploymentLogs]:
    """The deployment's logs, secrets `s3cr3t-value` and a two-line key, closed afterwards."""
    with DeploymentLogs(
        deployment.scripts_log,
        deployment.deployments_log,
        DEPLOYMENT_ID,
        secrets=["s3cr3t-value", "-----BEGIN KEY-----\nAAAA1234\n-----END KEY-----"],
    ) as logs:
        yield logs


@pytest.fixture
def runner(logs: DeploymentLogs) -> HookRunner:
    """A runner with a short kill grace."""
    return HookRunner(HookSettings(kill_grace_seconds=KILL_GRACE), logs)


@pytest.fixture
def world_dir() -> Iterator[Path]:
    """A directory every user can enter (pytest's tmp_path is root-only), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="cd-hooks-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    for child in sorted(path.rglob("*"), reverse=True):
        if child.is_dir() and not child.is_symlink():
            child.rmdir()
        else:
            child.unlink()
    path.rmdir()


def read_pids(path: Path) -> list[int]:
    """Pids written one per line by a test script."""
    return [int(line) for line in path.read_text().split()]


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill_quietly(pids: list[int]) -> None:
    """Clean-up for tests that leave processes on purpose."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

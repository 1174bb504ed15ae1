"""Fixtures for end-to-end deployments with `codedeploy-agent local`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.local.helpers import write_sample_bundle


@dataclass
class Host:
    """One agent installation in a temporary folder: its config, root_dir and log_dir."""

    base: Path
    config: Path
    root_dir: Path
    log_dir: Path

    @property
    def proof_file(self) -> Path:
        """Where the sample scripts record the events they ran."""
        return self.base / "executed_proof_file"

    def proof(self) -> list[str]:
        """The events recorded so far, in order."""
        if not self.proof_file.exists():
            return []
        return self.proof_file.read_text().split()

    def deployment_dirs(self, group: str = "default-local-deployment-group") -> list[Path]:
        """Deployment directories of a group."""
        group_dir = self.root_dir / group
        return sorted(p for p in group_dir.iterdir()) if group_dir.exists() else []


@pytest.fixture
def host(tmp_path: Path) -> Host:
    """A config whose root_dir is `<tmp>/host/deployment-root` (so the proof file is in host/)."""
    base = tmp_path / "host"
    root_dir = base / "deployment-root"
    log_dir = base / "logs"
    base.mkdir()
    config = base / "codedeployagent.yml"
    config.write_text(
        f":root_dir: '{root_dir}'\n:log_dir: '{log_dir}'\n:pid_dir: '{base / 'pid'}'\n"
        f":verbose: false\n:max_revisions: 5\nhooks:\n  kill_grace_seconds: 1\n"
    )
    return Host(base, config, root_dir, log_dir)


@pytest.fixture
def sample_bundle(tmp_path: Path) -> Path:
    """The sample app bundle as a directory."""
    return write_sample_bundle(tmp_path / "bundle")


@dataclass
class CliResult:
    """Exit status and output of one CLI run."""

    status: int
    out: str
    err: str


RunCli = Callable[..., CliResult]


@pytest.fixture
def run_cli(host: Host) -> RunCli:
    """Run `codedeploy-agent local ...` as a real process against the host's config."""

    def run(*args: str, cwd: Path | None = None, config: bool = True) -> CliResult:
        argv = [sys.executable, "-m", "codedeploy_agent", "local", *args]
        if config:
            argv += ["-c", str(host.config)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
        proc = subprocess.run(
            argv, cwd=cwd, capture_output=True, text=True, timeout=120, env=env, check=False
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    return run

"""The command line around `local`: `validate`, `--version`, and host errors without tracebacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from codedeploy_agent import __version__
from tests.local.helpers import tar_bundle, write_sample_bundle


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`codedeploy-agent <args>` as a real process."""
    return subprocess.run(
        [sys.executable, "-m", "codedeploy_agent", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        check=False,
    )


def test_version() -> None:
    """`--version` prints the agent's version."""
    result = cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"codedeploy-agent {__version__}"


def test_validate_a_good_bundle_directory_and_archive(tmp_path: Path) -> None:
    """A valid bundle passes, as a directory and as a tgz (unpacked with the safety rules)."""
    bundle = write_sample_bundle(tmp_path / "bundle")
    good = cli("validate", str(bundle))
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.strip() == f"{bundle}/appspec.yml: no problems found"
    archive = tar_bundle(bundle, tmp_path / "bundle.tgz", gz=True)
    packed = cli("validate", str(archive))
    assert packed.returncode == 0, packed.stdout + packed.stderr
    assert packed.stdout.strip() == f"{archive}!appspec.yml: no problems found"


def test_validate_lists_every_problem(tmp_path: Path) -> None:
    """Several problems are all reported, with key paths, and the exit status is 1."""
    bundle = tmp_path / "bad"
    bundle.mkdir()
    (bundle / "appspec.yml").write_text(
        "version: 0.0\nos: linux\nfiles:\n  - source: site\n    destination: /srv/www\n"
        "hooks:\n  ApplicationStart:\n    - location: scripts/start.sh\n      timeout: soon\n"
        "  AfterInstal:\n    - location: scripts/after.sh\n"
    )
    result = cli("validate", str(bundle))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[-1] == f"{bundle}/appspec.yml: 3 errors, 1 warning"
    assert any(line.startswith("ERROR  hooks.ApplicationStart[0].timeout: ") for line in lines)
    assert any(
        line.startswith("ERROR  hooks.AfterInstal[0].location: Script does not exist")
        for line in lines
    )
    assert any(line.startswith("ERROR  files[0].source: ") for line in lines)
    assert any("did you mean AfterInstall?" in line for line in lines)


def test_validate_missing_appspec_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    """A directory without an appspec gets the real agent's message and exit 1."""
    result = cli("validate", str(tmp_path))
    assert result.returncode == 1
    assert "The CodeDeploy agent did not find an AppSpec file" in result.stderr
    assert "Traceback" not in result.stderr


def test_unwritable_root_dir_is_a_clear_error(tmp_path: Path) -> None:
    """A root_dir that cannot be created fails with the real agent's message and the fix."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    config = tmp_path / "agent.yml"
    config.write_text(f":root_dir: '{blocker}/root'\n:log_dir: '{tmp_path / 'logs'}'\n")
    bundle = write_sample_bundle(tmp_path / "bundle")
    result = cli("local", "-l", str(bundle), "-c", str(config))
    assert result.returncode == 1
    assert f"ERROR: Error creating deployment root directory {blocker}/root/" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr

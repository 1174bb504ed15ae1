"""examples/appspec-reference: the commented appspec that shows every section is valid, and
deploys with the effects its comments promise (as root: owners, `runas: nobody`, ACLs)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "examples" / "appspec-reference"
PREFIX = "/srv/reference-app"


def agent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "codedeploy_agent", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_reference_appspec_is_valid() -> None:
    """`codedeploy-agent validate` finds nothing wrong, not even a warning."""
    result = agent("validate", str(REFERENCE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("appspec.yml: no problems found")


def test_reference_appspec_uses_every_section() -> None:
    """The example keeps showing every part of the grammar it claims to show."""
    text = (REFERENCE / "appspec.yml").read_text()
    for key in (
        "version:",
        "os:",
        "file_exists_behavior:",
        "files:",
        "permissions:",
        "pattern:",
        "except:",
        "owner:",
        "group:",
        "mode:",
        "acls:",
        "context:",
        "type:",
        "hooks:",
        "timeout:",
        "runas:",
    ):
        assert key in text, key


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A folder every user can traverse (the `nobody` hook reads below it)."""
    base = Path(tempfile.mkdtemp(prefix="appspec-reference-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="runas and owners need root")
def test_reference_revision_deploys_as_its_comments_say(workdir: Path) -> None:
    """Deployed twice with `codedeploy-agent local` (its destinations moved under a temporary
    folder): files, modes, the ACL, every hook, and ValidateService as `nobody`."""
    if shutil.which("setfacl") is None:
        pytest.fail("setfacl is missing: install the acl package (.ci/run does)")
    app = workdir / "app"
    bundle = workdir / "bundle"
    shutil.copytree(REFERENCE, bundle)
    for path in [bundle / "appspec.yml", *sorted((bundle / "scripts").iterdir())]:
        path.write_text(path.read_text().replace(PREFIX, str(app)))
    # git keeps no modes but the executable bit: give the page the appspec leaves alone a mode
    # of its own, to see that the `except` kept it.
    (bundle / "site" / "private.html").chmod(0o640)
    config = workdir / "codedeployagent.yml"
    config.write_text(
        f":root_dir: '{workdir / 'deployment-root'}'\n:log_dir: '{workdir / 'logs'}'\n"
        f":pid_dir: '{workdir / 'pid'}'\n"
    )
    for _ in range(2):  # the second run replays the cleanup file and runs ApplicationStop
        result = agent(
            "local", "-l", str(bundle), "-t", "directory", "-g", "reference", "-c", str(config)
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Local deployment successful" in result.stdout

    www = app / "www"
    assert stat.S_IMODE((www / "index.html").stat().st_mode) == 0o644
    assert stat.S_IMODE((www / "private.html").stat().st_mode) == 0o640  # the except
    assert stat.S_IMODE((www / "static").stat().st_mode) == 0o755
    conf = app / "etc" / "app.conf"
    assert stat.S_IMODE(conf.stat().st_mode) & 0o777 == 0o640
    acl = subprocess.run(
        ["getfacl", "--omit-header", str(conf)], capture_output=True, text=True, check=True
    ).stdout
    assert "user:nobody:r--" in acl
    assert (app / "running").exists()

    logs = sorted((workdir / "deployment-root" / "reference").glob("*/logs/scripts.log"))
    assert len(logs) == 2
    first, second = sorted(logs, key=lambda p: p.stat().st_mtime)
    assert "stopping reference-app" not in first.read_text()  # nothing to stop the first time
    assert "stopping reference-app" in second.read_text()
    assert "reference-app answers, checked as nobody" in second.read_text()

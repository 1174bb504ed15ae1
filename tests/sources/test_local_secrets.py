"""`codedeploy-agent local --parameter NAME=ssm:/path` end to end against moto's Parameter Store:
the hook gets the value, no log shows it, and a missing parameter stops the deployment first."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from tests.sources.aws_fixtures import (  # noqa: F401 - *_fixture: pytest fixtures
    admin_client,
    aws_env_fixture,
    moto_fixture,
)
from tests.sources.moto_server import MotoServer

SECRET = "pa55-w0rd-xyz"  # noqa: S105 - a test value stored in moto


def _bundle(tmp_path: Path, proof: Path) -> Path:
    bundle = tmp_path / "bundle"
    (bundle / "scripts").mkdir(parents=True)
    script = bundle / "scripts" / "start.sh"
    script.write_text(
        "#!/bin/bash\n"
        'echo "the password is $DB_PASSWORD"\n'
        f'printf %s "$DB_PASSWORD" | sha256sum | cut -d" " -f1 > {proof}\n'
    )
    script.chmod(0o755)
    (bundle / "appspec.yml").write_text(
        "version: 0.0\nos: linux\nhooks:\n  ApplicationStart:\n    - location: scripts/start.sh\n"
    )
    return bundle


def _run(tmp_path: Path, bundle: Path, *parameters: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "agent.yml"
    config.write_text(
        f":root_dir: '{tmp_path / 'root'}'\n:log_dir: '{tmp_path / 'logs'}'\n"
        "clock:\n  ntp_servers: []\n"
    )
    flags = [f"--parameter={p}" for p in parameters]
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "codedeploy_agent",
            "local",
            "-l",
            str(bundle),
            "-c",
            str(config),
            *flags,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
        check=False,
    )


def test_parameter_reaches_the_hook_and_no_log(aws_env: MotoServer, tmp_path: Path) -> None:
    """The hook sees the SecureString; scripts.log, the deployments log and the agent log
    show `***` instead."""
    admin_client(aws_env, "ssm").put_parameter(
        Name="/shop/db/password", Value=SECRET, Type="SecureString"
    )
    proof = tmp_path / "proof"
    result = _run(tmp_path, _bundle(tmp_path, proof), "DB_PASSWORD=ssm:/shop/db/password")
    assert result.returncode == 0, result.stdout + result.stderr
    assert proof.read_text().strip() == hashlib.sha256(SECRET.encode()).hexdigest()
    logs = "".join(p.read_text() for p in tmp_path.rglob("*.log"))
    assert "[stdout]the password is ***" in logs
    assert SECRET not in logs + result.stdout + result.stderr


def test_missing_parameter_fails_before_any_hook(aws_env: MotoServer, tmp_path: Path) -> None:
    """A parameter that does not exist is named, and no hook runs."""
    proof = tmp_path / "proof"
    result = _run(tmp_path, _bundle(tmp_path, proof), "DB_PASSWORD=ssm:/shop/missing")
    assert result.returncode == 1
    assert "/shop/missing" in result.stdout + result.stderr
    assert not proof.exists()
    assert not (tmp_path / "root").exists() or not any((tmp_path / "root").rglob("scripts.log"))


def test_malformed_parameter_flag(aws_env: MotoServer, tmp_path: Path) -> None:
    """A flag without `ssm:` is refused with the expected format."""
    result = _run(tmp_path, _bundle(tmp_path, tmp_path / "proof"), "DB_PASSWORD=/shop/db")
    assert result.returncode == 1
    assert "is not in the expected format NAME=ssm:/parameter/name" in result.stdout

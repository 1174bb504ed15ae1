"""The resident daemon stays small: heavy libraries load only when a job needs them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("boto3", "botocore", "rich", "cryptography", "aiohttp", "codedeploy_server")


@pytest.mark.parametrize(
    "module", ["codedeploy_agent.cli", "codedeploy_agent.daemon.service", "codedeploy_agent.local"]
)
def test_agent_modules_do_not_import_heavy_libraries(module: str) -> None:
    """Importing the agent's entry points loads no AWS SDK, no rich, no server code."""
    code = (
        f"import json, sys, {module}\n"
        f"print(json.dumps([name for name in {list(HEAVY)!r} if name in sys.modules]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(result.stdout) == []

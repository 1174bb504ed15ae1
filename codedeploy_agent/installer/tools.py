"""The external tools the installer runs (setfacl, semanage, restorecon) and how to show paths.

Tools are looked up on the agent's PATH once per install, run as argv lists (never through a
shell, unlike the real agent's `system("setfacl --set #{acl} #{file}")`, which breaks on a
path with a space), with stdin closed and output captured for the error message.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

#: A tool that has not answered after this long is treated as failed, not waited on forever.
TOOL_TIMEOUT_SECONDS: Final = 300.0

#: Which package provides each tool: (Debian/Ubuntu, RHEL/Amazon Linux).
PACKAGES: Final = {
    "setfacl": ("acl", "acl"),
    "semanage": ("policycoreutils-python-utils", "policycoreutils-python-utils"),
    "restorecon": ("policycoreutils", "policycoreutils"),
}


@dataclass(frozen=True, slots=True)
class ToolResult:
    """How a tool run ended; `stderr` is decoded text (undecodable bytes replaced)."""

    returncode: int
    stderr: str


def find_tool(name: str) -> str | None:
    """The absolute path of `name` on PATH, or None when it is not installed."""
    return shutil.which(name)


def run_tool(argv: Sequence[str | bytes]) -> ToolResult:
    """Run one tool to completion; a timeout or a failure to start is a non-zero result."""
    try:
        completed = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            check=False,
            timeout=TOOL_TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired:
        return ToolResult(-1, f"did not finish within {TOOL_TIMEOUT_SECONDS:.0f} seconds")
    except OSError as exc:
        return ToolResult(-1, exc.strerror or str(exc))
    return ToolResult(completed.returncode, completed.stderr.decode("utf-8", errors="replace"))


def install_hint(tool: str) -> str:
    """`Install it (Debian/Ubuntu: apt-get install X; RHEL/Amazon Linux: yum install Y)`."""
    debian, rhel = PACKAGES[tool]
    return (
        f"Install it (Debian/Ubuntu: apt-get install {debian}; "
        f"RHEL/Amazon Linux: yum install {rhel})"
    )


def display_path(path: str | bytes) -> str:
    """A path fit for a message: bytes that are not UTF-8 appear as `\\xNN` escapes."""
    raw = path if isinstance(path, bytes) else os.fsencode(path)
    return raw.decode("utf-8", errors="backslashreplace")

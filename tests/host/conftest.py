"""Fixtures for host-state tests: a folder every user can reach, and running code as nobody.

Running as root (as CI does) bypasses file permissions, so the tests that need a real EACCES
run the code under test in a forked child that has switched to the `nobody` user.
"""

from __future__ import annotations

import os
import pickle
import pwd
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

RunUnprivileged = Callable[[Callable[[], Any]], Any]


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A fresh directory under /tmp that every user can traverse (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="cd-host-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def unprivileged_uid() -> int:
    """The uid the unprivileged child runs as: `nobody` under root, else the current user."""
    return pwd.getpwnam("nobody").pw_uid if os.geteuid() == 0 else os.geteuid()


@pytest.fixture
def run_unprivileged(unprivileged_uid: int) -> RunUnprivileged:
    """Run a callable in a forked child as `unprivileged_uid`; return its (pickled) result."""

    def run(function: Callable[[], Any]) -> Any:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never return into pytest
            os.close(read_end)
            try:
                if os.geteuid() == 0:
                    os.setgroups([])
                    os.setgid(pwd.getpwuid(unprivileged_uid).pw_gid)
                    os.setuid(unprivileged_uid)
                payload = pickle.dumps(("ok", function()))
            except BaseException as exc:  # noqa: BLE001 (reported to the parent)
                payload = pickle.dumps(("error", f"{type(exc).__name__}: {exc}"))
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(payload)
            os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            data = pipe.read()
        os.waitpid(pid, 0)
        status, value = pickle.loads(data)  # noqa: S301 (our own child's data)
        if status != "ok":
            raise AssertionError(f"the unprivileged child failed: {value}")
        return value

    return run

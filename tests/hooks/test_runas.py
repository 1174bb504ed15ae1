"""`runas`: scripts run as a real local user, with its groups and login variables."""

from __future__ import annotations

import grp
import pwd
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from codedeploy_agent.appspec.model import Script
from codedeploy_agent.errors import ErrorCode, ScriptError
from codedeploy_agent.hooks.runner import HookRunner
from tests.hooks.conftest import STANDARD_ENV

USER = "cdhooktest"
GROUP = "cdhookgrp"


@dataclass(frozen=True)
class HookUser:
    """The created user's ids."""

    name: str
    uid: int
    gid: int
    extra_gid: int


@pytest.fixture
def test_user() -> Iterator[HookUser]:
    """A real user `cdhooktest` with home, bash and supplementary group `cdhookgrp`."""
    subprocess.run(["groupadd", GROUP], check=True)
    try:
        subprocess.run(
            ["useradd", "--create-home", "--shell", "/bin/bash", "-G", GROUP, USER], check=True
        )
        try:
            entry = pwd.getpwnam(USER)
            yield HookUser(USER, entry.pw_uid, entry.pw_gid, grp.getgrnam(GROUP).gr_gid)
        finally:
            subprocess.run(["userdel", "--remove", USER], check=True, capture_output=True)
    finally:
        subprocess.run(["groupdel", GROUP], check=False)


def script(archive: Path, name: str, body: str) -> None:
    path = archive / name
    path.write_text(f"#!/bin/bash\n{body}\n")
    path.chmod(0o755)


@pytest.mark.root
@pytest.mark.asyncio
async def test_runas_sets_ids_groups_and_login_variables(
    test_user: HookUser, world_dir: Path, runner: HookRunner
) -> None:
    """The script sees the user's uid, gid, supplementary groups, HOME, USER, LOGNAME, SHELL."""
    script(
        world_dir,
        "whoami.sh",
        'echo "ids=$(id -u) $(id -g) groups=$(id -G)"; echo "env=$HOME $USER $LOGNAME $SHELL"',
    )
    tail = await runner.run_event(
        "ApplicationStart",
        [Script("whoami.sh", 10, runas=USER)],
        archive_dir=world_dir,
        environment=STANDARD_ENV,
    )
    lines = tail.splitlines()
    ids, groups = lines[-2].removeprefix("[stdout]ids=").split(" groups=")
    assert ids == f"{test_user.uid} {test_user.gid}"
    assert sorted(map(int, groups.split())) == sorted({test_user.gid, test_user.extra_gid})
    assert lines[-1] == f"[stdout]env=/home/{USER} {USER} {USER} /bin/bash"


@pytest.mark.root
@pytest.mark.asyncio
async def test_runas_failure_names_the_user(
    test_user: HookUser, world_dir: Path, runner: HookRunner
) -> None:
    """A failing script run as a user: `... run as user <u> failed with exit code <n>`."""
    del test_user
    script(world_dir, "fail.sh", "touch /root/forbidden")
    with pytest.raises(ScriptError) as caught:
        await runner.run_event(
            "ValidateService",
            [Script("fail.sh", 10, runas=USER)],
            archive_dir=world_dir,
            environment=STANDARD_ENV,
        )
    assert caught.value.code is ErrorCode.SCRIPT_FAILED
    assert str(caught.value) == (
        f"Script at specified location: fail.sh run as user {USER} failed with exit code 1"
    )
    assert "[stderr]touch: cannot touch '/root/forbidden': Permission denied\n" in caught.value.log

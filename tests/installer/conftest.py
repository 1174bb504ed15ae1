"""Fixtures for the installer tests: a host in a tmp dir, fake SELinux tools, real users.

Test modules cannot import this file (pytest's importlib mode); they get these helpers through
the fixtures and import the classes only for type checking
(`if TYPE_CHECKING: from tests.installer.conftest import Host`).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from codedeploy_agent.appspec.model import AppSpec, FileExistsBehavior, FileMapping, Permission
from codedeploy_agent.installer import InstallReport, install


def make_appspec(
    files: tuple[tuple[str, str], ...] = (),
    permissions: tuple[Permission, ...] = (),
    behavior: FileExistsBehavior | None = None,
) -> AppSpec:
    """An appspec with `files` given as (source, destination) pairs."""
    return AppSpec(
        version=0.0,
        os="linux",
        files=tuple(FileMapping(src, dst) for src, dst in files),
        permissions=permissions,
        file_exists_behavior=behavior,
    )


def write(path: Path, content: str = "", mode: int | None = None) -> Path:
    """Create `path` (and its parents) with `content`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    if mode is not None:
        path.chmod(mode)
    return path


@dataclass
class Host:
    """A deployment on a host, all under one tmp dir: archive, instructions, destinations."""

    root: Path

    @property
    def archive(self) -> Path:
        return self.root / "deployment-archive"

    @property
    def instructions(self) -> Path:
        return self.root / "deployment-instructions"

    @property
    def cleanup(self) -> Path:
        return self.instructions / "dg-cleanup"

    @property
    def install_json(self) -> Path:
        return self.instructions / "dg-install.json"

    @property
    def dest(self) -> Path:
        """Where tests install to (does not exist until something creates it)."""
        return self.root / "dest"

    appspec = staticmethod(make_appspec)
    write = staticmethod(write)

    def install(self, appspec: AppSpec, override: str | None = None) -> InstallReport:
        return install(
            appspec,
            self.archive,
            cleanup_file=self.cleanup,
            install_json=self.install_json,
            file_exists_override=override,
        )

    def cleanup_text(self) -> str:
        return self.cleanup.read_bytes().decode()

    def instructions_json(self) -> list[dict[str, object]]:
        data = json.loads(self.install_json.read_bytes())
        assert list(data) == ["instructions"]
        result: list[dict[str, object]] = data["instructions"]
        return result


@pytest.fixture
def host(tmp_path: Path) -> Host:
    """An empty host: archive and instructions directories exist, nothing else."""
    h = Host(tmp_path)
    h.archive.mkdir()
    h.instructions.mkdir()
    return h


@dataclass
class FakeTools:
    """`semanage`, `restorecon` and `setfacl` scripts first on PATH that log their argv."""

    bin: Path
    log: Path

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def add(self, name: str, *, exit_code: int = 0, stderr: str = "") -> None:
        script = self.bin / name
        script.write_text(
            "#!/bin/sh\n"
            f'echo "{name} $*" >> "{self.log}"\n'
            + (f'echo "{stderr}" >&2\n' if stderr else "")
            + f"exit {exit_code}\n"
        )
        script.chmod(0o755)


@pytest.fixture
def fake_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeTools:
    """An empty bin dir put first on PATH; tests add the fake tools they need."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return FakeTools(bin_dir, tmp_path / "tools.log")


@pytest.fixture
def empty_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PATH holds only an empty directory: no setfacl, semanage or restorecon."""
    empty = tmp_path / "emptybin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


@dataclass(frozen=True)
class Account:
    """A real user and a separate real group created for the test."""

    user: str
    group: str


@pytest.fixture(scope="module")
def account() -> Iterator[Account]:
    """Creates a user and a group with useradd/groupadd, removes them afterwards (root only)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create users")
    suffix = str(os.getpid())[-6:]
    user, group = f"cdiu{suffix}", f"cdig{suffix}"
    subprocess.run(["groupadd", group], check=True)
    subprocess.run(
        ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", "--user-group", user],
        check=True,
    )
    try:
        yield Account(user, group)
    finally:
        subprocess.run(["userdel", user], check=False)
        subprocess.run(["groupdel", group], check=False)
        subprocess.run(["groupdel", user], check=False, stderr=subprocess.DEVNULL)

"""A Debian 12 root booted with systemd-nspawn, for the package acceptance tests (helpers only).

    root = prepare_rootfs(tmp_path / "root", prefetch=["python3.11", "logrotate"])
    with Container(root, tmp_path / "nspawn.log") as box:
        box.run("apt-get install -y --no-download /var/tmp/cdtest/pkg.deb")

`prepare_rootfs` copies a cached `debootstrap --variant=minbase bookworm` root (with systemd, so
that it boots) kept in `/var/tmp/codedeploy-agent-test-rootfs` (`$CODEDEPLOY_AGENT_TEST_ROOTFS`)
and built when missing. The cache also holds apt's package lists and the .debs of `prefetch`
(downloaded once from the mirror of this machine's apt sources): installing a package in the
test then needs no network (`apt-get install --no-download`). Each test boots its own copy.

`Container` boots the copy with `systemd-nspawn -b --register=no --keep-unit` (no machined: this
machine's PID 1 is not systemd). The container shares the host's network, so services a test
starts on 127.0.0.1 are reachable from inside. Commands run inside with `nsenter` into every
namespace of the container's init, with a clean environment; the container's /tmp is a tmpfs,
so files are exchanged under /var/tmp (the copy is a plain directory on the host).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Final, Self

import psutil

CACHE: Final = Path(
    os.environ.get("CODEDEPLOY_AGENT_TEST_ROOTFS", "/var/tmp/codedeploy-agent-test-rootfs")
)
SUITE: Final = "bookworm"
#: minbase has no init system; systemd-sysv makes the root bootable.
INCLUDE: Final = ("systemd-sysv",)
_MARKER: Final = ".codedeploy-agent-test-rootfs.json"
_ENV: Final = (
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME=/root",
    "LANG=C.UTF-8",
    "DEBIAN_FRONTEND=noninteractive",
)
TOOLS: Final = ("debootstrap", "systemd-nspawn", "nsenter")
_NSPAWN: Final = (
    "systemd-nspawn",
    "--boot",
    "--register=no",
    "--keep-unit",
    "--quiet",
    "--console=pipe",
)


def missing_tools() -> list[str]:
    """The host tools these tests need that are not installed (`.ci/run` installs them)."""
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def debian_mirror() -> str:
    """The Debian mirror of this machine's apt sources (`$CODEDEPLOY_AGENT_TEST_MIRROR` wins)."""
    override = os.environ.get("CODEDEPLOY_AGENT_TEST_MIRROR")
    if override:
        return override
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for source in sources:
        with contextlib.suppress(OSError):
            text = source.read_text()
            pattern = r"(?:^URIs:|^deb)\s+(?:\[[^]]*\]\s+)?(\S+)"
            for match in re.finditer(pattern, text, re.MULTILINE):
                uri = match.group(1)
                if uri.rstrip("/").endswith("/debian") and "security" not in uri:
                    return uri
    return "http://deb.debian.org/debian"


def _run(argv: Sequence[str | Path], *, timeout: float = 900) -> None:
    result = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(map(str, argv))} failed ({result.returncode}):\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _recipe(cache: Path) -> dict[str, object] | None:
    try:
        data: dict[str, object] = json.loads((cache / _MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data


def _build_cache(cache: Path, mirror: str) -> None:
    """debootstrap into a temporary folder next to `cache`, then rename it into place."""
    building = cache.with_name(f"{cache.name}.building")
    shutil.rmtree(building, ignore_errors=True)
    _run([
        "debootstrap", "--variant=minbase", f"--include={','.join(INCLUDE)}", SUITE, building,
        mirror,
    ])  # fmt: skip
    (building / "etc/apt/sources.list").write_text(f"deb {mirror} {SUITE} main\n")
    # debootstrap leaves the base system's .debs behind: 70 MB every test would copy.
    _run(["chroot", building, "apt-get", "clean"])
    _run(["chroot", building, "apt-get", "update", "-qq"])
    (building / _MARKER).write_text(
        json.dumps({"suite": SUITE, "include": INCLUDE, "prefetch": []})
    )
    shutil.rmtree(cache, ignore_errors=True)
    building.rename(cache)


def _prefetch(cache: Path, packages: Sequence[str]) -> None:
    """Download `packages` and their dependencies into the cache's apt archive (no install)."""
    recipe = _recipe(cache) or {}
    done = set(recipe.get("prefetch", []))  # type: ignore[call-overload]
    wanted = sorted(set(packages) - done)
    if not wanted:
        return
    _run([
        "chroot", cache, "env", *_ENV, "apt-get", "install", "-qq", "--download-only", "-y",
        *wanted,
    ])  # fmt: skip
    recipe["prefetch"] = sorted(done | set(wanted))
    (cache / _MARKER).write_text(json.dumps(recipe))


def prepare_rootfs(target: Path, *, prefetch: Sequence[str] = (), cache: Path = CACHE) -> Path:
    """A fresh copy of the cached root at `target` (building or topping up the cache first)."""
    with _locked(cache.with_name(f"{cache.name}.lock")):
        recipe = _recipe(cache)
        if recipe is None or recipe.get("suite") != SUITE or recipe.get("include") != list(INCLUDE):
            _build_cache(cache, debian_mirror())
        _prefetch(cache, prefetch)
        target.parent.mkdir(parents=True, exist_ok=True)
        _run(["cp", "-a", "--reflink=auto", cache, target])
    return target


class Container:
    """`root` booted with systemd-nspawn until the context manager exits (then powered off)."""

    def __init__(self, root: Path, log_file: Path) -> None:
        self.root = root
        self.log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None
        self.leader: int | None = None

    def __enter__(self) -> Self:
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [*_NSPAWN, f"--directory={self.root}"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_booted()
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop()

    def _wait_booted(self, timeout: float = 60.0) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while self.leader is None:
            if self.process.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited:\n{self.log_text()}")
            for child in psutil.Process(self.process.pid).children():
                with contextlib.suppress(psutil.Error):
                    if child.name() == "systemd":
                        self.leader = child.pid
            if time.monotonic() > deadline:
                raise RuntimeError(f"the container did not start:\n{self.log_text()}")
            time.sleep(0.05)
        while True:
            state = self.run("systemctl is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the container did not boot (state {state}):\n{self.log_text()}"
                )
            time.sleep(0.1)

    def run(
        self, script: str, *, check: bool = True, timeout: float = 300.0
    ) -> subprocess.CompletedProcess[str]:
        """Run `script` with /bin/sh inside the container (clean environment, cwd /)."""
        if self.leader is None:
            raise RuntimeError("the container is not running")
        result = subprocess.run(
            ["nsenter", f"--target={self.leader}", "--all", "--wdns=/", "--", "/usr/bin/env", "-i",
             *_ENV, "/bin/sh", "-c", script],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(
                f"in the container, `{script}` exited {result.returncode}:\n"
                f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
            )
        return result

    def path(self, inside: str) -> Path:
        """The host path of a path inside the container."""
        return self.root / inside.lstrip("/")

    def log_text(self) -> str:
        """What systemd-nspawn printed."""
        with contextlib.suppress(OSError):
            return self.log_file.read_text(errors="replace")
        return ""

    def _stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        if self.leader is not None:
            self.run("systemctl poweroff --no-block", check=False, timeout=30)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            if self.leader is not None:
                # The container's PID 1 takes every process of its namespace with it.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.leader, 9)
            process.kill()
            process.wait(timeout=30)

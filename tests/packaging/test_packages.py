"""The .deb and .rpm that `make packages` builds: names, metadata, file lists, scripts, lint."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.packaging.conftest import BUILD, VERSION, Packages

pytestmark = pytest.mark.slow

CONFFILES = ["/etc/codedeploy-agent/conf/codedeployagent.yml", "/etc/logrotate.d/codedeploy-agent"]


def output(*argv: str | Path) -> str:
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, check=True, timeout=60
    ).stdout


def deb_paths(deb: Path) -> dict[str, str]:
    """Path in the data archive -> the `dpkg-deb -c` line."""
    lines = output("dpkg-deb", "--contents", deb).splitlines()
    return {line.split()[5].removeprefix("."): line for line in lines}


def test_file_names(packages: Packages) -> None:
    """The packages are named <name>_<version>-<release>_<arch>.deb and <name>-<version>-<release>.<arch>.rpm."""
    assert packages.deb.name == f"codedeploy-agent_{VERSION}-1_amd64.deb"
    assert packages.rpm.name == f"codedeploy-agent-{VERSION}-1.x86_64.rpm"
    print(f"build of both packages: {packages.seconds:.1f} s")


def test_deb_metadata(packages: Packages) -> None:
    """dpkg-deb -I: version, architecture, the exact interpreter dependency and the conffiles."""
    fields = output(
        "dpkg-deb", "--field", packages.deb, "Package", "Version", "Architecture", "Depends",
        "Recommends", "Suggests", "Section",
    )  # fmt: skip
    assert fields.splitlines() == [
        "Package: codedeploy-agent",
        f"Version: {VERSION}-1",
        "Architecture: amd64",
        "Depends: python3.11",
        "Recommends: logrotate",
        "Suggests: acl, git",
        "Section: admin",
    ]
    info = output("dpkg-deb", "--info", packages.deb)
    for script in ("preinst", "postinst", "prerm", "postrm", "conffiles"):
        assert f" {script} " in info
    conffiles = output("dpkg-deb", "--ctrl-tarfile", packages.deb)
    assert conffiles  # a tar stream; its conffiles member is read below
    extracted = subprocess.run(
        ["tar", "-xO", "./conffiles"],
        input=subprocess.run(
            ["dpkg-deb", "--ctrl-tarfile", str(packages.deb)], capture_output=True, check=True
        ).stdout,
        capture_output=True,
        check=True,
    ).stdout.decode()
    assert extracted.splitlines() == CONFFILES


def test_deb_contents(packages: Packages) -> None:
    """dpkg-deb -c: the virtualenv, the command, the unit in /lib/systemd, no ./opt/ entry."""
    paths = deb_paths(packages.deb)
    assert "/opt/" not in paths  # dpkg would remove /opt on purge when nothing else lists it
    assert "/" not in paths
    assert "/opt/codedeploy-agent/" in paths
    assert paths["/usr/bin/codedeploy-agent"].endswith(
        "./usr/bin/codedeploy-agent -> /opt/codedeploy-agent/venv/bin/codedeploy-agent"
    )
    assert paths["/opt/codedeploy-agent/venv/bin/python3"].endswith("-> /usr/bin/python3.11")
    assert paths["/opt/codedeploy-agent/venv/bin/codedeploy-agent"].startswith(
        "-rwxr-xr-x root/root"
    )
    assert paths["/lib/systemd/system/codedeploy-agent.service"].startswith("-rw-r--r-- root/root")
    assert paths["/opt/codedeploy-agent/libexec/restart-when-idle"].startswith("-rwxr-xr-x")
    site = "/opt/codedeploy-agent/venv/lib/python3.11/site-packages/"
    for module in ("codedeploy_agent/cli.py", "aiomqtt/", "paho/", "yaml/", "nacl/", "msgspec/"):
        assert site + module in paths, module
    assert not [p for p in paths if "__pycache__" in p or p.endswith(".pyc")]
    # Nothing the agent creates at run time is in the package: the postinst makes those.
    for runtime in ("/opt/codedeploy-agent/state/", "/opt/codedeploy-agent/deployment-root/",
                    "/var/log/aws/", "/var/log/aws/codedeploy-agent/"):  # fmt: skip
        assert runtime not in paths


def test_virtualenv_runs_on_the_system_python(packages: Packages, tmp_path: Path) -> None:
    """The packaged virtualenv imports with Debian's /usr/bin/python3.11 and nothing else."""
    if not Path("/usr/bin/python3.11").exists():
        pytest.skip("no /usr/bin/python3.11 on this machine")
    subprocess.run(["dpkg-deb", "-x", str(packages.deb), str(tmp_path)], check=True)
    python = tmp_path / "opt/codedeploy-agent/venv/bin/python3"
    code = (
        "import sys, yaml, msgspec, nacl.bindings, psutil, aiomqtt, codedeploy_agent.cli; "
        "print(sys.prefix); print(yaml.__with_libyaml__)"
    )
    env = {"PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [str(python), "-I", "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert result.stdout.splitlines() == [str(tmp_path / "opt/codedeploy-agent/venv"), "True"]
    version = subprocess.run(
        [str(python), "-I", "-m", "codedeploy_agent", "--version"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    assert version.stdout == f"codedeploy-agent {VERSION}\n"


def test_rpm_metadata_and_files(packages: Packages) -> None:
    """rpm -qpi/-qpl/-qpc and --requires: unit in /usr/lib/systemd, config files, python3.11."""
    info = output(
        "rpm",
        "-qp",
        "--queryformat",
        "%{NAME} %{VERSION} %{RELEASE} %{ARCH} %{LICENSE}",
        packages.rpm,
    )
    assert info == f"codedeploy-agent {VERSION} 1 x86_64 Apache-2.0"
    assert "Summary     : Self-hosted, CodeDeploy-compatible deployment agent" in output(
        "rpm", "-qpi", packages.rpm
    )
    files = output("rpm", "-qpl", packages.rpm).splitlines()
    assert "/usr/lib/systemd/system/codedeploy-agent.service" in files
    assert "/lib/systemd/system/codedeploy-agent.service" not in files
    assert "/usr/bin/codedeploy-agent" in files
    assert "/var/log/aws/codedeploy-agent" in files  # owned by the RPM (logrotate's directory)
    assert "/opt" not in files
    assert "/opt/codedeploy-agent" not in files
    assert output("rpm", "-qpc", packages.rpm).splitlines() == CONFFILES
    requires = output("rpm", "-qp", "--requires", packages.rpm).splitlines()
    assert [r for r in requires if not r.startswith("rpmlib(")] == ["python3.11"]
    assert output("rpm", "-qp", "--recommends", packages.rpm).split() == ["logrotate"]
    docs = output("rpm", "-qpd", packages.rpm).splitlines()
    assert "/usr/share/doc/codedeploy-agent/examples/mosquitto/acl" in docs


def test_rpm_scripts(packages: Packages) -> None:
    """rpm -qp --scripts: the four scriptlets, each the shared maintainer script."""
    scripts = output("rpm", "-qp", "--scripts", packages.rpm)
    repo = Path(__file__).resolve().parents[2] / "packaging" / "scripts"
    for header, name in (
        ("preinstall scriptlet (using /bin/sh):", "preinstall.sh"),
        ("postinstall scriptlet (using /bin/sh):", "postinstall.sh"),
        ("preuninstall scriptlet (using /bin/sh):", "preremove.sh"),
        ("postuninstall scriptlet (using /bin/sh):", "postremove.sh"),
    ):
        assert f"{header}\n{(repo / name).read_text()}" in scripts, name


def test_rpmlint_finds_no_errors(packages: Packages) -> None:
    """rpmlint (with the documented filters of packaging/rpmlint.toml) reports no error."""
    if shutil.which("rpmlint") is None:
        pytest.skip("rpmlint is not installed")
    config = Path(__file__).resolve().parents[2] / "packaging" / "rpmlint.toml"
    result = subprocess.run(
        ["rpmlint", "-c", str(config), str(packages.rpm)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 errors," in result.stdout
    assert ": E: " not in result.stdout


def test_maintainer_scripts_are_posix_sh() -> None:
    """Every maintainer script parses with dash (Debian's /bin/sh) and `sh -n`."""
    scripts = Path(__file__).resolve().parents[2] / "packaging"
    for script in [
        *sorted((scripts / "scripts").glob("*.sh")),
        scripts / "libexec/restart-when-idle",
    ]:
        for shell in ("dash", "sh"):
            if shutil.which(shell):
                subprocess.run([shell, "-n", str(script)], check=True)


def test_signed_rpm(tmp_path: Path, packages: Packages) -> None:
    """--sign-key signs the RPM: rpmkeys verifies it with the public key (the default build is unsigned)."""
    if shutil.which("gpg") is None:
        pytest.skip("gpg is not installed")
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    env = {"GNUPGHOME": str(home), "PATH": os.environ["PATH"]}

    def gpg(*args: str) -> bytes:
        return subprocess.run(
            ["gpg", "--batch", "--quiet", *args], env=env, capture_output=True, check=True
        ).stdout

    gpg(
        "--passphrase",
        "",
        "--quick-gen-key",
        "test <test@codedeploy-agent.invalid>",
        "rsa2048",
        "sign",
        "never",
    )
    (tmp_path / "key.asc").write_bytes(gpg("--armor", "--export-secret-keys"))
    (tmp_path / "pub.asc").write_bytes(gpg("--armor", "--export"))
    result = subprocess.run(
        [sys.executable, str(BUILD), "--out", str(tmp_path / "out"), "--formats", "rpm",
         "--sign-key", str(tmp_path / "key.asc")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    signed = Path(result.stdout.strip())
    database = tmp_path / "rpmdb"
    database.mkdir()
    subprocess.run(
        ["rpmkeys", "--dbpath", str(database), "--import", str(tmp_path / "pub.asc")], check=True
    )
    checked = output("rpmkeys", "--dbpath", str(database), "--checksig", signed)
    assert checked == f"{signed}: digests signatures OK\n"
    assert "Signature   : (none)" in output("rpm", "-qpi", packages.rpm)

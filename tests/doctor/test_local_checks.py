"""doctor's checks of this host alone: config, directories, disk, signing keys, tools, logs."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pytest

from codedeploy_agent.doctor import (
    Finding,
    Status,
    check_config,
    check_directories,
    check_disk,
    check_logs,
    check_signing,
    check_tools,
    run_doctor,
)
from codedeploy_agent.host.layout import DeploymentRoot
from tests.doctor.conftest import Host

SIZE = r"\d+\.\d (?:KiB|MiB|GiB)"


def test_config_parses(host: Host) -> None:
    """A valid file gives one OK line naming it."""
    config, findings = check_config(host.write())
    assert config is not None
    assert config.root_dir == host.root_dir
    assert findings == [Finding("config", Status.OK, f"{host.config_file} parses")]


def test_config_warnings_become_warn_lines(host: Host) -> None:
    """Each warning of the loader (an unknown key here) is a WARN line of its own."""
    host.extra = {"rootdir": "/x"}
    _config, findings = check_config(host.write())
    assert findings[1:] == [
        Finding(
            "config",
            Status.WARN,
            f"Unknown key 'rootdir' in {host.config_file} is ignored (did you mean 'root_dir'?)",
        )
    ]


def test_invalid_config_fails_and_ends_the_report(host: Host) -> None:
    """An invalid value: one FAIL line with the loader's message, exit status 1, no other check."""
    host.extra = {":max_revisions": 0}
    out = io.StringIO()
    assert run_doctor(host.write(), out) == 1
    assert out.getvalue().splitlines() == [
        "codedeploy-agent doctor 0.1.0",
        (
            f"[FAIL] config: Invalid configuration :max_revision=0 in {host.config_file}: "
            ":max_revisions: must be an integer >= 1 (the number of deployment directories kept "
            "per deployment group)"
        ),
        "       fix: correct the file, then run doctor again",
        "problems found: 1 failed, 0 warnings, 0 ok",
    ]


def test_missing_config_file_fails(tmp_path: Path) -> None:
    """A -c file that does not exist fails with the loader's message."""
    config, findings = check_config(tmp_path / "nope.yml")
    assert config is None
    assert findings[0].status is Status.FAIL
    assert findings[0].message.startswith(
        f"The config file {tmp_path / 'nope.yml'} does not exist or is not readable"
    )


def test_directories_ok(host: Host) -> None:
    """Existing 0755 directories owned by the agent's user pass, one line each."""
    user = __import__("pwd").getpwuid(os.geteuid()).pw_name
    assert check_directories(host.config()) == [
        Finding("directories", Status.OK, f"root_dir {host.root_dir} ({user}, 0755)"),
        Finding("directories", Status.OK, f"log_dir {host.log_dir} ({user}, 0755)"),
        Finding("directories", Status.OK, f"state_dir {host.state_dir} ({user}, 0755)"),
        Finding("directories", Status.OK, f"pid_dir {host.pid_dir} ({user}, 0755)"),
    ]


def test_world_writable_directory_fails(host: Host) -> None:
    """A directory every user may write fails with the chmod that fixes it."""
    host.log_dir.chmod(0o777)
    log_line = check_directories(host.config())[1]
    assert log_line.status is Status.FAIL
    assert log_line.message.endswith("0777) is writable by every user")
    assert log_line.fix == f"chmod o-w {host.log_dir}"


def test_file_instead_of_directory_fails(host: Host) -> None:
    """state_dir being a file fails."""
    host.pid_dir.rmdir()
    host.state_dir.rmdir()
    host.state_dir.write_text("")
    findings = check_directories(host.config())
    assert findings[2] == Finding(
        "directories",
        Status.FAIL,
        f"state_dir {host.state_dir} is not a directory",
        "set :state_dir: to a directory",
    )


def test_root_dir_closed_to_other_users_warns(host: Host) -> None:
    """A deployment root other users cannot enter breaks runas hooks: a warning."""
    host.root_dir.chmod(0o750)
    root_line = check_directories(host.config())[0]
    assert root_line.status is Status.WARN
    assert root_line.message.endswith(
        "cannot be entered by other users: hooks with runas would fail"
    )
    assert root_line.fix == f"chmod 0755 {host.root_dir}"


def test_missing_directory_the_agent_can_create_warns(host: Host) -> None:
    """A directory that does not exist yet under a writable parent is a warning, not a failure."""
    host.pid_dir.rmdir()
    assert check_directories(host.config())[3] == Finding(
        "directories",
        Status.WARN,
        f"pid_dir {host.pid_dir} does not exist yet; the agent creates it when it needs it",
        f"install -d -m 0755 {host.pid_dir} (the package creates the default directories)",
    )


@pytest.mark.root
def test_directory_of_another_user_fails(host: Host) -> None:
    """A directory owned by someone else than the agent's user or root fails: they could tamper."""
    os.chown(host.root_dir, 65534, 65534)
    root_line = check_directories(host.config(), uid=0)[0]
    assert root_line.status is Status.FAIL
    assert "belongs to nobody, who could change what the agent runs or records as root" in (
        root_line.message
    )
    assert root_line.fix == f"chown root: {host.root_dir}"


def test_disk_thresholds(host: Host) -> None:
    """Free space above the thresholds passes; below the warning or failure limit it does not."""
    config = host.config()
    [ok] = check_disk(config, warn_bytes=1, warn_ratio=0.0, fail_bytes=0)
    assert ok.status is Status.OK
    assert re.fullmatch(
        rf"{SIZE} free of {SIZE} \(\d+%\) in {re.escape(str(host.root_dir))}", ok.message
    )
    [warn] = check_disk(config, warn_bytes=2**62, warn_ratio=0.0, fail_bytes=0)
    assert warn.status is Status.WARN
    assert warn.message.endswith(f"in {host.root_dir}: running low")
    assert warn.fix is not None
    assert ":max_revisions: 5 per deployment group" in warn.fix
    [fail] = check_disk(config, warn_bytes=1, warn_ratio=0.0, fail_bytes=2**62)
    assert fail.status is Status.FAIL
    assert fail.message.endswith(": the next bundle may not fit")
    [ratio] = check_disk(config, warn_bytes=1, warn_ratio=1.01, fail_bytes=0)
    assert ratio.status is Status.WARN


def test_disk_of_a_root_dir_not_created_yet(host: Host) -> None:
    """A missing deployment root is measured on its nearest existing parent."""
    host.root_dir.rmdir()
    [finding] = check_disk(host.config(), warn_bytes=1, warn_ratio=0.0, fail_bytes=0)
    assert re.fullmatch(
        rf"{SIZE} free of {SIZE} \(\d+%\) in {re.escape(str(host.base))}", finding.message
    )


def test_signing_keys(host: Host) -> None:
    """Loadable keys pass; none is a warning (unsigned jobs run); a bad file fails."""
    assert check_signing(host.config()) == [
        Finding("signing", Status.OK, "1 trusted key(s): test-key")
    ]
    host.extra = {"security": {"trusted_keys": {}}}
    [empty] = check_signing(host.config())
    assert empty.status is Status.WARN
    assert empty.message == (
        "security.trusted_keys is empty: the agent runs unsigned job documents, so whoever can "
        "publish to this host's job topics can run commands on it as root"
    )
    host.public_key.write_text("not a key\n")
    host.extra = {}
    [bad] = check_signing(host.config())
    assert bad.status is Status.FAIL
    assert bad.message.startswith(f"{host.public_key} is not a PEM or OpenSSH public key")


def _deploy(host: Host, group: str, appspec: str) -> None:
    """A last successful revision of `group` whose appspec is `appspec`."""
    root = DeploymentRoot(host.root_dir)
    deployment = root.create_deployment_dir(group, "d-AAAAAAAA1")
    deployment.archive.mkdir()
    (deployment.archive / "appspec.yml").write_text(appspec)
    root.set_last_successful(group, deployment)


ACL_APPSPEC = """version: 0.0
os: linux
permissions:
  - object: /srv/app
    acls:
      - u:www-data:rw
"""


def test_tools_missing_but_needed_fail(host: Host) -> None:
    """setfacl missing while a deployed revision sets acls fails; the others are information."""
    _deploy(host, "dg-web", ACL_APPSPEC)
    findings = check_tools(host.config(), which=lambda _name: None)
    assert findings == [
        Finding(
            "tools",
            Status.INFO,
            "git is not installed; only git revisions (CodeCommit, any git remote) need it "
            "(package git)",
        ),
        Finding(
            "tools",
            Status.FAIL,
            "setfacl is not installed, but deployed revision(s) dg-web/d-AAAAAAAA1 set acls",
            "install acl",
        ),
        Finding(
            "tools",
            Status.INFO,
            "semanage is not installed; only appspec permissions with an SELinux context need it "
            "(package policycoreutils-python-utils)",
        ),
        Finding(
            "tools",
            Status.INFO,
            "restorecon is not installed; only appspec permissions with an SELinux context need "
            "it (package policycoreutils)",
        ),
    ]


def test_tools_found_and_git_needed_by_config(host: Host) -> None:
    """Found tools pass with their path; a configured git: section makes git required."""
    host.extra = {"git": {"username": "deploy"}}
    found = check_tools(host.config(), which=lambda name: f"/usr/bin/{name}")
    assert found[0] == Finding(
        "tools", Status.OK, "git /usr/bin/git (used for git revisions (CodeCommit, any git remote))"
    )
    assert all(f.status is Status.OK for f in found)
    [git, *_rest] = check_tools(host.config(), which=lambda _name: None)
    assert git == Finding(
        "tools",
        Status.FAIL,
        "git is not installed, but the config's git: section is set",
        "install git",
    )


def test_logs_say_where_to_look(host: Host) -> None:
    """One INFO line: the agent log (and its size), the deployments log, scripts.log, journalctl."""
    (host.log_dir / "codedeploy-agent.log").write_text("x" * 2048)
    assert check_logs(host.config()) == [
        Finding(
            "logs",
            Status.INFO,
            f"agent {host.log_dir}/codedeploy-agent.log (2.0 KiB); every script's output "
            f"{host.root_dir}/deployment-logs/codedeploy-agent-deployments.log; one deployment's "
            f"{host.root_dir}/<group>/<deployment>/logs/scripts.log; systemd's "
            "`journalctl -u codedeploy-agent.service`",
        )
    ]

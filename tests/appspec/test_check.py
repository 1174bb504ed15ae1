"""`check_appspec`: every problem of an appspec at once, with archive and host checks."""

from __future__ import annotations

import textwrap
from pathlib import Path

from codedeploy_agent.appspec import check_appspec
from codedeploy_agent.appspec.check import CheckReport, Problem

BROKEN = textwrap.dedent(
    """\
    version: 0.0
    os: linux
    files:
      - source: /
        destination: /srv/app
        overwrite: true
      - source: config
    permissions:
      - object: /srv/app
        mode: 12345
        acls: ['u:bob:rwz', 'o:7']
        context: {range: s0}
      - pattern: x
    hooks:
      ApplicationStart:
        - location: scripts/start.sh
          timeout: foo
        - timeout: 10
      AfterInstall:
        - location: scripts/after.sh
          timeout: "30s"
    file_exists_behavior: overwrite
    Resources: []
    """
)


def test_reports_every_error_in_document_order() -> None:
    """All errors of all sections are listed, each with its key path, in the agent's order."""
    report = check_appspec(BROKEN, filename="appspec.yml")
    assert [e.path for e in report.errors] == [
        "hooks.ApplicationStart[0].timeout",
        "hooks.ApplicationStart[1].location",
        "files[1].destination",
        "permissions[0].mode",
        "permissions[0].acls[0]",
        "permissions[0].acls[1]",
        "permissions[0].context.type",
        "permissions[1].object",
        "file_exists_behavior",
    ]
    assert not report.ok
    assert report.kind == "ec2"


def test_reports_warnings_for_what_the_agent_ignores() -> None:
    """Unknown keys (with a hint), coerced timeouts and relative destinations are warnings."""
    report = check_appspec(BROKEN, filename="appspec.yml")
    assert report.warnings == [
        Problem("hooks.AfterInstall[0].timeout", 'timeout "30s" is read as 30 seconds'),
        Problem(
            "files[0].overwrite",
            "unknown key 'overwrite' is ignored by CodeDeploy (known keys: source, destination)",
        ),
        Problem(
            "Resources",
            "unknown key 'Resources' is ignored by CodeDeploy (known keys: version, os, files, "
            "permissions, hooks, file_exists_behavior)",
        ),
    ]


def test_format_lists_one_problem_per_line() -> None:
    """format() prints `ERROR  path: message` lines, then `WARN   ...`, then a summary."""
    text = "version: 0.0\nos: linux\nhooks:\n  X:\n    - location: a\n      timeout: 0\nextra: 1\n"
    lines = check_appspec(text, filename="appspec.yml").format().splitlines()
    assert lines == [
        (
            "ERROR  hooks.X[0].timeout: The deployment failed because an invalid timeout value "
            "was provided for a script in the application specification file. Make corrections "
            "in the hooks section of the AppSpec file, and then try again."
        ),
        (
            "WARN   extra: unknown key 'extra' is ignored by CodeDeploy (known keys: version, os, "
            "files, permissions, hooks, file_exists_behavior)"
        ),
        (
            "WARN   hooks.X: X is not a CodeDeploy lifecycle event: it runs only in deployments "
            "that list it (codedeploy-agent local --events ...)"
        ),
        "appspec.yml: 1 error, 2 warnings",
    ]


def test_clean_appspec() -> None:
    """A valid appspec with nothing odd reports no problems."""
    report = check_appspec("version: 0.0\nos: linux\n", filename="appspec.yml")
    assert report == CheckReport("appspec.yml", "ec2", [], [])
    assert report.ok
    assert report.format() == "appspec.yml: no problems found"


def test_syntax_error_is_a_single_error() -> None:
    """Text that does not decode gives one error at the root and no kind."""
    report = check_appspec("a: [\n", filename="appspec.yml")
    assert report.kind is None
    assert len(report.errors) == 1
    assert report.errors[0].path == ""
    assert "is not valid YAML or JSON" in report.errors[0].message


def test_event_name_warnings() -> None:
    """Near-misses of event names, custom events and agent-only events are warned about."""
    text = textwrap.dedent(
        """\
        version: 0.0
        os: linux
        hooks:
          ApplicationStrat:
            - location: a
          CustomEvent:
            - location: a
          Install:
            - location: a
        """
    )
    warnings = check_appspec(text, filename="appspec.yml").warnings
    assert warnings == [
        Problem(
            "hooks.ApplicationStrat",
            "ApplicationStrat is not a CodeDeploy lifecycle event; did you mean ApplicationStart?",
        ),
        Problem(
            "hooks.CustomEvent",
            "CustomEvent is not a CodeDeploy lifecycle event: it runs only in deployments that "
            "list it (codedeploy-agent local --events ...)",
        ),
        Problem(
            "hooks.Install",
            "scripts listed under Install never run: the agent performs Install itself",
        ),
    ]


def test_timeouts_over_the_service_limit_are_warned() -> None:
    """One script over 3600 s, or an event whose scripts add up past it, is a warning."""
    text = textwrap.dedent(
        """\
        version: 0.0
        os: linux
        hooks:
          AfterInstall:
            - {location: a, timeout: 3000}
            - {location: b, timeout: 3000}
          ApplicationStart:
            - {location: a, timeout: 3000}
            - {location: b}
          ValidateService:
            - {location: c, timeout: 4000}
        """
    )
    warnings = check_appspec(text, filename="appspec.yml").warnings
    assert [w.path for w in warnings] == ["hooks.ValidateService[0].timeout", "hooks.AfterInstall"]
    assert warnings[1].message == (
        "the scripts' timeouts add up to 6000 seconds, more than the 3600 seconds CodeDeploy "
        "allows a lifecycle event to run"
    )


def test_octal_mode_is_warned() -> None:
    """`mode: 0644` (read as 420) is a warning that shows the fix; `0000` and `"0644"` are not."""
    text = (
        "version: 0.0\nos: linux\npermissions:\n  - {object: /a, mode: 0644}\n"
        "  - {object: /b, mode: 0000}\n  - {object: /c, mode: '0644'}\n"
    )
    assert check_appspec(text, filename="appspec.yml").warnings == [
        Problem(
            "permissions[0].mode",
            "mode 0644 is read by YAML 1.1 as an octal number (decimal 420), so CodeDeploy "
            "applies mode 420, not 644; write mode: 644",
        )
    ]


def test_context_user_and_sudo_strings_are_warned() -> None:
    """`context.user` (ignored: the agent reads `name`) and a string sudo are warnings."""
    text = (
        "version: 0.0\nos: linux\npermissions:\n  - {object: /a, context: {type: t, user: u}}\n"
        "hooks:\n  AfterInstall:\n    - {location: a, sudo: 'false'}\n"
    )
    warnings = check_appspec(text, filename="appspec.yml").warnings
    assert warnings == [
        Problem(
            "hooks.AfterInstall[0].sudo",
            'sudo "false" is not a boolean; CodeDeploy treats it as true',
        ),
        Problem(
            "permissions[0].context.user",
            "context.user is ignored by CodeDeploy: the SELinux user is read from 'name'",
        ),
    ]


def test_unknown_users_and_groups_are_warnings() -> None:
    """runas, owner and group names missing on this host are warnings; existing ones are not."""
    text = textwrap.dedent(
        """\
        version: 0.0
        os: linux
        hooks:
          AfterInstall:
            - {location: a, runas: root}
            - {location: b, runas: no-such-user-cd}
        permissions:
          - {object: /a, owner: no-such-user-cd, group: no-such-group-cd}
          - {object: /b, owner: root, group: root}
        """
    )
    missing = "does not exist on this host (the deployment fails on a host without it)"
    warnings = check_appspec(text, filename="appspec.yml").warnings
    assert warnings == [
        Problem(
            "hooks.AfterInstall[1].runas",
            f"user 'no-such-user-cd' {missing}",
        ),
        Problem(
            "permissions[0].owner",
            f"user 'no-such-user-cd' {missing}",
        ),
        Problem(
            "permissions[0].group",
            f"group 'no-such-group-cd' {missing}",
        ),
    ]


def test_archive_checks(archive: Path) -> None:
    """Missing or non-regular scripts and missing sources are errors; non-executable, a warning."""
    scripts = archive / "scripts"
    scripts.mkdir()
    (scripts / "ok.sh").write_text("#!/bin/sh\n")
    (scripts / "ok.sh").chmod(0o755)
    (scripts / "plain.sh").write_text("#!/bin/sh\n")
    (scripts / "plain.sh").chmod(0o644)
    (scripts / "dir.sh").mkdir()
    (archive / "config").mkdir()
    text = textwrap.dedent(
        """\
        version: 0.0
        os: linux
        files:
          - {source: /, destination: /srv}
          - {source: config, destination: /etc/app}
          - {source: missing.conf, destination: /etc/app}
        hooks:
          BeforeInstall:
            - location: scripts/ok.sh
            - location: /scripts/ok.sh
            - location: scripts/plain.sh
            - location: scripts/dir.sh
            - location: scripts/gone.sh
            - location: ../outside.sh
        """
    )
    report = check_appspec(text, filename="appspec.yml", archive_dir=archive)
    assert report.errors == [
        Problem(
            "hooks.BeforeInstall[3].location",
            f"the script at {scripts}/dir.sh is not a regular file",
        ),
        Problem(
            "hooks.BeforeInstall[4].location",
            f"Script does not exist at specified location: {scripts}/gone.sh",
        ),
        Problem(
            "hooks.BeforeInstall[5].location",
            f"Script does not exist at specified location: {archive.parent}/outside.sh",
        ),
        Problem(
            "files[2].source",
            f"source 'missing.conf' does not exist in the revision (expected at "
            f"{archive}/missing.conf); the Install step would fail. Fix the source or add the "
            "file to the bundle.",
        ),
    ]
    assert report.warnings == [
        Problem(
            "hooks.BeforeInstall[2].location",
            f"the script at {scripts}/plain.sh is not executable; the agent makes it executable "
            "(chmod +x) before running it",
        ),
        Problem(
            "hooks.BeforeInstall[5].location",
            "script location '../outside.sh' points outside the revision",
        ),
    ]


def test_archive_checks_skip_entries_with_errors(archive: Path) -> None:
    """Entries that failed to parse are not checked against the archive (no duplicate noise)."""
    text = (
        "version: 0.0\nos: linux\nhooks:\n  AfterInstall:\n    - {location: gone.sh, timeout: x}\n"
    )
    report = check_appspec(text, filename="appspec.yml", archive_dir=archive)
    assert [e.path for e in report.errors] == ["hooks.AfterInstall[0].timeout"]


def test_lambda_appspec_is_checked_with_its_grammar() -> None:
    """A Lambda appspec is recognised and all its errors are collected."""
    text = textwrap.dedent(
        """\
        version: 0.0
        Resources:
          - fn:
              Type: AWS::Lambda::Function
              Properties: {Name: f, CurrentVersion: x, Extra: 1}
        Hooks:
          - BeforeInstall: g
        """
    )
    report = check_appspec(text, filename="appspec.yaml")
    assert report.kind == "lambda"
    assert [e.path for e in report.errors] == [
        "Resources[0].fn.Properties.Alias",
        "Resources[0].fn.Properties.CurrentVersion",
        "Resources[0].fn.Properties.TargetVersion",
        "Hooks[0].BeforeInstall",
    ]
    assert [w.path for w in report.warnings] == ["Resources[0].fn.Properties.Extra"]


def test_ecs_appspec_is_checked_with_its_grammar() -> None:
    """An ECS appspec is recognised and checked."""
    text = (
        "version: 0.0\nResources:\n  - s:\n      Type: AWS::ECS::Service\n"
        "      Properties: {TaskDefinition: td}\n"
    )
    report = check_appspec(text, filename="appspec.yaml")
    assert report.kind == "ecs"
    assert [e.path for e in report.errors] == ["Resources[0].s.Properties.LoadBalancerInfo"]


def test_unknown_serverless_kind() -> None:
    """Resources of an unknown Type (and no os) is one error at Resources."""
    report = check_appspec(
        "version: 0.0\nResources: [{b: {Type: AWS::S3::Bucket}}]\n", filename="a.yml"
    )
    assert report.kind == "unknown"
    assert [e.path for e in report.errors] == ["Resources"]

"""The real agent's end-to-end scenarios (reference §10.3), run through `codedeploy-agent local`."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from tests.local.conftest import Host, RunCli
from tests.local.helpers import (
    FIRST_DEPLOY_PROOF,
    SECOND_DEPLOY_PROOF,
    proof_script,
    tar_bundle,
    write_sample_bundle,
    zip_bundle,
)

SAMPLE_ENTRIES = {
    "appspec.yml",
    "appspec_override.yaml",
    "appspec_override_file_exists_behavior_disallow.yaml",
    "appspec_override_file_exists_behavior_overwrite.yaml",
    "appspec_override_file_exists_behavior_retain.yaml",
    "scripts",
}


def event_table(out: str) -> list[str]:
    """The per-event lines and the summary line of a run, durations replaced by `N`."""
    return [
        re.sub(r"\d+\.\d\d s$", "N s", line)
        for line in out.splitlines()
        if re.match(r"  \w", line) or line.startswith("Summary: ")
    ]


def assert_layout(host: Host, deployments: int, entries: set[str] = SAMPLE_ENTRIES) -> Path:
    """The step definitions of the real agent's features (reference §10.2)."""
    root = host.root_dir
    assert {"deployment-instructions", "deployment-logs", "default-local-deployment-group"} <= {
        p.name for p in root.iterdir()
    }
    assert [p.name for p in (root / "deployment-logs").iterdir()] == [
        "codedeploy-agent-deployments.log"
    ]
    dirs = host.deployment_dirs()
    assert len(dirs) == deployments
    newest = max(dirs, key=lambda p: p.stat().st_mtime)
    assert {"logs", "deployment-archive"} <= {p.name for p in newest.iterdir()}
    assert {p.name for p in (newest / "deployment-archive").iterdir()} == entries
    return newest


def test_first_deploy_of_a_directory_skips_stop_and_block_hooks(
    host: Host, sample_bundle: Path, run_cli: RunCli
) -> None:
    """Scenario 1: a first deployment runs no BlockTraffic/ApplicationStop hooks."""
    result = run_cli("-l", str(sample_bundle), "-t", "directory")
    assert result.status == 0, result.out + result.err
    assert host.proof() == FIRST_DEPLOY_PROOF
    newest = assert_layout(host, 1)
    assert "AppSpec file valid. Local deployment successful" in result.out
    assert f"Starting to execute deployment from within folder {newest}" in result.out
    assert f"See the deployment log at {newest}/logs/scripts.log for more details" in result.out
    assert re.search(r"d-[A-Z0-9]{9}-local$", newest.name)
    # Nothing to stop yet: those events succeed without scripts, as CodeDeploy reports them.
    assert event_table(result.out) == [
        "  BeforeBlockTraffic   Succeeded (no scripts)    N s",
        "  AfterBlockTraffic    Succeeded (no scripts)    N s",
        "  ApplicationStop      Succeeded (no scripts)    N s",
        "  DownloadBundle       Succeeded                 N s",
        "  BeforeInstall        Succeeded                 N s",
        "  Install              Succeeded                 N s",
        "  AfterInstall         Succeeded                 N s",
        "  ApplicationStart     Succeeded                 N s",
        "  ValidateService      Succeeded                 N s",
        "  BeforeAllowTraffic   Succeeded                 N s",
        "  AfterAllowTraffic    Succeeded                 N s",
        "Summary: 11 succeeded (3 without scripts), 0 failed, 0 not run in N s",
    ]
    pointers = host.root_dir / "deployment-instructions"
    group = "default-local-deployment-group"
    assert (pointers / f"{group}_last_successful_install").read_text() == str(newest)
    assert (pointers / f"{group}_most_recent_install").read_text() == str(newest)
    assert (pointers / f"{group}-install.json").exists()


def test_second_deploy_runs_stop_hooks_from_the_previous_revision(
    host: Host, sample_bundle: Path, run_cli: RunCli
) -> None:
    """Scenario 2: the second deployment runs the Stop/Block hooks of the first revision."""
    assert run_cli("-l", str(sample_bundle)).status == 0
    # Change the bundle: the stop hook must still come from the *previous* revision.
    (sample_bundle / "scripts" / "application_stop.sh").write_text(
        proof_script("ApplicationStopFromNewRevision")
    )
    result = run_cli("-l", str(sample_bundle))
    assert result.status == 0, result.out
    assert host.proof() == FIRST_DEPLOY_PROOF + SECOND_DEPLOY_PROOF
    assert len(host.deployment_dirs()) == 2


def test_relative_directory_path(host: Host, sample_bundle: Path, run_cli: RunCli) -> None:
    """Scenario 3: a relative bundle path deploys like an absolute one."""
    result = run_cli("-l", "bundle", "-t", "directory", cwd=sample_bundle.parent)
    assert result.status == 0, result.out
    assert host.proof() == FIRST_DEPLOY_PROOF


def test_default_location_is_the_current_directory(
    host: Host, sample_bundle: Path, run_cli: RunCli
) -> None:
    """Without -l, codedeploy-local deploys the current directory."""
    result = run_cli(cwd=sample_bundle)
    assert result.status == 0, result.out
    assert host.proof() == FIRST_DEPLOY_PROOF


def test_zip_tar_and_tgz_bundles(
    host: Host, sample_bundle: Path, run_cli: RunCli, tmp_path: Path
) -> None:
    """Scenario 3: zip, tar and tgz bundles deploy like the directory (each a first deploy)."""
    bundles = {
        "zip": zip_bundle(sample_bundle, tmp_path / "b.zip"),
        "tar": tar_bundle(sample_bundle, tmp_path / "b.tar"),
        "tgz": tar_bundle(sample_bundle, tmp_path / "b.tgz", gz=True),
    }
    for kind, bundle in bundles.items():
        group = f"group-{kind}"
        result = run_cli("-l", str(bundle), "-t", kind, "-g", group)
        assert result.status == 0, result.out
        (dep,) = host.deployment_dirs(group)
        assert {p.name for p in (dep / "deployment-archive").iterdir()} == SAMPLE_ENTRIES
        assert (dep / "bundle.tar").is_symlink()
    assert host.proof() == FIRST_DEPLOY_PROOF * 3


def test_zip_with_a_single_top_level_folder_is_stripped(
    host: Host, sample_bundle: Path, run_cli: RunCli, tmp_path: Path
) -> None:
    """Scenario 4: a zip whose single folder holds the appspec deploys as if unwrapped."""
    bundle = zip_bundle(sample_bundle, tmp_path / "zipped_directory.zip", top="zipped_directory")
    result = run_cli("-l", str(bundle), "-t", "zip")
    assert result.status == 0, result.out
    assert host.proof() == FIRST_DEPLOY_PROOF
    assert_layout(host, 1)


def test_custom_event(host: Host, run_cli: RunCli, tmp_path: Path) -> None:
    """Scenario 7: `-e ApplicationStart,CustomEvent` runs exactly those hooks."""
    bundle = write_sample_bundle(tmp_path / "custom", ("ApplicationStart", "CustomEvent"))
    for extra in bundle.glob("appspec_override*"):
        extra.unlink()
    result = run_cli("-l", str(bundle), "-e", "ApplicationStart,CustomEvent")
    assert result.status == 0, result.out
    assert host.proof() == ["ApplicationStart", "CustomEvent"]
    assert_layout(host, 1, {"appspec.yml", "scripts"})


def test_custom_hook_not_requested_fails_install(
    host: Host, run_cli: RunCli, tmp_path: Path
) -> None:
    """An appspec hook outside the default and requested events fails Install (reference §3.6)."""
    bundle = write_sample_bundle(tmp_path / "custom", ("ApplicationStart", "CustomEvent"))
    result = run_cli("-l", str(bundle))
    assert result.status == 1
    assert 'appspec.yml file contains unknown lifecycle events: ["CustomEvent"]' in result.out
    assert host.proof() == []


def test_requested_custom_event_missing_from_appspec_fails(
    host: Host, sample_bundle: Path, run_cli: RunCli
) -> None:
    """A requested custom event that the appspec lacks fails Install with the real message."""
    result = run_cli("-l", str(sample_bundle), "-e", "ApplicationStart,NotThere")
    assert result.status == 1
    assert (
        "You specified a lifecycle event which is not a default one and doesn't exist in your "
        "appspec.yml file: NotThere"
    ) in result.out


def test_subset_of_events(host: Host, sample_bundle: Path, run_cli: RunCli) -> None:
    """Scenario 8: `-e BeforeInstall,ApplicationStart` runs only those two hooks."""
    result = run_cli("-l", str(sample_bundle), "-e", "BeforeInstall,ApplicationStart")
    assert result.status == 0, result.out
    assert host.proof() == ["BeforeInstall", "ApplicationStart"]
    # DownloadBundle and Install were prepended: the summary lists them first.
    order = re.findall(r"^  (\w+)\s+(?:Succeeded|Skipped)", result.out, re.MULTILINE)
    assert order == ["DownloadBundle", "Install", "BeforeInstall", "ApplicationStart"]


def _collision_bundle(tmp_path: Path, target: Path, behavior: str | None) -> Path:
    bundle = tmp_path / f"collide-{behavior}"
    bundle.mkdir()
    (bundle / "file-to-potentially-overwrite").write_text("from the bundle\n")
    spec = f"version: 0.0\nos: linux\nfiles:\n  - source: file-to-potentially-overwrite\n    destination: {target}\n"
    if behavior:
        spec += f"file_exists_behavior: {behavior}\n"
    (bundle / "appspec.yml").write_text(spec)
    return bundle


def _existing_target(tmp_path: Path) -> Path:
    target = tmp_path / "target"
    target.mkdir()
    (target / "file-to-potentially-overwrite").write_text("original\n")
    return target


def test_existing_file_without_flag_fails(host: Host, run_cli: RunCli, tmp_path: Path) -> None:
    """Scenario 9: a pre-existing destination file fails the deployment by default (DISALLOW)."""
    target = _existing_target(tmp_path)
    result = run_cli("-l", str(_collision_bundle(tmp_path, target, None)))
    assert result.status == 1
    assert (
        "The deployment failed because a specified file already exists at this location: "
        f"{target}/file-to-potentially-overwrite"
    ) in result.out
    assert (target / "file-to-potentially-overwrite").read_text() == "original\n"


def test_overwrite_and_retain_flags(host: Host, run_cli: RunCli, tmp_path: Path) -> None:
    """Scenario 10: -b OVERWRITE replaces the file, -b RETAIN keeps the original."""
    target = _existing_target(tmp_path)
    bundle = _collision_bundle(tmp_path, target, None)
    assert run_cli("-l", str(bundle), "-b", "RETAIN").status == 0
    assert (target / "file-to-potentially-overwrite").read_text() == "original\n"
    # The cleanup of the RETAIN deployment does not remove the retained file...
    assert run_cli("-l", str(bundle), "-b", "overwrite").status == 0
    assert (target / "file-to-potentially-overwrite").read_text() == "from the bundle\n"


def test_appspec_behavior_beats_the_flag(host: Host, run_cli: RunCli, tmp_path: Path) -> None:
    """Scenario 11: the appspec's file_exists_behavior wins over the default and over -b."""
    cases = {
        "DISALLOW": (1, "original\n"),
        "OVERWRITE": (0, "from the bundle\n"),
        "RETAIN": (0, "original\n"),
    }
    for behavior, (status, content) in cases.items():
        target = tmp_path / behavior
        target.mkdir()
        (target / "file-to-potentially-overwrite").write_text("original\n")
        bundle = _collision_bundle(tmp_path, target, behavior)
        flag = "OVERWRITE" if behavior == "DISALLOW" else "DISALLOW"
        result = run_cli("-l", str(bundle), "-b", flag, "-g", f"g-{behavior}")
        assert result.status == status, (behavior, result.out)
        assert (target / "file-to-potentially-overwrite").read_text() == content


def test_appspec_filename_override(host: Host, sample_bundle: Path, run_cli: RunCli) -> None:
    """Scenario 12: -A picks another appspec; a missing one is refused up front."""
    assert run_cli("-l", str(sample_bundle), "-A", "appspec_override.yaml").status == 0
    assert host.proof() == FIRST_DEPLOY_PROOF
    missing = run_cli("-l", str(sample_bundle), "-A", "appspec_nonexistent.yaml")
    assert missing.status == 1
    assert (
        f"ERROR: Expecting appspec file at location {sample_bundle}/appspec_nonexistent.yaml but "
        "it is not found there."
    ) in missing.out


def test_appspec_yaml_fallback_for_hooks(host: Host, sample_bundle: Path, run_cli: RunCli) -> None:
    """A bundle with only appspec.yaml installs AND runs its hooks (the real agent's quirk fixed)."""
    (sample_bundle / "appspec.yml").rename(sample_bundle / "appspec.yaml")
    result = run_cli("-l", str(sample_bundle))
    assert result.status == 0, result.out
    assert host.proof() == FIRST_DEPLOY_PROOF


def test_failing_script_reports_its_path_and_log(
    host: Host, sample_bundle: Path, run_cli: RunCli
) -> None:
    """A failing hook stops the deployment with codedeploy-local's messages and exit 1."""
    (sample_bundle / "scripts" / "application_start.sh").write_text(
        "#!/bin/bash\necho starting\necho broken >&2\nexit 3\n"
    )
    result = run_cli("-l", str(sample_bundle))
    assert result.status == 1
    (dep,) = host.deployment_dirs()
    assert (
        "Your local deployment failed while trying to execute your script at "
        f"{dep}/deployment-archive/scripts/application_start.sh"
    ) in result.out
    assert (
        "ScriptFailed: Script at specified location: scripts/application_start.sh failed with exit code 3"
        in result.out
    )
    assert host.proof() == ["BeforeInstall", "AfterInstall"]
    log = (dep / "logs" / "scripts.log").read_text()
    assert re.search(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d LifecycleEvent - ApplicationStart\n"
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d Script - scripts/application_start.sh\n"
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[stdout\]starting\n"
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[stderr\]broken\n",
        log,
        re.MULTILINE,
    ), log
    # Events after the failure did not run.
    assert re.search(r"ValidateService\s+Not run", result.out)


def test_deployments_log_format(host: Host, sample_bundle: Path, run_cli: RunCli) -> None:
    """Every script line is copied to the agent-wide deployments log in the real format."""
    assert run_cli("-l", str(sample_bundle)).status == 0
    (dep,) = host.deployment_dirs()
    lines = (
        (host.root_dir / "deployment-logs" / "codedeploy-agent-deployments.log")
        .read_text()
        .splitlines()
    )
    pattern = re.compile(
        rf"^\[\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{{3}}\] \[{dep.name}\]"
        r"(LifecycleEvent - \w+|Script - scripts/\w+\.sh)$"
    )
    assert lines
    assert all(pattern.match(line) for line in lines), lines
    assert sum("LifecycleEvent - " in line for line in lines) == len(FIRST_DEPLOY_PROOF)


def test_stale_last_successful_pointer_does_not_block(
    host: Host, sample_bundle: Path, run_cli: RunCli
) -> None:
    """A last-successful revision deleted by hand skips its ApplicationStop instead of failing:
    the table shows those events Skipped, each with why, and the summary counts them."""
    assert run_cli("-l", str(sample_bundle)).status == 0
    (first,) = host.deployment_dirs()
    shutil.rmtree(first)
    result = run_cli("-l", str(sample_bundle))
    assert result.status == 0, result.out
    pointer = (
        host.root_dir
        / "deployment-instructions"
        / "default-local-deployment-group_last_successful_install"
    )
    assert (
        f"      Skipped ApplicationStop: the previous revision's directory "
        f"{first}/deployment-archive no longer exists (named in {pointer}), so its "
        "ApplicationStop scripts cannot run. If the old application is still running, stop it "
        "by hand.\n"
    ) in result.out
    assert event_table(result.out)[:3] == [
        "  BeforeBlockTraffic   Skipped                   N s",
        "  AfterBlockTraffic    Skipped                   N s",
        "  ApplicationStop      Skipped                   N s",
    ]
    assert event_table(result.out)[-1] == (
        "Summary: 8 succeeded, 3 skipped, 0 failed, 0 not run in N s"
    )
    assert host.proof() == FIRST_DEPLOY_PROOF * 2


def test_files_removed_by_hand_do_not_block_the_next_deployment(
    host: Host, run_cli: RunCli, tmp_path: Path
) -> None:
    """The cleanup file names files an operator deleted; the next deployment still succeeds."""
    bundle = tmp_path / "app"
    (bundle / "site").mkdir(parents=True)
    (bundle / "site" / "index.html").write_text("v1\n")
    (bundle / "site" / "old.html").write_text("old\n")
    dest = tmp_path / "www"
    (bundle / "appspec.yml").write_text(
        f"version: 0.0\nos: linux\nfiles:\n  - source: site\n    destination: {dest}\n"
    )
    assert run_cli("-l", str(bundle)).status == 0
    assert (dest / "old.html").exists()
    shutil.rmtree(dest)  # an operator cleans up by hand
    (bundle / "site" / "old.html").unlink()
    (bundle / "site" / "index.html").write_text("v2\n")
    result = run_cli("-l", str(bundle))
    assert result.status == 0, result.out
    assert (dest / "index.html").read_text() == "v2\n"
    assert not (dest / "old.html").exists()
    cleanup = host.root_dir / "deployment-instructions" / "default-local-deployment-group-cleanup"
    assert cleanup.read_text() == f"{dest}\n{dest}/index.html\n"


def test_max_revisions_keeps_the_newest(host: Host, sample_bundle: Path, run_cli: RunCli) -> None:
    """With max_revisions 2, a third deployment removes the oldest revision directory."""
    host.config.write_text(
        host.config.read_text().replace(":max_revisions: 5", ":max_revisions: 2")
    )
    for _ in range(3):
        assert run_cli("-l", str(sample_bundle)).status == 0
    dirs = host.deployment_dirs()
    assert len(dirs) == 2
    last = (
        host.root_dir
        / "deployment-instructions"
        / "default-local-deployment-group_last_successful_install"
    ).read_text()
    assert last in {str(d) for d in dirs}


def test_validation_messages(
    host: Host, sample_bundle: Path, run_cli: RunCli, tmp_path: Path
) -> None:
    """codedeploy-local's argument checks print `ERROR: <message>` and exit 1 (reference §9.3)."""
    archive = tar_bundle(sample_bundle, tmp_path / "b.tar")
    cases = [
        (
            ["-l", str(sample_bundle), "-t", "rar"],
            "type rar is not a valid type. Must be one of tgz,tar,zip,directory",
        ),
        (
            ["-l", "http://example.invalid/b.zip", "-t", "zip"],
            "location http://example.invalid/b.zip cannot be http, only encrypted (https) url endpoints supported",
        ),
        (
            ["-l", str(tmp_path / "nope")],
            f"location {tmp_path / 'nope'} is specified as a file or directory which does not exist",
        ),
        (
            ["-l", str(archive), "-t", "directory"],
            f"location {archive} is specified with type directory but it is a file",
        ),
        (
            ["-l", str(sample_bundle), "-t", "zip"],
            f"location {sample_bundle} is specified as a compressed local file but it is a directory",
        ),
        (
            ["-l", str(tmp_path)],
            f"Expecting appspec file at location {tmp_path}/appspec.yml or {tmp_path}/appspec.yaml but it is not found there.",
        ),
        (
            ["-l", str(sample_bundle), "-e", "ApplicationStart,DownloadBundle"],
            "The only events that can be specified before DownloadBundle are BeforeBlockTraffic,AfterBlockTraffic,ApplicationStop. Please fix the order of your specified events: ApplicationStart,DownloadBundle",
        ),
        (
            ["-l", str(sample_bundle), "-e", "AfterInstall,Install"],
            "The only events that can be specified before Install are BeforeBlockTraffic,AfterBlockTraffic,ApplicationStop,DownloadBundle,BeforeInstall. Please fix the order of your specified events: AfterInstall,Install",
        ),
        (
            ["-l", "ftp://host/b.zip", "-t", "zip"],
            # As in codedeploy-local, the existence check comes before the scheme check.
            "location ftp://host/b.zip is specified as a file or directory which does not exist",
        ),
    ]
    for args, message in cases:
        result = run_cli(*args)
        assert result.status == 1, args
        assert f"ERROR: {message}" in result.out, (args, result.out, result.err)
    assert host.proof() == []


def test_missing_config_file(run_cli: RunCli, sample_bundle: Path, tmp_path: Path) -> None:
    """-c with a missing file is refused with codedeploy-local's message."""
    result = run_cli("-l", str(sample_bundle), "-c", str(tmp_path / "none.yml"), config=False)
    assert result.status == 1
    assert f"configuration file {tmp_path / 'none.yml'} does not exist or is not readable" in (
        result.out + result.err
    )


def test_install_alone_gets_download_bundle_in_front(
    host: Host, sample_bundle: Path, run_cli: RunCli
) -> None:
    """`-e Install,ApplicationStart` runs DownloadBundle first (it is prepended)."""
    result = run_cli("-l", str(sample_bundle), "-e", "Install,ApplicationStart")
    assert result.status == 0, result.out
    order = re.findall(r"^  (\w+)\s+(?:Succeeded|Skipped)", result.out, re.MULTILINE)
    assert order == ["DownloadBundle", "Install", "ApplicationStart"]

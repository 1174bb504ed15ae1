"""The lifecycle executor: event order, revision selection, reporting, and host state."""

from __future__ import annotations

import asyncio
import json
import shutil
from datetime import datetime
from pathlib import Path

import psutil
import pytest

from codedeploy_agent.config import AgentConfig, HookSettings
from codedeploy_agent.diagnostics import MAX_PAYLOAD_CHARS, NOOP_MESSAGE, Diagnostics
from codedeploy_agent.errors import ErrorCode, ScriptError
from codedeploy_agent.executor import (
    DeploymentExecutor,
    DeploymentResult,
    EventResult,
    EventStatus,
)
from codedeploy_agent.lifecycle import DEFAULT_ORDER
from codedeploy_agent.spec import BundleType, DeploymentSpec, LocalRevision, RevisionType

GROUP = "dg-1"


class Recorder:
    """A ProgressReporter that records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.results: list[EventResult] = []

    async def event_started(self, event: str, started_at: datetime) -> None:
        self.calls.append(("started", event))

    async def event_finished(self, result: EventResult) -> None:
        self.calls.append(("finished", result.event))
        self.results.append(result)

    async def scripts_starting(self, event: str, timeout_seconds: int) -> None:
        self.calls.append(("scripts", f"{event}:{timeout_seconds}"))


def bundle(base: Path, name: str, scripts: dict[str, str]) -> Path:
    """A directory bundle whose hooks are the given `event -> shell body` scripts."""
    root = base / name
    (root / "scripts").mkdir(parents=True)
    lines = ["version: 0.0", "os: linux", "hooks:"]
    for event, body in scripts.items():
        path = root / "scripts" / f"{event}.sh"
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
        lines += [f"  {event}:", f"    - location: scripts/{event}.sh", "      timeout: 30"]
    (root / "appspec.yml").write_text("\n".join(lines) + "\n")
    return root


def spec(
    location: Path,
    deployment_id: str,
    events: tuple[str, ...] = DEFAULT_ORDER,
    **kwargs: object,
) -> DeploymentSpec:
    return DeploymentSpec(
        deployment_id=deployment_id,
        deployment_group_id=GROUP,
        deployment_group_name="web",
        application_name="shop",
        revision=LocalRevision(str(location), BundleType.DIRECTORY, RevisionType.LOCAL_DIRECTORY),
        lifecycle_events=events,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def executor(tmp_path: Path) -> DeploymentExecutor:
    config = AgentConfig(
        root_dir=tmp_path / "root",
        log_dir=tmp_path / "logs",
        hooks=HookSettings(kill_grace_seconds=0.5),
    )
    return DeploymentExecutor(config)


def record(event: str) -> str:
    """A script body that appends `<event> <revision dir name>` to $PROOF."""
    return f'echo "{event} $(basename "$(dirname "$(pwd)")")" >> "$PROOF"'


@pytest.mark.asyncio
async def test_reporter_sees_every_event_in_order(
    executor: DeploymentExecutor, tmp_path: Path
) -> None:
    """Each event is reported started then finished, in the spec's order; noops Succeed."""
    src = bundle(tmp_path, "v1", {"ApplicationStart": "exit 0"})
    recorder = Recorder()
    result = await executor.run(spec(src, "d-1"), recorder)
    assert result.succeeded
    expected = []
    for event in DEFAULT_ORDER:
        expected.append(("started", event))
        if event == "ApplicationStart":
            expected.append(("scripts", "ApplicationStart:30"))
        expected.append(("finished", event))
    assert recorder.calls == expected
    statuses = {r.event: r.status for r in recorder.results}
    assert statuses["ApplicationStart"] is EventStatus.SUCCEEDED
    assert statuses["DownloadBundle"] is EventStatus.SUCCEEDED
    assert statuses["Install"] is EventStatus.SUCCEEDED
    assert statuses["ApplicationStop"] is EventStatus.SUCCEEDED  # no previous revision
    assert statuses["ValidateService"] is EventStatus.SUCCEEDED  # no scripts
    assert [r.event for r in recorder.results if r.noop] == [
        "BeforeBlockTraffic",
        "AfterBlockTraffic",
        "ApplicationStop",
        "BeforeInstall",
        "AfterInstall",
        "ValidateService",
        "BeforeAllowTraffic",
        "AfterAllowTraffic",
    ]
    assert all(r.ended_at >= r.started_at for r in recorder.results)


@pytest.mark.asyncio
async def test_events_without_scripts_succeed_as_noops(
    executor: DeploymentExecutor, tmp_path: Path
) -> None:
    """A first deployment's ApplicationStop and an event the appspec has no scripts for end
    Succeeded with the real agent's noop message; an event whose scripts ran does not."""
    src = bundle(tmp_path, "v1", {"AfterInstall": "exit 0"})
    events = ("ApplicationStop", "DownloadBundle", "BeforeInstall", "Install", "AfterInstall")
    result = await executor.run(spec(src, "d-1", events))
    assert result.succeeded
    noop = Diagnostics(ErrorCode.SUCCEEDED, "", NOOP_MESSAGE, "")
    ran = Diagnostics(ErrorCode.SUCCEEDED, "", "Succeeded: ", "")
    assert [(e.event, e.status, e.noop, e.diagnostics) for e in result.events] == [
        ("ApplicationStop", EventStatus.SUCCEEDED, True, noop),  # no previous revision
        ("DownloadBundle", EventStatus.SUCCEEDED, False, ran),
        ("BeforeInstall", EventStatus.SUCCEEDED, True, noop),  # no scripts in the appspec
        ("Install", EventStatus.SUCCEEDED, False, ran),
        ("AfterInstall", EventStatus.SUCCEEDED, False, ran),
    ]
    assert noop.to_json() == (
        '{"error_code":0,"script_name":"","message":"Succeeded: CompletedNoopCommand","log":""}'
    )


@pytest.mark.asyncio
async def test_deleted_previous_revision_skips_its_stop_hooks(
    executor: DeploymentExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the last successful revision's directory was deleted by hand, its stop hooks are
    Skipped (not noops: the scripts exist but cannot run) with a message saying what to do,
    and the deployment goes on."""
    proof = tmp_path / "proof"
    monkeypatch.setenv("PROOF", str(proof))
    events = {"ApplicationStop": record("ApplicationStop"), "AfterInstall": record("AfterInstall")}
    assert (await executor.run(spec(bundle(tmp_path, "v1", events), "d-1"))).succeeded
    old = executor.root.deployment(GROUP, "d-1")
    shutil.rmtree(old.path)
    result = await executor.run(spec(bundle(tmp_path, "v2", events), "d-2"))
    assert result.succeeded
    stops = [e for e in result.events if e.status is EventStatus.SKIPPED]
    assert [e.event for e in stops] == [
        "BeforeBlockTraffic",
        "AfterBlockTraffic",
        "ApplicationStop",
    ]
    stop = stops[-1]
    assert not stop.noop
    pointer = executor.root.last_successful_file(GROUP)
    assert stop.diagnostics == Diagnostics(
        ErrorCode.SUCCEEDED,
        "",
        f"Skipped ApplicationStop: the previous revision's directory {old.archive} no longer "
        f"exists (named in {pointer}), so its ApplicationStop scripts cannot run. If the old "
        "application is still running, stop it by hand.",
        "",
    )
    assert proof.read_text().splitlines() == ["AfterInstall d-1", "AfterInstall d-2"]


@pytest.mark.asyncio
async def test_hook_environment(executor: DeploymentExecutor, tmp_path: Path) -> None:
    """Hooks get CodeDeploy's variables, the spec's extra ones, and the archive as cwd."""
    out = tmp_path / "env.txt"
    src = bundle(tmp_path, "v1", {"AfterInstall": f'env > "{out}"; pwd >> "{out}"'})
    s = spec(src, "d-ENV", environment={"EXTRA_VALUE": "from-the-job"})
    assert (await executor.run(s)).succeeded
    lines = out.read_text().splitlines()
    env = dict(line.split("=", 1) for line in lines[:-1] if "=" in line)
    assert env["LIFECYCLE_EVENT"] == "AfterInstall"
    assert env["DEPLOYMENT_ID"] == "d-ENV"
    assert env["APPLICATION_NAME"] == "shop"
    assert env["DEPLOYMENT_GROUP_NAME"] == "web"
    assert env["DEPLOYMENT_GROUP_ID"] == GROUP
    assert env["EXTRA_VALUE"] == "from-the-job"
    assert "BUNDLE_BUCKET" not in env
    assert lines[-1] == str(executor.root.deployment(GROUP, "d-ENV").archive)


@pytest.mark.asyncio
async def test_stop_hooks_come_from_the_last_successful_revision(
    executor: DeploymentExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ApplicationStop runs the previous revision's script; BeforeInstall the new one's."""
    proof = tmp_path / "proof"
    monkeypatch.setenv("PROOF", str(proof))
    events = {
        "ApplicationStop": record("ApplicationStop"),
        "BeforeInstall": record("BeforeInstall"),
    }
    v1 = bundle(tmp_path, "v1", events)
    v2 = bundle(tmp_path, "v2", events)
    assert (await executor.run(spec(v1, "d-1"))).succeeded
    assert (await executor.run(spec(v2, "d-2"))).succeeded
    assert proof.read_text().splitlines() == [
        "BeforeInstall d-1",
        "ApplicationStop d-1",
        "BeforeInstall d-2",
    ]


@pytest.mark.asyncio
async def test_blue_green_rollback_revision_mapping(
    executor: DeploymentExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A BLUE_GREEN codeDeployRollback runs BlockTraffic hooks from the most recent revision
    and AllowTraffic hooks from the last successful one (reference §1.4)."""
    proof = tmp_path / "proof"
    monkeypatch.setenv("PROOF", str(proof))
    events = {e: record(e) for e in ("BeforeBlockTraffic", "BeforeAllowTraffic")}
    v1 = bundle(tmp_path, "v1", events)
    v2 = bundle(tmp_path, "v2", events)
    assert (await executor.run(spec(v1, "d-1", ("DownloadBundle", "Install")))).succeeded
    # v2 is downloaded but never installed: most recent = d-2, last successful = d-1.
    assert (await executor.run(spec(v2, "d-2", ("DownloadBundle",)))).succeeded
    rollback = spec(
        v1,
        "d-3",
        ("BeforeBlockTraffic", "BeforeAllowTraffic"),
        deployment_creator="codeDeployRollback",
        deployment_type="BLUE_GREEN",
    )
    assert (await executor.run(rollback)).succeeded
    # A normal deployment would take BeforeBlockTraffic from the last successful revision.
    normal = spec(v1, "d-4", ("BeforeBlockTraffic",))
    assert (await executor.run(normal)).succeeded
    assert proof.read_text().splitlines() == [
        "BeforeBlockTraffic d-2",
        "BeforeAllowTraffic d-1",
        "BeforeBlockTraffic d-1",
    ]


@pytest.mark.asyncio
async def test_ignore_application_stop_failures(
    executor: DeploymentExecutor, tmp_path: Path
) -> None:
    """A failing ApplicationStop of the previous revision fails the deployment unless ignored."""
    broken = bundle(tmp_path, "broken", {"ApplicationStop": "echo cannot stop >&2; exit 1"})
    fixed = bundle(tmp_path, "fixed", {"ApplicationStop": "exit 0"})
    assert (await executor.run(spec(broken, "d-1"))).succeeded
    failed = await executor.run(spec(fixed, "d-2"))
    assert not failed.succeeded
    assert failed.failure is not None
    assert failed.failure.event == "ApplicationStop"
    assert failed.failure.diagnostics.code is ErrorCode.SCRIPT_FAILED
    assert "[stderr]cannot stop" in failed.failure.diagnostics.log
    assert [e.event for e in failed.events] == [
        "BeforeBlockTraffic",
        "AfterBlockTraffic",
        "ApplicationStop",
    ]
    ignored = await executor.run(spec(fixed, "d-3", ignore_application_stop_failures=True))
    assert ignored.succeeded
    stop = next(e for e in ignored.events if e.event == "ApplicationStop")
    assert stop.status is EventStatus.FAILED
    assert stop.ignored
    assert len(ignored.events) == len(DEFAULT_ORDER)


@pytest.mark.asyncio
async def test_ongoing_deployment_marker(executor: DeploymentExecutor, tmp_path: Path) -> None:
    """With a tracking id, `ongoing-deployment/<id>` holds it while the deployment runs."""
    seen = tmp_path / "seen"
    ongoing = executor.root.ongoing
    src = bundle(tmp_path, "v1", {"AfterInstall": f'cat "{ongoing}/d-T" > "{seen}"'})
    assert (await executor.run(spec(src, "d-T"), tracking_id="job-42")).succeeded
    assert seen.read_text() == "job-42"
    assert not (ongoing / "d-T").exists()


@pytest.mark.asyncio
async def test_cancel_kills_the_running_hook(executor: DeploymentExecutor, tmp_path: Path) -> None:
    """Cancelling a deployment mid-hook kills the script's process tree and ends the run."""
    pidfile = tmp_path / "pid"
    src = bundle(tmp_path, "v1", {"ApplicationStart": f'echo $$ > "{pidfile}"; sleep 300'})
    task = asyncio.create_task(executor.run(spec(src, "d-C")))
    for _ in range(200):
        if pidfile.exists() and pidfile.read_text().strip():
            break
        await asyncio.sleep(0.05)
    pid = int(pidfile.read_text())
    assert psutil.pid_exists(pid)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.2)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@pytest.mark.asyncio
async def test_bad_appspec_fails_install_with_unknown_error(
    executor: DeploymentExecutor, tmp_path: Path
) -> None:
    """An invalid appspec fails the first event that reads it (BeforeInstall, as the real agent)
    with UnknownError and CodeDeploy's message, and nothing is recorded as installed."""
    src = tmp_path / "bad"
    src.mkdir()
    (src / "appspec.yml").write_text("version: 1.0\nos: linux\n")
    result = await executor.run(spec(src, "d-BAD"))
    assert result.failure is not None
    assert result.failure.event == "BeforeInstall"
    assert result.failure.diagnostics.code is ErrorCode.UNKNOWN_ERROR
    assert result.failure.diagnostics.message.startswith(
        "The deployment failed because an invalid version value (1.0) was entered"
    )
    last = executor.root.last_successful_file(GROUP)
    assert not last.exists()


def test_diagnostics_json_shape() -> None:
    """The payload keeps the real agent's key order and stays within 8,192 characters."""
    ok = Diagnostics.succeeded()
    assert ok.to_json() == '{"error_code":0,"script_name":"","message":"Succeeded: ","log":""}'
    error = ScriptError(ErrorCode.SCRIPT_FAILED, "scripts/x.sh", "failed", log="é" * 20000)
    payload = Diagnostics.from_error(error).to_json()
    assert len(payload) <= MAX_PAYLOAD_CHARS
    decoded = json.loads(payload)
    assert list(decoded) == ["error_code", "script_name", "message", "log"]
    assert decoded["error_code"] == 4
    assert decoded["log"].endswith("é")
    restart = json.loads(Diagnostics.failed_after_restart().to_json())
    assert restart == {
        "error_code": 7,
        "script_name": "",
        "message": "Failed: Failing in-progress lifecycle event after an agent restart.",
        "log": "",
    }


def write_script(root: Path, name: str, body: str = "exit 0") -> str:
    """An executable `scripts/<name>` in the bundle at `root`; returns its location."""
    path = root / "scripts" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return f"scripts/{name}"


@pytest.mark.asyncio
async def test_step_timer_gets_the_sum_of_an_events_script_timeouts(
    executor: DeploymentExecutor, tmp_path: Path
) -> None:
    """Several scripts of one event report the sum of their timeouts (300 + 150 = 450); a
    script without `timeout` counts CodeDeploy's default of 3,600 s (300 + 3,600 = 3,900)."""
    src = tmp_path / "v1"
    lines = [
        "version: 0.0",
        "os: linux",
        "hooks:",
        "  ApplicationStart:",
        f"    - location: {write_script(src, 'start-a.sh')}",
        "      timeout: 300",
        f"    - location: {write_script(src, 'start-b.sh')}",
        "      timeout: 150",
        "  ValidateService:",
        f"    - location: {write_script(src, 'validate-a.sh')}",
        "      timeout: 300",
        f"    - location: {write_script(src, 'validate-b.sh')}",
    ]
    (src / "appspec.yml").write_text("\n".join(lines) + "\n")
    recorder = Recorder()
    events = ("DownloadBundle", "Install", "ApplicationStart", "ValidateService")

    result = await executor.run(spec(src, "d-1", events), recorder)

    assert result.succeeded, result.failure
    assert [call for call in recorder.calls if call[0] == "scripts"] == [
        ("scripts", "ApplicationStart:450"),
        ("scripts", "ValidateService:3900"),
    ]


def assert_no_appspec_found(executor: DeploymentExecutor, result: DeploymentResult) -> None:
    """The deployment failed its first event for want of its own revision's appspec."""
    archive = executor.root.deployment(GROUP, result.spec.deployment_id).archive
    assert result.failure is result.events[0]
    assert result.failure.diagnostics == Diagnostics(
        ErrorCode.UNKNOWN_ERROR,
        "",
        "The CodeDeploy agent did not find an AppSpec file within the unpacked revision "
        'directory at revision-relative path "appspec.yml". The revision was unpacked to '
        f'directory "{archive}", and the AppSpec file was expected but not found at path '
        f'"{archive}/appspec.yml". Consult the AWS CodeDeploy Appspec documentation for more '
        "information at "
        "http://docs.aws.amazon.com/codedeploy/latest/userguide/reference-appspec-file.html",
        "",
    )


@pytest.mark.asyncio
async def test_validate_service_without_the_revision_unpacked_fails(
    executor: DeploymentExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ValidateService runs from the new revision only: when this deployment has no archive
    (DownloadBundle did not run), it fails with CodeDeploy's "did not find an AppSpec file",
    on a group's first deployment and after a successful one alike (it never falls back to
    the previous revision, whose script does not run)."""
    proof = tmp_path / "proof"
    monkeypatch.setenv("PROOF", str(proof))
    src = bundle(tmp_path, "v1", {"ValidateService": record("ValidateService")})
    only_validate = ("ValidateService",)

    first = await executor.run(spec(src, "d-1", only_validate))
    assert_no_appspec_found(executor, first)
    assert not proof.exists()

    assert (await executor.run(spec(src, "d-2"))).succeeded
    later = await executor.run(spec(src, "d-3", only_validate))
    assert_no_appspec_found(executor, later)
    assert proof.read_text().splitlines() == ["ValidateService d-2"]

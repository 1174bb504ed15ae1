"""`codedeploy-agent local`: the equivalent of the real agent's `codedeploy-local` (reference §9).

Same flags (`-l -t -b -g -d -a -e -c -A`), same event-list rules, same messages and exit codes;
plus live progress and a summary of every event at the end.
"""

from __future__ import annotations

import random
import re
import string
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TextIO
from urllib.parse import parse_qs, urlsplit

from codedeploy_agent.config import AgentConfig
from codedeploy_agent.errors import ErrorCode, LocalUsageError
from codedeploy_agent.executor import DeploymentExecutor, DeploymentResult, EventResult, EventStatus
from codedeploy_agent.lifecycle import (
    BEFORE_DOWNLOAD_BUNDLE,
    BEFORE_INSTALL_EVENTS,
    DEFAULT_ORDER,
    LifecycleEvent,
    RevisionChoice,
    revision_choice,
)
from codedeploy_agent.spec import (
    BundleType,
    DeploymentSpec,
    GitHubRevision,
    LocalRevision,
    Revision,
    RevisionType,
    S3Revision,
)

DEFAULT_GROUP_ID = "default-local-deployment-group"
DEFAULT_GROUP_NAME = "LocalFleet"
VALID_TYPES = ("tgz", "tar", "zip", "directory")
_REQUIRED = (LifecycleEvent.DOWNLOAD_BUNDLE.value, LifecycleEvent.INSTALL.value)
_TAIL_LINES = 10
#: Warnings shown per event; a read-only mount can produce one per file of a revision.
_MAX_WARNINGS_SHOWN = 10
#: Width of the status column: fits "Succeeded (no scripts)", the longest status shown.
_STATUS_WIDTH = 22


@dataclass(frozen=True, slots=True)
class LocalOptions:
    """The flags of `codedeploy-agent local`, as given."""

    bundle_location: str
    bundle_type: str = "directory"
    file_exists_behavior: str = "DISALLOW"
    deployment_group_id: str = DEFAULT_GROUP_ID
    deployment_group_name: str = DEFAULT_GROUP_NAME
    application_name: str | None = None
    events: str | None = None
    appspec_filename: str | None = None
    #: `NAME=ssm:/path` pairs: Parameter Store values handed to hooks as environment variables.
    parameters: tuple[str, ...] = ()


def random_deployment_id() -> str:
    """`d-` + 9 characters from [A-Z0-9] + `-local`, like codedeploy-local."""
    alphabet = string.ascii_uppercase + string.digits
    # Not a secret: an identifier that only has to differ between runs.
    return "d-" + "".join(random.choices(alphabet, k=9)) + "-local"  # noqa: S311


def split_events(events: str | None) -> list[str] | None:
    """`-e a,b,c` -> ["a", "b", "c"]; None when the flag was not given."""
    if events is None:
        return None
    return [e.strip() for e in events.split(",") if e.strip()]


def events_to_run(given: list[str] | None) -> tuple[str, ...]:
    """The default order, or the given events with DownloadBundle/Install prepended when
    missing and swapped when Install comes first (reference §9.3)."""
    events = list(given) if given else list(DEFAULT_ORDER)
    missing = [e for e in _REQUIRED if e not in events]
    events = missing + events
    download, install = events.index(_REQUIRED[0]), events.index(_REQUIRED[1])
    if install < download:
        events[download], events[install] = events[install], events[download]
    return tuple(events)


def all_possible_events(given: list[str] | None) -> tuple[str, ...]:
    """Defaults plus the given events; turns on the hook-name validation at Install."""
    return tuple(dict.fromkeys((*DEFAULT_ORDER, *(given or ()))))


def validate_options(opts: LocalOptions) -> None:
    """codedeploy-local's CLIValidator: raise LocalUsageError with its exact messages."""
    location, kind = opts.bundle_location, opts.bundle_type
    if kind not in VALID_TYPES:
        raise LocalUsageError(
            f"type {kind} is not a valid type. Must be one of {','.join(VALID_TYPES)}"
        )
    try:
        scheme = urlsplit(location).scheme
    except ValueError as exc:
        raise LocalUsageError(f"location {location} is not a valid uri") from exc
    if scheme == "http":
        raise LocalUsageError(
            f"location {location} cannot be http, only encrypted (https) url endpoints supported"
        )
    if scheme not in ("https", "s3"):
        path = Path(location)
        if not path.exists():
            raise LocalUsageError(
                f"location {location} is specified as a file or directory which does not exist"
            )
        if kind == "directory" and path.is_file():
            raise LocalUsageError(
                f"location {location} is specified with type directory but it is a file"
            )
        if kind != "directory" and path.is_dir():
            raise LocalUsageError(
                f"location {location} is specified as a compressed local file but it is a directory"
            )
        if kind == "directory":
            _check_appspec_present(location, opts.appspec_filename)
    events = split_events(opts.events)
    if events:
        _check_event_order(events, opts.events or "")


def _check_appspec_present(location: str, appspec_filename: str | None) -> None:
    if appspec_filename is not None:
        if not Path(location, appspec_filename).exists():
            raise LocalUsageError(
                f"Expecting appspec file at location {location}/{appspec_filename} but it is not "
                "found there. Please either run the CLI from within a directory containing the "
                f"{appspec_filename} file or specify a bundle location containing an "
                f"{appspec_filename} file in its root directory"
            )
        return
    if not Path(location, "appspec.yml").exists() and not Path(location, "appspec.yaml").exists():
        raise LocalUsageError(
            f"Expecting appspec file at location {location}/appspec.yml or {location}/appspec.yaml "
            "but it is not found there. Please either run the CLI from within a directory "
            "containing the appspec.yml or appspec.yaml file or specify a bundle location "
            "containing an appspec.yml or appspec.yaml file in its root directory"
        )


def _uses_new_revision(event: str) -> bool:
    # MAPPING_BETWEEN_HOOKS_AND_DEPLOYMENTS entries that are not "last successful", minus
    # BeforeInstall; custom events are not in that mapping, so they may come anywhere.
    return (
        event in DEFAULT_ORDER
        and event not in (*_REQUIRED, LifecycleEvent.BEFORE_INSTALL)
        and revision_choice(event, creator="user", deployment_type="IN_PLACE") is RevisionChoice.NEW
    )


def _check_event_order(events: list[str], given: str) -> None:
    download, install = _REQUIRED
    if download in events:
        before = events[: events.index(download)]
        if any(_uses_new_revision(e) or e == install for e in before):
            raise LocalUsageError(
                "The only events that can be specified before DownloadBundle are "
                f"{','.join(BEFORE_DOWNLOAD_BUNDLE)}. Please fix the order of your specified "
                f"events: {given}"
            )
    if install in events:
        before = events[: events.index(install)]
        if any(_uses_new_revision(e) for e in before):
            raise LocalUsageError(
                "The only events that can be specified before Install are "
                f"{','.join(BEFORE_INSTALL_EVENTS)}. Please fix the order of your specified "
                f"events: {given}"
            )


def revision_from_location(location: str, bundle_type: str) -> Revision:
    """A local path, `s3://bucket/key[?versionId=..&etag=..]`, or a GitHub URL (§9.2)."""
    parts = urlsplit(location)
    kind = BundleType(bundle_type)
    if parts.scheme == "s3":
        if not parts.path.startswith("/") or len(parts.path) < 2:
            raise LocalUsageError(
                f"s3 location {location} not in the expected format of 's3://bucket/key'"
            )
        query = parse_qs(parts.query)
        return S3Revision(
            bucket=parts.netloc,
            key=parts.path[1:],
            bundle_type=kind,
            version=query.get("versionId", [None])[0],
            etag=query.get("etag", [None])[0],
        )
    if parts.scheme == "https" and (parts.hostname or "").endswith("github.com"):
        return _github_revision(location, parts.hostname or "", parts.path, kind)
    if parts.scheme in ("", "file"):
        path = Path(parts.path if parts.scheme == "file" else location).absolute()
        return LocalRevision(
            location=str(path),
            bundle_type=kind,
            type=RevisionType.LOCAL_DIRECTORY
            if kind is BundleType.DIRECTORY
            else RevisionType.LOCAL_FILE,
        )
    raise LocalUsageError(
        f"unknown location {location} cannot be determined to be S3, Github, "
        "or a local file / directory"
    )


def _github_revision(location: str, host: str, path: str, kind: BundleType) -> GitHubRevision:
    segments = [s for s in path.split("/") if s]
    # GitHub only serves tarballs and zipballs; codedeploy-local forces zip for other types.
    gh_type = kind if kind in (BundleType.ZIP, BundleType.TAR) else BundleType.ZIP
    if host == "github.com" and len(segments) >= 2:
        return GitHubRevision(segments[0], "/".join(segments[1:]), "HEAD", gh_type)
    if len(segments) >= 5 and segments[0] == "repos":
        return GitHubRevision(segments[1], segments[2], segments[-1], gh_type)
    raise LocalUsageError(
        f"github location {location} not in the expected format of "
        "'https://github.com/<owner>/<repository_name>'(assumes HEAD commit) or "
        "'https://api.github.com/repos/<owner>/<repository_name>/tarball/<commit>' or "
        "'https://api.github.com/repos/<owner>/<repository_name>/zipball/<commit>'"
    )


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_parameters(parameters: tuple[str, ...]) -> dict[str, str]:
    """`NAME=ssm:/path` flags -> {NAME: parameter name}; LocalUsageError for a bad one."""
    entries: dict[str, str] = {}
    for given in parameters:
        name, sep, source = given.partition("=")
        if not sep or not _ENV_NAME.fullmatch(name) or not source.startswith("ssm:"):
            raise LocalUsageError(
                f"parameter {given} is not in the expected format NAME=ssm:/parameter/name "
                "(NAME a shell variable name, the value a Parameter Store parameter)"
            )
        parameter = source.removeprefix("ssm:")
        if not parameter:
            raise LocalUsageError(f"parameter {given} names no Parameter Store parameter")
        entries[name] = parameter
    return entries


def build_spec(
    opts: LocalOptions,
    deployment_id: str | None = None,
    environment: dict[str, str] | None = None,
) -> DeploymentSpec:
    """Validate the options and turn them into the spec the executor runs."""
    validate_options(opts)
    given = split_events(opts.events)
    return DeploymentSpec(
        deployment_id=deployment_id or random_deployment_id(),
        deployment_group_id=opts.deployment_group_id,
        deployment_group_name=opts.deployment_group_name,
        application_name=opts.application_name or opts.bundle_location,
        revision=revision_from_location(opts.bundle_location, opts.bundle_type),
        appspec_filename=opts.appspec_filename or "appspec.yml",
        file_exists_behavior=opts.file_exists_behavior.upper(),
        all_possible_lifecycle_events=all_possible_events(given),
        lifecycle_events=events_to_run(given),
        environment=environment or {},
    )


class ConsoleReporter:
    """Prints one line per lifecycle event, live: the name when it starts, the outcome when it
    ends (`  ApplicationStart     Succeeded                 0.12 s`); the lines form the summary
    table. An event with nothing to run shows `Succeeded (no scripts)`: CodeDeploy reports it
    Succeeded, and the console still tells it apart from one whose scripts ran. Warnings of an
    event (a previous revision's file Install could not remove) follow its line, each as
    `      warning: <what, and how to fix it>`."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    async def event_started(self, event: str, started_at: datetime) -> None:
        """Print the event's name, so a long hook shows what is running."""
        print(f"  {event:<20} ", end="", file=self.out, flush=True)

    async def event_finished(self, result: EventResult) -> None:
        """Complete the event's line with its status and duration, and why it failed."""
        print(
            f"{_status_text(result):<{_STATUS_WIDTH}} {result.duration:7.2f} s",
            file=self.out,
            flush=True,
        )
        note = _note(result)
        if note:
            print(f"      {note}", file=self.out, flush=True)
        for warning in result.warnings[:_MAX_WARNINGS_SHOWN]:
            print(f"      warning: {warning}", file=self.out, flush=True)
        if len(result.warnings) > _MAX_WARNINGS_SHOWN:
            more = len(result.warnings) - _MAX_WARNINGS_SHOWN
            print(
                f"      warning: ... and {more} more (the agent log lists every one)",
                file=self.out,
                flush=True,
            )
        if result.status is EventStatus.FAILED and result.diagnostics.log:
            # The diagnostics tail, as the CodeDeploy console shows it; the whole output is in
            # scripts.log. Only the last lines: a full 2 KB tail would bury the summary.
            for line in result.diagnostics.log.rstrip("\n").splitlines()[-_TAIL_LINES:]:
                print(f"      | {line}", file=self.out)

    async def scripts_starting(self, event: str, timeout_seconds: int) -> None:
        """Nothing to show: the line already names the event."""


def _status_text(result: EventResult) -> str:
    if result.ignored:
        return f"{result.status.value} (ignored)"
    if result.noop:
        return f"{result.status.value} (no scripts)"
    return result.status.value


def _note(result: EventResult) -> str:
    diagnostics = result.diagnostics
    if result.status is EventStatus.FAILED:
        return f"{diagnostics.code.service_name}: {diagnostics.message}"
    if result.status is EventStatus.SKIPPED:
        # Only a previous revision deleted by hand is skipped; the message says what to do.
        return diagnostics.message
    return ""


def print_summary(result: DeploymentResult, out: TextIO) -> None:
    """Events that did not run, then one line counting every outcome and the total time:
    `Summary: 7 succeeded (3 without scripts), 0 failed, 0 not run in 0.42 s`. The
    parenthesis appears when some events had nothing to run, `N skipped` when some were
    skipped (a previous revision deleted by hand), `N warnings` when events had warnings."""
    ran = {e.event for e in result.events}
    not_run = [e for e in result.spec.lifecycle_events if e not in ran]
    for event in not_run:
        print(f"  {event:<20} Not run", file=out)
    counts = {status: sum(e.status is status for e in result.events) for status in EventStatus}
    noops = sum(e.noop for e in result.events)
    total = sum(e.duration for e in result.events)
    parts = [
        f"{counts[EventStatus.SUCCEEDED]} succeeded"
        + (f" ({noops} without scripts)" if noops else ""),
        *([f"{counts[EventStatus.SKIPPED]} skipped"] if counts[EventStatus.SKIPPED] else []),
        f"{counts[EventStatus.FAILED]} failed",
        f"{len(not_run)} not run",
    ]
    warnings = sum(len(e.warnings) for e in result.events)
    if warnings:
        parts.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
    print(f"Summary: {', '.join(parts)} in {total:.2f} s", file=out)


async def run_local(opts: LocalOptions, config: AgentConfig, out: TextIO = sys.stdout) -> int:
    """Run a local deployment; print progress, the real tool's messages and a summary."""
    validate_options(opts)
    secrets = parse_parameters(opts.parameters)
    environment: dict[str, str] = {}
    if secrets:
        # Resolved before anything runs: a missing parameter fails the deployment up front.
        from codedeploy_agent.sources.secrets import resolve_environment  # noqa: PLC0415

        environment = await resolve_environment(secrets, config)
    spec = build_spec(opts, environment=environment)
    executor = DeploymentExecutor(config)
    folder = executor.root.deployment(spec.deployment_group_id, spec.deployment_id).path
    print(f"Starting to execute deployment from within folder {folder}", file=out, flush=True)
    result = await executor.run(spec, ConsoleReporter(out))
    print_summary(result, out)
    failure = result.failure
    if failure is not None and failure.diagnostics.code not in (
        ErrorCode.UNKNOWN_ERROR,
        ErrorCode.SUCCEEDED,
    ):
        print(
            "Your local deployment failed while trying to execute your script at "
            f"{folder}/deployment-archive/{failure.diagnostics.script_name}",
            file=out,
        )
    elif failure is not None:
        print(f"ERROR: {failure.diagnostics.message}", file=out)
    print(f"See the deployment log at {folder}/logs/scripts.log for more details", file=out)
    if failure is None:
        print("AppSpec file valid. Local deployment successful", file=out)
        return 0
    return 1

"""The lifecycle executor: runs one deployment's events, in order, on this host.

It is the functional core shared by `codedeploy-agent local` and the daemon: it knows the
deployment root, the appspec, the installer and the hook runner, and reports progress through
`ProgressReporter`; it never imports a transport (the daemon implements the reporter over MQTT).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol

from codedeploy_agent.appspec.loader import find_appspec, load_appspec, load_appspec_file
from codedeploy_agent.appspec.parser import check_hook_names
from codedeploy_agent.archive import unpack_bundle
from codedeploy_agent.config import AgentConfig
from codedeploy_agent.diagnostics import Diagnostics
from codedeploy_agent.errors import AgentError, ErrorCode
from codedeploy_agent.hooks.runner import HookRunner
from codedeploy_agent.hooks.scriptlog import DeploymentLogs
from codedeploy_agent.host.layout import DeploymentDir, DeploymentRoot
from codedeploy_agent.host.retention import prune_revisions
from codedeploy_agent.host.tracker import OngoingDeployments
from codedeploy_agent.installer import install
from codedeploy_agent.lifecycle import (
    DEFAULT_ORDER,
    LifecycleEvent,
    RevisionChoice,
    revision_choice,
)
from codedeploy_agent.log import get_logger
from codedeploy_agent.sources import fetch_revision
from codedeploy_agent.spec import BundleType, DeploymentSpec

_log = get_logger("codedeploy_agent.executor")

#: Events whose failure `ignore_application_stop_failures` lets the deployment go past
#: (the service's rule, service reference §1.4).
_IGNORABLE = frozenset(
    {
        LifecycleEvent.APPLICATION_STOP,
        LifecycleEvent.BEFORE_BLOCK_TRAFFIC,
        LifecycleEvent.AFTER_BLOCK_TRAFFIC,
    }
)


class EventStatus(StrEnum):
    """How a lifecycle event ended (the service's LifecycleEventStatus values we produce).

    An event with no scripts to run is `SUCCEEDED` (with `EventResult.noop`), as CodeDeploy
    reports it; `SKIPPED` is only our deliberate deviation for a previous revision deleted by
    hand, whose scripts exist but could not run.
    """

    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SKIPPED = "Skipped"


@dataclass(frozen=True, slots=True)
class EventResult:
    """The outcome of one lifecycle event on this host."""

    event: str
    status: EventStatus
    started_at: datetime
    ended_at: datetime
    diagnostics: Diagnostics
    #: A failure that `ignore_application_stop_failures` let the deployment continue past.
    ignored: bool = False
    #: Succeeded without running anything: the appspec has no scripts for the event, or there
    #: is no previous revision to run them from (the real agent's noop command).
    noop: bool = False
    #: Problems the event went past that an operator must fix, each saying how (Install: a
    #: previous revision's path it could not remove). The event still Succeeded.
    warnings: tuple[str, ...] = ()

    @property
    def duration(self) -> float:
        """Seconds the event took."""
        return (self.ended_at - self.started_at).total_seconds()

    @property
    def blocking_failure(self) -> bool:
        """True when this event failed the deployment."""
        return self.status is EventStatus.FAILED and not self.ignored


@dataclass(frozen=True, slots=True)
class DeploymentResult:
    """Every event that ran, in order; events after a failure did not run."""

    spec: DeploymentSpec
    deployment_dir: DeploymentDir
    events: tuple[EventResult, ...]

    @property
    def succeeded(self) -> bool:
        """True when every event succeeded, was skipped, or failed in an ignorable way."""
        return not any(e.blocking_failure for e in self.events)

    @property
    def failure(self) -> EventResult | None:
        """The event that failed the deployment, if one did."""
        return next((e for e in self.events if e.blocking_failure), None)


class ProgressReporter(Protocol):
    """What the executor tells the outside world; the daemon sends it over MQTT."""

    async def event_started(self, event: str, started_at: datetime) -> None:
        """Called before each lifecycle event."""

    async def event_finished(self, result: EventResult) -> None:
        """Called after each lifecycle event, whatever its outcome."""

    async def scripts_starting(self, event: str, timeout_seconds: int) -> None:
        """Called when an event's scripts are about to run, with the sum of their timeouts."""


class NullReporter:
    """A reporter that reports nothing."""

    async def event_started(self, event: str, started_at: datetime) -> None:
        """Ignore the event start."""

    async def event_finished(self, result: EventResult) -> None:
        """Ignore the event result."""

    async def scripts_starting(self, event: str, timeout_seconds: int) -> None:
        """Ignore the scripts' time budget."""


class _Skip(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised inside an event to end it as Skipped with a message (scripts exist but cannot run)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class DeploymentExecutor:
    """Runs deployments against one deployment root, one at a time."""

    def __init__(self, config: AgentConfig, root: DeploymentRoot | None = None) -> None:
        self.config = config
        self.root = root or DeploymentRoot(
            config.root_dir,
            program_name=config.program_name,
            ongoing_deployment_tracking=config.ongoing_deployment_tracking,
        )

    async def run(
        self,
        spec: DeploymentSpec,
        reporter: ProgressReporter | None = None,
        *,
        tracking_id: str | None = None,
        on_log: Callable[[Sequence[str]], None] | None = None,
        stop_reason: Callable[[], str | None] | None = None,
    ) -> DeploymentResult:
        """Run `spec.lifecycle_events` in order, stopping at the first blocking failure.

        With `tracking_id` the run is recorded in `ongoing-deployment/<deployment-id>` (content
        `tracking_id`) until it ends, so that a restarted daemon can report it interrupted.
        `on_log` receives every scripts.log entry as written, from the hook runner's thread.
        `stop_reason` is asked before each event: when it returns a reason (the agent is
        stopping), that event fails with it and nothing more runs.
        """
        reporter = reporter or NullReporter()
        log = _log.bind(deployment_id=spec.deployment_id, group=spec.deployment_group_id)
        deployment = await asyncio.to_thread(
            self.root.create_deployment_dir, spec.deployment_group_id, spec.deployment_id
        )
        tracker = OngoingDeployments(self.root.ongoing) if tracking_id is not None else None
        if tracker is not None and tracking_id is not None:
            await asyncio.to_thread(tracker.mark, spec.deployment_id, tracking_id)
        logs = DeploymentLogs(
            deployment.scripts_log,
            self.root.deployments_log if self.config.enable_deployments_log else None,
            spec.deployment_id,
            secrets=spec.secret_values,
            listener=on_log,
        )
        run = _Run(self, spec, deployment, logs, reporter)
        results: list[EventResult] = []
        try:
            log.info("deployment started", events=list(spec.lifecycle_events))
            for event in spec.lifecycle_events:
                reason = stop_reason() if stop_reason is not None else None
                result = await (
                    run.stopped(event, reason, reporter) if reason else run.event(event, reporter)
                )
                results.append(result)
                if result.blocking_failure:
                    break
        finally:
            await asyncio.to_thread(logs.close)
            if tracker is not None:
                await asyncio.to_thread(tracker.clear, spec.deployment_id)
        outcome = DeploymentResult(spec, deployment, tuple(results))
        failure = outcome.failure
        if failure is None:
            log.info("deployment succeeded")
        else:
            log.error(
                "deployment failed",
                lifecycle_event=failure.event,
                error_code=failure.diagnostics.code.service_name,
                message=failure.diagnostics.message,
            )
        return outcome


class _Run:
    """The state of one deployment while its events run."""

    def __init__(
        self,
        executor: DeploymentExecutor,
        spec: DeploymentSpec,
        deployment: DeploymentDir,
        logs: DeploymentLogs,
        reporter: ProgressReporter,
    ) -> None:
        self.reporter = reporter
        self.config = executor.config
        self.root = executor.root
        self.spec = spec
        self.deployment = deployment
        self.logs = logs
        self.runner = HookRunner(self.config.hooks, logs)
        self.log = _log.bind(deployment_id=spec.deployment_id)
        #: Warnings of the event running now (`EventResult.warnings`).
        self.warnings: list[str] = []

    async def event(self, event: str, reporter: ProgressReporter) -> EventResult:
        """Run one lifecycle event and report it; never raises for a user's mistake."""
        started = datetime.now(UTC)
        await reporter.event_started(event, started)
        log = self.log.bind(lifecycle_event=event)
        log.info("lifecycle event started")
        status = EventStatus.SUCCEEDED
        ignored = noop = False
        self.warnings = []
        try:
            noop = not await self._dispatch(event)
            # Nothing to run ends Succeeded with the real agent's noop completion message
            # ("Succeeded: CompletedNoopCommand"), which is what CodeDeploy shows.
            diagnostics = Diagnostics.succeeded(noop=noop)
        except _Skip as skip:
            status = EventStatus.SKIPPED
            diagnostics = Diagnostics(ErrorCode.SUCCEEDED, "", skip.message, "")
            log.warning("lifecycle event skipped", reason=skip.message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            status = EventStatus.FAILED
            diagnostics = Diagnostics.from_error(exc)
            ignored = event in _IGNORABLE and self.spec.ignore_application_stop_failures
            if not isinstance(exc, AgentError):
                log.exception("lifecycle event crashed")
        result = EventResult(
            event,
            status,
            started,
            datetime.now(UTC),
            diagnostics,
            ignored=ignored,
            noop=noop,
            warnings=tuple(self.warnings),
        )
        log.info(
            "lifecycle event finished",
            status=status.value,
            ignored=ignored,
            noop=noop,
            warnings=len(result.warnings),
            duration=round(result.duration, 3),
            **({} if status is not EventStatus.FAILED else {"message": diagnostics.message}),
        )
        await reporter.event_finished(result)
        return result

    async def stopped(self, event: str, reason: str, reporter: ProgressReporter) -> EventResult:
        """Report `event` as failed without running it: the agent is stopping."""
        now = datetime.now(UTC)
        await reporter.event_started(event, now)
        self.log.warning("lifecycle event not started", lifecycle_event=event, reason=reason)
        diagnostics = Diagnostics(ErrorCode.UNKNOWN_ERROR, "", reason, "")
        result = EventResult(event, EventStatus.FAILED, now, datetime.now(UTC), diagnostics)
        await reporter.event_finished(result)
        return result

    async def _dispatch(self, event: str) -> bool:
        """Run the event; False when it had nothing to run (a noop)."""
        if event == LifecycleEvent.DOWNLOAD_BUNDLE:
            await self.download_bundle()
            return True
        if event == LifecycleEvent.INSTALL:
            await self.install()
            return True
        return await self.run_hooks(event)

    async def download_bundle(self) -> None:
        """Prune old revisions, fetch the bundle, unpack it, record the most recent install."""
        spec, deployment = self.spec, self.deployment
        removed = await asyncio.to_thread(
            prune_revisions,
            self.root,
            spec.deployment_group_id,
            spec.deployment_id,
            self.config.max_revisions,
        )
        if removed:
            self.log.info("old revisions removed", paths=[str(p) for p in removed])
        await fetch_revision(spec.revision, deployment, self.config)
        if spec.revision.bundle_type is not BundleType.DIRECTORY:
            await asyncio.to_thread(
                unpack_bundle,
                deployment.bundle,
                spec.revision.bundle_type,
                deployment.archive,
                limits=self.config.archive,
                temp_dir=deployment.archive_temp,
            )
        await asyncio.to_thread(self.root.set_most_recent, spec.deployment_group_id, deployment)

    async def install(self) -> None:
        """Install the revision's files and permissions, then record it as last successful."""
        spec, deployment = self.spec, self.deployment
        path = await asyncio.to_thread(find_appspec, deployment.archive, spec.appspec_filename)
        appspec = await asyncio.to_thread(load_appspec_file, path)
        if spec.all_possible_lifecycle_events is not None:
            check_hook_names(
                appspec,
                # The real agent names the file it read, which may be the appspec.yaml fallback.
                appspec_filename=path.name,
                all_possible_events=spec.all_possible_lifecycle_events,
                requested_events=tuple(dict.fromkeys((*DEFAULT_ORDER, *spec.lifecycle_events))),
            )
        report = await asyncio.to_thread(
            install,
            appspec,
            deployment.archive,
            cleanup_file=self.root.cleanup_file(spec.deployment_group_id),
            install_json=self.root.install_json(spec.deployment_group_id),
            file_exists_override=spec.file_exists_behavior,
        )
        for warning in report.cleanup_warnings:
            self.log.warning("cleanup of the previous revision incomplete", detail=warning)
        # Deliberate divergence. The real agent (reference §5.1 step 1, installer.rb) deletes the
        # cleanup file only after every removal: its first path that cannot be removed raises,
        # fails Install, and leaves the whole file for the next deployment, which replays it
        # and fails the same way until an operator fixes the path. A leftover file of the old
        # revision must not block every deployment and rollback, so Install goes on; like the
        # real agent we retry (the path stays in the new cleanup file), and the warning is
        # reported with the event: on `local`'s console and in the Jobs IN_PROGRESS update.
        self.warnings.extend(report.cleanup_warnings)
        await asyncio.to_thread(self.root.set_last_successful, spec.deployment_group_id, deployment)

    async def run_hooks(self, event: str) -> bool:
        """Run `event`'s scripts from the revision CodeDeploy would pick (reference §1.4).

        Returns False when there was nothing to run: no previous revision, or no scripts for
        the event in the selected appspec (the real agent's noop, reported Succeeded).
        """
        source = await asyncio.to_thread(self._revision_for, event)
        if source is None:
            return False
        appspec = await asyncio.to_thread(load_appspec, source.archive, self.spec.appspec_filename)
        scripts = appspec.scripts_for(event)
        if not scripts:
            return False
        await self.reporter.scripts_starting(event, sum(script.timeout for script in scripts))
        await self.runner.run_event(
            event, scripts, archive_dir=source.archive, environment=self._environment(event)
        )
        return True

    def _revision_for(self, event: str) -> DeploymentDir | None:
        """The revision `event` runs from; None on a group's first deployment when the event
        runs from a previous one (nothing to stop yet)."""
        spec = self.spec
        choice = revision_choice(
            event, creator=spec.deployment_creator, deployment_type=spec.deployment_type
        )
        if choice is RevisionChoice.NEW or self.deployment.archive.exists():
            return self.deployment
        group = spec.deployment_group_id
        if choice is RevisionChoice.LAST_SUCCESSFUL_OR_IGNORE:
            previous, pointer = (
                self.root.last_successful(group),
                self.root.last_successful_file(group),
            )
        else:
            previous, pointer = self.root.most_recent(group), self.root.most_recent_file(group)
        if previous is None:
            # First deployment of the group: nothing to stop (the real agent's noop).
            return None
        if not previous.archive.is_dir():
            # The real agent fails here with "did not find an AppSpec file" and every later
            # deployment fails the same way until an operator deletes the pointer by hand (a
            # known pain point). The revision is gone, so its scripts cannot run: skip, loudly.
            raise _Skip(
                f"Skipped {event}: the previous revision's directory {previous.archive} no longer "
                f"exists (named in {pointer}), so its {event} scripts cannot run. If the old "
                "application is still running, stop it by hand."
            )
        return previous

    def _environment(self, event: str) -> Mapping[str, str]:
        spec = self.spec
        return {
            "LIFECYCLE_EVENT": event,
            "DEPLOYMENT_ID": spec.deployment_id,
            "APPLICATION_NAME": spec.application_name,
            "DEPLOYMENT_GROUP_NAME": spec.deployment_group_name,
            "DEPLOYMENT_GROUP_ID": spec.deployment_group_id,
            **spec.revision.hook_environment(),
            **spec.environment,
        }

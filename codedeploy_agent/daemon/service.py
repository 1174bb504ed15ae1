"""The daemon's lifetime: start-up, the MQTT session, the job loop, presence, shutdown.

Phases (AgentState): STARTING (state loaded, interrupted jobs queued as FailedAfterRestart) ->
IDLE / DEPLOYING while serving -> STOPPING. Shutdown is bounded (uvicorn's habit): the first
SIGTERM or SIGINT stops intake and lets the running hook finish (the deployment stops before its
next event) up to `kill_agent_max_wait_time_seconds`, then stops the hook and reports the job
FAILED with a message saying the agent was stopping; a second signal forces that at once.
SIGHUP reopens the log files. Applications started by hooks are not touched: they outlive the
agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Final

from codedeploy_agent import __version__
from codedeploy_agent.clock import ClockMonitor
from codedeploy_agent.config import AgentConfig
from codedeploy_agent.daemon.jobs import JobsClient, RequestFailedError, RequestRejectedError
from codedeploy_agent.daemon.state import JobLedger, Outbox
from codedeploy_agent.daemon.worker import JobWorker, Progress, StopCause
from codedeploy_agent.errors import ConfigError
from codedeploy_agent.executor import DeploymentExecutor
from codedeploy_agent.hooks.reaper import enable_subreaper
from codedeploy_agent.host.memory import limit_arenas, release_free_memory
from codedeploy_agent.host.pidfile import ROOT_DIR_HARM, STATE_DIR_HARM, DirectoryLock
from codedeploy_agent.host.status import (
    AgentState,
    AgentStatus,
    LastResult,
    ResultStatus,
    status_path,
    write_status,
)
from codedeploy_agent.log import get_logger, reopen_log_files
from codedeploy_agent.protocol.messages import JobStatus, Presence, PresenceState, encode
from codedeploy_agent.protocol.signing import load_trusted_keys
from codedeploy_agent.protocol.topics import JobsTopics, validate_thing_name
from codedeploy_agent.systemd import SystemdNotifier
from codedeploy_agent.transport import Message, MqttSession, Will

_log = get_logger("codedeploy_agent.daemon")

#: How long a stopping agent tries to deliver its last updates and the offline presence.
FLUSH_SECONDS: Final = 10.0
#: Live log lines waiting for the broker; older ones are dropped (best effort, QoS 0).
_LOG_QUEUE: Final = 1000
_RETRY_START_NEXT: Final = 5.0
_THREADS: Final = 4


def thing_name(config: AgentConfig) -> str:
    """The configured thing name, or this host's name; refused when MQTT would not allow it."""
    name = config.mqtt.thing_name or socket.gethostname()
    try:
        return validate_thing_name(name)
    except ValueError as exc:
        raise ConfigError(
            f"The thing name {name!r} is not valid ({exc}). Set mqtt.thing_name in the agent "
            "config to letters, digits and _ . : - (at most 128 characters)."
        ) from exc


class Daemon:
    """One agent process serving Jobs for one thing."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.thing = thing_name(config)
        self.topics = JobsTopics(
            config.mqtt.topic_root, self.thing, events_root=config.mqtt.events_root
        )
        self.ledger = JobLedger(config.state_dir)
        self.outbox = Outbox(config.state_dir)
        self.clock = ClockMonitor(config.clock)
        self.notifier = SystemdNotifier.from_environment()
        self.started_at = datetime.now(UTC)
        self.status = AgentStatus(
            pid=os.getpid(),
            started_at=self.started_at,
            state=AgentState.STARTING,
            broker_endpoint=config.mqtt.endpoint,
            thing_name=self.thing,
            agent_version=__version__,
            updated_at=self.started_at,
        )
        self.session = MqttSession(
            config.mqtt,
            client_id=self.thing,
            subscriptions=self.topics.agent_filters,
            will=Will(self.topics.presence, self._presence(PresenceState.OFFLINE, None)),
            on_connect=self._on_connect,
        )
        self.client = JobsClient(
            self.session,
            self.topics,
            self.outbox,
            on_next_job=self._wake_worker,
            on_job_stopped=self._job_stopped,
            on_service_time=self._service_time,
        )
        self.worker = JobWorker(
            DeploymentExecutor(config),
            self.client,
            self.ledger,
            trusted_keys=load_trusted_keys(config.security.trusted_keys),
            clock=self.clock,
            on_progress=self._progress,
            on_log=self._queue_log_lines,
            on_finished=self._finished,
        )
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._stopping = False
        self._stop_reason_text = "stop requested"
        self._standalone = True
        self._job_task: asyncio.Task[None] | None = None
        self._log_queue: asyncio.Queue[tuple[str, Sequence[str]]] = asyncio.Queue(_LOG_QUEUE)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._status_dirty = asyncio.Event()
        self._last_status_text = ""

    # --- lifetime -------------------------------------------------------------------------------

    async def serve(self, *, standalone: bool = True) -> int:
        """Run until stopped by a signal (or `request_stop`); returns the exit status.

        `standalone=False` lets several agents share one process (the fleet benchmark): the
        process-wide settings (signal handlers, worker threads, malloc, subreaper) are then the
        caller's business.

        The daemon first locks its state_dir and root_dir (refusing to start when another agent
        holds either) and keeps them locked until it returns.
        """
        # Synchronous: a non-blocking flock and a tiny write, and no thread may be started
        # before `_serve` installs the agent's own default executor.
        locks = self._lock_directories()
        try:
            return await self._serve(standalone)
        finally:
            for lock in reversed(locks):
                lock.release()

    def _lock_directories(self) -> list[DirectoryLock]:
        """Lock state_dir and root_dir (one lock when they are the same directory)."""
        config = self.config
        wanted = [DirectoryLock(config.state_dir, "state_dir", STATE_DIR_HARM)]
        if config.root_dir.resolve() != config.state_dir.resolve():
            wanted.append(DirectoryLock(config.root_dir, ":root_dir:", ROOT_DIR_HARM))
        held: list[DirectoryLock] = []
        try:
            for lock in wanted:
                lock.acquire()
                held.append(lock)
        except BaseException:
            for lock in reversed(held):
                lock.release()
            raise
        return held

    async def _serve(self, standalone: bool) -> int:
        self._loop = asyncio.get_running_loop()
        self._standalone = standalone
        await self.session.prepare()  # unreadable certificates fail the start, not later
        if standalone:
            limit_arenas()
            # The agent's blocking work (file trees, state files, NTP) is sequential: a few
            # threads suffice, and each idle thread keeps a stack and a malloc arena resident.
            self._loop.set_default_executor(
                ThreadPoolExecutor(_THREADS, thread_name_prefix="agent")
            )
            enable_subreaper()
        await asyncio.to_thread(self.ledger.load)
        await self.client.restore()
        recovered = await self.worker.recover()
        if recovered:
            _log.warning("reporting jobs interrupted by a restart", job_ids=recovered)
        if standalone:
            self._install_signal_handlers()
        tasks = [
            asyncio.create_task(self.session.run(self._handle), name="mqtt"),
            asyncio.create_task(self.client.run_sender(), name="sender"),
            asyncio.create_task(self._work(), name="jobs"),
            asyncio.create_task(self._heartbeat(), name="presence"),
            asyncio.create_task(self.clock.run(), name="clock"),
            asyncio.create_task(self._publish_logs(), name="logs"),
            asyncio.create_task(self._write_status_loop(), name="status"),
            asyncio.create_task(self.notifier.run_watchdog(self._healthy), name="watchdog"),
        ]
        self._set_status(state=AgentState.IDLE)
        self.notifier.ready(self._status_text())
        _log.info(
            "agent started",
            thing_name=self.thing,
            endpoint=self.config.mqtt.endpoint,
            version=__version__,
            pid=os.getpid(),
        )
        try:
            await self._stop.wait()
            await self._shutdown()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._standalone:
                self._remove_signal_handlers()
            await asyncio.to_thread(self._write_status_now)
            self.notifier.close()
        _log.info("agent stopped")
        return 0

    def request_stop(self, reason: str = "stop requested") -> None:
        """Begin a graceful stop; a second call forces it."""
        if self._stop.is_set():
            _log.warning("second stop request: stopping the running deployment now")
            self._force.set()
            return
        _log.info("stopping", reason=reason)
        self._stop_reason_text = reason
        self._stop.set()

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, signal.Signals(sig).name)
        loop.add_signal_handler(signal.SIGHUP, reopen_log_files)

    def _remove_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)

    async def _shutdown(self) -> None:
        self._stopping = True
        reason = self._stop_reason_text
        self._set_status(state=AgentState.STOPPING)
        self.notifier.stopping()
        self._wake.set()
        job = self._job_task
        if job is not None and not job.done():
            deadline = self.config.kill_agent_max_wait_time_seconds
            self.worker.stop_reason = (
                f"The agent was stopping ({reason}): the deployment was stopped before its next "
                "lifecycle event. Deploy again once the agent is back."
            )
            forced = asyncio.create_task(self._force.wait())
            done, _ = await asyncio.wait(
                {job, forced}, timeout=deadline, return_when=asyncio.FIRST_COMPLETED
            )
            forced.cancel()
            if job not in done:
                event = self.worker.progress.lifecycle_event if self.worker.progress else None
                self.worker.stop_cause = StopCause.SHUTDOWN
                self.worker.stop_reason = (
                    f"The agent was stopping ({reason}) and stopped the running {event} hook "
                    + (
                        "at once (second stop signal)."
                        if self._force.is_set()
                        else f"after waiting {deadline} s (kill_agent_max_wait_time_seconds)."
                    )
                    + " Deploy again once the agent is back."
                )
                job.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await job
        if self.session.connected:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.client.wait_idle(), FLUSH_SECONDS)
            with contextlib.suppress(Exception):
                await self.session.publish(
                    self.topics.presence,
                    self._presence(PresenceState.OFFLINE, self.worker.progress),
                    retain=True,
                )

    # --- jobs -----------------------------------------------------------------------------------

    async def _work(self) -> None:
        """Take jobs one at a time: start-next after every connect, notify-next and job end."""
        while not self._is_stopping():
            await self._wake.wait()
            self._wake.clear()
            if self._is_stopping():
                return
            if not self.session.connected:
                continue
            await self.client.wait_idle()  # interrupted jobs and the last outcome go first
            if self._is_stopping():
                return
            try:
                execution = await self.client.start_next()
            except (RequestFailedError, RequestRejectedError) as exc:
                _log.warning("could not ask for the next job", reason=str(exc))
                self._loop_later(_RETRY_START_NEXT, self._wake_worker)
                continue
            if execution is None:
                continue
            self.client.current_job = execution.job_id
            self._job_task = asyncio.create_task(self.worker.run(execution), name="job")
            try:
                await asyncio.shield(self._job_task)
            except asyncio.CancelledError:
                if not self._job_task.done():
                    raise
            finally:
                self.client.current_job = None
            if self._job_task.done() and not self._job_task.cancelled():
                crash = self._job_task.exception()
                if crash is not None:
                    _log.error("job crashed", job_id=execution.job_id, error=repr(crash))
            # A deployment's garbage (archive listings, hook output buffers) goes back to the OS.
            await asyncio.to_thread(release_free_memory)
            self._wake.set()

    def _is_stopping(self) -> bool:
        return self._stopping

    def _wake_worker(self) -> None:
        self._wake.set()

    def _loop_later(self, delay: float, callback: Callable[[], None]) -> None:
        if self._loop is not None:
            self._loop.call_later(delay, callback)

    def _job_stopped(self, job_id: str, status: JobStatus) -> None:
        task = self._job_task
        if self.client.current_job != job_id or task is None or task.done():
            return
        _log.warning("the service stopped the running job", job_id=job_id, status=status.value)
        self.worker.stop_cause = StopCause.SERVICE
        self.worker.stopped_status = status
        task.cancel()

    # --- MQTT callbacks -----------------------------------------------------------------------

    async def _handle(self, message: Message) -> None:
        await self.client.handle(message.topic, message.payload)

    async def _on_connect(self) -> None:
        self._set_status(broker_connected=True)
        await self.session.publish(
            self.topics.presence,
            self._presence(PresenceState.ONLINE, self.worker.progress),
            retain=True,
        )
        self.client.connection_up()
        self._wake.set()

    def _service_time(self, remote: float, received: float, sent: float | None) -> None:
        self.clock.observe_remote_timestamp(remote, received, sent_at=sent)

    # --- presence, status, logs ---------------------------------------------------------------

    def _presence(self, state: PresenceState, progress: Progress | None) -> bytes:
        return encode(
            Presence(
                state=state,
                agent_version=__version__,
                hostname=socket.gethostname(),
                started_at=self.started_at,
                clock_skew_seconds=self.clock.current_skew,
                current_deployment_id=progress.deployment_id if progress else None,
            )
        )

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_seconds)
            self._set_status()
            if self.session.connected:
                payload = self._presence(PresenceState.ONLINE, self.worker.progress)
                with contextlib.suppress(Exception):
                    await self.session.publish(self.topics.presence, payload, retain=True)

    def _progress(self, progress: Progress | None) -> None:
        if progress is None:
            self._set_status(
                state=AgentState.STOPPING if self._stopping else AgentState.IDLE,
                current_deployment_id=None,
                current_job_id=None,
                current_event=None,
            )
        else:
            self._set_status(
                state=AgentState.DEPLOYING,
                current_deployment_id=progress.deployment_id,
                current_job_id=progress.job_id,
                current_event=progress.lifecycle_event,
            )

    def _finished(self, job_id: str, deployment_id: str, status: JobStatus, message: str) -> None:
        self._set_status(
            last_result=LastResult(
                deployment_id=deployment_id,
                job_id=job_id,
                status=ResultStatus(status.value),
                finished_at=datetime.now(UTC),
                message=message,
            )
        )
        if self.session.connected and self._loop is not None:
            payload = self._presence(PresenceState.ONLINE, self.worker.progress)
            self._loop.create_task(
                self.session.publish(self.topics.presence, payload, retain=True)
            ).add_done_callback(_ignore_result)

    def _set_status(self, **changes: object) -> None:
        reading = self.clock.reading
        fields: dict[str, object] = {
            "broker_connected": self.session.connected,
            "clock_skew_seconds": reading.offset_seconds if reading else None,
            "clock_checked_at": (
                datetime.fromtimestamp(reading.measured_at, UTC) if reading else None
            ),
            "updated_at": datetime.now(UTC),
            **changes,
        }
        self.status = dataclasses.replace(self.status, **fields)  # type: ignore[arg-type]
        self._status_dirty.set()
        text = self._status_text()
        if text != self._last_status_text:  # heartbeats would repeat it every minute
            self._last_status_text = text
            self.notifier.status(text)

    def _status_text(self) -> str:
        status = self.status
        if status.state is AgentState.DEPLOYING:
            text = f"deploying {status.current_deployment_id}"
            if status.current_event:
                text += f": {status.current_event}"
        else:
            text = status.state.value
        link = "connected to" if self.session.connected else "waiting for broker"
        return f"{text}; {link} {self.config.mqtt.endpoint}"

    async def _write_status_loop(self) -> None:
        while True:
            await self._status_dirty.wait()
            self._status_dirty.clear()
            await asyncio.to_thread(self._write_status_now)

    def _write_status_now(self) -> None:
        try:
            write_status(status_path(self.config.state_dir, self.config.program_name), self.status)
        except Exception as exc:  # noqa: BLE001 - the status file is informational
            _log.warning("cannot write the status file", error=str(exc))

    def _healthy(self) -> bool:
        return not self._stopping or self._job_task is not None

    def _queue_log_lines(self, deployment_id: str, lines: Sequence[str]) -> None:
        """Called from the hook runner's thread: hand the lines to the event loop."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._enqueue_log, deployment_id, lines)

    def _enqueue_log(self, deployment_id: str, lines: Sequence[str]) -> None:
        if self._log_queue.full():
            self._log_queue.get_nowait()  # drop the oldest: live logs are best effort
        self._log_queue.put_nowait((deployment_id, lines))

    async def _publish_logs(self) -> None:
        while True:
            deployment_id, lines = await self._log_queue.get()
            if not self.session.connected:
                continue
            with contextlib.suppress(Exception):
                await self.session.publish(
                    self.topics.logs(deployment_id), "\n".join(lines).encode(), qos=0
                )


def _ignore_result(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()

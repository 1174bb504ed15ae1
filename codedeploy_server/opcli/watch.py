"""Following a deployment until it ends: the polling loop and its two views.

Every `interval` seconds the loop reads GetDeployment and the targets that can still change
(`queries.poll`) and hands the snapshot to a view. On a terminal the view is a rich table
redrawn in place; anywhere else it prints one line per change, so CI logs read top to bottom:

    d-ABCDEFGH1 InProgress
    d-ABCDEFGH1 host-1 InProgress
    d-ABCDEFGH1 host-1 ApplicationStop Succeeded
    d-ABCDEFGH1 host-1 ValidateService Failed (ScriptFailed: Script at specified location: ...)
    d-ABCDEFGH1 host-1 Failed
    d-ABCDEFGH1 Failed

A change of a target or deployment to a final status is printed after the changes under it,
any other change before them. An event that goes from Pending straight to Skipped is not
printed: it never started (it came after a failure, or its target was skipped, which says it
once for all of its events). One that was seen running and then ends Skipped prints its final
status like any other, so no `InProgress` line is left without an ending. A poll sees the latest
status only: an event that started and finished between two polls prints just its final status.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final, Protocol

from rich.live import Live

from codedeploy_server.opcli.client import CodeDeployApi
from codedeploy_server.opcli.model import Snapshot, TargetView
from codedeploy_server.opcli.queries import fetch_deployment, poll
from codedeploy_server.opcli.render import (
    Output,
    counts,
    error_text,
    failure_lines,
    one_line,
    progress_view,
    target_counts,
)

DEFAULT_INTERVAL: Final = 1.0
#: How long to wait for the rollback deployment to appear once a deployment whose group
#: configures automatic rollback has failed (the engine may create it a moment later).
ROLLBACK_GRACE: Final = 15.0


class ProgressView(Protocol):
    """Shows successive snapshots of one deployment."""

    def update(self, snapshot: Snapshot) -> None: ...
    def close(self) -> None: ...


def change_lines(previous: Snapshot | None, current: Snapshot) -> list[str]:
    """The lines describing what changed from `previous` (None: nothing seen yet) to `current`."""
    view = current.deployment
    prefix = view.deployment_id
    before = {t.target_id: t for t in previous.targets} if previous else {}
    deployment_line = (
        [f"{prefix} {view.status}"]
        if previous is None or previous.deployment.status != view.status
        else []
    )
    lines = [] if view.terminal else list(deployment_line)
    for target in current.targets:
        lines.extend(_target_lines(prefix, before.get(target.target_id), target))
    if view.terminal:
        lines.extend(deployment_line)
    return lines


def _target_lines(prefix: str, before: TargetView | None, target: TargetView) -> list[str]:
    head = f"{prefix} {target.target_id}"
    status_line = (
        [f"{head} {target.status}"] if before is None or before.status != target.status else []
    )
    old_events = {e.name: e.status for e in before.events} if before else {}
    event_lines: list[str] = []
    for event in target.events:
        old = old_events.get(event.name, "Pending")
        if event.status == old or (event.status == "Skipped" and old == "Pending"):
            continue
        detail = ""
        if event.status == "Failed":
            reason = ": ".join(p for p in (event.error_code, one_line(event.message)) if p)
            detail = f" ({reason})" if reason else ""
        event_lines.append(f"{head} {event.name} {event.status}{detail}")
    if target.terminal:
        return event_lines + status_line
    return status_line + event_lines


def summary_lines(snapshot: Snapshot) -> list[str]:
    """How a deployment ended: status, error, counts, failed events with log tails, rollback."""
    view = snapshot.deployment
    lines = [f"Deployment {view.deployment_id} {view.status}"]
    if view.error_code or view.error_message:
        lines.append(f"  Error: {error_text(view)}")
    lines.append(f"  Instances: {counts(view.overview or target_counts(snapshot.targets))}")
    lines.extend(failure_lines(snapshot.targets, indent="  "))
    if view.rollback_deployment_id:
        message = f" ({one_line(view.rollback_message)})" if view.rollback_message else ""
        lines.append(f"  Rolled back by: {view.rollback_deployment_id}{message}")
    elif view.rollback_triggering_id:
        lines.append(f"  Rollback of: {view.rollback_triggering_id}")
    elif view.rollback_message:
        lines.append(f"  Rollback: {one_line(view.rollback_message)}")
    return lines


class LineView:
    """Prints `change_lines` for each new snapshot (for pipes and CI logs)."""

    def __init__(self, output: Output) -> None:
        self._output = output
        self._previous: Snapshot | None = None

    def update(self, snapshot: Snapshot) -> None:
        """Print what changed since the last snapshot."""
        self._output.lines(change_lines(self._previous, snapshot))
        self._previous = snapshot

    def close(self) -> None:
        """Nothing to release."""


class LiveView:
    """Redraws a rich table in place on a terminal; the last drawing stays on screen."""

    def __init__(self, output: Output) -> None:
        self._live = Live(console=output.console, auto_refresh=False, transient=False)
        self._live.start()

    def update(self, snapshot: Snapshot) -> None:
        """Redraw with the new snapshot."""
        self._live.update(progress_view(snapshot), refresh=True)

    def close(self) -> None:
        """Stop redrawing, leaving the last table."""
        self._live.stop()


def open_view(output: Output) -> ProgressView:
    """The live table on a terminal, change lines elsewhere."""
    return LiveView(output) if output.tty else LineView(output)


def watch(
    api: CodeDeployApi,
    deployment_id: str,
    view: ProgressView,
    *,
    interval: float = DEFAULT_INTERVAL,
    sleep: Callable[[float], None] = time.sleep,
) -> Snapshot:
    """Poll until the deployment has ended, showing every snapshot; return the last one."""
    previous: Snapshot | None = None
    try:
        while True:
            previous = poll(api, deployment_id, previous)
            view.update(previous)
            if previous.deployment.terminal:
                return previous
            sleep(interval)
    finally:
        view.close()


def await_rollback(
    api: CodeDeployApi,
    snapshot: Snapshot,
    *,
    interval: float = DEFAULT_INTERVAL,
    grace: float = ROLLBACK_GRACE,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Snapshot:
    """`snapshot`, re-read until its rollback deployment is known when one is expected.

    Returns at once when the deployment names its rollback already, says why there is none
    (`rollbackMessage`), or its group does not configure automatic rollback for how it ended.
    """
    view = snapshot.deployment
    deadline = clock() + grace
    while (
        view.rollback_deployment_id is None
        and view.rollback_message is None
        and view.rollback_expected()
        and clock() < deadline
    ):
        sleep(interval)
        view = fetch_deployment(api, view.deployment_id)
    return Snapshot(view, snapshot.targets)

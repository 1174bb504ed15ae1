"""Everything the CLI draws: plain lines, and rich tables that degrade to aligned text.

On a terminal, tables have a header rule and colours. Anywhere else (a pipe, a CI log, the
tests) they are plain aligned columns without box characters or colour, at a fixed width of
200 columns (or `COLUMNS`) so that lines are not wrapped for an imaginary 80-column screen:
the output is stable and greppable.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Final, TextIO

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from codedeploy_server.opcli.model import (
    DeploymentView,
    EventView,
    InstanceView,
    Snapshot,
    TargetView,
)

_PIPE_WIDTH: Final = 200
_STYLES: Final = {
    "Succeeded": "green",
    "Failed": "bold red",
    "Stopped": "magenta",
    "InProgress": "yellow",
    "Ready": "cyan",
    "Baking": "cyan",
    "Pending": "dim",
    "Skipped": "dim",
    "Created": "dim",
    "Queued": "dim",
}
_GLYPHS: Final = {
    "Succeeded": "✓",
    "Failed": "✗",
    "InProgress": "▶",
    "Pending": "·",
    "Skipped": "-",
}
#: The order counters are listed in: the outcomes first.
_COUNT_ORDER: Final = ("Succeeded", "Failed", "Skipped", "InProgress", "Pending", "Ready")


class Output:
    """The CLI's two streams: results on `out`, notes, warnings and errors on `err`."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.out = out if out is not None else sys.stdout
        self.err = err if err is not None else sys.stderr
        self.tty = _isatty(self.out)
        width = None if self.tty else int(os.environ.get("COLUMNS") or _PIPE_WIDTH)
        self.console = Console(
            file=self.out,
            width=width,
            highlight=False,
            force_terminal=self.tty,
            no_color=not self.tty,
        )

    def line(self, text: str = "") -> None:
        """Write one plain line to `out` (no markup, no wrapping) and flush it."""
        self.out.write(f"{text}\n")
        self.out.flush()

    def lines(self, texts: Iterable[str]) -> None:
        """Write plain lines to `out`."""
        for text in texts:
            self.line(text)

    def note(self, text: str) -> None:
        """Write one plain line to `err` (progress notes, warnings, errors)."""
        self.err.write(f"{text}\n")
        self.err.flush()

    def show(self, renderable: RenderableType) -> None:
        """Draw a rich renderable on `out` (outside a terminal, without trailing blanks)."""
        if self.tty:
            self.console.print(renderable)
            return
        with self.console.capture() as captured:
            self.console.print(renderable)
        self.lines(line.rstrip() for line in captured.get().splitlines())


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def fmt_time(value: datetime | None) -> str:
    """Local time, to the second (`2024-05-01 14:03:07`); `-` when absent."""
    return "-" if value is None else value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def one_line(text: str | None) -> str:
    """`text` with its line breaks folded into spaces (messages go on one line)."""
    return " ".join((text or "").split())


def status_text(status: str) -> Text:
    """A status word, coloured on a terminal."""
    return Text(status, style=_STYLES.get(status, ""))


def counts(pairs: Iterable[tuple[str, int]], *, nonzero: bool = False) -> str:
    """`2 Succeeded, 1 Failed, 0 Skipped, ...` in a fixed order; `Ready` only when non-zero.

    With `nonzero`, only the counters above 0 (`-` when none is): the compact form of `list`.
    """
    found = dict(pairs)
    text = ", ".join(
        f"{found[key]} {key}"
        for key in _COUNT_ORDER
        if key in found and (found[key] or (key != "Ready" and not nonzero))
    )
    return text or "-"


def target_counts(targets: Sequence[TargetView]) -> list[tuple[str, int]]:
    """Counts of targets per status, for when the deployment has no overview."""
    return [(key, sum(1 for t in targets if t.status == key)) for key in _COUNT_ORDER]


def table(headers: Sequence[str], rows: Iterable[Sequence[str | Text]], *, tty: bool) -> Table:
    """A table: a header rule on a terminal, plain aligned columns elsewhere."""
    grid = Table(
        box=box.SIMPLE_HEAD if tty else None,
        show_edge=False,
        pad_edge=False,
        header_style="bold" if tty else "",
    )
    for header in headers:
        grid.add_column(header, overflow="fold")
    for row in rows:
        grid.add_row(*row)
    return grid


def event_glyphs(events: Sequence[EventView]) -> Text:
    """One coloured glyph per lifecycle event (✓ ✗ ▶ · -), for the live progress table."""
    text = Text()
    for event in events:
        text.append(_GLYPHS.get(event.status, "?"), style=_STYLES.get(event.status, ""))
    return text


def event_progress(events: Sequence[EventView]) -> str:
    """`5/7`: the events that finished (succeeded, failed or skipped) out of all."""
    done = sum(1 for e in events if e.status in ("Succeeded", "Failed", "Skipped"))
    return f"{done}/{len(events)}"


def current_event_text(target: TargetView) -> str:
    """`ValidateService Failed (ScriptFailed)`, `Install InProgress`, or empty."""
    event = target.current_event
    if event is None:
        return ""
    code = f" ({event.error_code})" if event.status == "Failed" and event.error_code else ""
    return f"{event.name} {event.status}{code}"


def targets_table(targets: Sequence[TargetView], *, tty: bool) -> Table:
    """One row per target: status, events done, the event running or failed, last update."""
    rows = [
        (
            t.target_id,
            status_text(t.status),
            event_glyphs(t.events) if tty else event_progress(t.events),
            current_event_text(t),
            fmt_time(t.last_updated),
        )
        for t in targets
    ]
    return table(("Instance", "Status", "Events", "Current event", "Updated"), rows, tty=tty)


def deployment_fields(view: DeploymentView) -> list[tuple[str, str]]:
    """The `status` command's key/value lines for a deployment."""
    fields = [
        ("Application", view.application or "-"),
        ("Deployment group", view.group or "-"),
        ("Revision", view.revision or "-"),
        ("Config", view.config or "-"),
        ("Creator", view.creator or "-"),
        ("Created", fmt_time(view.create_time)),
        ("Started", fmt_time(view.start_time)),
        ("Completed", fmt_time(view.complete_time)),
    ]
    if view.description:
        fields.append(("Description", one_line(view.description)))
    if view.error_code or view.error_message:
        fields.append(("Error", error_text(view)))
    fields.extend(("Message", one_line(m)) for m in view.status_messages)
    if view.rollback_deployment_id:
        fields.append(("Rolled back by", _with_message(view.rollback_deployment_id, view)))
    elif view.rollback_triggering_id:
        fields.append(("Rollback of", _with_message(view.rollback_triggering_id, view)))
    elif view.rollback_message:
        fields.append(("Rollback", one_line(view.rollback_message)))
    if view.overview:
        fields.append(("Instances", counts(view.overview)))
    return fields


def _with_message(deployment_id: str, view: DeploymentView) -> str:
    message = one_line(view.rollback_message)
    return f"{deployment_id} ({message})" if message else deployment_id


def error_text(view: DeploymentView) -> str:
    """`CODE: message` of a deployment's errorInformation."""
    parts = [p for p in (view.error_code, one_line(view.error_message)) if p]
    return ": ".join(parts)


def fields_grid(fields: Sequence[tuple[str, str]]) -> Table:
    """Aligned `Key   value` lines."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for key, value in fields:
        grid.add_row(key, value)
    return grid


def failure_lines(targets: Sequence[TargetView], *, indent: str = "") -> list[str]:
    """For each failed lifecycle event: what failed, the diagnostics, and the script log tail."""
    lines: list[str] = []
    for target in targets:
        for event in target.events:
            if event.status != "Failed":
                continue
            code = f" ({event.error_code})" if event.error_code else ""
            lines.append(f"{indent}{target.target_id} {event.name} Failed{code}")
            if event.script_name:
                lines.append(f"{indent}  Script: {event.script_name}")
            if event.message:
                lines.append(f"{indent}  Message: {one_line(event.message)}")
            if event.log_tail:
                lines.append(f"{indent}  Log tail:")
                lines.extend(f"{indent}    {line}" for line in event.log_tail.splitlines())
    return lines


def progress_view(snapshot: Snapshot) -> RenderableType:
    """The live view of `deploy --wait` on a terminal: a headline, the targets, the counts."""
    view = snapshot.deployment
    headline = Text.assemble(
        (f"Deployment {view.deployment_id} ", "bold"),
        status_text(view.status),
        f"  {view.application or '-'}/{view.group or '-'}  {view.config or ''}",
    )
    parts: list[RenderableType] = [headline, targets_table(snapshot.targets, tty=True)]
    parts.append(Text(counts(view.overview or target_counts(snapshot.targets)), style="dim"))
    return Group(*parts)


def deployments_table(views: Sequence[DeploymentView], *, tty: bool) -> Table:
    """The `list` command's table."""
    rows = [
        (
            v.deployment_id,
            status_text(v.status),
            v.application or "-",
            v.group or "-",
            fmt_time(v.create_time),
            fmt_time(v.complete_time),
            v.creator or "-",
            counts(v.overview, nonzero=True),
            one_line(v.description),
        )
        for v in views
    ]
    headers = (
        "Deployment",
        "Status",
        "Application",
        "Group",
        "Created",
        "Completed",
        "Creator",
        "Instances",
        "Description",
    )
    return table(headers, rows, tty=tty)


def instances_table(instances: Sequence[InstanceView], *, tty: bool) -> Table:
    """The `instances` command's table; tags as `Key=Value` pairs."""
    rows = [
        (
            i.name,
            status_text(i.registration_status),
            ", ".join(f"{key}={value}" for key, value in i.tags) or "-",
            fmt_time(i.register_time),
            fmt_time(i.deregister_time) if i.deregister_time else "-",
        )
        for i in instances
    ]
    return table(("Instance", "Status", "Tags", "Registered", "Deregistered"), rows, tty=tty)

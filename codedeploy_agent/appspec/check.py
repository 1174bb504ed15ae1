"""`codedeploy-agent validate`: every problem of an appspec at once, not just the first.

The parsers stop at the first error, as the real agent does. The checker runs the same parsers in
collect mode (each section and entry on its own), then adds what only a look at the revision and
this host can tell: hook scripts and `files` sources missing from the archive, scripts that are
not executable, users and groups that do not exist here.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path

import yaml

from codedeploy_agent.appspec._values import (
    Issues,
    is_absent,
    join_index,
    join_key,
    load_document,
    ruby_to_s,
)
from codedeploy_agent.appspec.parser import SERVICE_EVENT_TIMEOUT, Draft, parse_document
from codedeploy_agent.appspec.serverless import (
    UNKNOWN_KIND,
    AppSpecKind,
    appspec_kind,
    ecs_from_data,
    lambda_from_data,
)
from codedeploy_agent.errors import AppSpecError
from codedeploy_agent.lifecycle import AGENT_EVENTS, DEFAULT_ORDER


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding at key path `path` (`hooks.ApplicationStart[0].timeout`; "" is the file)."""

    path: str
    message: str


@dataclass(frozen=True, slots=True)
class CheckReport:
    """The result of `check_appspec`: errors fail a deployment, warnings probably surprise."""

    filename: str
    kind: AppSpecKind | None = None  # None when the file could not be decoded at all
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing would make CodeDeploy reject the appspec."""
        return not self.errors

    def format(self) -> str:
        """One line per problem (`ERROR  path: message`, then `WARN   ...`) and a summary line."""
        lines = [_line("ERROR", p) for p in self.errors] + [_line("WARN", p) for p in self.warnings]
        if not lines:
            lines.append(f"{self.filename}: no problems found")
        else:
            lines.append(
                f"{self.filename}: {_count(len(self.errors), 'error')}, "
                f"{_count(len(self.warnings), 'warning')}"
            )
        return "\n".join(lines)


def _line(level: str, problem: Problem) -> str:
    where = f"{problem.path}: " if problem.path else ""
    return f"{level:<6} {where}{problem.message}"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def check_appspec(text: str, *, filename: str, archive_dir: Path | None = None) -> CheckReport:
    """Check appspec `text` (any platform) and report every error and warning found.

    With `archive_dir` (the unpacked revision), also check that hook scripts exist there as
    regular files (warning when not executable) and that every `files` source exists. Users and
    groups named by `runas`, `owner` and `group` are looked up on this host (warnings: the
    target host may differ). Blocking file-system work: call it from a thread in async code.
    """
    issues = Issues(collect=True)
    try:
        data = load_document(text, filename=filename)
    except AppSpecError as err:
        return CheckReport(filename, None, [Problem(err.path, str(err))], [])
    kind = appspec_kind(data)
    if kind == "lambda":
        lambda_from_data(data, issues)
    elif kind == "ecs":
        ecs_from_data(data, issues)
    elif kind == "unknown":
        issues.error(UNKNOWN_KIND, "Resources")
    else:
        draft = parse_document(data, issues, filename=filename)
        _check_octal_modes(text, issues)
        _check_events(data, draft, issues)
        _check_accounts(draft, issues)
        if archive_dir is not None:
            _check_archive(draft, archive_dir, issues)
    return CheckReport(
        filename,
        kind,
        [Problem(e.path, str(e)) for e in issues.errors],
        [Problem(w.path, str(w)) for w in issues.warnings],
    )


def _check_octal_modes(text: str, issues: Issues) -> None:
    """Warn about `mode: 0644`: YAML 1.1 reads it as the octal number 420, so the mode is "420"."""
    try:
        root = yaml.compose(text.removeprefix("\ufeff"), Loader=yaml.SafeLoader)
    except Exception:  # noqa: BLE001 - the document was decoded already; this is only a hint
        return
    permissions = _child(root, "permissions")
    if not isinstance(permissions, yaml.SequenceNode):
        return
    for index, entry in enumerate(permissions.value):
        mode = _child(entry, "mode")
        if (
            isinstance(mode, yaml.ScalarNode)
            and mode.style is None
            and re.fullmatch(r"0[0-7]+", mode.value)
        ):
            applied = str(int(mode.value, 8)).rjust(3, "0")
            meant = mode.value.lstrip("0").rjust(3, "0")
            if applied == meant:
                continue
            issues.warn(
                f"mode {mode.value} is read by YAML 1.1 as an octal number (decimal "
                f"{applied.lstrip('0')}), so CodeDeploy applies mode {applied}, not {meant}; "
                f"write mode: {meant}",
                join_key(join_index("permissions", index), "mode"),
            )


def _child(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    found: yaml.Node | None = None
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
            found = value_node  # the last duplicate wins, as when decoding
    return found


def _check_events(data: object, draft: Draft, issues: Issues) -> None:
    """Warn about event names CodeDeploy never runs and about event time budgets."""
    hooks = data.get("hooks") if isinstance(data, Mapping) else None
    if not isinstance(hooks, Mapping):
        return
    scripted = [e for e in DEFAULT_ORDER if e not in AGENT_EVENTS]
    for key, raw_scripts in hooks.items():
        event = ruby_to_s(key)
        path = join_key("hooks", event)
        if event in AGENT_EVENTS:
            issues.warn(
                f"scripts listed under {event} never run: the agent performs {event} itself",
                path,
            )
        elif event not in DEFAULT_ORDER:
            close = get_close_matches(event, scripted, n=1, cutoff=0.75)
            hint = (
                f"; did you mean {close[0]}?"
                if close
                else ": it runs only in deployments that list it "
                "(codedeploy-agent local --events ...)"
            )
            issues.warn(f"{event} is not a CodeDeploy lifecycle event{hint}", path)
        # The real agent sends the service a total only when every script sets a timeout; with
        # one default, the service's own 3600-second limit for the event applies.
        scripts = draft.hooks.get(event, [])
        explicit = isinstance(raw_scripts, list) and all(
            isinstance(s, Mapping) and not is_absent(s.get("timeout")) for s in raw_scripts
        )
        total = sum(script.timeout for _, script in scripts)
        if explicit and len(scripts) > 1 and total > SERVICE_EVENT_TIMEOUT:
            issues.warn(
                f"the scripts' timeouts add up to {total} seconds, more than the "
                f"{SERVICE_EVENT_TIMEOUT} seconds CodeDeploy allows a lifecycle event to run",
                path,
            )


def _check_accounts(draft: Draft, issues: Issues) -> None:
    for event, scripts in draft.hooks.items():
        for index, script in scripts:
            if script.runas is not None:
                path = join_key(join_index(join_key("hooks", event), index), "runas")
                _check_account(pwd.getpwnam, "user", script.runas, path, issues)
    for index, permission in draft.permissions:
        path = join_index("permissions", index)
        if permission.owner is not None:
            _check_account(pwd.getpwnam, "user", permission.owner, join_key(path, "owner"), issues)
        if permission.group is not None:
            _check_account(grp.getgrnam, "group", permission.group, join_key(path, "group"), issues)


def _check_account(
    lookup: Callable[[str], object], kind: str, name: str, path: str, issues: Issues
) -> None:
    try:
        lookup(name)
    except (KeyError, ValueError):  # ValueError: a name with a NUL character
        issues.warn(
            f"{kind} {name!r} does not exist on this host (the deployment fails on a host "
            "without it)",
            path,
        )


def _check_archive(draft: Draft, archive_dir: Path, issues: Issues) -> None:
    root = _lexical(archive_dir.absolute())
    for event, scripts in draft.hooks.items():
        for index, script in scripts:
            path = join_key(join_index(join_key("hooks", event), index), "location")
            # The agent joins the location to the archive root; a leading "/" stays inside it.
            _check_script(root, script.location, path, issues)
    for index, mapping in draft.files:
        path = join_key(join_index("files", index), "source")
        source = _lexical(root / mapping.source.lstrip("/"))
        if not source.is_relative_to(root):
            issues.warn(f"source {mapping.source!r} points outside the revision", path)
        if not (source.is_symlink() or source.exists()):
            issues.error(
                f"source {mapping.source!r} does not exist in the revision (expected at "
                f"{source}); the Install step would fail. Fix the source or add the file to the "
                "bundle.",
                path,
            )


def _check_script(root: Path, location: str, path: str, issues: Issues) -> None:
    target = _lexical(root / location.lstrip("/"))
    if not target.is_relative_to(root):
        issues.warn(f"script location {location!r} points outside the revision", path)
    try:
        info = target.stat()
    except OSError:
        issues.error(f"Script does not exist at specified location: {target}", path)
        return
    if not stat.S_ISREG(info.st_mode):
        issues.error(f"the script at {target} is not a regular file", path)
    elif not info.st_mode & 0o111:
        issues.warn(
            f"the script at {target} is not executable; the agent makes it executable "
            "(chmod +x) before running it",
            path,
        )


def _lexical(path: Path) -> Path:
    """`..` and `.` removed without following links, like Ruby's File.expand_path."""
    return Path(os.path.normpath(path))

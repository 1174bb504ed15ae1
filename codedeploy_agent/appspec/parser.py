"""The EC2/on-premises appspec grammar (reference §3): text -> `AppSpec`, with CodeDeploy's texts.

Rules, defaults and the evaluation order are the real agent's (`application_specification.rb`,
`script_info.rb`, `file_info.rb`): empty file, `version`, `os`, `hooks`, `files`, `permissions`,
`file_exists_behavior`. Where the real agent crashes on a value of the wrong shape (a string where
a list belongs...), we report an AppSpecError that says what was expected instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, cast

from codedeploy_agent.appspec._values import (
    RUBY_WHITESPACE,
    Issues,
    describe,
    is_absent,
    join_index,
    join_key,
    load_document,
    ruby_inspect,
    ruby_to_i,
    ruby_to_s,
    ruby_truthy,
)
from codedeploy_agent.appspec.model import (
    DEFAULT_SCRIPT_TIMEOUT,
    AppSpec,
    FileExistsBehavior,
    FileMapping,
    Permission,
    Script,
)
from codedeploy_agent.appspec.permissions import parse_permission, scalar_text
from codedeploy_agent.errors import AppSpecError
from codedeploy_agent.lifecycle import AGENT_EVENTS, DEFAULT_ORDER

EMPTY_FILE: Final = (
    "The deployment failed because the application specification file was empty. Make sure your "
    "AppSpec file defines at minimum the 'version' and 'os' properties."
)
NO_LOCATION: Final = (
    "The deployment failed because the application specification file specifies a script with no "
    "location value. Specify the location in the hooks section of the AppSpec file, and then try "
    "again."
)
INVALID_TIMEOUT: Final = (
    "The deployment failed because an invalid timeout value was provided for a script in the "
    "application specification file. Make corrections in the hooks section of the AppSpec file, "
    "and then try again."
)
NO_SOURCE: Final = (
    "The deployment failed because the application specification file specifies a destination "
    "file, but no source file. Update the files section of the AppSpec file, and then try again."
)
TOP_LEVEL_KEYS: Final = ("version", "os", "files", "permissions", "hooks", "file_exists_behavior")
SCRIPT_KEYS: Final = ("location", "timeout", "runas", "sudo")
FILE_KEYS: Final = ("source", "destination")
#: The only `os` a Linux agent accepts (a Windows agent would accept only "windows").
SUPPORTED_OS: Final = "linux"
#: The service's documented maximum for one lifecycle event; the agent itself enforces none.
SERVICE_EVENT_TIMEOUT: Final = 3600


def parse_appspec(text: str, *, filename: str = "appspec.yml") -> AppSpec:
    """Parse an EC2/on-premises appspec, raising the first AppSpecError the real agent would.

    `filename` only names the file in syntax-error messages.
    """
    return appspec_from_data(load_document(text, filename=filename), filename=filename)


def appspec_from_data(data: object, *, filename: str = "appspec.yml") -> AppSpec:
    """Like `parse_appspec`, for an already decoded document."""
    draft = parse_document(data, Issues(collect=False), filename=filename)
    appspec = draft.build()
    if appspec is None:  # pragma: no cover - in fail-fast mode the first error was raised already
        raise AppSpecError("The AppSpec file is invalid.")
    return appspec


@dataclass
class Draft:
    """What `parse_document` could decode; entries keep their index for key paths (checker)."""

    version: float | None = None
    os: str | None = None
    hooks: dict[str, list[tuple[int, Script]]] = field(default_factory=dict)
    files: list[tuple[int, FileMapping]] = field(default_factory=list)
    permissions: list[tuple[int, Permission]] = field(default_factory=list)
    file_exists_behavior: FileExistsBehavior | None = None
    complete: bool = False

    def build(self) -> AppSpec | None:
        """The AppSpec, or None when any part failed to parse."""
        if not self.complete or self.version is None or self.os is None:
            return None
        return AppSpec(
            version=self.version,
            os=self.os,
            files=tuple(f for _, f in self.files),
            permissions=tuple(p for _, p in self.permissions),
            hooks={event: tuple(s for _, s in scripts) for event, scripts in self.hooks.items()},
            file_exists_behavior=self.file_exists_behavior,
        )


def parse_document(data: object, issues: Issues, *, filename: str = "appspec.yml") -> Draft:
    """Decode every section of `data`, reporting problems to `issues` (fail fast or collect)."""
    draft = Draft()
    if is_absent(data):  # Ruby: `unless yaml_hash`, so an empty document, `~` and `false`
        issues.error(EMPTY_FILE, "")
        return draft
    if not isinstance(data, Mapping):
        issues.error(
            f"The deployment failed because the application specification file ({filename}) is "
            f"{describe(data)}, not a mapping of properties. Make sure your AppSpec file defines "
            "at minimum the 'version' and 'os' properties.",
            "",
        )
        return draft
    doc = cast("Mapping[object, object]", data)
    errors_before = len(issues.errors)
    draft.version = issues.attempt(_parse_version, doc.get("version"))
    draft.os = issues.attempt(_parse_os, doc.get("os"))
    draft.hooks = _parse_hooks(doc.get("hooks"), issues)
    draft.files = _parse_files(doc.get("files"), issues)
    draft.permissions = _parse_permissions(doc.get("permissions"), issues)
    draft.file_exists_behavior = issues.attempt(
        _parse_file_exists_behavior, doc.get("file_exists_behavior")
    )
    issues.check_keys(doc, TOP_LEVEL_KEYS, "")
    draft.complete = len(issues.errors) == errors_before
    return draft


def _parse_version(raw: object) -> float:
    # The real agent checks `[0.0].include?(version)`: numeric equality, so 0, 0.0 and 0.00 pass
    # and the string "0.0" does not. Python's True == 1 and False == 0, hence the bool exclusion.
    if isinstance(raw, int | float) and not isinstance(raw, bool) and raw == 0:
        return 0.0
    raise AppSpecError(
        "The deployment failed because an invalid version value "
        f"({ruby_to_s(raw)}) was entered in the application specification file. Make sure your "
        'AppSpec file specifies "0.0" as the version, and then try again.',
        "version",
    )


def _parse_os(raw: object) -> str:
    if raw == SUPPORTED_OS:
        return SUPPORTED_OS
    raise AppSpecError(
        "The deployment failed because the application specification file specifies an "
        f'unsupported operating system ({ruby_to_s(raw)}). Specify either "linux" or '
        '"windows" in the os section of the AppSpec file, and then try again.',
        "os",
    )


def _parse_file_exists_behavior(raw: object) -> FileExistsBehavior | None:
    if raw is None:
        return None
    if isinstance(raw, str) and raw in FileExistsBehavior.__members__:  # case-sensitive
        return FileExistsBehavior(raw)
    raise AppSpecError(
        "The deployment failed because an invalid file_exists_behavior value "
        f"({ruby_to_s(raw)}) was entered in the application specification file. Make sure your "
        "AppSpec file specifies one of DISALLOW,OVERWRITE,RETAIN as the file_exists_behavior, "
        "and then try again.",
        "file_exists_behavior",
    )


def _not_a(what: str, expected: str, raw: object, section: str) -> str:
    return (
        f"The deployment failed because {what} in the application specification file must be "
        f"{expected}, not {describe(raw)} ({ruby_inspect(raw)}). Correct the {section} section "
        "of the AppSpec file, and then try again."
    )


# --- hooks --------------------------------------------------------------------------------------


def _parse_hooks(raw: object, issues: Issues) -> dict[str, list[tuple[int, Script]]]:
    hooks: dict[str, list[tuple[int, Script]]] = {}
    if is_absent(raw):
        return hooks
    if not isinstance(raw, Mapping):
        issues.error(
            _not_a(
                "the hooks section", "a mapping of event names to lists of scripts", raw, "hooks"
            ),
            "hooks",
        )
        return hooks
    for key, scripts in cast("Mapping[object, object]", raw).items():
        event = ruby_to_s(key)
        path = join_key("hooks", event)
        if scripts is None:
            continue  # an event listed with no value is ignored
        if not isinstance(scripts, list):
            issues.error(_not_a(f"the hook {event}", "a list of scripts", scripts, "hooks"), path)
            continue
        parsed: list[tuple[int, Script]] = []
        for index, item in enumerate(scripts):
            script = parse_script(item, join_index(path, index), issues)
            if script is not None:
                parsed.append((index, script))
        if parsed:
            hooks[event] = parsed
        elif not scripts:
            issues.warn(f"the hook {event} lists no scripts", path)
    return hooks


def parse_script(raw: object, path: str, issues: Issues) -> Script | None:
    """One entry of `hooks.<Event>`: location (required, stripped), timeout, runas, sudo."""
    if not isinstance(raw, Mapping):
        issues.error(
            f"{NO_LOCATION} Each script is a mapping such as '- location: scripts/start.sh', "
            f"not {describe(raw)} ({ruby_inspect(raw)}).",
            path,
        )
        return None
    entry = cast("Mapping[object, object]", raw)
    issues.check_keys(entry, SCRIPT_KEYS, path)
    errors_before = len(issues.errors)
    location = _parse_location(entry.get("location"), join_key(path, "location"), issues)
    runas = _parse_runas(entry.get("runas"), join_key(path, "runas"), issues)
    sudo_raw = entry.get("sudo")
    if sudo_raw is not None and not isinstance(sudo_raw, bool):
        issues.warn(
            f"sudo {ruby_inspect(sudo_raw)} is not a boolean; CodeDeploy treats it as true",
            join_key(path, "sudo"),
        )
    timeout = _parse_timeout(entry.get("timeout"), join_key(path, "timeout"), issues)
    if len(issues.errors) > errors_before or location is None or timeout is None:
        return None
    return Script(location=location, timeout=timeout, runas=runas, sudo=ruby_truthy(sudo_raw))


def _parse_location(raw: object, path: str, issues: Issues) -> str | None:
    if raw is None:
        issues.error(NO_LOCATION, path)
        return None
    text = issues.attempt(scalar_text, raw, path, "a script location")
    if text is None:
        return None
    location = text.strip(RUBY_WHITESPACE)
    if not location:
        issues.error(NO_LOCATION, path)
        return None
    return location


def _parse_runas(raw: object, path: str, issues: Issues) -> str | None:
    if raw is None:
        return None
    text = issues.attempt(scalar_text, raw, path, "runas")
    if text is None:
        return None
    user = text.strip(RUBY_WHITESPACE)
    if not user:
        # The real agent would run `su  -c <script>`, i.e. as root; an empty runas means "no
        # runas" here, which is the same for an agent running as root and clearer otherwise.
        issues.warn("runas is empty; the script runs as the agent's user", path)
        return None
    return user


def _parse_timeout(raw: object, path: str, issues: Issues) -> int | None:
    if is_absent(raw):  # Ruby: `opts[:timeout] || 3600`
        return DEFAULT_SCRIPT_TIMEOUT
    seconds = ruby_to_i(raw)
    if seconds is None or seconds <= 0:
        issues.error(INVALID_TIMEOUT, path)
        return None
    if not isinstance(raw, int):
        unit = "second" if seconds == 1 else "seconds"
        issues.warn(f"timeout {ruby_inspect(raw)} is read as {seconds} {unit}", path)
    if seconds > SERVICE_EVENT_TIMEOUT:
        issues.warn(
            f"timeout {seconds} is longer than the {SERVICE_EVENT_TIMEOUT} seconds CodeDeploy "
            "allows a lifecycle event to run",
            path,
        )
    return seconds


# --- files --------------------------------------------------------------------------------------


def _parse_files(raw: object, issues: Issues) -> list[tuple[int, FileMapping]]:
    files: list[tuple[int, FileMapping]] = []
    if is_absent(raw):
        return files
    if not isinstance(raw, list):
        issues.error(
            _not_a("the files section", "a list of source/destination mappings", raw, "files"),
            "files",
        )
        return files
    for index, item in enumerate(raw):
        mapping = parse_file_mapping(item, join_index("files", index), issues)
        if mapping is not None:
            files.append((index, mapping))
    return files


def parse_file_mapping(raw: object, path: str, issues: Issues) -> FileMapping | None:
    """One entry of `files`: both `source` and `destination` are required."""
    if not isinstance(raw, Mapping):
        issues.error(
            _not_a(
                "an entry of the files section",
                "a mapping with source and destination",
                raw,
                "files",
            ),
            path,
        )
        return None
    entry = cast("Mapping[object, object]", raw)
    issues.check_keys(entry, FILE_KEYS, path)
    source_raw, destination_raw = entry.get("source"), entry.get("destination")
    if source_raw is None:
        issues.error(NO_SOURCE, join_key(path, "source"))
        return None
    if destination_raw is None:
        issues.error(
            "The deployment failed because the application specification file specifies only a "
            f"source file ({ruby_to_s(source_raw)}). Add the name of the destination file to the "
            "files section of the AppSpec file, and then try again.",
            join_key(path, "destination"),
        )
        return None
    source = issues.attempt(scalar_text, source_raw, join_key(path, "source"), "a file source")
    destination = issues.attempt(
        scalar_text, destination_raw, join_key(path, "destination"), "a file destination"
    )
    if source is None or destination is None:
        return None
    if not destination.startswith("/"):
        issues.warn(
            f"destination {destination!r} is relative: the agent expands it against its own "
            "working directory; use an absolute path",
            join_key(path, "destination"),
        )
    return FileMapping(source=source, destination=destination)


# --- permissions --------------------------------------------------------------------------------


def _parse_permissions(raw: object, issues: Issues) -> list[tuple[int, Permission]]:
    permissions: list[tuple[int, Permission]] = []
    if is_absent(raw):
        return permissions
    if not isinstance(raw, list):
        issues.error(
            _not_a("the permissions section", "a list of permission entries", raw, "permissions"),
            "permissions",
        )
        return permissions
    for index, item in enumerate(raw):
        permission = parse_permission(item, join_index("permissions", index), issues)
        if permission is not None:
            permissions.append((index, permission))
    return permissions


# --- hook names against the deployment's events (reference §3.6) -------------------------------


def check_hook_names(
    appspec: AppSpec,
    *,
    appspec_filename: str,
    all_possible_events: Sequence[str],
    requested_events: Sequence[str],
) -> None:
    """The Install-time check of appspec event names when the deployment carries
    `AllPossibleLifecycleEvents` (the real agent's `validate_app_spec_hooks`).

    - Every event named in the appspec, plus every requested event that runs scripts (the real
      agent's hook mapping; DownloadBundle and Install run none), must be in
      `all_possible_events`, else `<file> file contains unknown lifecycle events: ["X"]`.
    - Every requested custom event (in `all_possible_events` but not one of CodeDeploy's default
      events) must have a hooks entry in the appspec, else `You specified a lifecycle event which
      is not a default one and doesn't exist in your <file> file: X,Y`.

    `appspec_filename` is the base name of the file that was read (after the `.yaml` fallback).
    Lists keep Ruby's order and formatting (`Array#inspect`, `join(',')`).
    """
    possible = set(all_possible_events)
    named = list(
        dict.fromkeys([*appspec.hooks, *(e for e in requested_events if e not in AGENT_EVENTS)])
    )
    unknown = [event for event in named if event not in possible]
    if unknown:
        raise AppSpecError(
            f"{appspec_filename} file contains unknown lifecycle events: {ruby_inspect(unknown)}",
            "hooks",
        )
    defaults = set(DEFAULT_ORDER)
    missing = [e for e in all_possible_events if e not in defaults and e not in appspec.hooks]
    if missing:
        raise AppSpecError(
            "You specified a lifecycle event which is not a default one and doesn't exist in your "
            f"{appspec_filename} file: {','.join(missing)}",
            "hooks",
        )

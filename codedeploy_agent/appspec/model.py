"""The decoded appspec: frozen values that are valid by construction (the parser checks them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, Literal

DEFAULT_SCRIPT_TIMEOUT: Final = 3600


class FileExistsBehavior(StrEnum):
    """What the installer does when a destination file already exists (reference §3.4)."""

    DISALLOW = "DISALLOW"
    OVERWRITE = "OVERWRITE"
    RETAIN = "RETAIN"


@dataclass(frozen=True, slots=True)
class Script:
    """One entry of `hooks.<Event>`: a script in the revision, run in list order."""

    location: str
    timeout: int = DEFAULT_SCRIPT_TIMEOUT
    runas: str | None = None
    sudo: bool = False


@dataclass(frozen=True, slots=True)
class FileMapping:
    """One entry of `files`: `source` is archive-relative, `destination` a directory."""

    source: str
    destination: str


@dataclass(frozen=True, slots=True)
class Mode:
    """A permissions mode as CodeDeploy keeps it: 3 or 4 octal digits (`"644"`, `"6763"`)."""

    digits: str

    @property
    def value(self) -> int:
        """The mode bits for `os.chmod`."""
        return int(self.digits, 8)


AceType = Literal["user", "group", "mask", "other"]


@dataclass(frozen=True, slots=True)
class Ace:
    """One access control entry, e.g. `d:u:bob:7` -> `Ace(True, "user", "bob", "rwx")`."""

    default: bool
    type: AceType
    name: str
    perms: str  # always three characters from "rwx-", e.g. "r-x"

    def canonical(self) -> str:
        """`[default:]type:name:rwx`, the form `setfacl` takes and install.json records."""
        prefix = "default:" if self.default else ""
        return f"{prefix}{self.type}:{self.name}:{self.perms}"


@dataclass(frozen=True, slots=True)
class SelinuxRange:
    """An MLS range `sN[-sM][:cA[.cB],...]`; `categories` is the sorted expanded set."""

    low: int
    high: int
    categories: tuple[int, ...] = ()

    def canonical(self) -> str:
        """The range text passed to `semanage fcontext -r` (e.g. `s3-s7:c5,c8.c10,c17`)."""
        text = f"s{self.low}" if self.low == self.high else f"s{self.low}-s{self.high}"
        if not self.categories:
            return text
        runs: list[str] = []
        start = prev = self.categories[0]
        for cat in (*self.categories[1:], None):
            if cat is not None and cat == prev + 1:
                prev = cat
                continue
            runs.append(f"c{start}" if start == prev else f"c{start}.c{prev}")
            if cat is not None:
                start = prev = cat
        return f"{text}:{','.join(runs)}"


@dataclass(frozen=True, slots=True)
class SelinuxContext:
    """A permission's `context`: SELinux `type` (required), optional `name` (user) and range."""

    type: str
    user: str | None = None
    range: SelinuxRange | None = None


PermissionType = Literal["file", "directory"]


@dataclass(frozen=True, slots=True)
class Permission:
    """One entry of `permissions` (Linux only, reference §3.5)."""

    object: str
    pattern: str = "**"
    except_: tuple[str, ...] = ()
    types: frozenset[PermissionType] = frozenset({"file", "directory"})
    owner: str | None = None
    group: str | None = None
    mode: Mode | None = None
    acls: tuple[Ace, ...] = ()
    context: SelinuxContext | None = None


@dataclass(frozen=True, slots=True)
class AppSpec:
    """An EC2/on-premises appspec (`version: 0.0`, `os: linux`)."""

    version: float
    os: str
    files: tuple[FileMapping, ...] = ()
    permissions: tuple[Permission, ...] = ()
    #: Event name -> scripts, in file order; events with a null or empty list are absent.
    hooks: Mapping[str, tuple[Script, ...]] = field(default_factory=dict)
    file_exists_behavior: FileExistsBehavior | None = None

    def scripts_for(self, event: str) -> tuple[Script, ...]:
        """The scripts of `event`, or `()` when the appspec has none."""
        return self.hooks.get(event, ())

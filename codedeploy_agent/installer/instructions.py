"""Install instructions, the builder that validates them, and `<group>-install.json`.

The builder mirrors the real agent's `CommandBuilder` (`install_instruction.rb`): every path is
made absolute first (`os.path.abspath`, the equivalent of Ruby's `File.expand_path`, so
`dir` and `dir/` are the same path), and the collisions it refuses carry CodeDeploy's exact
messages. Nothing here touches the file system; `apply.py` executes the instructions.

install.json is informational (nothing reads it back); each instruction type keeps the real
agent's keys in the real agent's order, compact, as Ruby's `to_json` writes them.
"""

# str paths on purpose: os.path/os.* on str is several times cheaper than pathlib per call,
# and this module handles every file of a revision (20,000+ in the benchmark).
# ruff: noqa: PTH100

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from codedeploy_agent.appspec.model import Ace, Mode, Permission, SelinuxContext
from codedeploy_agent.errors import InstallError
from codedeploy_agent.installer.matching import matches_except, matches_pattern, object_prefix
from codedeploy_agent.installer.tools import display_path

#: uid/gid value that leaves the owner or group unchanged in `os.chown`.
UNCHANGED: Final = -1


@dataclass(frozen=True, slots=True)
class Copy:
    """Copy one file (or recreate one symlink) from the archive to `destination`."""

    source: str
    destination: str
    #: The source is a symlink: the destination becomes a symlink with the same target text.
    symlink: bool = False
    #: Something already exists at `destination` and OVERWRITE is in force: replace it.
    replace: bool = False

    def to_json(self) -> dict[str, object]:
        """The install.json entry (real agent's keys and order)."""
        return {"type": "copy", "source": self.source, "destination": self.destination}


@dataclass(frozen=True, slots=True)
class Mkdir:
    """Create one directory (its parent exists by then)."""

    directory: str

    def to_json(self) -> dict[str, object]:
        """The install.json entry (real agent's keys and order)."""
        return {"type": "mkdir", "directory": self.directory}


@dataclass(frozen=True, slots=True)
class Chmod:
    """Set the mode bits of `file` (`origin` names the permissions entry, for messages)."""

    file: str
    mode: Mode
    origin: str

    def to_json(self) -> dict[str, object]:
        """The install.json entry (real agent's keys and order)."""
        return {"type": "chmod", "mode": self.mode.digits, "file": self.file}


@dataclass(frozen=True, slots=True)
class Setfacl:
    """Replace the ACL of `file` with `aces` plus base entries derived from its mode."""

    file: str
    aces: tuple[Ace, ...]
    origin: str

    def to_json(self) -> dict[str, object]:
        """The install.json entry: the appspec's entries only, as the real agent records them
        (base entries are computed when the instruction runs, after any chmod)."""
        return {"type": "setfacl", "acl": [ace.canonical() for ace in self.aces], "file": self.file}


@dataclass(frozen=True, slots=True)
class Semanage:
    """Register an SELinux file context for the real path of `file`, then restorecon it."""

    file: str
    context: SelinuxContext
    origin: str

    def to_json(self) -> dict[str, object]:
        """The install.json entry (real agent's keys and order; `role` is always null)."""
        # The real agent crashes here when a context has no range (`nil.get_range`, a
        # reference Quirk); a missing range is simply null.
        rng = self.context.range.canonical() if self.context.range is not None else None
        ctx = {"user": self.context.user, "role": None, "type": self.context.type, "range": rng}
        return {"type": "semanage", "context": ctx, "file": self.file}


@dataclass(frozen=True, slots=True)
class Chown:
    """Change owner and/or group of `file`; names are resolved when the plan is made."""

    file: str
    owner: str | None
    group: str | None
    uid: int
    gid: int
    origin: str

    def to_json(self) -> dict[str, object]:
        """The install.json entry (real agent's keys and order)."""
        return {"type": "chown", "owner": self.owner, "group": self.group, "file": self.file}


Instruction = Copy | Mkdir | Chmod | Setfacl | Semanage | Chown


def _refuse_newline(path: str) -> None:
    # The cleanup file holds one path per line: a name with a newline would be read back as
    # two paths and the next deployment would delete the wrong file. The real agent writes it
    # anyway; we refuse it before anything is written.
    if "\n" in path:
        raise InstallError(
            f"The deployment failed because the path {path!r} contains a newline character, "
            "which the cleanup file cannot record. Rename the file in the revision, "
            "and then try again."
        )


class InstructionBuilder:
    """Collects instructions in execution order and refuses CodeDeploy's collisions."""

    def __init__(self) -> None:
        self.instructions: list[Instruction] = []
        # destination -> source, in insertion order (find_matches walks them in that order).
        self._copy_targets: dict[str, Copy] = {}
        # An insertion-ordered set (dict keys), like the Ruby Set it mirrors.
        self._mkdir_targets: dict[str, None] = {}
        self._permission_targets: set[str] = set()

    def copy(
        self, source: str, destination: str, *, symlink: bool = False, replace: bool = False
    ) -> None:
        """Add a copy; a second copy to, or a directory at, the same destination is an error."""
        destination = os.path.abspath(destination)
        previous = self._copy_targets.get(destination)
        if previous is not None:
            raise InstallError(
                "The deployment failed because the application specification file specifies "
                f"two source files named {display_path(source)} and "
                f"{display_path(previous.source)} for the same destination "
                f"({display_path(destination)}). Remove one of the source file paths from the "
                "AppSpec file, and then try again."
            )
        if destination in self._mkdir_targets:
            raise InstallError(
                "The deployment failed because the application specification file calls for "
                f"installing the file {display_path(source)}, but a file with that name already "
                f"exists at the location ({display_path(destination)}). Update your AppSpec file "
                "or directory structure, and then try again."
            )
        _refuse_newline(destination)
        copy = Copy(source, destination, symlink=symlink, replace=replace)
        self.instructions.append(copy)
        self._copy_targets[destination] = copy

    def mkdir(self, directory: str) -> None:
        """Add a mkdir; the same directory twice collapses to one, over a copy it is an error."""
        directory = os.path.abspath(directory)
        previous = self._copy_targets.get(directory)
        if previous is not None:
            raise InstallError(
                "The deployment failed because the application specification file includes an "
                "mkdir command more than once for the same destination path "
                f"({display_path(directory)}) from ({display_path(previous.source)}). Update the "
                "files section of the AppSpec file, and then try again."
            )
        if directory not in self._mkdir_targets:
            _refuse_newline(directory)
            self.instructions.append(Mkdir(directory))
            self._mkdir_targets[directory] = None

    def set_permissions(
        self,
        path: str,
        permission: Permission,
        *,
        origin: str,
        uid: int = UNCHANGED,
        gid: int = UNCHANGED,
    ) -> None:
        """Add chmod, setfacl, semanage, chown (that order) for `path`; a path only once."""
        path = os.path.abspath(path)
        if path in self._permission_targets:
            raise InstallError(
                "The deployment failed because the permissions setting for "
                f"({display_path(path)}) is specified more than once in the application "
                "specification file. Update the files section of the AppSpec file, and then try "
                "again."
            )
        self._permission_targets.add(path)
        copy = self._copy_targets.get(path)
        # A symlink has no mode, ACL or context of its own on Linux: chmod, setfacl and
        # restorecon would follow it and change a file outside this deployment (the real
        # agent does). Only its ownership is changed, on the link itself (lchown).
        on_link = copy is not None and copy.symlink
        if permission.mode is not None and not on_link:
            self.instructions.append(Chmod(path, permission.mode, origin))
        if permission.acls and not on_link:
            self.instructions.append(Setfacl(path, permission.acls, origin))
        if permission.context is not None and not on_link:
            self.instructions.append(Semanage(path, permission.context, origin))
        if permission.owner is not None or permission.group is not None:
            chown = Chown(path, permission.owner, permission.group, uid, gid, origin)
            self.instructions.append(chown)

    def copying_file(self, path: str) -> bool:
        """True when this deployment copies a file (or symlink) to `path`."""
        return os.path.abspath(path) in self._copy_targets

    def making_directory(self, path: str) -> bool:
        """True when this deployment creates the directory `path`."""
        return os.path.abspath(path) in self._mkdir_targets

    def find_matches(self, permission: Permission) -> list[str]:
        """Paths created by this deployment that `permission` selects: copy targets first
        (when `type` has `file`), then mkdir targets (when it has `directory`), each in
        creation order. A default ACE on a selected file is an error (files have no default
        ACL)."""
        prefix = object_prefix(os.path.abspath(permission.object))
        matches: list[str] = []
        if "file" in permission.types:
            for path in self._select(self._copy_targets, prefix, permission):
                check_file_acl(permission)
                matches.append(path)
        if "directory" in permission.types:
            matches.extend(self._select(self._mkdir_targets, prefix, permission))
        return matches

    @staticmethod
    def _select(paths: Iterable[str], prefix: str, permission: Permission) -> Iterable[str]:
        pattern, excepts = permission.pattern, permission.except_
        for path in paths:
            if matches_pattern(path, prefix, pattern) and not matches_except(path, prefix, excepts):
                yield path


def check_file_acl(permission: Permission) -> None:
    """Refuse a default ACE in a permission applied to a file (exact CodeDeploy message)."""
    if any(ace.default for ace in permission.acls):
        raise InstallError(
            "The deployment failed because the -d parameter has been specified to apply an acl "
            "setting to a file. This parameter is supported for directories only. Update the "
            "AppSpec file, and then try again."
        )


def install_json_bytes(instructions: Sequence[Instruction]) -> bytes:
    """`{"instructions":[...]}`, compact, UTF-8.

    Paths are bytes on Linux; a name that is not UTF-8 reaches us with surrogate escapes. It
    is written as a JSON `\\udcXX` escape (which `json.loads` + `os.fsencode` turn back into
    the exact bytes), so the file stays valid UTF-8 for every JSON reader. The real agent
    cannot serialise such names at all.
    """
    text = json.dumps(
        {"instructions": [instruction.to_json() for instruction in instructions]},
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return text.encode("utf-8", errors="backslashreplace")


def write_install_json(path: Path, instructions: Sequence[Instruction]) -> None:
    """Write install.json atomically (a reader never sees half a file)."""
    data = install_json_bytes(instructions)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError as exc:
        raise InstallError(
            f"The deployment failed because the agent could not write {path}: {exc.strerror}. "
            "Check that the deployment-instructions directory is writable and the disk is not "
            "full, and then try again."
        ) from exc

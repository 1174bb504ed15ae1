"""Turn an appspec into install instructions: `files` first, then `permissions` (reference §5).

Every check happens here, before anything is written: collisions (exact CodeDeploy messages),
`file_exists_behavior`, file-permission validity (the appspec's `check_file_permission`, which
raises AppSpecError), owners and groups that do not exist. The
plan reads the file system (the archive, and what already exists at the destinations) but
changes nothing.

Copy semantics (§5.2):
- a file source goes to `<destination>/<basename>`; a directory source merges its contents
  (dotfiles included) into `<destination>`; `/` is the whole archive;
- missing ancestors of a destination get one mkdir per level; a destination directory is
  created only when it is not already a directory;
- a symlink source is recreated as a symlink with the same target text, *also when it points
  to a directory*: the real agent used to expand such a link into a real copy of the tree it
  points to (a reference Quirk and a long-standing user complaint, "symlinks not preserved");
  keeping the link is what a tarball of the revision means.
- relative destinations are relative to the agent's working directory, as in the real agent
  (always use absolute destinations).

Entries of a directory are visited in name order (the real agent uses readdir order), so
install.json and the cleanup file are the same on every host.
"""

# str paths on purpose: os.path/os.* on str is several times cheaper than pathlib per call,
# and this module handles every file of a revision (20,000+ in the benchmark).
# ruff: noqa: PTH100, PTH112, PTH118, PTH119, PTH120

from __future__ import annotations

import grp
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

from codedeploy_agent.appspec.model import AppSpec, FileExistsBehavior, FileMapping, Permission
from codedeploy_agent.appspec.permissions import check_file_permission
from codedeploy_agent.errors import InstallError
from codedeploy_agent.installer.instructions import UNCHANGED, Instruction, InstructionBuilder
from codedeploy_agent.installer.tools import display_path


@dataclass(frozen=True, slots=True)
class Plan:
    """The instructions of one install, in execution order, and what was left alone."""

    instructions: tuple[Instruction, ...]
    #: Existing destination files kept because RETAIN was in force.
    retained: int


def effective_behavior(appspec: AppSpec, override: str | None) -> str:
    """appspec `file_exists_behavior` > deployment override > DISALLOW (reference §3.4).

    The override is returned unvalidated: like the real agent, an invalid value only fails
    when a destination file actually exists.
    """
    if appspec.file_exists_behavior is not None:
        return appspec.file_exists_behavior.value
    if override is not None:
        return override
    return FileExistsBehavior.DISALLOW.value


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


class _Planner:
    def __init__(self, archive_dir: str, behavior: str) -> None:
        self.archive_dir = archive_dir
        self.behavior = behavior
        self.builder = InstructionBuilder()
        self.retained = 0

    # -- files ------------------------------------------------------------------------------

    def add_mapping(self, mapping: FileMapping) -> None:
        relative = mapping.source.strip("/")
        source = os.path.join(self.archive_dir, relative) if relative else self.archive_dir
        destination = os.path.abspath(mapping.destination)
        st = _lstat(source)
        if st is None:
            raise InstallError(
                "The deployment failed because the files section of the AppSpec file names a "
                f"source that is not in the revision: {mapping.source} (looked for "
                f"{display_path(source)}). "
                "Source paths are relative to the root of the revision; correct the files "
                "section of the AppSpec file, and then try again."
            )
        if stat.S_ISDIR(st.st_mode):
            fresh = self._fill_missing_ancestors(destination)
            self._plan_directory(source, destination, parent_fresh=fresh)
            return
        self._check_copyable(source, st.st_mode)
        file_destination = os.path.join(destination, os.path.basename(source))
        fresh = self._fill_missing_ancestors(file_destination)
        self._plan_file(source, file_destination, stat.S_ISLNK(st.st_mode), parent_fresh=fresh)

    def _fill_missing_ancestors(self, path: str) -> bool:
        """mkdir each missing ancestor of `path`, outermost first; True when its parent is new
        (then nothing can exist at `path` and its existence need not be checked)."""
        missing: list[str] = []
        parent = os.path.dirname(path)
        while parent != "/" and not os.path.lexists(parent):
            missing.append(parent)
            parent = os.path.dirname(parent)
        for directory in reversed(missing):
            self.builder.mkdir(directory)
        return bool(missing)

    def _plan_directory(self, source: str, destination: str, *, parent_fresh: bool) -> None:
        # Depth-first, entries in name order, with an explicit stack so that a deep tree
        # cannot exhaust Python's recursion limit. Under a directory this install creates,
        # nothing can exist yet: no stat per file there (most of a first install).
        stack = [self._enter_directory(source, destination, parent_fresh=parent_fresh)]
        while stack:
            entries, dest_dir, fresh = stack[-1]
            if not entries:
                stack.pop()
                continue
            path, name, is_dir, is_link = entries.pop()
            child = f"{dest_dir}/{name}" if dest_dir != "/" else f"/{name}"
            if is_dir:
                stack.append(self._enter_directory(path, child, parent_fresh=fresh))
            else:
                self._plan_file(path, child, is_link, parent_fresh=fresh)

    def _enter_directory(
        self, source: str, destination: str, *, parent_fresh: bool
    ) -> tuple[list[tuple[str, str, bool, bool]], str, bool]:
        fresh = parent_fresh or not os.path.isdir(destination)
        if fresh:
            if not parent_fresh and os.path.lexists(destination):
                raise InstallError(
                    "The deployment failed because a specified file already exists at this "
                    f"location: {display_path(destination)}. The directory "
                    f"{display_path(source)} must be installed there; remove the file or change "
                    "the destination in the files section of the AppSpec file, and then try again."
                )
            self.builder.mkdir(destination)
        entries: list[tuple[str, str, bool, bool]] = []
        with os.scandir(source) as it:
            for entry in it:
                # is_dir(follow_symlinks=False): a symlink to a directory is copied as a link.
                is_dir = entry.is_dir(follow_symlinks=False)
                is_link = entry.is_symlink()
                if not (is_dir or is_link or entry.is_file(follow_symlinks=False)):
                    self._check_copyable(entry.path, entry.stat(follow_symlinks=False).st_mode)
                entries.append((entry.path, entry.name, is_dir, is_link))
        # Reverse name order: the stack pops from the end, so files go out in name order.
        entries.sort(key=lambda e: e[1], reverse=True)
        return entries, destination, fresh

    @staticmethod
    def _check_copyable(source: str, mode: int) -> None:
        if stat.S_ISREG(mode) or stat.S_ISLNK(mode) or stat.S_ISDIR(mode):
            return
        raise InstallError(
            f"The deployment failed because {display_path(source)} in the revision is not a "
            "regular file, directory or symbolic link (a device, socket or FIFO cannot be "
            "installed). Remove it from the revision, and then try again."
        )

    def _plan_file(
        self, source: str, destination: str, symlink: bool, *, parent_fresh: bool
    ) -> None:
        if parent_fresh:
            self.builder.copy(source, destination, symlink=symlink)
            return
        # lstat, not stat: a dangling symlink is "something already there" too (the real
        # agent's File.exist? says no, then writes through the link to wherever it points).
        existing = _lstat(destination)
        if existing is None:
            self.builder.copy(source, destination, symlink=symlink)
            return
        if self.behavior == FileExistsBehavior.DISALLOW:
            raise InstallError(
                "The deployment failed because a specified file already exists at this "
                f"location: {display_path(destination)}"
            )
        if self.behavior == FileExistsBehavior.OVERWRITE:
            if stat.S_ISDIR(existing.st_mode):
                raise InstallError(
                    "The deployment failed because a directory exists where the file "
                    f"{display_path(source)} must be installed: {display_path(destination)}. "
                    "OVERWRITE replaces files, not directories; remove the directory or change "
                    "the destination in the files section of the AppSpec file, and then try again."
                )
            self.builder.copy(source, destination, symlink=symlink, replace=True)
            return
        if self.behavior == FileExistsBehavior.RETAIN:
            self.retained += 1
            return
        raise InstallError(
            "The deployment failed because an invalid option was specified for "
            f"fileExistsBehavior: {self.behavior}. Valid options include OVERWRITE, RETAIN, "
            "and DISALLOW."
        )

    # -- permissions ------------------------------------------------------------------------

    def add_permission(self, index: int, permission: Permission) -> None:
        origin = f"permissions[{index}] (object: {permission.object})"
        target = os.path.abspath(permission.object)
        if self.builder.copying_file(target):
            if "file" not in permission.types:
                return
            # pattern `**`, no except, no default ACE (exact messages; AppSpecError).
            check_file_permission(permission, path=f"permissions[{index}]")
            matches = [target]
        elif self.builder.making_directory(target) or os.path.isdir(target):
            matches = self.builder.find_matches(permission)
        else:
            # Neither a file of this deployment nor a directory: ignored, as CodeDeploy does.
            return
        if not matches:
            return
        uid, gid = _resolve_owner(permission, origin)
        for path in matches:
            self.builder.set_permissions(path, permission, origin=origin, uid=uid, gid=gid)


def _resolve_owner(permission: Permission, origin: str) -> tuple[int, int]:
    """uid and gid for `owner`/`group` (UNCHANGED when absent); unknown names are errors."""
    uid = gid = UNCHANGED
    if permission.owner is not None:
        try:
            uid = pwd.getpwnam(permission.owner).pw_uid
        except KeyError:
            raise InstallError(
                f'The deployment failed because the user "{permission.owner}" named as owner in '
                f"{origin} does not exist on this host. Create it (useradd {permission.owner}) "
                "before the Install event, for example in a BeforeInstall hook, or correct the "
                "permissions section of the AppSpec file, and then try again."
            ) from None
    if permission.group is not None:
        try:
            gid = grp.getgrnam(permission.group).gr_gid
        except KeyError:
            raise InstallError(
                f'The deployment failed because the group "{permission.group}" named as group '
                f"in {origin} does not exist on this host. Create it (groupadd "
                f"{permission.group}) before the Install event, for example in a BeforeInstall "
                "hook, or correct the permissions section of the AppSpec file, and then try "
                "again."
            ) from None
    return uid, gid


def plan_install(appspec: AppSpec, archive_dir: Path, file_exists_override: str | None) -> Plan:
    """All instructions for `appspec`, validated; reads the file system, writes nothing."""
    planner = _Planner(
        os.path.abspath(archive_dir), effective_behavior(appspec, file_exists_override)
    )
    for mapping in appspec.files:
        planner.add_mapping(mapping)
    for index, permission in enumerate(appspec.permissions):
        planner.add_permission(index, permission)
    return Plan(tuple(planner.builder.instructions), planner.retained)

"""The Install step: the appspec's `files` and `permissions` with CodeDeploy's semantics.

Sequence (reference §5.1):
1. replay the previous revision's cleanup file (uninstalls its files; problems become
   warnings, never failures), then delete it, or leave in it only the paths that could not be
   removed;
2. plan every instruction, files then permissions, with every check, before anything is written;
3. write `<group>-install.json`;
4. write a new `<group>-cleanup` that starts with the paths step 1 could not remove (so the
   next install tries again), then execute the instructions, appending each created path as it
   happens, so that a half-finished install is undone by the next one.

Synchronous and blocking: the executor calls `install` through `asyncio.to_thread`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from codedeploy_agent.appspec.model import AppSpec
from codedeploy_agent.installer.apply import apply_instructions, find_tools
from codedeploy_agent.installer.cleanup import Replay, open_cleanup_writer, replay_cleanup
from codedeploy_agent.installer.instructions import write_install_json
from codedeploy_agent.installer.plan import plan_install

__all__ = ["InstallReport", "Replay", "install", "replay_cleanup"]


@dataclass(frozen=True, slots=True)
class InstallReport:
    """What one install did."""

    #: Files and symlinks written (new ones and OVERWRITE'd ones).
    files_copied: int
    #: Directories created (missing ancestors and directories of the revision).
    directories_created: int
    #: Permission changes made: chmod, setfacl, semanage and chown instructions executed.
    permissions_applied: int
    #: Of `files_copied`, how many replaced an existing file (OVERWRITE).
    files_overwritten: int = 0
    #: Existing destination files left untouched (RETAIN).
    files_retained: int = 0
    #: Paths of the previous revision that could not be removed; each says how to fix it.
    #: They stay in the new cleanup file, so the next install tries to remove them again.
    cleanup_warnings: tuple[str, ...] = ()


def install(
    appspec: AppSpec,
    archive_dir: Path,
    *,
    cleanup_file: Path,
    install_json: Path,
    file_exists_override: str | None,
) -> InstallReport:
    """Install the revision unpacked in `archive_dir` as `appspec` says.

    `file_exists_override` is the deployment's AgentOverrides FileExistsBehavior (or
    `local -b`), unvalidated; the appspec's `file_exists_behavior` takes precedence over it,
    and DISALLOW applies when neither is set. Raises InstallError (CodeDeploy's messages).
    """
    replay = replay_cleanup(cleanup_file)
    plan = plan_install(appspec, archive_dir, file_exists_override)
    tools = find_tools(plan.instructions)
    for directory in {install_json.parent, cleanup_file.parent}:
        # Normally created with the deployment root; a failure surfaces, mapped, just below.
        with contextlib.suppress(OSError):
            directory.mkdir(parents=True, exist_ok=True)
    write_install_json(install_json, plan.instructions)
    with open_cleanup_writer(cleanup_file) as writer:
        writer.carry(replay.kept)
        counts = apply_instructions(plan.instructions, writer, tools)
    return InstallReport(
        files_copied=counts.files_copied,
        directories_created=counts.directories_created,
        permissions_applied=counts.permissions_applied,
        files_overwritten=counts.files_overwritten,
        files_retained=plan.retained,
        cleanup_warnings=replay.warnings,
    )

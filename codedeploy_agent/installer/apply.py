"""Execute install instructions in order, recording what is created in the cleanup file.

- copy: a new file is created exclusively (`O_EXCL`), recorded, then filled with the kernel's
  in-place copy (`copy_file_range`, falling back to `sendfile`, then read/write) and given the
  source's mode, mtime/atime and, when permitted, owner: `FileUtils.copy(preserve: true)` in
  far fewer system calls (about ten per file, no stat by path, no subprocess).
  An OVERWRITE'd file is written next to the destination and renamed over it (atomic: a
  process never reads half a file; a symlink at the destination is replaced, not written
  through), then recorded. A symlink source becomes a symlink with the same target text.
- mkdir: `os.mkdir` with the process umask, then recorded.
- chmod / setfacl / semanage+restorecon / chown: per path, in that order (the plan ordered them).

Paths are recorded only once they exist, so the next install's cleanup never deletes a file
this one did not create.
"""

# str paths on purpose: os.path/os.* on str is several times cheaper than pathlib per call,
# and this module handles every file of a revision (20,000+ in the benchmark).
# ruff: noqa: PTH101, PTH102, PTH105, PTH108, PTH115, PTH116, PTH118, PTH119, PTH120, PTH211

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from codedeploy_agent.appspec.model import Ace
from codedeploy_agent.errors import InstallError
from codedeploy_agent.installer.cleanup import CleanupWriter
from codedeploy_agent.installer.instructions import (
    Chmod,
    Chown,
    Copy,
    Instruction,
    Mkdir,
    Semanage,
    Setfacl,
)
from codedeploy_agent.installer.tools import display_path, find_tool, install_hint, run_tool

_CHUNK: Final = 1 << 30
# copy_file_range is refused across some file systems and by some kernels; these errors mean
# "use another way", not "the copy failed".
_FALLBACK_ERRNOS: Final = frozenset(
    {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF, errno.EPERM}
)


@dataclass(frozen=True, slots=True)
class Tools:
    """Absolute paths of the external tools this install needs (None: not needed)."""

    setfacl: str | None = None
    semanage: str | None = None
    restorecon: str | None = None


@dataclass(slots=True)
class ApplyCounts:
    """What executing the instructions did."""

    files_copied: int = 0
    files_overwritten: int = 0
    directories_created: int = 0
    permissions_applied: int = 0


def find_tools(instructions: Sequence[Instruction]) -> Tools:
    """Look up the tools the instructions need; a missing one is an InstallError naming the
    tool, the permissions entry that needs it and the package that provides it."""
    acl_origin = next((i.origin for i in instructions if isinstance(i, Setfacl)), None)
    context_origin = next((i.origin for i in instructions if isinstance(i, Semanage)), None)
    setfacl = _require("setfacl", acl_origin, "sets acls") if acl_origin else None
    semanage = restorecon = None
    if context_origin is not None:
        semanage = _require("semanage", context_origin, "sets an SELinux context")
        restorecon = _require("restorecon", context_origin, "sets an SELinux context")
    return Tools(setfacl, semanage, restorecon)


def _require(tool: str, origin: str, what: str) -> str:
    path = find_tool(tool)
    if path is None:
        raise InstallError(
            f"The deployment failed because {origin} in the AppSpec file {what}, but {tool} is "
            f"not installed on this host. {install_hint(tool)}, and then try again."
        )
    return path


def _perms(bits: int) -> str:
    return ("r" if bits & 4 else "-") + ("w" if bits & 2 else "-") + ("x" if bits & 1 else "-")


def full_acl(aces: Sequence[Ace], mode: int) -> list[Ace]:
    """The complete ACL `setfacl --set` needs: the appspec's entries plus base entries taken
    from `mode` (user::, group::, other::; mask:: when there are named entries and no mask;
    the default base entries and default mask likewise when any default entry exists)."""
    user, group, other = _perms(mode >> 6), _perms(mode >> 3), _perms(mode)
    acl = [*aces, Ace(False, "user", "", user), Ace(False, "group", "", group)]
    acl.append(Ace(False, "other", "", other))
    if any(not a.default and a.name for a in acl) and not any(
        not a.default and a.type == "mask" for a in acl
    ):
        acl.append(Ace(False, "mask", "", group))
    if any(a.default for a in acl):
        if not any(a.default and a.type == "user" and not a.name for a in acl):
            acl.append(Ace(True, "user", "", user))
        default_group = next(
            (a for a in acl if a.default and a.type == "group" and not a.name), None
        )
        if default_group is None:
            default_group = Ace(True, "group", "", group)
            acl.append(default_group)
        if not any(a.default and a.type == "other" for a in acl):
            acl.append(Ace(True, "other", "", other))
        if any(a.default and a.name for a in acl) and not any(
            a.default and a.type == "mask" for a in acl
        ):
            # The default mask copies the default group entry, as the real agent does.
            acl.append(Ace(True, "mask", "", default_group.perms))
    return acl


def _copy_data(src: int, dst: int, size: int) -> None:
    copied = 0
    # Each way advances both descriptors' offsets, so a fallback continues where the previous
    # way stopped.
    for way in (_copy_file_range, _sendfile):
        try:
            copied = way(src, dst, copied, size)
        except OSError as exc:
            if exc.errno not in _FALLBACK_ERRNOS:
                raise
        else:
            return
    while chunk := os.read(src, 1 << 20):
        os.write(dst, chunk)


def _copy_file_range(src: int, dst: int, copied: int, size: int) -> int:
    while copied < size:
        n = os.copy_file_range(src, dst, min(size - copied, _CHUNK))
        if n == 0:
            break
        copied += n
    return copied


def _sendfile(src: int, dst: int, copied: int, size: int) -> int:
    while copied < size:
        n = os.sendfile(dst, src, None, min(size - copied, _CHUNK))
        if n == 0:
            break
        copied += n
    return copied


def _fill(source: str, dst: int) -> None:
    """Copy `source`'s bytes and metadata into the open descriptor `dst`."""
    src = os.open(source, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        st = os.fstat(src)
        _copy_data(src, dst, st.st_size)
    finally:
        os.close(src)
    # Owner before mode: chown clears setuid/setgid bits that chmod then restores.
    try:
        os.fchown(dst, st.st_uid, st.st_gid)
    except PermissionError:
        # Not permitted as this user: keep the group if we may, like FileUtils' preserve.
        with contextlib.suppress(PermissionError):
            os.fchown(dst, -1, st.st_gid)
    os.fchmod(dst, st.st_mode & 0o7777)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))


def _temp_name(destination: str) -> str:
    # Short on purpose: `.<name>.tmp` could exceed NAME_MAX for a long name.
    return os.path.join(os.path.dirname(destination), f".cdagent-{secrets.token_hex(6)}.tmp")


def _copy(instruction: Copy, writer: CleanupWriter) -> None:
    source, destination = instruction.source, instruction.destination
    if instruction.replace:
        tmp = _temp_name(destination)
        try:
            if instruction.symlink:
                os.symlink(os.readlink(source), tmp)
            else:
                dst = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                try:
                    _fill(source, dst)
                finally:
                    os.close(dst)
            os.replace(tmp, destination)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        writer.record(destination)
        return
    if instruction.symlink:
        os.symlink(os.readlink(source), destination)
        writer.record(destination)
        return
    dst = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        writer.record(destination)
        _fill(source, dst)
    finally:
        os.close(dst)


def _setfacl(instruction: Setfacl, setfacl: str) -> None:
    path = instruction.file
    # Read the mode now, after any chmod of this path ran.
    acl = ",".join(ace.canonical() for ace in full_acl(instruction.aces, os.stat(path).st_mode))
    result = run_tool([setfacl, "--set", acl, path])
    if result.returncode != 0:
        raise InstallError(
            "The deployment failed because of a problem with the acls permission settings in "
            f"the application specification file for this object: {display_path(path)}. Failed "
            f"command: setfacl --set {acl} {display_path(path)}. Exit code: {result.returncode}. "
            f"{result.stderr.strip()}"
        )


def _semanage(instruction: Semanage, tools: Tools, writer: CleanupWriter) -> None:
    # find_tools resolved both when the plan has a Semanage instruction.
    assert tools.semanage is not None  # noqa: S101
    assert tools.restorecon is not None  # noqa: S101
    context = instruction.context
    args = ["-t", context.type]
    if context.user is not None:
        args = ["-s", context.user, *args]
    if context.range is not None:
        args += ["-r", context.range.canonical()]
    realpath = os.path.realpath(instruction.file)
    for argv in (
        [tools.semanage, "fcontext", "-a", *args, realpath],
        [tools.restorecon, "-v", realpath],
    ):
        result = run_tool(argv)
        if result.returncode != 0:
            command = " ".join([os.path.basename(argv[0]), *argv[1:-1], display_path(realpath)])
            raise InstallError(
                "The deployment failed because the application specification file contains an "
                "error in the settings for the context parameter. Update the permissions section "
                f"of the AppSpec file, and then try again. Failed command: {command}. Exit code: "
                f"{result.returncode}. {result.stderr.strip()}"
            )
    writer.record_context(realpath)


def _os_error(instruction: Instruction, exc: OSError) -> InstallError:
    if isinstance(instruction, Copy):
        source, destination = (
            display_path(instruction.source),
            display_path(instruction.destination),
        )
        what = f"installing {source} to {destination}"
    elif isinstance(instruction, Mkdir):
        what = f"creating the directory {display_path(instruction.directory)}"
    else:
        kind = type(instruction).__name__.lower()
        what = f"applying {kind} of {instruction.origin} to {display_path(instruction.file)}"
    if exc.errno == errno.ENOSPC:
        fix = "Free some space on the destination file system"
    elif exc.errno == errno.EROFS:
        fix = "The destination file system is read-only: remount it read-write"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        fix = "Check the destination's permissions and attributes (lsattr/chattr -i)"
    elif exc.errno == errno.EEXIST:
        fix = "Something created this path while the deployment ran: remove it"
    else:
        fix = "Correct the problem on the host"
    return InstallError(
        f"The deployment failed while {what}: {exc.strerror or exc}. {fix}, and then try again."
    )


def apply_instructions(
    instructions: Sequence[Instruction], writer: CleanupWriter, tools: Tools
) -> ApplyCounts:
    """Execute `instructions` in order; the first failure raises InstallError (what was
    created until then is in the cleanup file, for the next install to undo)."""
    counts = ApplyCounts()
    for instruction in instructions:
        try:
            if isinstance(instruction, Copy):
                _copy(instruction, writer)
                counts.files_copied += 1
                counts.files_overwritten += instruction.replace
            elif isinstance(instruction, Mkdir):
                os.mkdir(instruction.directory)
                writer.record(instruction.directory)
                counts.directories_created += 1
            else:
                if isinstance(instruction, Chmod):
                    os.chmod(instruction.file, instruction.mode.value)
                elif isinstance(instruction, Setfacl):
                    assert tools.setfacl is not None  # noqa: S101 - find_tools ran
                    _setfacl(instruction, tools.setfacl)
                elif isinstance(instruction, Semanage):
                    _semanage(instruction, tools, writer)
                elif isinstance(instruction, Chown):
                    # The link itself, never what it points to (see set_permissions).
                    os.chown(
                        instruction.file, instruction.uid, instruction.gid, follow_symlinks=False
                    )
                counts.permissions_applied += 1
        except OSError as exc:
            raise _os_error(instruction, exc) from exc
    return counts

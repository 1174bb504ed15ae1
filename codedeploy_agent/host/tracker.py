"""The ongoing-deployment markers (reference §2.2): crash detection across agent restarts.

Before a lifecycle event runs, `<root_dir>/ongoing-deployment/<deployment-id>` is written with
the job's command id; it is removed when the event ends. A marker found at start-up means the
agent died mid-event: the daemon reports that command Failed (error code 7) and clears the
directory. Markers older than `stale_after` (24 h, like the real agent) are ignored and deleted.

Synchronous (it may sleep while retrying); the daemon calls it through `asyncio.to_thread`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from codedeploy_agent.errors import HostStateError
from codedeploy_agent.log import get_logger

_log = get_logger(__name__)

#: The real agent's staleness limit (DEPLOYMENT_EVENT_FILE_STALE_TIMELIMIT_SECONDS).
STALE_AFTER_SECONDS = 86400.0
#: The real agent's delays before retrying a marker write refused with EACCES.
RETRY_DELAYS = (1.0, 2.0, 5.0)


class OngoingDeployments:
    """The marker directory `<root_dir>/<ongoing_deployment_tracking>`."""

    def __init__(
        self,
        directory: Path,
        stale_after: float = STALE_AFTER_SECONDS,
        *,
        retry_delays: Sequence[float] = RETRY_DELAYS,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self.stale_after = stale_after
        self._retry_delays = tuple(retry_delays)
        self._sleep = sleep
        self._clock = clock

    def mark(self, deployment_id: str, content: str) -> None:
        """Write the marker of `deployment_id` holding `content` (the command or job id).

        The file appears complete or not at all (written beside it, then renamed). A write
        refused with EACCES is retried after 1, 2 and 5 s, as the real agent does (it saw
        transient EACCES from scanners holding the file); then HostStateError.
        """
        target = self._marker(deployment_id)
        delays = list(self._retry_delays)
        while True:
            try:
                self._write(target, content)
            except PermissionError as exc:
                if exc.errno != errno.EACCES:
                    raise self._write_error(target, exc) from exc
                if not delays:
                    _log.error("Exhausted retries on creating tracking file", path=str(target))
                    raise self._write_error(target, exc) from exc
                delay = delays.pop(0)
                # The real agent's words, so that searches for them still find this line.
                _log.warning(
                    "Received Errno::EACCESS when creating deployment tracking file, "
                    "retrying creation",
                    path=str(target),
                    retry_in_seconds=delay,
                )
                self._sleep(delay)
            except OSError as exc:
                raise self._write_error(target, exc) from exc
            else:
                return

    def clear(self, deployment_id: str) -> None:
        """Remove the marker of `deployment_id` (a missing one is logged, not an error)."""
        target = self._marker(deployment_id)
        try:
            target.unlink()
        except FileNotFoundError:
            _log.warning("the tracking file does not exist", path=str(target))
        except OSError as exc:
            raise HostStateError(
                f"Cannot remove the deployment tracking file {target}: {exc.strerror}. "
                f"Check the permissions of {self.directory}."
            ) from exc

    def most_recent(self) -> tuple[str, str] | None:
        """The newest non-stale marker as (deployment id, content); stale ones are deleted.

        Entries that are not regular files, names starting with '.' (our temporary files) and
        markers that vanish while being read are skipped.
        """
        for _mtime, name, path in sorted(self._live_markers(), reverse=True):
            try:
                content = path.read_text(encoding="utf-8", errors="replace")
            except (FileNotFoundError, IsADirectoryError):
                continue
            except OSError as exc:
                raise HostStateError(
                    f"Cannot read the deployment tracking file {path}: {exc.strerror}."
                ) from exc
            return name, content.strip()
        return None

    def any_active(self) -> bool:
        """Whether a non-stale marker exists (the agent must not be stopped or upgraded)."""
        return self.most_recent() is not None

    def clear_all(self) -> None:
        """Remove everything in the marker directory (after reporting a crashed event)."""
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return
        except OSError as exc:
            raise self._clear_error(exc) from exc
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    Path(entry.path).unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise self._clear_error(exc) from exc

    def _live_markers(self) -> list[tuple[float, str, Path]]:
        try:
            entries = list(os.scandir(self.directory))
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise HostStateError(
                f"Cannot list the deployment tracking directory {self.directory}: {exc.strerror}."
            ) from exc
        now = self._clock()
        live: list[tuple[float, str, Path]] = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                mtime = entry.stat(follow_symlinks=False).st_mtime
                if now - mtime > self.stale_after:
                    _log.info("Deleting stale deployment tracking file", path=entry.path)
                    Path(entry.path).unlink()
                    continue
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise HostStateError(
                    f"Cannot check the deployment tracking file {entry.path}: {exc.strerror}."
                ) from exc
            live.append((mtime, entry.name, Path(entry.path)))
        return live

    def _marker(self, deployment_id: str) -> Path:
        # The id comes from a job document; as a file name it must not climb out of the folder.
        if (
            not deployment_id
            or deployment_id in {".", ".."}
            or deployment_id.startswith(".")
            or "/" in deployment_id
            or "\0" in deployment_id
        ):
            raise HostStateError(
                f"Invalid deployment id {deployment_id!r}: it is used as a file name under "
                f"{self.directory}, so it must be non-empty, must not start with '.' and must "
                "not contain '/'."
            )
        return self.directory / deployment_id

    def _write(self, target: Path, content: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as handle:
                # No trailing newline: the real agent writes the identifier alone.
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
            tmp.replace(target)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise

    def _write_error(self, target: Path, exc: OSError) -> HostStateError:
        return HostStateError(
            f"Cannot write the deployment tracking file {target}: {exc.strerror}. Check that "
            f"{self.directory} is writable by the agent's user and the disk is not full."
        )

    def _clear_error(self, exc: OSError) -> HostStateError:
        return HostStateError(
            f"Cannot clear the deployment tracking directory {self.directory}: {exc.strerror}. "
            "Remove its files by hand, or the next start reports the same event as failed again."
        )

"""Paths and pointer files of the deployment root (reference §2.1).

```
<root_dir>/deployment-instructions/<dg>_last_successful_install  <dg>_most_recent_install
                                   <dg>-cleanup  <dg>-install.json
<root_dir>/deployment-logs/<program_name>-deployments.log
<root_dir>/ongoing-deployment/<deployment-id>
<root_dir>/<dg>/<deployment-id>/{bundle.tar, deployment-archive/, logs/scripts.log}
```
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from codedeploy_agent.errors import HostStateError


@dataclass(frozen=True, slots=True)
class DeploymentDir:
    """`<root_dir>/<dg>/<deployment-id>` and the files the agent keeps in it."""

    path: Path

    @property
    def bundle(self) -> Path:
        """The downloaded bundle, whatever its format (a zip is also called bundle.tar)."""
        return self.path / "bundle.tar"

    @property
    def archive(self) -> Path:
        """The unpacked revision, with the appspec at its root."""
        return self.path / "deployment-archive"

    @property
    def archive_temp(self) -> Path:
        """Transient folder used while a single top-level directory is stripped."""
        return self.path / "deployment-archive-temp"

    @property
    def logs(self) -> Path:
        """`logs/` of this deployment."""
        return self.path / "logs"

    @property
    def scripts_log(self) -> Path:
        """`logs/scripts.log`: every script's output, timestamped."""
        return self.logs / "scripts.log"


class DeploymentRoot:
    """The deployment root of one agent; every path the agent writes to derives from here."""

    def __init__(
        self,
        root_dir: Path,
        *,
        program_name: str = "codedeploy-agent",
        ongoing_deployment_tracking: str = "ongoing-deployment",
    ) -> None:
        self.path = root_dir.absolute()
        self.program_name = program_name
        self.instructions = self.path / "deployment-instructions"
        self.deployment_logs = self.path / "deployment-logs"
        self.ongoing = self.path / ongoing_deployment_tracking

    @property
    def deployments_log(self) -> Path:
        """The agent-wide log every script line is copied to (reference §4.10)."""
        return self.deployment_logs / f"{self.program_name}-deployments.log"

    def group_dir(self, group_id: str) -> Path:
        """`<root_dir>/<dg>`: every kept revision of one deployment group."""
        return self.path / group_id

    def deployment(self, group_id: str, deployment_id: str) -> DeploymentDir:
        """The directory of one deployment."""
        return DeploymentDir(self.group_dir(group_id) / deployment_id)

    def last_successful_file(self, group_id: str) -> Path:
        """`<dg>_last_successful_install`: written when Install succeeds."""
        return self.instructions / f"{group_id}_last_successful_install"

    def most_recent_file(self, group_id: str) -> Path:
        """`<dg>_most_recent_install`: written when DownloadBundle succeeds."""
        return self.instructions / f"{group_id}_most_recent_install"

    def cleanup_file(self, group_id: str) -> Path:
        """`<dg>-cleanup` (hyphen): what the last Install created, one path per line."""
        return self.instructions / f"{group_id}-cleanup"

    def install_json(self, group_id: str) -> Path:
        """`<dg>-install.json` (hyphen): the last Install's instructions, for operators."""
        return self.instructions / f"{group_id}-install.json"

    def last_successful(self, group_id: str) -> DeploymentDir | None:
        """The revision whose Install last succeeded in this group, if any."""
        return _read_pointer(self.last_successful_file(group_id))

    def most_recent(self, group_id: str) -> DeploymentDir | None:
        """The revision last downloaded in this group, if any."""
        return _read_pointer(self.most_recent_file(group_id))

    def set_last_successful(self, group_id: str, deployment: DeploymentDir) -> None:
        """Point `<dg>_last_successful_install` at `deployment` (atomically)."""
        _write_pointer(self.last_successful_file(group_id), deployment)

    def set_most_recent(self, group_id: str, deployment: DeploymentDir) -> None:
        """Point `<dg>_most_recent_install` at `deployment` (atomically)."""
        _write_pointer(self.most_recent_file(group_id), deployment)

    def create_deployment_dir(self, group_id: str, deployment_id: str) -> DeploymentDir:
        """`mkdir -p` the deployment directory (the real agent does so before any command)."""
        deployment = self.deployment(group_id, deployment_id)
        try:
            deployment.path.mkdir(parents=True, exist_ok=True)
            self.instructions.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HostStateError(
                f"Error creating deployment root directory {deployment.path}: {exc.strerror}. "
                f"Check that {self.path} is writable by the agent's user and the disk is not full."
            ) from exc
        return deployment


def _read_pointer(path: Path) -> DeploymentDir | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise HostStateError(f"Cannot read {path}: {exc.strerror}") from exc
    return DeploymentDir(Path(text)) if text else None


def _write_pointer(path: Path, deployment: DeploymentDir) -> None:
    # The real agent writes the bare path with no trailing newline; we write it the same way, but
    # through a rename so that an agent killed mid-write never leaves a truncated pointer.
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(str(deployment.path))
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except OSError as exc:
        raise HostStateError(
            f"Cannot write {path}: {exc.strerror}. Check free space and permissions."
        ) from exc

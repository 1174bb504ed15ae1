"""The agent pickup deadline: which in-flight targets are overdue, and the message an instance
fails with when its agent did not start the job in time.

CodeDeploy fails a deployment whose lifecycle event does not start within 5 minutes (service
reference §10); here the clock starts when the engine queues the instance's job execution, and
the instance fails once the execution is still QUEUED `pickup_deadline_seconds` later. The
message says what the presence topic tells about the agent: never seen, offline since when,
or online (then busy with another deployment, or not receiving its jobs), and how to check.
"""

from __future__ import annotations

from datetime import UTC, datetime

from codedeploy_agent.protocol.messages import JobStatus
from codedeploy_agent.protocol.topics import default_events_root
from codedeploy_server.jobs.state import PresenceInfo
from codedeploy_server.rollout.events import TargetStatus, execution_status
from codedeploy_server.rollout.records import DeploymentRecord


def overdue(record: DeploymentRecord, now: float, deadline_seconds: float) -> list[str]:
    """In-flight targets whose execution has been QUEUED for `deadline_seconds` or more."""
    late = []
    for target in record.in_status(TargetStatus.IN_PROGRESS):
        queued_at = target.doc.get("_queuedAt")
        if execution_status(target.doc) is not JobStatus.QUEUED or queued_at is None:
            continue
        if now >= float(queued_at) + deadline_seconds:
            late.append(target.target_id)
    return late


def offline_message(
    thing: str,
    info: PresenceInfo | None,
    *,
    deadline_seconds: float,
    topic_root: str,
    events_root: str | None = None,
) -> str:
    """Why the agent on `thing` did not start its job, and how to check (UnknownError
    diagnostics of the instance's first lifecycle event). The presence topic named is under
    `events_root` (None: its default for `topic_root`, `codedeploy/things` for `$aws/things`)."""
    presence = f"{events_root or default_events_root(topic_root)}/{thing}/presence"
    seconds = f"{deadline_seconds:g}"
    check = (
        "Check the agent: run `codedeploy-agent status` (or `systemctl status "
        "codedeploy-agent`) on the host, check that it reaches the MQTT broker, and that its "
        f"thing name is {thing} (mqtt.thing_name in its config)."
    )
    if info is None:
        return (
            f"The agent on {thing} did not start the deployment within {seconds} seconds and "
            f"has never reported its presence (no message on {presence}): "
            f"it is not installed, not running, or cannot reach the broker. {check}"
        )
    since = rfc3339(info.updated_at)
    if not info.online:
        return (
            f"The agent on {thing} did not start the deployment within {seconds} seconds: it "
            f"has been offline since {since} (its last presence message). {check}"
        )
    busy = info.presence.current_deployment_id
    doing = f" it is busy with deployment {busy}," if busy else ""
    return (
        f"The agent on {thing} is online (presence since {since}) but did not start the "
        f"deployment within {seconds} seconds:{doing} or it does not receive its jobs (topic "
        f"root {topic_root}). {check}"
    )


def rfc3339(epoch: float) -> str:
    """Epoch seconds as `2026-11-26T10:00:00Z`."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


__all__ = ["offline_message", "overdue", "rfc3339"]

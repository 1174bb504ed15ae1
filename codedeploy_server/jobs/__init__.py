"""The Jobs service: AWS IoT Jobs over MQTT, server side (PROTOCOL.md), kept in the store."""

from __future__ import annotations

from codedeploy_server.jobs.service import (
    ExecutionChange,
    JobsError,
    JobsService,
    PresenceInfo,
)

__all__ = ["ExecutionChange", "JobsError", "JobsService", "PresenceInfo"]

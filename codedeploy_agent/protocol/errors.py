"""Errors of the wire contract: malformed messages, bad key files, and rejected jobs.

Every function of `codedeploy_agent.protocol` raises only these for bad input (never a msgspec,
json or cryptography exception), so both the agent and the control plane map one small set.
"""

from __future__ import annotations

from enum import StrEnum

from codedeploy_agent.errors import AgentError, DeploymentSpecError


class ProtocolError(AgentError):
    """Raised when a topic, message or value does not follow PROTOCOL.md; says what and where."""


class SigningKeyError(ProtocolError):
    """Raised by the key loaders and `generate_keypair`; the message names the file."""


class RejectReason(StrEnum):
    """Why a job can never succeed on this host; reported as `errorCode` with status REJECTED."""

    SIGNATURE_INVALID = "SignatureInvalid"
    JOB_EXPIRED = "JobExpired"
    INVALID_JOB_DOCUMENT = "InvalidJobDocument"


class JobRejected(DeploymentSpecError):  # noqa: N818 - the name PROTOCOL.md and callers use
    """Raised by job-document decoding, `check_expiry` and `verify_document`.

    The agent reports the execution REJECTED with `errorCode` = `reason_code` and `message` =
    `str(err)`; REJECTED executions are never retried by the Jobs service.
    """

    def __init__(self, reason_code: RejectReason, message: str) -> None:
        super().__init__(message)
        self.reason_code = reason_code

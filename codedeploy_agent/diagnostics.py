"""Diagnostics of a lifecycle event, in the real agent's JSON shape (reference §8.1).

`{"error_code":<int>,"script_name":"<location or empty>","message":"<text>","log":"<tail>"}`,
keys always in that order, the whole payload at most 8,192 characters (the command service's
envelope limit); the daemon derives the Jobs `statusDetails` from the same values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

from codedeploy_agent.errors import AgentError, ErrorCode, ScriptError

MAX_PAYLOAD_CHARS: Final = 8192
SUCCEEDED_MESSAGE: Final = "Succeeded: "
NOOP_MESSAGE: Final = "Succeeded: CompletedNoopCommand"
RESTART_MESSAGE: Final = "Failed: Failing in-progress lifecycle event after an agent restart."


@dataclass(frozen=True, slots=True)
class Diagnostics:
    """What an event reports: its code, the script involved, a message and the output tail."""

    code: ErrorCode
    script_name: str = ""
    message: str = SUCCEEDED_MESSAGE
    log: str = ""

    @classmethod
    def succeeded(cls, *, noop: bool = False) -> Diagnostics:
        """A successful command; the script output is not sent on success (as the real agent)."""
        return cls(ErrorCode.SUCCEEDED, "", NOOP_MESSAGE if noop else SUCCEEDED_MESSAGE, "")

    @classmethod
    def from_error(cls, error: BaseException) -> Diagnostics:
        """Diagnostics for an error that ended an event: scripts keep their code and tail."""
        if isinstance(error, ScriptError):
            return cls(error.code, error.script_name, str(error), error.log)
        if isinstance(error, AgentError):
            return cls(error.code, "", str(error), "")
        # Not a user's mistake: an agent bug. Name the exception so the report is actionable.
        return cls(ErrorCode.UNKNOWN_ERROR, "", f"{type(error).__name__}: {error}", "")

    @classmethod
    def failed_after_restart(cls) -> Diagnostics:
        """The report for a lifecycle event interrupted by an agent restart (code 7)."""
        return cls(ErrorCode.FAILED_AFTER_RESTART, "", RESTART_MESSAGE, "")

    def to_json(self) -> str:
        """The payload, compact, keys in the real agent's order, at most 8,192 characters.

        When too long, the oldest part of the log is dropped first, then the message is cut.
        """
        payload = self._dump(self.message, self.log)
        if len(payload) <= MAX_PAYLOAD_CHARS:
            return payload
        log = self.log
        while log and len(payload) > MAX_PAYLOAD_CHARS:
            log = log[len(payload) - MAX_PAYLOAD_CHARS + 16 :]
            payload = self._dump(self.message, log)
        message = self.message
        while len(payload) > MAX_PAYLOAD_CHARS:
            message = message[: max(0, len(message) - (len(payload) - MAX_PAYLOAD_CHARS) - 16)]
            payload = self._dump(message, log)
        return payload

    def _dump(self, message: str, log: str) -> str:
        return json.dumps(
            {
                "error_code": int(self.code),
                "script_name": self.script_name,
                "message": message,
                "log": log,
            },
            separators=(",", ":"),
            ensure_ascii=False,
        )

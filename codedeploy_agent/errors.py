"""The agent's exception tree.

Every error a user can cause is one of these and carries a message that says what is wrong and
how to fix it; where the real CodeDeploy agent has a message for the case, the text is the same
so that operators' searches and runbooks keep working. Structured data lives on attributes.
Foreign exceptions (OSError, yaml.YAMLError, ...) are mapped into these at the module that
calls the foreign library.
"""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    """The real agent's diagnostics codes (reference §8.1), with the service's names."""

    SUCCEEDED = 0
    SCRIPT_MISSING = 1
    SCRIPT_NOT_EXECUTABLE = 2
    SCRIPT_TIMED_OUT = 3
    SCRIPT_FAILED = 4
    UNKNOWN_ERROR = 5
    OUTPUTS_LEFT_OPEN = 6
    FAILED_AFTER_RESTART = 7

    @property
    def service_name(self) -> str:
        """The name CodeDeploy and our Jobs `errorCode` use for this code."""
        return _SERVICE_NAMES[self]


_SERVICE_NAMES = {
    ErrorCode.SUCCEEDED: "Success",
    ErrorCode.SCRIPT_MISSING: "ScriptMissing",
    ErrorCode.SCRIPT_NOT_EXECUTABLE: "ScriptNotExecutable",
    ErrorCode.SCRIPT_TIMED_OUT: "ScriptTimedOut",
    ErrorCode.SCRIPT_FAILED: "ScriptFailed",
    ErrorCode.UNKNOWN_ERROR: "UnknownError",
    ErrorCode.OUTPUTS_LEFT_OPEN: "OutputsLeftOpen",
    ErrorCode.FAILED_AFTER_RESTART: "FailedAfterRestart",
}


class AgentError(Exception):
    """Root of every error the agent raises on purpose; `str(err)` is the user-facing message."""

    #: Diagnostics code reported for this error when it ends a lifecycle event.
    code: ErrorCode = ErrorCode.UNKNOWN_ERROR


class ConfigError(AgentError):
    """Raised by `config.load_config` when the agent config file is missing or invalid."""


class AppSpecError(AgentError):
    """Raised by the appspec parser; `path` is the key path of the bad value (`hooks.X[0]`)."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.path = path


class AppSpecNotFoundError(AppSpecError):
    """Raised when a revision has no appspec file where CodeDeploy looks for one."""


class ArchiveError(AgentError):
    """Raised by safe extraction; `member` names the archive entry that was refused."""

    def __init__(self, message: str, member: str = "") -> None:
        super().__init__(message)
        self.member = member


class BundleError(AgentError):
    """Raised when a revision cannot be fetched or copied into the deployment directory."""


class InstallError(AgentError):
    """Raised by the installer (file collisions, permissions, missing tools)."""


class DeploymentSpecError(AgentError):
    """Raised when a deployment specification (job document or local flags) is invalid."""


class HostStateError(AgentError):
    """Raised when the deployment root cannot be created or written."""


class ScriptError(AgentError):
    """Raised by the hook runner when a lifecycle script fails; carries its diagnostics code."""

    def __init__(self, code: ErrorCode, script_name: str, message: str, log: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.script_name = script_name
        self.log = log


class LocalUsageError(AgentError):
    """Raised by `codedeploy-agent local` for invalid flags (printed as `ERROR: <message>`)."""

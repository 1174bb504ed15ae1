"""The operator CLI's errors: each carries the exit status `main` returns for it.

Exit statuses follow the AWS CLI where it has one: 255 for an error the API (or the way to it)
returned, 2 for a usage mistake (argparse's own status); 1 for everything the CLI itself decided
failed (an invalid appspec, a deployment that did not succeed).
"""

from __future__ import annotations

from typing import ClassVar

from codedeploy_server.errors import ServerError


class CliError(ServerError):
    """Root of the CLI's errors; `str(err)` is printed as is (no traceback) and says the fix."""

    exit_status: ClassVar[int] = 1


class UsageError(CliError):
    """Raised for arguments that parse but do not make sense (`--s3-location` without a key...)."""

    exit_status: ClassVar[int] = 2


class ApiError(CliError):
    """Raised when a call to the API (or to S3, or the bundle store) fails, as the AWS CLI does."""

    exit_status: ClassVar[int] = 255


class BundleError(CliError):
    """Raised by `push` when the source folder cannot be bundled or its appspec is invalid."""


class AbortedError(CliError):
    """Raised when the operator presses Ctrl-C (a deployment being watched goes on)."""

    exit_status: ClassVar[int] = 130

"""Secrets from AWS Systems Manager Parameter Store, handed to hooks as environment variables.

A job document's `Environment` block (PROTOCOL.md) and `codedeploy-agent local --parameter
NAME=ssm:/path` both map a variable name to a parameter name (or ARN, optionally with a
`:version` or `:label` selector). `resolve_environment` reads them all once per deployment with
`GetParameters(WithDecryption=True)`, ten names per call (the API's limit), before any hook
runs: a missing parameter fails the deployment up front, naming every one that is missing.

Values never reach a log line or a message: only variable and parameter names, and counts, are
logged. The caller passes the result to the deployment spec, whose `secret_values` the hook
runner redacts from scripts' output.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Final

from codedeploy_agent.config import AgentConfig
from codedeploy_agent.errors import AgentError, ConfigError
from codedeploy_agent.log import get_logger
from codedeploy_agent.sources.aws import (
    AwsClient,
    AwsFailure,
    FailureKind,
    SsmApi,
    advice,
    check_clock,
    classify,
    ssm_client,
)

_log = get_logger(__name__)

#: GetParameters takes at most this many names per call.
BATCH_SIZE: Final = 10


class SecretError(AgentError):
    """Raised by `resolve_environment` when a Parameter Store secret cannot be read.

    `parameters` names the parameters concerned (the missing ones, or the batch that failed).
    The deployment fails before any hook runs.
    """

    def __init__(self, message: str, parameters: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.parameters = parameters


async def resolve_environment(entries: Mapping[str, str], config: AgentConfig) -> dict[str, str]:
    """Variable name -> the decrypted value of its parameter (`entries`: variable -> parameter).

    No AWS call (and no boto3 import) when `entries` is empty. Raises ClockSkewError when the
    clock is past the SigV4 tolerance, SecretError for everything else.
    """
    if not entries:
        return {}
    await check_clock(config)
    return await asyncio.to_thread(_resolve, dict(entries), config)


def _resolve(entries: dict[str, str], config: AgentConfig) -> dict[str, str]:
    wanted = sorted(set(entries.values()))
    try:
        client = ssm_client(config)
    except ConfigError as exc:
        raise SecretError(
            f"Cannot read the Parameter Store parameters {', '.join(wanted)}: {exc}",
            tuple(wanted),
        ) from exc
    values: dict[str, str] = {}
    missing: list[str] = []
    for first in range(0, len(wanted), BATCH_SIZE):
        batch = wanted[first : first + BATCH_SIZE]
        found = _get_batch(client, batch)
        values.update(found)
        missing += [name for name in batch if name not in found]
    if missing:
        raise SecretError(_missing_message(missing, entries, client), tuple(missing))
    _log.info(
        "parameters_resolved",
        count=len(entries),
        variables=sorted(entries),
        parameters=wanted,
        calls=-(-len(wanted) // BATCH_SIZE),
    )
    return {variable: values[parameter] for variable, parameter in entries.items()}


def _get_batch(client: AwsClient[SsmApi], batch: list[str]) -> dict[str, str]:
    """Requested name -> value for the parameters of `batch` that exist."""
    from botocore.exceptions import (  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415
        BotoCoreError,
        ClientError,
    )

    try:
        response = client.api.get_parameters(Names=batch, WithDecryption=True)
    except (BotoCoreError, ClientError) as exc:
        failure = classify(exc)
        if failure is None:  # pragma: no cover - both classes are classified
            raise
        raise SecretError(_failure_message(failure, batch, client), tuple(batch)) from None
    by_reference: dict[str, str] = {}
    latest: dict[str, tuple[int, str]] = {}
    for parameter in response.get("Parameters") or []:
        value = parameter.get("Value")
        if not isinstance(value, str):
            continue
        selector = str(parameter.get("Selector") or "")
        version = parameter.get("Version")
        number = version if isinstance(version, int) else 0
        for reference in (parameter.get("Name"), parameter.get("ARN")):
            if not isinstance(reference, str) or not reference:
                continue
            # Without a selector the answer is the latest version; some SSM-compatible
            # services omit Selector for `name:3` requests, so versions are indexed too.
            if selector:
                by_reference[reference + selector] = value
            elif number >= latest.get(reference, (-1, ""))[0]:
                latest[reference] = (number, value)
            if number:
                by_reference.setdefault(f"{reference}:{number}", value)
    for reference, (_number, value) in latest.items():
        by_reference.setdefault(reference, value)
    return {name: by_reference[name] for name in batch if name in by_reference}


def _missing_message(missing: list[str], entries: Mapping[str, str], client: AwsClient[Any]) -> str:
    def users(parameter: str) -> str:
        variables = sorted(v for v, p in entries.items() if p == parameter)
        return f"{parameter} (for {', '.join(variables)})"

    noun = "parameter" if len(missing) == 1 else "parameters"
    return (
        f"Parameter Store has no {noun} {', '.join(users(p) for p in missing)} in region "
        f"{client.region}, so the deployment stops before any hook runs. Check the names (they "
        "are case-sensitive and usually start with /), the version or label after ':', and the "
        "region."
    )


def _failure_message(failure: AwsFailure, batch: list[str], client: AwsClient[Any]) -> str:
    names = ", ".join(batch)
    # Parameter ARNs need the account id, which the host does not know without another call.
    permissions = (
        f"ssm:GetParameters on arn:aws:ssm:{client.region}:<account>:parameter/... for "
        f"{names}, and kms:Decrypt on the KMS key that encrypts SecureString values"
    )
    if failure.kind is FailureKind.NOT_FOUND:
        return (
            f"Parameter Store has no parameter among {names} ({failure.summary}), so the "
            "deployment stops before any hook runs. Check the names and the region "
            f"{client.region}."
        )
    return (
        f"Cannot read the Parameter Store parameters {names}: {failure.sentence} "
        + advice(failure, client, permissions=permissions)
        + " The deployment stops before any hook runs."
    )

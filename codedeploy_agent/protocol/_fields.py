"""Readers for the loosely typed JSON of job documents, with the real agent's "set" rule."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from codedeploy_agent.protocol.errors import JobRejected, RejectReason


class Block(msgspec.Struct, frozen=True, omit_defaults=True, rename="pascal", kw_only=True):
    """Base of the document's parts: PascalCase keys, unset parts omitted."""


def reject(message: str) -> JobRejected:
    """The InvalidJobDocument rejection carrying `message` (for `raise`)."""
    return JobRejected(RejectReason.INVALID_JOB_DOCUMENT, message)


def is_set(value: object) -> bool:
    """The real agent's `property_set?`: non-nil and, for strings and collections, non-empty."""
    if value is None:
        return False
    return not (isinstance(value, str | list | dict) and not value)


def string_field(data: Mapping[str, Any], key: str, where: str) -> str | None:
    """`data[key]` when set, as a string without NUL; None when unset."""
    value = data.get(key)
    if not is_set(value):
        return None
    if not isinstance(value, str):
        raise reject(f"{key} in {where} must be a string, got {type(value).__name__}")
    if "\0" in value:
        raise reject(f"{key} in {where} must not contain a NUL character")
    return value


def object_field(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any] | None:
    """`data[key]` when set, as an object; None when unset."""
    value = data.get(key)
    if not is_set(value):
        return None
    if not isinstance(value, dict):
        raise reject(f"{key} in {where} must be an object, got {type(value).__name__}")
    return value

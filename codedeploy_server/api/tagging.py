"""Tags and tag filters over on-premises instances, with CodeDeploy's matching rules.

- A tag filter is `{Key, Value, Type}`: `KEY_ONLY` matches an instance that has the key,
  `VALUE_ONLY` one with any tag of that value, `KEY_AND_VALUE` the key with that value.
  Without `Type`, it is inferred from which of Key/Value are set (as the AWS console does).
- A list of filters (a deployment group's `onPremisesInstanceTagFilters`, ListOnPremisesInstances
  `tagFilters`) is an OR: one matching filter is enough.
- A tag set (`onPremisesTagSet`) is up to 3 lists; an instance must match each list (AND of ORs).

Matching is case-sensitive, like AWS's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from codedeploy_server.api.errors import CodeDeployError, TagSetListLimitExceededException

MAX_KEY: Final = 128
MAX_VALUE: Final = 256
MAX_TAG_GROUPS: Final = 3


class FilterType(StrEnum):
    """`TagFilterType` / `EC2TagFilterType`."""

    KEY_ONLY = "KEY_ONLY"
    VALUE_ONLY = "VALUE_ONLY"
    KEY_AND_VALUE = "KEY_AND_VALUE"


@dataclass(frozen=True, slots=True)
class TagFilter:
    """One decoded tag filter."""

    type: FilterType
    key: str | None
    value: str | None

    def matches(self, tags: Mapping[str, str]) -> bool:
        """True when the instance with `tags` satisfies this filter."""
        if self.type is FilterType.KEY_ONLY:
            return self.key in tags
        if self.type is FilterType.VALUE_ONLY:
            return self.value in tags.values()
        return self.key in tags and tags[self.key or ""] == self.value

    def to_doc(self) -> dict[str, str]:
        """The `TagFilter` shape, with the inferred `Type` filled in."""
        doc = {"Type": self.type.value}
        if self.key is not None:
            doc["Key"] = self.key
        if self.value is not None:
            doc["Value"] = self.value
        return doc


def decode_filters(
    items: Sequence[Mapping[str, Any]], error: type[CodeDeployError], what: str
) -> list[TagFilter]:
    """Decode a filter list (input already type-checked); `error` names what is wrong."""
    return [_decode_filter(item, error, f"{what}[{index}]") for index, item in enumerate(items)]


def decode_tag_set(
    groups: Sequence[Sequence[Mapping[str, Any]]], error: type[CodeDeployError], what: str
) -> list[list[TagFilter]]:
    """Decode a tag set: at most 3 groups (TagSetListLimitExceededException)."""
    if len(groups) > MAX_TAG_GROUPS:
        raise TagSetListLimitExceededException(
            f"The number of tag groups included in the tag set list exceeded the maximum "
            f"allowed limit of {MAX_TAG_GROUPS} ({what} has {len(groups)})."
        )
    return [decode_filters(group, error, f"{what}[{index}]") for index, group in enumerate(groups)]


def matches_any(tags: Mapping[str, str], filters: Iterable[TagFilter]) -> bool:
    """OR of the filters (an empty list matches nothing)."""
    return any(f.matches(tags) for f in filters)


def matches_all_groups(tags: Mapping[str, str], groups: Sequence[Sequence[TagFilter]]) -> bool:
    """AND over the groups of an OR within each (an empty set matches nothing)."""
    return bool(groups) and all(matches_any(tags, group) for group in groups)


def check_tag(key: Any, value: Any, error: type[CodeDeployError], what: str) -> tuple[str, str]:
    """A tag's key (1-128 characters) and value (0-256; absent is empty)."""
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY:
        raise error(f"{what}: the tag key must be 1 to {MAX_KEY} characters, got {key!r}.")
    text = "" if value is None else value
    if not isinstance(text, str) or len(text) > MAX_VALUE:
        raise error(f"{what}: the tag value must be at most {MAX_VALUE} characters.")
    return key, text


def _decode_filter(item: Mapping[str, Any], error: type[CodeDeployError], what: str) -> TagFilter:
    key, value, kind = item.get("Key"), item.get("Value"), item.get("Type")
    if kind is None:
        if key and value:
            kind = FilterType.KEY_AND_VALUE
        elif key:
            kind = FilterType.KEY_ONLY
        elif value:
            kind = FilterType.VALUE_ONLY
        else:
            raise error(f"{what}: a tag filter needs a Key, a Value, or both.")
    filter_type = FilterType(kind)
    if filter_type in (FilterType.KEY_ONLY, FilterType.KEY_AND_VALUE) and not key:
        raise error(f"{what}: a {filter_type.value} tag filter needs a Key.")
    if filter_type in (FilterType.VALUE_ONLY, FilterType.KEY_AND_VALUE) and value is None:
        raise error(f"{what}: a {filter_type.value} tag filter needs a Value.")
    if key is not None and len(key) > MAX_KEY:
        raise error(f"{what}: the tag key must be at most {MAX_KEY} characters.")
    if value is not None and len(value) > MAX_VALUE:
        raise error(f"{what}: the tag value must be at most {MAX_VALUE} characters.")
    return TagFilter(filter_type, key, value)

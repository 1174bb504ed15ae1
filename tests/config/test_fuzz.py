"""Arbitrary YAML never makes the config loaders raise anything but ConfigError."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codedeploy_agent.config import (
    _SECTIONS,
    _TOP_KEYS,
    load_config,
    load_onprem_config,
)
from codedeploy_agent.errors import ConfigError

FUZZ = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
CHARACTERS = st.characters(exclude_categories=["Cs"])  # surrogates cannot be written as UTF-8
TEXT = st.text(CHARACTERS, max_size=40)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | TEXT
VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4)
)
NAMES = st.sampled_from(sorted({*_TOP_KEYS, *_SECTIONS}))
KEYS = st.one_of(NAMES, NAMES.map(lambda name: f":{name}"), TEXT)
SECTION_KEYS = st.sampled_from(sorted({k for s in _SECTIONS.values() for k in s.keys})) | TEXT
DOCUMENTS = st.dictionaries(
    KEYS, VALUES | st.dictionaries(SECTION_KEYS, VALUES, max_size=6), max_size=8
)


def _check(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    with contextlib.suppress(ConfigError):
        load_config(path, region="eu-west-1")
    with contextlib.suppress(ConfigError):
        load_onprem_config(path)


@FUZZ
@given(text=st.text(CHARACTERS, max_size=300))
def test_arbitrary_text(tmp_path: Path, text: str) -> None:
    """Any text at all, read as a config file, loads or raises ConfigError."""
    _check(tmp_path / "c.yml", text)


@FUZZ
@given(document=DOCUMENTS)
def test_arbitrary_documents_with_known_keys(tmp_path: Path, document: dict[str, object]) -> None:
    """Mappings of real keys (both spellings) to arbitrary values load or raise ConfigError."""
    _check(tmp_path / "c.yml", yaml.safe_dump(document, allow_unicode=True))


def test_deep_nesting_is_a_config_error(tmp_path: Path) -> None:
    """YAML nested 10,000 levels deep is a load error, not a RecursionError."""
    path = tmp_path / "c.yml"
    path.write_text("a: " + "[" * 10000 + "]" * 10000 + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^An error occurred loading the CodeDeploy agent"):
        load_config(path)


def test_alias_bomb_in_a_message_stays_small(tmp_path: Path) -> None:
    """A billion-laughs value quoted in an error message is abbreviated, not expanded."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]" for n in range(1, 10)]
    path = tmp_path / "c.yml"
    path.write_text("\n".join([*lines, "mqtt:", "  username: *l9", ""]), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert len(str(caught.value)) < 400
    assert str(caught.value).startswith("Invalid configuration mqtt.username: [[[")

"""Ruby value semantics the parsers rely on: to_s, inspect, to_i, truthiness."""

from __future__ import annotations

import datetime

import pytest

from codedeploy_agent.appspec._values import (
    Issues,
    ruby_inspect,
    ruby_str_to_i,
    ruby_to_i,
    ruby_to_s,
    ruby_truthy,
)
from codedeploy_agent.errors import AppSpecError


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, ""),
        (True, "true"),
        (False, "false"),
        (420, "420"),
        (0.0, "0.0"),
        (1.5, "1.5"),
        (1e16, "1.0e+16"),
        (1e15, "1000000000000000.0"),
        (1e-05, "1.0e-05"),
        (0.0001, "0.0001"),
        (float("inf"), "Infinity"),
        (float("-inf"), "-Infinity"),
        (float("nan"), "NaN"),
        ("text", "text"),
        (["a", 1, None], '["a", 1, nil]'),
        ({"name": "x"}, '{"name"=>"x"}'),
        (datetime.date(2001, 12, 14), "2001-12-14"),
    ],
)
def test_ruby_to_s(value: object, text: str) -> None:
    """Values print as Ruby's to_s prints them (floats keep a fraction, containers inspect)."""
    assert ruby_to_s(value) == text


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ('a"b', '"a\\"b"'),
        ("a\\b", '"a\\\\b"'),
        ("\n\t\x1b", '"\\n\\t\\e"'),
        ("#{x}", '"\\#{x}"'),
        ("#x", '"#x"'),
        ("\x01", '"\\u0001"'),
        ("é", '"é"'),
    ],
)
def test_ruby_inspect_escapes_strings(text: str, shown: str) -> None:
    """String#inspect escapes quotes, backslashes, controls and interpolation starts."""
    assert ruby_inspect(text) == shown


def test_ruby_inspect_survives_self_reference() -> None:
    """A list that contains itself (YAML anchors) prints `[...]` instead of recursing forever."""
    items: list[object] = [1]
    items.append(items)
    assert ruby_inspect(items) == "[1, [...]]"


def test_ruby_inspect_is_bounded() -> None:
    """Huge values are cut with `...` so messages stay small."""
    text = ruby_inspect([["x" * 100] * 100] * 100)
    assert len(text) < 1000
    assert text.endswith(", ...], ...]")


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("30", 30),
        (" 30", 30),
        ("\t+7x", 7),
        ("-5", -5),
        ("1_000", 1000),
        ("1__0", 1),
        ("_1", 0),
        ("foo", 0),
        ("", 0),
        ("0x10", 0),
        ("3.9", 3),
    ],
)
def test_ruby_str_to_i(text: str, number: int) -> None:
    """String#to_i reads leading blanks, a sign, digits with single underscores, else 0."""
    assert ruby_str_to_i(text) == number


@pytest.mark.parametrize(
    ("value", "number"),
    [
        (5, 5),
        (1.9, 1),
        (-1.9, -1),
        ("12", 12),
        (True, None),
        (float("nan"), None),
        ([1], None),
        (None, None),
    ],
)
def test_ruby_to_i(value: object, number: int | None) -> None:
    """to_i truncates floats; values without to_i (true, lists, NaN) give None."""
    assert ruby_to_i(value) == number


@pytest.mark.parametrize(
    ("value", "truthy"),
    [(None, False), (False, False), (0, True), ("", True), ("false", True), ([], True)],
)
def test_ruby_truthy(value: object, truthy: bool) -> None:
    """Only nil and false are false."""
    assert ruby_truthy(value) is truthy


def test_issues_fail_fast_raises_the_first_error() -> None:
    """In fail-fast mode the first error is raised with its path."""
    issues = Issues(collect=False)
    with pytest.raises(AppSpecError) as info:
        issues.error("first", "a.b")
    assert (str(info.value), info.value.path) == ("first", "a.b")


def test_issues_collect_keeps_going() -> None:
    """In collect mode errors are recorded and attempt() returns None for a failing step."""
    issues = Issues(collect=True)

    def boom() -> int:
        raise AppSpecError("bad", "x")

    assert issues.attempt(boom) is None
    issues.error("second", "y")
    assert [(str(e), e.path) for e in issues.errors] == [("bad", "x"), ("second", "y")]

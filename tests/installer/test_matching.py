"""Permission matching and the default-ACE check (reference §10.3 item 16, §5.4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from codedeploy_agent.appspec.model import Ace, Permission
from codedeploy_agent.errors import InstallError
from codedeploy_agent.installer.instructions import check_file_acl
from codedeploy_agent.installer.matching import (
    glob_matches,
    matches_except,
    matches_pattern,
    object_prefix,
)


def absolute(name: str) -> str:
    """`name` made absolute against the working directory (Ruby's File.expand_path)."""
    return str(Path(name).absolute())


@pytest.fixture
def prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The prefix of the relative object `test`, expanded against a tmp working directory."""
    monkeypatch.chdir(tmp_path)
    return object_prefix(absolute("test"))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("test/prefix", True),
        ("test/prefix_matches", True),
        ("test/prefix/does_not_match", False),
        ("testprefix/", False),
        ("tst/prefix", False),
        ("test/not_prefix", False),
    ],
)
def test_pattern_matches_direct_children_only(prefix: str, name: str, expected: bool) -> None:
    """`object: test, pattern: prefix*` selects direct children of test/ starting with prefix."""
    assert matches_pattern(absolute(name), prefix, "prefix*") is expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("test/this.tmp", True),
        ("test/this_ReadMe", True),
        ("test/prefix/does_not_match.tmp", False),
        ("testprefix/", False),
        ("tst/prefix", False),
        ("test/not_match", False),
    ],
)
def test_except_matches_direct_children_only(prefix: str, name: str, expected: bool) -> None:
    """`except: ['*ReadMe', '*.tmp']` excludes matching direct children of test/ only."""
    assert matches_except(absolute(name), prefix, ("*ReadMe", "*.tmp")) is expected


def test_double_star_pattern_matches_any_depth(prefix: str) -> None:
    """`**` selects every descendant, at any depth, but never the object itself."""
    assert matches_pattern(absolute("test/a/b/c"), prefix, "**")
    assert not matches_pattern(absolute("test"), prefix, "**")


def test_object_root_prefix_is_a_single_slash() -> None:
    """The object `/` has the prefix `/`, under which every absolute path lies."""
    assert object_prefix("/") == "/"
    assert matches_pattern("/srv", "/", "s*")
    assert not matches_pattern("/srv/app", "/", "s*")


@pytest.mark.parametrize(
    ("name", "pattern", "expected"),
    [
        ("abc", "*", True),
        ("abc", "a*c", True),
        ("ac", "a*c", True),
        ("abc", "a*b", False),
        ("a?c", "a?c", True),
        ("abc", "a?c", False),
        ("a[b]c", "a[b]c", True),
        ("abc", "a[b]c", False),
        ("a.c", "a.c", True),
        ("abc", "a.c", False),
        ("abcabc", "*abc", True),
        ("xy", "**", True),
        ("x/y", "*", False),
        ("", "", True),
    ],
)
def test_glob_knows_only_star(name: str, pattern: str, expected: bool) -> None:
    """`*` is the only wildcard; `?`, `[` and `.` are literal; `/` never matches."""
    assert glob_matches(name, pattern) is expected


def test_default_ace_for_a_file_is_refused() -> None:
    """A default ACE is refused for a file; a plain named ACE is accepted."""
    check_file_acl(Permission(object="/", acls=(Ace(False, "user", "name", "rwx"),)))
    with pytest.raises(InstallError) as err:
        check_file_acl(Permission(object="/", acls=(Ace(True, "user", "name", "rwx"),)))
    assert str(err.value).startswith(
        "The deployment failed because the -d parameter has been specified to apply an acl "
        "setting to a file."
    )

"""Which installed paths a `permissions` entry selects (reference §3.5, §5.4).

CodeDeploy's matching is deliberately small: a permission's `object` is a directory, and a path
is selected when it lies under that directory and

- the `pattern` is `**` (any depth), or
- the path is a *direct* child whose name matches the pattern, where the pattern knows exactly
  one wildcard, `*` (any run of characters). Every other character, `?` and `[` included, is
  literal, and a name containing `/` never matches.

`except` uses the same single-component glob on the path relative to the object, so an except
entry only ever excludes direct children (even when the pattern is `**`).

All paths handled here are absolute and normalised (`os.path.abspath`), like Ruby's
`File.expand_path` in the real agent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache


def object_prefix(object_dir: str) -> str:
    """The prefix every path under `object_dir` starts with: the directory and one `/`."""
    return object_dir if object_dir.endswith("/") else object_dir + "/"


@lru_cache(maxsize=256)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    # `*` is the only wildcard; the real agent's matcher treats every other character
    # literally, so `re.escape` keeps `?`, `[`, `.` and friends literal too.
    parts = (re.escape(part) for part in pattern.split("*"))
    return re.compile(".*".join(parts), re.DOTALL)


def glob_matches(name: str, pattern: str) -> bool:
    """True when the single path component `name` matches `pattern` (`*` only)."""
    if "/" in name:
        return False
    return _glob_regex(pattern).fullmatch(name) is not None


def relative_name(path: str, prefix: str) -> str | None:
    """`path` relative to `prefix` (from `object_prefix`), or None when it is not under it."""
    path = path.removesuffix("/")
    if not path.startswith(prefix):
        return None
    return path[len(prefix) :]


def matches_pattern(path: str, prefix: str, pattern: str) -> bool:
    """True when `path` is selected by `pattern` under the object whose prefix is `prefix`."""
    rel = relative_name(path, prefix)
    if rel is None:
        return False
    if pattern == "**":
        return True
    return glob_matches(rel, pattern)


def matches_except(path: str, prefix: str, excepts: Iterable[str]) -> bool:
    """True when `path` is a direct child of the object matching one of the `except` globs."""
    rel = relative_name(path, prefix)
    if rel is None:
        return False
    return any(glob_matches(rel, item) for item in excepts)

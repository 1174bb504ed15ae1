"""Fixtures for the appspec tests: building appspec text and unpacked revisions."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

SpecText = Callable[[str], str]


@pytest.fixture
def spec_text() -> SpecText:
    """Return a builder: a valid `version`/`os` header followed by the dedented `body`."""

    def make(body: str = "") -> str:
        return "version: 0.0\nos: linux\n" + textwrap.dedent(body)

    return make


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    """An empty unpacked-revision directory (`deployment-archive`)."""
    path = tmp_path / "deployment-archive"
    path.mkdir()
    return path

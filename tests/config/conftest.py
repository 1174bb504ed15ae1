"""Fixtures for the config loader tests: config files written into a temporary directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

WriteConfig = Callable[[str], Path]


@pytest.fixture(autouse=True)
def _no_region(monkeypatch: pytest.MonkeyPatch) -> None:
    """The FIPS rule reads $AWS_REGION; tests set it themselves when they need it."""
    monkeypatch.delenv("AWS_REGION", raising=False)


@pytest.fixture
def write_config(tmp_path: Path) -> WriteConfig:
    """Write `text` to `<tmp>/conf/codedeployagent.yml` and return its path."""

    def write(text: str) -> Path:
        path = tmp_path / "conf" / "codedeployagent.yml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return write

"""Fixtures shared by every test package (keep this small: area fixtures live in their folder)."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked `root` when not running as root (CI runs as root, so they run there)."""
    del config
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (creates users or changes file owners)")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)

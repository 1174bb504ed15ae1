"""Fixtures for extraction tests: a deployment folder inside a watched temporary tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.archive.bundles import Site


@pytest.fixture
def site(tmp_path: Path) -> Site:
    """A deployment root folder and a bundle folder next to it (escapes would land in tmp)."""
    droot = tmp_path / "droot"
    bundles = tmp_path / "bundles"
    droot.mkdir()
    bundles.mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "passwd").write_text("root:x:0:0\n")
    return Site(tmp_path, droot, bundles)

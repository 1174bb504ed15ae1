"""`codedeploy-agent validate [PATH]`: check an appspec file, a bundle directory or an archive.

An archive is unpacked (with the same safety rules and limits as a deployment) into a temporary
folder first, so that hook scripts and `files` sources are checked against what would really be
deployed.
"""

from __future__ import annotations

import tarfile
import tempfile
import zipfile
from pathlib import Path

from codedeploy_agent.appspec.check import CheckReport, check_appspec
from codedeploy_agent.appspec.loader import find_appspec, read_appspec_text
from codedeploy_agent.archive import unpack_bundle
from codedeploy_agent.config import ArchiveLimits
from codedeploy_agent.errors import BundleError
from codedeploy_agent.spec import BundleType

_SUFFIXES = {
    ".zip": BundleType.ZIP,
    ".tar": BundleType.TAR,
    ".tgz": BundleType.TGZ,
    ".gz": BundleType.TGZ,
}


def validate_path(
    path: Path,
    *,
    appspec_filename: str | None = None,
    bundle_type: str | None = None,
    limits: ArchiveLimits | None = None,
) -> CheckReport:
    """Check `path` and report every problem found (see `check_appspec`)."""
    if path.is_dir():
        return _check_directory(path, appspec_filename)
    if not path.exists():
        raise BundleError(
            f"{path} does not exist. Give an appspec file, a bundle directory or an archive."
        )
    kind = _archive_kind(path, bundle_type)
    if kind is None:
        return check_appspec(read_appspec_text(path), filename=str(path), archive_dir=path.parent)
    with tempfile.TemporaryDirectory(prefix="codedeploy-validate-") as tmp:
        archive = Path(tmp) / "deployment-archive"
        unpack_bundle(
            path, kind, archive, limits=limits or ArchiveLimits(), temp_dir=Path(tmp) / "temp"
        )
        return _check_directory(archive, appspec_filename, shown_as=path)


def _check_directory(
    directory: Path, appspec_filename: str | None, shown_as: Path | None = None
) -> CheckReport:
    appspec = find_appspec(directory, appspec_filename or "appspec.yml")
    name = f"{shown_as}!{appspec.name}" if shown_as else str(appspec)
    return check_appspec(read_appspec_text(appspec), filename=name, archive_dir=directory)


def _archive_kind(path: Path, bundle_type: str | None) -> BundleType | None:
    if bundle_type:
        try:
            return BundleType(bundle_type)
        except ValueError:
            raise BundleError(
                f"type {bundle_type} is not a valid archive type. Must be one of tar,tgz,zip"
            ) from None
    if path.suffix in _SUFFIXES:
        return _SUFFIXES[path.suffix]
    if zipfile.is_zipfile(path):
        return BundleType.ZIP
    if tarfile.is_tarfile(path):
        return BundleType.TGZ  # unpack_bundle detects gzip by its magic bytes either way
    return None

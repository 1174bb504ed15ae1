"""Finding and reading the appspec file of an unpacked revision (reference §3.1)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Final

from codedeploy_agent.appspec.model import AppSpec
from codedeploy_agent.appspec.parser import parse_appspec
from codedeploy_agent.errors import AppSpecError, AppSpecNotFoundError

DEFAULT_APPSPEC_FILENAME: Final = "appspec.yml"
#: Tried, in this order, after the deployment's own AppSpecFilename.
FALLBACK_FILENAMES: Final = ("appspec.yaml", "appspec.yml")
_DOCS_URL: Final = (
    "http://docs.aws.amazon.com/codedeploy/latest/userguide/reference-appspec-file.html"
)


def find_appspec(archive_dir: Path, appspec_filename: str = DEFAULT_APPSPEC_FILENAME) -> Path:
    """The appspec of the revision unpacked at `archive_dir`.

    Tries `<AppSpecFilename>`, then `appspec.yaml`, then `appspec.yml`, as the real agent does at
    Install. Quirk fixed: the real agent's hooks read only `<AppSpecFilename>`, so a bundle with
    just `appspec.yaml` installed fine and then failed every hook with "did not find an AppSpec
    file"; Install and the hooks must read the same file, so both call this function.

    Raises AppSpecNotFoundError (the real agent's hook-time message, which names the expected
    path) when none exists, and AppSpecError for a name that would leave the archive.
    """
    relative = PurePosixPath(appspec_filename)
    if not appspec_filename or relative.is_absolute() or ".." in relative.parts:
        raise AppSpecError(
            f"The AppSpec file name {appspec_filename!r} must be a path relative to the root of "
            "the revision, without '..'. Fix the AppSpecFilename of the deployment, and then try "
            "again."
        )
    for name in dict.fromkeys((appspec_filename, *FALLBACK_FILENAMES)):
        candidate = archive_dir / name
        if candidate.exists():  # like Ruby's File.exist?: follows links, any file type
            return candidate
    expected = archive_dir / appspec_filename
    raise AppSpecNotFoundError(
        "The CodeDeploy agent did not find an AppSpec file within the unpacked revision directory "
        f'at revision-relative path "{appspec_filename}". The revision was unpacked to directory '
        f'"{archive_dir}", and the AppSpec file was expected but not found at path "{expected}". '
        f"Consult the AWS CodeDeploy Appspec documentation for more information at {_DOCS_URL}"
    )


def read_appspec_text(path: Path) -> str:
    """The text of an appspec file (UTF-8, an optional BOM dropped); failures are AppSpecError."""
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise AppSpecError(
            f"The AppSpec file {path} is a directory. Put the AppSpec file at the root of the "
            "revision, and then try again."
        ) from None
    except OSError as err:
        raise AppSpecError(
            f"The AppSpec file {path} could not be read: {err.strerror or err}. Check the file "
            "and its permissions, and then try again."
        ) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise AppSpecError(
            f"The AppSpec file {path} is not valid UTF-8 (byte 0x{data[err.start]:02x} at offset "
            f"{err.start}). Save the AppSpec file as UTF-8, and then try again."
        ) from None


def load_appspec_file(path: Path) -> AppSpec:
    """Read and parse the appspec at `path` (e.g. one found by `find_appspec`)."""
    return parse_appspec(read_appspec_text(path), filename=path.name)


def load_appspec(archive_dir: Path, appspec_filename: str = DEFAULT_APPSPEC_FILENAME) -> AppSpec:
    """Find (with the fallbacks of `find_appspec`), read and parse the revision's appspec."""
    return load_appspec_file(find_appspec(archive_dir, appspec_filename))

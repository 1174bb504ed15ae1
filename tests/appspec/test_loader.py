"""Finding and reading the appspec of an unpacked revision (reference §3.1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from codedeploy_agent.appspec import find_appspec, load_appspec, load_appspec_file
from codedeploy_agent.errors import AppSpecError, AppSpecNotFoundError

MINIMAL = "version: 0.0\nos: linux\n"


def write(path: Path, text: str = MINIMAL) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_configured_name_comes_first(archive: Path) -> None:
    """`<AppSpecFilename>` wins over appspec.yaml and appspec.yml."""
    for name in ("custom.yml", "appspec.yaml", "appspec.yml"):
        write(archive / name)
    assert find_appspec(archive, "custom.yml") == archive / "custom.yml"


def test_yaml_extension_is_the_first_fallback(archive: Path) -> None:
    """Without the configured file, appspec.yaml is used before appspec.yml."""
    write(archive / "appspec.yaml")
    write(archive / "appspec.yml")
    assert find_appspec(archive, "custom.yml") == archive / "appspec.yaml"


def test_yml_is_the_last_fallback(archive: Path) -> None:
    """appspec.yml is found when nothing else exists."""
    write(archive / "appspec.yml")
    assert find_appspec(archive, "custom.yml") == archive / "appspec.yml"


def test_default_name_falls_back_to_yaml(archive: Path) -> None:
    """Quirk fixed: with the default name, a bundle with only appspec.yaml is found (hooks too)."""
    write(archive / "appspec.yaml")
    assert find_appspec(archive) == archive / "appspec.yaml"


def test_not_found_has_the_real_agents_message(archive: Path) -> None:
    """No candidate: AppSpecNotFoundError naming the revision-relative and absolute paths."""
    with pytest.raises(AppSpecNotFoundError) as info:
        find_appspec(archive, "app_spec")
    assert str(info.value) == (
        "The CodeDeploy agent did not find an AppSpec file within the unpacked revision directory "
        'at revision-relative path "app_spec". The revision was unpacked to directory '
        f'"{archive}", and the AppSpec file was expected but not found at path '
        f'"{archive}/app_spec". '
        "Consult the AWS CodeDeploy Appspec documentation for more information at "
        "http://docs.aws.amazon.com/codedeploy/latest/userguide/reference-appspec-file.html"
    )


def test_missing_archive_directory_is_not_found(tmp_path: Path) -> None:
    """An archive directory that does not exist gives the same not-found error."""
    with pytest.raises(AppSpecNotFoundError):
        find_appspec(tmp_path / "gone")


def test_dangling_symlink_is_skipped(archive: Path) -> None:
    """A dangling appspec.yml link does not count; appspec.yaml is used instead."""
    (archive / "custom.yml").symlink_to(archive / "nowhere")
    write(archive / "appspec.yaml")
    assert find_appspec(archive, "custom.yml") == archive / "appspec.yaml"


@pytest.mark.parametrize("name", ["/etc/passwd", "../appspec.yml", "a/../../b", ""])
def test_names_leaving_the_archive_are_refused(archive: Path, name: str) -> None:
    """An AppSpecFilename that is absolute or climbs out of the archive is an AppSpecError."""
    with pytest.raises(AppSpecError) as info:
        find_appspec(archive, name)
    assert not isinstance(info.value, AppSpecNotFoundError)
    assert "must be a path relative to the root of the revision" in str(info.value)


def test_name_in_a_subdirectory(archive: Path) -> None:
    """A relative name with a folder is looked up inside the archive."""
    (archive / "deploy").mkdir()
    write(archive / "deploy" / "spec.yml")
    assert find_appspec(archive, "deploy/spec.yml") == archive / "deploy" / "spec.yml"


def test_load_appspec_parses_the_found_file(archive: Path) -> None:
    """load_appspec finds (with fallback), reads and parses."""
    write(archive / "appspec.yaml", MINIMAL + "hooks:\n  AfterInstall:\n    - location: a.sh\n")
    assert [s.location for s in load_appspec(archive).scripts_for("AfterInstall")] == ["a.sh"]


def test_syntax_error_names_the_file_read(archive: Path) -> None:
    """A YAML error names the file that was actually read."""
    write(archive / "appspec.yaml", "version: [\n")
    with pytest.raises(AppSpecError) as info:
        load_appspec(archive)
    assert "application specification file (appspec.yaml) is not valid YAML" in str(info.value)


def test_invalid_utf8_is_an_appspec_error(archive: Path) -> None:
    """Bytes that are not UTF-8 give an AppSpecError with the offset."""
    (archive / "appspec.yml").write_bytes(b"version: 0.0\nos: \xfflinux\n")
    with pytest.raises(AppSpecError) as info:
        load_appspec(archive)
    assert str(info.value) == (
        f"The AppSpec file {archive}/appspec.yml is not valid UTF-8 (byte 0xff at offset 17). "
        "Save the AppSpec file as UTF-8, and then try again."
    )


def test_bom_is_dropped(archive: Path) -> None:
    """A UTF-8 byte-order mark at the start of the file is ignored."""
    (archive / "appspec.yml").write_bytes(b"\xef\xbb\xbf" + MINIMAL.encode())
    assert load_appspec(archive).os == "linux"


def test_directory_named_like_the_appspec(archive: Path) -> None:
    """A directory called appspec.yml is found but refused with a clear AppSpecError."""
    (archive / "appspec.yml").mkdir()
    with pytest.raises(AppSpecError) as info:
        load_appspec(archive)
    assert str(info.value) == (
        f"The AppSpec file {archive}/appspec.yml is a directory. Put the AppSpec file at the root "
        "of the revision, and then try again."
    )


def test_unreadable_file_is_an_appspec_error(archive: Path) -> None:
    """A file that cannot be read (here a symlink loop) is an AppSpecError, not an OSError."""
    path = archive / "appspec.yml"
    path.symlink_to(path)
    with pytest.raises(AppSpecError) as info:
        load_appspec_file(path)
    assert str(info.value) == (
        f"The AppSpec file {path} could not be read: Too many levels of symbolic links. Check the "
        "file and its permissions, and then try again."
    )

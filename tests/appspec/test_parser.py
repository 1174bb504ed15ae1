"""The EC2/on-premises appspec grammar: top-level keys, hooks, files (reference §3.2-3.6, §10.3)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from codedeploy_agent.appspec import parse_appspec
from codedeploy_agent.appspec.model import FileExistsBehavior, FileMapping, Script
from codedeploy_agent.errors import AppSpecError

SpecText = Callable[[str], str]

EMPTY = (
    "The deployment failed because the application specification file was empty. Make sure your "
    "AppSpec file defines at minimum the 'version' and 'os' properties."
)
NO_LOCATION = (
    "The deployment failed because the application specification file specifies a script with no "
    "location value. Specify the location in the hooks section of the AppSpec file, and then try "
    "again."
)
BAD_TIMEOUT = (
    "The deployment failed because an invalid timeout value was provided for a script in the "
    "application specification file. Make corrections in the hooks section of the AppSpec file, "
    "and then try again."
)


def version_error(value: str) -> str:
    return (
        f"The deployment failed because an invalid version value ({value}) was entered in the "
        'application specification file. Make sure your AppSpec file specifies "0.0" as the '
        "version, and then try again."
    )


def os_error(value: str) -> str:
    return (
        "The deployment failed because the application specification file specifies an "
        f'unsupported operating system ({value}). Specify either "linux" or "windows" in the os '
        "section of the AppSpec file, and then try again."
    )


def fail(text: str) -> AppSpecError:
    with pytest.raises(AppSpecError) as info:
        parse_appspec(text)
    return info.value


# --- top level (§10.3 item 13) ------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   \n\t\n", "# only a comment\n", "---\n", "~\n", "false\n"])
def test_empty_document_is_the_empty_file_error(text: str) -> None:
    """An empty, whitespace-only or null document gives the 'was empty' message at the root."""
    err = fail(text)
    assert str(err) == EMPTY
    assert err.path == ""


def test_missing_version_prints_empty_parentheses() -> None:
    """A missing version is reported as `()`, like Ruby's nil.to_s."""
    err = fail("os: linux\n")
    assert str(err) == version_error("")
    assert err.path == "version"


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("invalid", "invalid"),
        ('"0.0"', "0.0"),
        ("1", "1"),
        ("0.1", "0.1"),
        ("true", "true"),
        ("[0.0]", "[0.0]"),
        ("{a: 1}", '{"a"=>1}'),
        ("1e20", "1e20"),
        ("1.0e+20", "1.0e+20"),
    ],
)
def test_invalid_version_quotes_the_value_as_ruby_prints_it(raw: str, shown: str) -> None:
    """Only numeric 0 passes; the string "0.0" is rejected and values print like Ruby's to_s."""
    err = fail(f"version: {raw}\nos: linux\n")
    assert str(err) == version_error(shown)


@pytest.mark.parametrize("raw", ["0", "0.0", "0.00", "-0.0", "0x0"])
def test_numeric_zero_versions_are_accepted(raw: str) -> None:
    """The check is numeric equality with 0.0, so 0, 0.0 and 0.00 all pass."""
    assert parse_appspec(f"version: {raw}\nos: linux\n").version == 0.0


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("", ""),
        ("unsupported", "unsupported"),
        ("windows", "windows"),
        ("Linux", "Linux"),
        ("1", "1"),
    ],
)
def test_os_other_than_linux_is_rejected(raw: str, shown: str) -> None:
    """A Linux agent accepts only `linux`; `windows` gets the same message as anything else."""
    err = fail(f"version: 0.0\nos: {raw}\n")
    assert str(err) == os_error(shown)
    assert err.path == "os"


def test_minimal_appspec_has_no_hooks_files_or_permissions() -> None:
    """`version` and `os` alone give empty sections and no file_exists_behavior."""
    spec = parse_appspec("version: 0.0\nos: linux\n")
    assert (spec.version, spec.os) == (0.0, "linux")
    assert (dict(spec.hooks), spec.files, spec.permissions) == ({}, (), ())
    assert spec.file_exists_behavior is None


def test_null_and_false_sections_default_to_empty(spec_text: SpecText) -> None:
    """`hooks:`, `files: ~` and `permissions: false` count as absent (Ruby's `|| default`)."""
    spec = parse_appspec(spec_text("hooks:\nfiles: ~\npermissions: false\n"))
    assert (dict(spec.hooks), spec.files, spec.permissions) == ({}, (), ())


def test_unknown_top_level_keys_are_ignored(spec_text: SpecText) -> None:
    """Keys the agent does not know (`Resources`, typos) do not fail the parse."""
    spec = parse_appspec(spec_text("Hooks:\n  X: 1\nextra: [1, 2]\n"))
    assert dict(spec.hooks) == {}


def test_version_is_checked_before_os() -> None:
    """With both wrong, the version error is the one reported (the real agent's order)."""
    assert str(fail("version: 1\nos: mac\n")) == version_error("1")


@pytest.mark.parametrize(
    ("text", "found"),
    [("- a\n- b\n", "a list"), ("hello\n", "a string"), ("42\n", "a number")],
)
def test_non_mapping_document_is_an_appspec_error(text: str, found: str) -> None:
    """A list or scalar document is refused with a message saying what the file holds."""
    err = fail(text)
    assert str(err) == (
        f"The deployment failed because the application specification file (appspec.yml) is "
        f"{found}, not a mapping of properties. Make sure your AppSpec file defines at minimum "
        "the 'version' and 'os' properties."
    )


def test_yaml_syntax_error_names_file_line_and_column() -> None:
    """Broken YAML becomes an AppSpecError with the file name, the problem and its position."""
    with pytest.raises(AppSpecError) as info:
        parse_appspec("version: 0.0\nos: linux\nhooks:\n  X: [a\n", filename="appspec.yaml")
    assert str(info.value).startswith(
        "The deployment failed because the application specification file (appspec.yaml) is "
        "not valid YAML or JSON: "
    )
    assert "(line 5, column 1)" in str(info.value)
    assert str(info.value).endswith("Correct the syntax of the AppSpec file, and then try again.")


def test_bad_mapping_indentation_points_at_the_offending_line() -> None:
    """`mapping values are not allowed here` is reported with its 1-based line and column."""
    err = fail("version: 0.0\nos: linux\nhooks: x: y\n")
    assert "mapping values are not allowed here (line 3, column 9)" in str(err)


@pytest.mark.parametrize(
    "text",
    ["d: 2001-13-01\n", "a: !!int x\n", "a: 0b_\n", "a: !!timestamp x\n", "a: !!python/object x\n"],
)
def test_yaml_constructor_failures_are_appspec_errors(text: str) -> None:
    """PyYAML's ValueError/AttributeError/ConstructorError leaks become AppSpecError."""
    assert "is not valid YAML or JSON" in str(fail(text))


def test_deep_nesting_is_an_appspec_error() -> None:
    """A document nested deeper than the recursion limit is refused, not a RecursionError."""
    assert "nested too deeply" in str(fail("a: " + "[" * 5000 + "]" * 5000 + "\n"))


def test_json_appspec_is_accepted() -> None:
    """An appspec written as JSON parses the same as its YAML form."""
    spec = parse_appspec(
        '{"version": 0.0, "os": "linux", "hooks": {"AfterInstall": [{"location": "a.sh",'
        ' "timeout": 10}]}, "files": [{"source": "/", "destination": "/srv"}]}'
    )
    assert spec.hooks["AfterInstall"] == (Script("a.sh", 10),)
    assert spec.files == (FileMapping("/", "/srv"),)


def test_utf8_bom_is_ignored() -> None:
    """A leading byte-order mark does not break parsing."""
    assert parse_appspec("\ufeffversion: 0.0\nos: linux\n").os == "linux"


# --- file_exists_behavior ----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["DISALLOW", "OVERWRITE", "RETAIN"])
def test_file_exists_behavior_values(spec_text: SpecText, value: str) -> None:
    """The three upper-case values are accepted."""
    spec = parse_appspec(spec_text(f"file_exists_behavior: {value}\n"))
    assert spec.file_exists_behavior is FileExistsBehavior(value)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("overwrite", "overwrite"),
        ("Retain", "Retain"),
        ("MERGE", "MERGE"),
        ("1", "1"),
        ("[RETAIN]", '["RETAIN"]'),
    ],
)
def test_file_exists_behavior_is_case_sensitive(spec_text: SpecText, raw: str, shown: str) -> None:
    """Anything but the exact upper-case names fails with the real agent's message."""
    err = fail(spec_text(f"file_exists_behavior: {raw}\n"))
    assert str(err) == (
        f"The deployment failed because an invalid file_exists_behavior value ({shown}) was "
        "entered in the application specification file. Make sure your AppSpec file specifies "
        "one of DISALLOW,OVERWRITE,RETAIN as the file_exists_behavior, and then try again."
    )
    assert err.path == "file_exists_behavior"


# --- hooks (§10.3 item 14) ----------------------------------------------------------------------


def test_single_complete_hook(spec_text: SpecText) -> None:
    """location, runas and timeout of a script are read."""
    spec = parse_appspec(
        spec_text(
            """\
            hooks:
              test_hook:
                - location: test_location_1
                  runas: foo
                  timeout: 30
            """
        )
    )
    assert spec.hooks["test_hook"] == (Script("test_location_1", 30, "foo", False),)


def test_sudo_hook(spec_text: SpecText) -> None:
    """`sudo: true` is kept with runas and timeout."""
    spec = parse_appspec(
        spec_text("hooks:\n  h:\n    - {location: l, sudo: true, runas: foo, timeout: 30}\n")
    )
    assert spec.hooks["h"] == (Script("l", 30, "foo", True),)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("false", False),
        ("0", True),
        ('"false"', True),
        ("yes", True),
        ("no", False),
        ("~", False),
    ],
)
def test_sudo_uses_ruby_truthiness(spec_text: SpecText, raw: str, expected: bool) -> None:
    """Everything but null and false is true, as in Ruby (so 0 and "false" mean sudo)."""
    spec = parse_appspec(spec_text(f"hooks:\n  h:\n    - location: l\n      sudo: {raw}\n"))
    assert spec.hooks["h"][0].sudo is expected


def test_scripts_keep_their_order(spec_text: SpecText) -> None:
    """Two scripts of one event stay in file order."""
    spec = parse_appspec(
        spec_text(
            "hooks:\n  h:\n    - location: test_location_1\n    - location: test_location_2\n"
        )
    )
    assert [s.location for s in spec.hooks["h"]] == ["test_location_1", "test_location_2"]


def test_partial_scripts_get_defaults(spec_text: SpecText) -> None:
    """A script without runas has None; without timeout, 3600."""
    spec = parse_appspec(
        spec_text(
            "hooks:\n  h:\n    - location: a\n"
            "    - location: b\n      runas: foo3\n      timeout: 30\n"
        )
    )
    assert [(s.runas, s.timeout) for s in spec.hooks["h"]] == [(None, 3600), ("foo3", 30)]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("30", 30),
        ('"30"', 30),
        ("1.5", 1),
        ('" 45s"', 45),
        ("1_000", 1000),
        ("false", 3600),
        ("~", 3600),
    ],
)
def test_timeout_uses_ruby_to_i(spec_text: SpecText, raw: str, expected: int) -> None:
    """Timeouts go through Ruby's to_i: "30" is 30, 1.5 is 1, false/null take the default."""
    spec = parse_appspec(spec_text(f"hooks:\n  h:\n    - location: l\n      timeout: {raw}\n"))
    assert spec.hooks["h"][0].timeout == expected


@pytest.mark.parametrize(
    "raw", ["foo", "0", "-5", "0.5", '""', "true", "[30]", "{a: 1}", ".inf", ".nan"]
)
def test_invalid_timeouts(spec_text: SpecText, raw: str) -> None:
    """A timeout that is not > 0 after to_i (or has no to_i) fails at its key path."""
    err = fail(
        spec_text(
            "hooks:\n  ApplicationStart:\n    - location: a\n"
            f"    - location: b\n      timeout: {raw}\n"
        )
    )
    assert str(err) == BAD_TIMEOUT
    assert err.path == "hooks.ApplicationStart[1].timeout"


def test_timeout_has_no_maximum(spec_text: SpecText) -> None:
    """The agent enforces no maximum timeout (the service's 3600 s limit is only a warning)."""
    spec = parse_appspec(spec_text("hooks:\n  h:\n    - location: l\n      timeout: 86400\n"))
    assert spec.hooks["h"][0].timeout == 86400


def test_null_hook_is_ignored(spec_text: SpecText) -> None:
    """An event listed with no value is skipped; others still parse."""
    spec = parse_appspec(
        spec_text("hooks:\n  BeforeInstall:\n  AfterInstall:\n    - location: a\n")
    )
    assert list(spec.hooks) == ["AfterInstall"]


def test_empty_hook_list_is_absent(spec_text: SpecText) -> None:
    """An event with an empty list has no scripts (the model keeps only events with scripts)."""
    assert dict(parse_appspec(spec_text("hooks:\n  BeforeInstall: []\n")).hooks) == {}


@pytest.mark.parametrize(
    ("script", "path"),
    [
        ("{timeout: 30}", "hooks.test_hook[0].location"),
        ("{location: ~}", "hooks.test_hook[0].location"),
        ("{location: ''}", "hooks.test_hook[0].location"),
        ("{location: '   '}", "hooks.test_hook[0].location"),
    ],
)
def test_script_without_location(spec_text: SpecText, script: str, path: str) -> None:
    """A missing, null, empty or blank location fails with the real agent's message."""
    err = fail(spec_text(f"hooks:\n  test_hook:\n    - {script}\n"))
    assert str(err) == NO_LOCATION
    assert err.path == path


def test_script_given_as_a_string_says_how_to_write_it(spec_text: SpecText) -> None:
    """`- scripts/start.sh` (no `location:`) gets the exact message plus the expected form."""
    err = fail(spec_text("hooks:\n  AfterInstall:\n    - scripts/start.sh\n"))
    assert str(err) == (
        f"{NO_LOCATION} Each script is a mapping such as '- location: scripts/start.sh', "
        'not a string ("scripts/start.sh").'
    )
    assert err.path == "hooks.AfterInstall[0]"


def test_location_and_runas_are_stripped(spec_text: SpecText) -> None:
    """Surrounding blanks of location and runas are removed; an int location becomes text."""
    spec = parse_appspec(
        spec_text(
            "hooks:\n  h:\n    - location: ' a.sh\t'\n      runas: ' bob '\n    - location: 7\n"
        )
    )
    assert [(s.location, s.runas) for s in spec.hooks["h"]] == [("a.sh", "bob"), ("7", None)]


def test_empty_runas_means_no_runas(spec_text: SpecText) -> None:
    """A blank runas is treated as absent (the real agent would run `su  -c`, i.e. as root)."""
    spec = parse_appspec(spec_text("hooks:\n  h:\n    - location: a\n      runas: '  '\n"))
    assert spec.hooks["h"][0].runas is None


@pytest.mark.parametrize(
    ("hooks", "path", "start"),
    [
        ("hooks: [a]\n", "hooks", "The deployment failed because the hooks section"),
        (
            "hooks:\n  AfterInstall: scripts/a.sh\n",
            "hooks.AfterInstall",
            "The deployment failed because the hook AfterInstall",
        ),
        (
            "hooks:\n  AfterInstall: {location: a}\n",
            "hooks.AfterInstall",
            "The deployment failed because the hook AfterInstall",
        ),
    ],
)
def test_hooks_of_the_wrong_shape(spec_text: SpecText, hooks: str, path: str, start: str) -> None:
    """Shapes the real agent crashes on are AppSpecErrors naming the expected shape."""
    err = fail(spec_text(hooks))
    assert str(err).startswith(start)
    assert "must be a" in str(err)
    assert err.path == path


def test_non_string_event_names_are_text(spec_text: SpecText) -> None:
    """An event key YAML reads as a number is kept as its text."""
    assert list(parse_appspec(spec_text("hooks:\n  123:\n    - location: a\n")).hooks) == ["123"]


# --- files (§10.3 item 15) ----------------------------------------------------------------------


def test_single_file_mapping(spec_text: SpecText) -> None:
    """One source/destination pair is read."""
    spec = parse_appspec(
        spec_text("files:\n  - source: test_source\n    destination: test_destination\n")
    )
    assert spec.files == (FileMapping("test_source", "test_destination"),)


def test_many_file_mappings_keep_order(spec_text: SpecText) -> None:
    """Several mappings are kept in file order."""
    spec = parse_appspec(
        spec_text(
            "files:\n  - {source: test_source, destination: test_destination}\n"
            "  - {source: test_source_2, destination: test_destination_2}\n"
        )
    )
    assert [f.source for f in spec.files] == ["test_source", "test_source_2"]
    assert [f.destination for f in spec.files] == ["test_destination", "test_destination_2"]


def test_file_mapping_without_destination(spec_text: SpecText) -> None:
    """A source alone gives the 'only a source file' message with the source in it."""
    err = fail(spec_text("files:\n  - source: test_source\n"))
    assert str(err) == (
        "The deployment failed because the application specification file specifies only a "
        "source file (test_source). Add the name of the destination file to the files section of "
        "the AppSpec file, and then try again."
    )
    assert err.path == "files[0].destination"


def test_file_mapping_without_source(spec_text: SpecText) -> None:
    """A destination alone gives the 'no source file' message."""
    err = fail(
        spec_text("files:\n  - {source: a, destination: b}\n  - destination: test_destination\n")
    )
    assert str(err) == (
        "The deployment failed because the application specification file specifies a "
        "destination file, but no source file. Update the files section of the AppSpec file, and "
        "then try again."
    )
    assert err.path == "files[1].source"


@pytest.mark.parametrize(
    ("files", "path"),
    [
        ("files: {source: a}\n", "files"),
        ("files: [a.txt]\n", "files[0]"),
        ("files:\n  - {source: [a], destination: /b}\n", "files[0].source"),
    ],
)
def test_files_of_the_wrong_shape(spec_text: SpecText, files: str, path: str) -> None:
    """A mapping instead of a list, a bare string entry or a list source are refused."""
    err = fail(spec_text(files))
    assert "must be" in str(err)
    assert err.path == path


def test_sections_are_checked_in_the_real_agents_order(spec_text: SpecText) -> None:
    """hooks errors come before files errors, which come before permissions errors."""
    err = fail(
        spec_text(
            "permissions:\n  - pattern: x\nfiles:\n  - source: a\nhooks:\n  h:\n    - timeout: 1\n"
        )
    )
    assert err.path == "hooks.h[0].location"
    err = fail(spec_text("permissions:\n  - pattern: x\nfiles:\n  - source: a\n"))
    assert err.path == "files[0].destination"

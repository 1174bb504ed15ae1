"""Property tests: the appspec parsers never raise anything but AppSpecError, whatever the input."""

from __future__ import annotations

import json
from collections.abc import Mapping

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codedeploy_agent.appspec import (
    appspec_from_data,
    check_appspec,
    parse_ace,
    parse_any_appspec,
    parse_appspec,
    parse_ecs_appspec,
    parse_lambda_appspec,
    parse_mode,
    parse_range,
)
from codedeploy_agent.appspec.parser import FILE_KEYS, SCRIPT_KEYS, TOP_LEVEL_KEYS
from codedeploy_agent.appspec.permissions import PERMISSION_KEYS
from codedeploy_agent.errors import AppSpecError
from codedeploy_agent.lifecycle import DEFAULT_ORDER

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
#: The checker parses each document three times with pure-Python YAML: fewer, costlier examples.
SLOW_SETTINGS = settings(SETTINGS, max_examples=80)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["0644", "s0:c1.c3", "d:u:bob:7", "linux", "**", "30", "/", "file"])
)
json_like = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(max_size=8) | st.sampled_from(TOP_LEVEL_KEYS), children, max_size=4
        )
    ),
    max_leaves=20,
)


def entry(keys: tuple[str, ...]) -> st.SearchStrategy[dict[str, object]]:
    """Mappings using the section's real keys (plus a stray one) with arbitrary values."""
    return st.dictionaries(st.sampled_from((*keys, "extra")), json_like, max_size=len(keys) + 1)


acl_text = st.text(alphabet="dugmoasbe:rwx-0123456789", max_size=14)
range_text = st.text(alphabet="sc0123456789-:.,", max_size=16)
near_valid = st.fixed_dictionaries(
    {
        "version": st.sampled_from([0, 0.0, "0.0", None, 1]),
        "os": st.sampled_from(["linux", "windows", None, 3]),
    },
    optional={
        "hooks": st.dictionaries(
            st.sampled_from((*DEFAULT_ORDER, "Custom")),
            st.none() | st.lists(entry(SCRIPT_KEYS), max_size=3) | json_like,
            max_size=3,
        )
        | json_like,
        "files": st.lists(entry(FILE_KEYS), max_size=3) | json_like,
        "permissions": st.lists(
            entry(PERMISSION_KEYS)
            | st.fixed_dictionaries(
                {"object": st.just("/srv")},
                optional={
                    "acls": st.lists(acl_text, max_size=3),
                    "mode": scalars,
                    "context": st.fixed_dictionaries(
                        {"type": st.just("t")}, optional={"range": range_text, "name": scalars}
                    ),
                    "type": st.lists(st.sampled_from(["file", "directory", "link"]), max_size=2),
                },
            ),
            max_size=3,
        )
        | json_like,
        "file_exists_behavior": st.sampled_from(["OVERWRITE", "retain", None]) | json_like,
    },
)


def only_appspec_errors(call: object, *args: object) -> None:
    """Call `call(*args)`: it may return or raise AppSpecError (with a message), nothing else."""
    assert callable(call)
    try:
        call(*args)
    except AppSpecError as err:
        error = err
    else:
        return
    assert str(error)
    assert isinstance(error.path, str)


@SETTINGS
@given(st.text(max_size=200))
def test_parse_appspec_on_random_text(text: str) -> None:
    """Random text parses or raises AppSpecError, never anything else."""
    only_appspec_errors(parse_appspec, text)
    only_appspec_errors(parse_any_appspec, text)


@SETTINGS
@given(json_like)
def test_parsers_on_random_data(data: object) -> None:
    """Arbitrary JSON-like data, decoded or as YAML/JSON text, never crashes any parser."""
    only_appspec_errors(appspec_from_data, data)
    only_appspec_errors(parse_appspec, yaml.safe_dump(data))
    only_appspec_errors(parse_any_appspec, json.dumps(data))
    if isinstance(data, Mapping):
        only_appspec_errors(parse_lambda_appspec, data)
        only_appspec_errors(parse_ecs_appspec, data)


@SETTINGS
@given(near_valid)
def test_parser_on_near_valid_appspecs(data: dict[str, object]) -> None:
    """Appspecs with the real keys and arbitrary values reach deep rules without crashing."""
    only_appspec_errors(appspec_from_data, data)


@SLOW_SETTINGS
@given(near_valid)
def test_checker_agrees_with_the_parser(data: dict[str, object]) -> None:
    """check_appspec is ok exactly when parse_appspec succeeds; its first error is the parser's."""
    text = yaml.safe_dump(data)
    report = check_appspec(text, filename="appspec.yml")
    first: tuple[str, str] | None = None
    try:
        parse_appspec(text)
    except AppSpecError as err:
        first = (err.path, str(err))
    if first is None:
        assert report.ok
    else:
        assert (report.errors[0].path, report.errors[0].message) == first


@SETTINGS
@given(st.text(max_size=200))
def test_checker_on_random_text(text: str) -> None:
    """The checker returns a report for any text, never raises."""
    report = check_appspec(text, filename="appspec.yml")
    assert report.format()


@SETTINGS
@given(
    st.fixed_dictionaries(
        {"version": st.just(0.0)},
        optional={
            "Resources": st.lists(
                st.dictionaries(
                    st.text(max_size=5),
                    st.fixed_dictionaries(
                        {
                            "Type": st.sampled_from(
                                ["AWS::Lambda::Function", "AWS::ECS::Service", "x"]
                            )
                        },
                        optional={"Properties": json_like},
                    )
                    | json_like,
                    max_size=2,
                ),
                max_size=2,
            )
            | json_like,
            "Hooks": st.lists(
                st.dictionaries(
                    st.sampled_from(["BeforeAllowTraffic", "AfterInstall", "X"]),
                    json_like,
                    max_size=2,
                ),
                max_size=3,
            )
            | json_like,
        },
    )
)
def test_serverless_parsers_on_near_valid_data(data: dict[str, object]) -> None:
    """Lambda/ECS-shaped data never crashes the serverless parsers or the checker."""
    only_appspec_errors(parse_lambda_appspec, data)
    only_appspec_errors(parse_ecs_appspec, data)
    only_appspec_errors(parse_any_appspec, json.dumps(data))
    assert check_appspec(json.dumps(data), filename="appspec.yaml").format()


@SETTINGS
@given(acl_text, range_text, scalars)
def test_leaf_parsers(ace: str, mls_range: str, mode: object) -> None:
    """The ACL, range and mode parsers raise only AppSpecError."""
    only_appspec_errors(parse_ace, ace)
    only_appspec_errors(parse_range, mls_range)
    only_appspec_errors(parse_mode, mode)


@SETTINGS
@given(range_text)
def test_valid_ranges_round_trip(text: str) -> None:
    """Any range that parses prints canonically and re-parses to the same value."""
    try:
        parsed = parse_range(text)
    except AppSpecError:
        return
    assert parse_range(parsed.canonical()) == parsed


@pytest.mark.parametrize(
    "text",
    [
        "version: &v [*v]\nos: linux\n",
        "version: 0.0\nos: linux\nhooks: &h {A: *h}\n",
        "version: 0.0\nos: linux\npermissions:\n  - &p {object: *p, acls: [*p]}\n",
        "version: 0.0\nos: linux\nfiles: &f [{source: *f}]\n",
        "a: &a [*a, *a]\nb: &b [*a, *a, *b]\nversion: [*b, *b, *b]\n",
    ],
)
def test_self_referencing_yaml(text: str) -> None:
    """YAML anchors that make values contain themselves give bounded AppSpecErrors."""
    with pytest.raises(AppSpecError) as info:
        parse_appspec(text)
    assert len(str(info.value)) < 2000
    assert check_appspec(text, filename="appspec.yml").errors


HUGE = "9" * 5000


@pytest.mark.parametrize(
    ("call", "text"),
    [
        (parse_appspec, '{"version": ' + HUGE + "}"),
        (parse_appspec, "version: " + HUGE + "\n"),
        (parse_range, "s" + HUGE),
        (parse_range, "s0:c" + HUGE),
        (parse_range, "s0:c0.c" + HUGE),
        (
            parse_lambda_appspec,
            "version: 0.0\nResources:\n  - f: {Type: AWS::Lambda::Function, Properties: "
            "{Name: a, Alias: b, CurrentVersion: '" + HUGE + "', TargetVersion: 2}}\n",
        ),
    ],
)
def test_numbers_beyond_pythons_digit_limit_are_appspec_errors(call: object, text: str) -> None:
    """Thousands of digits (Python refuses to convert them) give AppSpecError, not ValueError."""
    assert callable(call)
    with pytest.raises(AppSpecError):
        call(text)


def test_huge_string_timeout_saturates() -> None:
    """A string timeout of thousands of digits is read (like Ruby's to_i) and capped at 1e18."""
    text = f"version: 0.0\nos: linux\nhooks:\n  A:\n    - location: a\n      timeout: '{HUGE}'\n"
    assert parse_appspec(text).hooks["A"][0].timeout == 10**18

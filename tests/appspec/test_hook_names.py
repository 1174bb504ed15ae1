"""Install-time check of appspec event names against AllPossibleLifecycleEvents (reference §3.6)."""

from __future__ import annotations

import pytest

from codedeploy_agent.appspec import check_hook_names, parse_appspec
from codedeploy_agent.appspec.model import AppSpec
from codedeploy_agent.errors import AppSpecError
from codedeploy_agent.lifecycle import DEFAULT_ORDER

DEFAULTS = list(DEFAULT_ORDER)


def spec_with_hooks(*events: str) -> AppSpec:
    body = "".join(f"  {e}:\n    - location: scripts/{e}.sh\n" for e in events)
    return parse_appspec("version: 0.0\nos: linux\nhooks:\n" + body)


def check(
    spec: AppSpec, possible: list[str], requested: list[str], name: str = "appspec.yml"
) -> None:
    check_hook_names(
        spec, appspec_filename=name, all_possible_events=possible, requested_events=requested
    )


def test_default_events_pass() -> None:
    """An appspec with default events passes when all possible events are the defaults."""
    check(spec_with_hooks("BeforeInstall", "ApplicationStart"), DEFAULTS, DEFAULTS)


def test_requested_custom_event_present_in_appspec_passes() -> None:
    """codedeploy-local `--events ApplicationStart,CustomEvent` with a CustomEvent hook passes."""
    possible = [*DEFAULTS, "CustomEvent"]
    check(spec_with_hooks("ApplicationStart", "CustomEvent"), possible, possible)


def test_unknown_appspec_event_is_listed_in_ruby_array_form() -> None:
    """Appspec events outside the possible list are reported as a Ruby array, in file order."""
    spec = spec_with_hooks("CustomEvent", "ApplicationStart", "Other")
    with pytest.raises(AppSpecError) as info:
        check(spec, DEFAULTS, DEFAULTS, name="appspec.yaml")
    assert str(info.value) == (
        'appspec.yaml file contains unknown lifecycle events: ["CustomEvent", "Other"]'
    )


def test_unknown_requested_event_is_reported() -> None:
    """A requested script event missing from the possible list is unknown too (hook mapping)."""
    with pytest.raises(AppSpecError) as info:
        check(spec_with_hooks(), DEFAULTS, [*DEFAULTS, "Extra"])
    assert str(info.value) == 'appspec.yml file contains unknown lifecycle events: ["Extra"]'


def test_agent_events_are_not_hook_events() -> None:
    """DownloadBundle/Install in the requested list need not be in the possible list."""
    check(
        spec_with_hooks("AfterInstall"),
        ["AfterInstall"],
        ["DownloadBundle", "Install", "AfterInstall"],
    )


def test_requested_custom_event_missing_from_appspec() -> None:
    """Custom events in the possible list without a hooks entry are joined with commas."""
    possible = [*DEFAULTS, "CustomA", "CustomB"]
    with pytest.raises(AppSpecError) as info:
        check(spec_with_hooks("ApplicationStart"), possible, DEFAULTS)
    assert str(info.value) == (
        "You specified a lifecycle event which is not a default one and doesn't exist in your "
        "appspec.yml file: CustomA,CustomB"
    )


def test_default_events_need_no_hooks_entry() -> None:
    """Default events without scripts are not 'missing' (they are noops)."""
    check(spec_with_hooks(), DEFAULTS, DEFAULTS)


def test_unknown_check_comes_first() -> None:
    """With both problems, the unknown-events error is the one raised."""
    with pytest.raises(AppSpecError) as info:
        check(spec_with_hooks("Stray"), [*DEFAULTS, "Wanted"], DEFAULTS)
    assert str(info.value).startswith("appspec.yml file contains unknown lifecycle events")


def test_event_names_with_quotes_are_escaped_like_ruby() -> None:
    """Names are printed with Ruby's String#inspect escapes."""
    spec = parse_appspec("version: 0.0\nos: linux\nhooks:\n  'a\"b':\n    - location: x\n")
    with pytest.raises(AppSpecError) as info:
        check(spec, DEFAULTS, DEFAULTS)
    assert str(info.value) == 'appspec.yml file contains unknown lifecycle events: ["a\\"b"]'

"""The scheduling and success rules of policy.py against every documented example (service
reference §1.1-§1.3) and, with hypothesis, against the documented statements for any fleet."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codedeploy_server.rollout.policy import (
    BUILTIN_CONFIGS,
    Counts,
    Decision,
    HostsType,
    MinimumHealthyHosts,
    Verdict,
    decide,
)

ONE = BUILTIN_CONFIGS["CodeDeployDefault.OneAtATime"]
HALF = BUILTIN_CONFIGS["CodeDeployDefault.HalfAtATime"]
ALL = BUILTIN_CONFIGS["CodeDeployDefault.AllAtOnce"]


@dataclass
class Run:
    """One simulated deployment: what the policy started, and how it ended."""

    verdict: Verdict
    #: Instance indexes in the order they were started.
    started: list[int] = field(default_factory=list)
    #: Instance indexes in the order they finished.
    finished: list[int] = field(default_factory=list)
    max_in_flight: int = 0
    #: Size of each batch the policy started at once.
    batches: list[int] = field(default_factory=list)
    #: (healthy = N - failed - in flight) after every step.
    healthy: list[int] = field(default_factory=list)
    in_flight_at_end: int = 0
    succeeded: int = 0


def simulate(n: int, minimum: int, outcomes: list[bool], picks: list[int] | None = None) -> Run:
    """Drive `decide` like the engine: start what it says, finish one in-flight instance at a
    time (the `picks`-th one, modulo; the oldest by default) with `outcomes[instance]`."""
    pending = list(range(n))
    in_flight: list[int] = []
    succeeded = failed = 0
    run = Run(Verdict.CONTINUE)
    step = 0
    while True:
        decision = decide(Counts(succeeded, failed, len(in_flight), len(pending)), minimum)
        if decision.verdict is not Verdict.CONTINUE:
            run.verdict = decision.verdict
            run.in_flight_at_end = len(in_flight)
            run.succeeded = succeeded
            return run
        if decision.start:
            run.batches.append(decision.start)
        for _ in range(decision.start):
            instance = pending.pop(0)
            in_flight.append(instance)
            run.started.append(instance)
        run.max_in_flight = max(run.max_in_flight, len(in_flight))
        run.healthy.append(n - failed - len(in_flight))
        assert in_flight, f"the policy waits with nothing in flight: {decision}"
        index = 0 if picks is None else picks[step % len(picks)] % len(in_flight)
        step += 1
        instance = in_flight.pop(index)
        run.finished.append(instance)
        if outcomes[instance]:
            succeeded += 1
        else:
            failed += 1


# --- the minimum healthy hosts of each config (§1.1, §1.2) --------------------------------------


@pytest.mark.parametrize(
    ("hosts", "n", "expected"),
    [
        (ONE, 9, 8),
        (ONE, 1, 0),
        (HALF, 9, 5),
        (HALF, 10, 5),
        (ALL, 9, 0),
        (MinimumHealthyHosts(HostsType.HOST_COUNT, 6), 9, 6),
        (MinimumHealthyHosts(HostsType.FLEET_PERCENT, 40), 9, 4),
        (MinimumHealthyHosts(HostsType.FLEET_PERCENT, 95), 10, 10),
        (MinimumHealthyHosts(HostsType.FLEET_PERCENT, 90), 10, 9),
        (MinimumHealthyHosts(HostsType.FLEET_PERCENT, 85), 10, 9),
        (MinimumHealthyHosts(HostsType.FLEET_PERCENT, 80), 10, 8),
        (MinimumHealthyHosts(HostsType.FLEET_PERCENT, 0), 10, 0),
    ],
)
def test_minimum(hosts: MinimumHealthyHosts, n: int, expected: int) -> None:
    """M per config: OneAtATime N-1, HalfAtATime ceil(N/2), AllAtOnce 0, HOST_COUNT v,
    FLEET_PERCENT ceil(N*v/100) rounding fractions up."""
    assert hosts.minimum(n) == expected


def test_builtin_configs_as_get_deployment_config_shows_them() -> None:
    """The three predefined configs carry the type/value GetDeploymentConfig returns."""
    assert {name: c.to_doc() for name, c in BUILTIN_CONFIGS.items()} == {
        "CodeDeployDefault.OneAtATime": {"type": "MOST_CONCURRENCY", "value": 1},
        "CodeDeployDefault.HalfAtATime": {"type": "FLEET_PERCENT", "value": 50},
        "CodeDeployDefault.AllAtOnce": {"type": "HOST_COUNT", "value": 0},
    }


def test_from_doc_refuses_bad_values() -> None:
    """A malformed minimumHealthyHosts block is refused with a message saying why."""
    assert MinimumHealthyHosts.from_doc({"type": "HOST_COUNT", "value": 2}) == (
        MinimumHealthyHosts(HostsType.HOST_COUNT, 2)
    )
    with pytest.raises(ValueError, match="must be 0 to 99, got 100"):
        MinimumHealthyHosts.from_doc({"type": "FLEET_PERCENT", "value": 100})
    with pytest.raises(ValueError, match="integer >= 0"):
        MinimumHealthyHosts.from_doc({"type": "HOST_COUNT", "value": -1})
    with pytest.raises(ValueError, match="HOST_COUNTS"):
        MinimumHealthyHosts.from_doc({"type": "HOST_COUNTS", "value": 1})
    with pytest.raises(TypeError, match="must be an object"):
        MinimumHealthyHosts.from_doc([1])


# --- the documented examples --------------------------------------------------------------------


def test_nine_host_count_six() -> None:
    """N = 9, HOST_COUNT 6: up to 3 at a time; succeeds with 6 successes."""
    run = simulate(9, 6, [True] * 9)
    assert run.batches[0] == 3
    assert run.max_in_flight == 3
    assert run.verdict is Verdict.SUCCEEDED
    six_ok = [True] * 6 + [False] * 3
    assert simulate(9, 6, six_ok, picks=[0]).verdict is Verdict.SUCCEEDED


def test_nine_fleet_percent_forty() -> None:
    """N = 9, FLEET_PERCENT 40 (M = 4): up to 5 at a time; succeeds with 4 successes."""
    m = MinimumHealthyHosts(HostsType.FLEET_PERCENT, 40).minimum(9)
    run = simulate(9, m, [True] * 9)
    assert run.batches[0] == 5
    assert run.max_in_flight == 5
    # The first five: four succeed, one fails; then the last four all fail: 4 successes.
    four_ok = [True] * 4 + [False] * 5
    assert simulate(9, m, four_ok).verdict is Verdict.SUCCEEDED
    three_ok = [False] * 6 + [True] * 3
    assert simulate(9, m, three_ok).verdict is Verdict.FAILED


def test_nine_all_at_once_one_success_is_enough() -> None:
    """AllAtOnce with 9: all 9 at once; one success is enough, none fails it."""
    assert simulate(9, 0, [True] * 9).batches == [9]
    assert simulate(9, 0, [False] * 8 + [True]).verdict is Verdict.SUCCEEDED
    assert simulate(9, 0, [False] * 9).verdict is Verdict.FAILED


def test_nine_half_at_a_time() -> None:
    """HalfAtATime with 9: 4 at a time; needs 5 successes."""
    m = HALF.minimum(9)
    run = simulate(9, m, [True] * 9)
    assert run.batches[0] == 4
    assert run.max_in_flight == 4
    assert simulate(9, m, [True] * 5 + [False] * 4).verdict is Verdict.SUCCEEDED
    # Four failures first: 5 healthy left, nobody may go offline any more.
    assert simulate(9, m, [False] * 4 + [True] * 5).verdict is Verdict.FAILED


def test_nine_one_at_a_time() -> None:
    """OneAtATime with 9: succeeds if the first 8 succeed; fails if any of the first 8 fail."""
    m = ONE.minimum(9)
    assert simulate(9, m, [True] * 8 + [False]).verdict is Verdict.SUCCEEDED
    for bad in range(8):
        outcomes = [True] * 9
        outcomes[bad] = False
        run = simulate(9, m, outcomes)
        assert run.verdict is Verdict.FAILED
        assert run.started == list(range(bad + 1)), "nothing starts after the failure"


def test_single_instance_must_succeed() -> None:
    """OneAtATime with exactly one instance: that instance must succeed."""
    m = ONE.minimum(1)
    assert simulate(1, m, [True]).verdict is Verdict.SUCCEEDED
    assert simulate(1, m, [False]).verdict is Verdict.FAILED


def test_ten_ninety_five_percent_fails_at_once() -> None:
    """N = 10, 95 %: M rounds up to 10, so the deployment fails without touching anything."""
    m = MinimumHealthyHosts(HostsType.FLEET_PERCENT, 95).minimum(10)
    assert decide(Counts(pending=10), m) == Decision(Verdict.INVALID)
    assert simulate(10, m, [True] * 10).started == []


def test_ten_ninety_percent_one_at_a_time() -> None:
    """N = 10, M = 9: one at a time; the first failure fails it unless it is the last."""
    assert simulate(10, 9, [True] * 10).max_in_flight == 1
    assert simulate(10, 9, [True] * 9 + [False]).verdict is Verdict.SUCCEEDED
    run = simulate(10, 9, [True, True, False] + [True] * 7)
    assert run.verdict is Verdict.FAILED
    assert run.started == [0, 1, 2]


def test_ten_eighty_percent_two_at_a_time() -> None:
    """N = 10, M = 8: two at a time; fails at the 2nd failure unless that is the last."""
    run = simulate(10, 8, [True] * 10)
    assert run.batches[0] == 2
    assert run.max_in_flight == 2
    assert simulate(10, 8, [False] + [True] * 8 + [False]).verdict is Verdict.SUCCEEDED
    run = simulate(10, 8, [False, True, True, False] + [True] * 6)
    assert run.verdict is Verdict.FAILED
    assert sorted(run.started) == [0, 1, 2, 3]


def test_ten_eighty_five_percent_first_failure_fails() -> None:
    """N = 10, 85 % (M = 9): one offline plus one failed leaves 80 %: the first failure fails."""
    m = MinimumHealthyHosts(HostsType.FLEET_PERCENT, 85).minimum(10)
    run = simulate(10, m, [False] + [True] * 9)
    assert run.verdict is Verdict.FAILED
    assert run.started == [0]


def test_ten_zero_all_at_once_needs_one_success() -> None:
    """N = 10, M = 0: all 10 at once, and still at least one success."""
    assert simulate(10, 0, [True] * 10).batches == [10]
    assert simulate(10, 0, [False] * 10).verdict is Verdict.FAILED
    assert simulate(10, 0, [False] * 9 + [True]).verdict is Verdict.SUCCEEDED


def test_no_instances_is_invalid() -> None:
    """With no instances nothing can succeed: the policy refuses to start."""
    assert decide(Counts(), 0) == Decision(Verdict.INVALID)


def test_waits_while_in_flight() -> None:
    """With nothing left to start, the policy waits for the instances in flight."""
    assert decide(Counts(succeeded=1, in_flight=2), 1) == Decision(Verdict.CONTINUE, 0)


# --- properties -------------------------------------------------------------------------------


@st.composite
def fleets(draw: st.DrawFn) -> tuple[int, int, list[bool], list[int]]:
    """(N, M, outcome per instance, completion picks) with M < N."""
    n = draw(st.integers(min_value=1, max_value=25))
    m = draw(st.integers(min_value=0, max_value=n - 1))
    outcomes = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    picks = draw(st.lists(st.integers(min_value=0, max_value=30), min_size=1, max_size=30))
    return n, m, outcomes, picks


@settings(max_examples=400, deadline=None)
@given(fleets())
def test_healthy_never_below_minimum(fleet: tuple[int, int, list[bool], list[int]]) -> None:
    """Healthy (N - failed - in flight) never drops below M, in-flight never exceeds N - M,
    and a failed deployment never leaves an instance running."""
    n, m, outcomes, picks = fleet
    run = simulate(n, m, outcomes, picks)
    assert run.verdict in (Verdict.SUCCEEDED, Verdict.FAILED)
    assert run.max_in_flight <= n - m
    assert all(h >= m for h in run.healthy)
    assert run.in_flight_at_end == 0


@settings(max_examples=400, deadline=None)
@given(fleets())
def test_success_rule(fleet: tuple[int, int, list[bool], list[int]]) -> None:
    """Succeeded iff at least max(M, 1) instances succeeded; every instance succeeding always
    succeeds; a failure is decided as soon as going on would push healthy below M."""
    n, m, outcomes, picks = fleet
    run = simulate(n, m, outcomes, picks)
    if run.verdict is Verdict.SUCCEEDED:
        assert run.succeeded >= max(m, 1)
        assert run.started == list(range(n)), "success means every instance was attempted"
    if all(outcomes):
        assert run.verdict is Verdict.SUCCEEDED
    if sum(outcomes) < max(m, 1):
        assert run.verdict is Verdict.FAILED
    if run.verdict is Verdict.FAILED and len(run.started) < n:
        failures = sum(not outcomes[i] for i in run.finished)
        assert n - failures - m <= 0, "stopped early only when nobody may go offline"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=25))
def test_one_at_a_time(outcomes: list[bool]) -> None:
    """OneAtATime: one at a time, in order; succeeds iff every instance but the last succeeds
    (a single instance must succeed); stops at the first failure that is not the last."""
    n = len(outcomes)
    run = simulate(n, ONE.minimum(n), outcomes)
    assert run.max_in_flight == 1
    expected = all(outcomes) if n == 1 else all(outcomes[:-1])
    assert (run.verdict is Verdict.SUCCEEDED) == expected
    first_failure = next((i for i, ok in enumerate(outcomes) if not ok), None)
    if first_failure is not None and first_failure < n - 1:
        assert run.started == list(range(first_failure + 1))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=25), st.lists(st.integers(0, 30), min_size=1))
def test_half_at_a_time(outcomes: list[bool], picks: list[int]) -> None:
    """HalfAtATime: at most floor(N/2) at once; success needs ceil(N/2); a single instance
    cannot be deployed (half of it, rounded down, is none: HEALTH_CONSTRAINTS_INVALID)."""
    n = len(outcomes)
    run = simulate(n, HALF.minimum(n), outcomes, picks)
    if n == 1:
        assert run.verdict is Verdict.INVALID
        assert run.started == []
        return
    assert run.max_in_flight <= n // 2
    assert run.batches[0] == n // 2
    if run.verdict is Verdict.SUCCEEDED:
        assert run.succeeded >= math.ceil(n / 2)
    if sum(outcomes) < math.ceil(n / 2):
        assert run.verdict is Verdict.FAILED


@settings(max_examples=300, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=25), st.lists(st.integers(0, 30), min_size=1))
def test_all_at_once(outcomes: list[bool], picks: list[int]) -> None:
    """AllAtOnce: everything in one batch; succeeds iff at least one instance succeeds."""
    n = len(outcomes)
    run = simulate(n, ALL.minimum(n), outcomes, picks)
    assert run.batches == [n]
    assert (run.verdict is Verdict.SUCCEEDED) == any(outcomes)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=1, max_value=40),
    st.sampled_from([HostsType.HOST_COUNT, HostsType.FLEET_PERCENT]),
    st.integers(min_value=0, max_value=99),
)
def test_minimum_at_or_above_fleet_is_invalid(n: int, kind: HostsType, value: int) -> None:
    """Whenever M >= N the deployment is refused before anything starts
    (HEALTH_CONSTRAINTS_INVALID); otherwise the first batch is min(N, N - M) instances."""
    m = MinimumHealthyHosts(kind, value).minimum(n)
    decision = decide(Counts(pending=n), m)
    if m >= n:
        assert decision == Decision(Verdict.INVALID)
    else:
        assert decision == Decision(Verdict.CONTINUE, n - m)

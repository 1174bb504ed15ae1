"""`codedeploy instances` against the real API app; client defaults with an endpoint."""

from __future__ import annotations

import pytest

from tests.server.opcli.api_server import ApiServer
from tests.server.opcli.conftest import CliRunner
from tests.server.opcli.e2e import T, client, without_times


def test_instances_lists_tags_and_filters(fleet: ApiServer, cli: CliRunner) -> None:
    """instances shows every instance with its tags; --tag and --registration-status filter."""
    everything = cli("instances", "--endpoint-url", fleet.url)
    assert without_times(everything.out).splitlines() == [
        "Instance  Status      Tags                Registered           Deregistered",
        f"host-1    Registered  role=web, site=lab  {T}  -",
        f"host-2    Registered  role=web, site=lab  {T}  -",
        f"host-3    Registered  role=db, site=lab   {T}  -",
    ]
    db = cli("instances", "--endpoint-url", fleet.url, "--tag", "role=db")
    assert [line.split()[0] for line in db.out.splitlines()[1:]] == ["host-3"]
    client(fleet).deregister_on_premises_instance(instanceName="host-2")
    gone = cli("instances", "--endpoint-url", fleet.url, "--registration-status", "Deregistered")
    assert [line.split()[:2] for line in gone.out.splitlines()[1:]] == [["host-2", "Deregistered"]]


def test_a_region_is_not_needed_with_an_endpoint(
    fleet: ApiServer, cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --endpoint-url and no region configured anywhere, us-east-1 signs the calls."""
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    result = cli("instances", "--endpoint-url", fleet.url, "--tag", "role=db")
    assert result.status == 0, result.err
    assert [line.split()[0] for line in result.out.splitlines()[1:]] == ["host-3"]

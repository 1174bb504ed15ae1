"""Applications through boto3: create, get, list (paged), batch get, rename, delete."""

from __future__ import annotations

import time

import pytest

from tests.server.api.conftest import Api


@pytest.mark.asyncio
async def test_create_and_get(api: Api) -> None:
    """A created application reads back with its id, time and the Server platform."""
    before = time.time()
    created = await api.call("create_application", applicationName="web")
    info = (await api.call("get_application", applicationName="web"))["application"]
    assert info["applicationId"] == created["applicationId"]
    assert info["applicationName"] == "web"
    assert info["computePlatform"] == "Server"
    assert info["linkedToGitHub"] is False
    assert before - 1 <= info["createTime"].timestamp() <= time.time() + 1


@pytest.mark.asyncio
async def test_duplicate_name_is_refused(api: Api) -> None:
    """A second application with the same name is ApplicationAlreadyExistsException."""
    await api.call("create_application", applicationName="web")
    error = await api.error("create_application", applicationName="web")
    assert error.response["Error"]["Code"] == "ApplicationAlreadyExistsException"


@pytest.mark.asyncio
async def test_missing_application(api: Api) -> None:
    """GetApplication of an unknown name gives AWS's "No application found" message."""
    error = await api.error("get_application", applicationName="nope")
    assert error.response["Error"]["Code"] == "ApplicationDoesNotExistException"
    assert error.response["Error"]["Message"] == "No application found for name: nope"


@pytest.mark.asyncio
async def test_lambda_platform_is_refused(api: Api) -> None:
    """Only the Server compute platform exists here."""
    error = await api.error("create_application", applicationName="fn", computePlatform="Lambda")
    assert error.response["Error"]["Code"] == "InvalidComputePlatformException"


@pytest.mark.asyncio
async def test_name_too_long(api: Api) -> None:
    """A 101-character name breaks the model's maximum length."""
    error = await api.error("create_application", applicationName="a" * 101)
    assert error.response["Error"]["Code"] == "InvalidApplicationNameException"
    assert "length less than or equal to 100" in error.response["Error"]["Message"]


@pytest.mark.asyncio
async def test_list_pages_through_paginator(api: Api) -> None:
    """105 applications come back sorted, 100 then 5, through boto3's paginator."""
    async with api.store.transaction() as tx:
        for index in range(105):
            await tx.execute(
                "INSERT INTO applications (name, application_id, create_time, doc) "
                "VALUES (?, ?, ?, ?)",
                (f"app-{index:03}", f"id-{index}", 1.0, f'{{"applicationName":"app-{index:03}"}}'),
            )
    first = await api.call("list_applications")
    assert len(first["applications"]) == 100
    assert first["applications"][0] == "app-000"
    second = await api.call("list_applications", nextToken=first["nextToken"])
    assert second["applications"] == [f"app-{i:03}" for i in range(100, 105)]
    assert "nextToken" not in second
    pages = await _paginate(api)
    assert pages == [100, 5]


async def _paginate(api: Api) -> list[int]:
    import asyncio  # noqa: PLC0415

    def run() -> list[int]:
        paginator = api.client.get_paginator("list_applications")
        return [len(page["applications"]) for page in paginator.paginate()]

    return await asyncio.to_thread(run)


@pytest.mark.asyncio
async def test_bad_next_token(api: Api) -> None:
    """A token this listing never returned is InvalidNextTokenException."""
    error = await api.error("list_applications", nextToken="garbage")
    assert error.response["Error"]["Code"] == "InvalidNextTokenException"


@pytest.mark.asyncio
async def test_batch_get(api: Api) -> None:
    """BatchGetApplications returns each named application; an unknown one fails the call."""
    await api.call("create_application", applicationName="a")
    await api.call("create_application", applicationName="b")
    infos = (await api.call("batch_get_applications", applicationNames=["b", "a"]))[
        "applicationsInfo"
    ]
    assert [info["applicationName"] for info in infos] == ["b", "a"]
    error = await api.error("batch_get_applications", applicationNames=["a", "zzz"])
    assert error.response["Error"]["Code"] == "ApplicationDoesNotExistException"
    error = await api.error(
        "batch_get_applications", applicationNames=[f"x{i}" for i in range(101)]
    )
    assert error.response["Error"]["Code"] == "BatchLimitExceededException"


@pytest.mark.asyncio
async def test_rename_carries_groups_along(api: Api) -> None:
    """UpdateApplication renames the application and its groups follow."""
    await api.group("web", "prod")
    await api.call("update_application", applicationName="web", newApplicationName="site")
    assert (await api.call("list_applications"))["applications"] == ["site"]
    groups = await api.call("list_deployment_groups", applicationName="site")
    assert groups["deploymentGroups"] == ["prod"]
    info = await api.call(
        "get_deployment_group", applicationName="site", deploymentGroupName="prod"
    )
    assert info["deploymentGroupInfo"]["applicationName"] == "site"


@pytest.mark.asyncio
async def test_rename_onto_existing_name(api: Api) -> None:
    """Renaming onto a taken name is ApplicationAlreadyExistsException."""
    await api.call("create_application", applicationName="a")
    await api.call("create_application", applicationName="b")
    error = await api.error("update_application", applicationName="a", newApplicationName="b")
    assert error.response["Error"]["Code"] == "ApplicationAlreadyExistsException"


@pytest.mark.asyncio
async def test_rename_refused_while_deploying(api: Api) -> None:
    """An application with a running deployment cannot be renamed."""
    await api.group()
    deployment_id = await api.deploy()
    error = await api.error("update_application", applicationName="web", newApplicationName="x")
    assert error.response["Error"]["Code"] == "InvalidApplicationNameException"
    assert deployment_id in error.response["Error"]["Message"]


@pytest.mark.asyncio
async def test_delete_is_idempotent_and_keeps_deployments(api: Api) -> None:
    """Deleting removes the application and its groups; its deployments stay readable."""
    await api.group()
    deployment_id = await api.deploy()
    await api.call("delete_application", applicationName="web")
    await api.call("delete_application", applicationName="web")
    assert (await api.call("list_applications"))["applications"] == []
    error = await api.error("list_deployment_groups", applicationName="web")
    assert error.response["Error"]["Code"] == "ApplicationDoesNotExistException"
    info = await api.call("get_deployment", deploymentId=deployment_id)
    assert info["deploymentInfo"]["applicationName"] == "web"

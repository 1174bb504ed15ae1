"""The JSON 1.1 protocol and authentication as boto3 sees them: error codes, statuses, headers."""

from __future__ import annotations

import json
import time
from pathlib import Path

import aiohttp
import botocore.session  # type: ignore[import-untyped,unused-ignore]
import pytest
from aiohttp.test_utils import TestServer
from botocore import UNSIGNED  # type: ignore[import-untyped,unused-ignore]
from botocore.client import Config  # type: ignore[import-untyped,unused-ignore]
from structlog.testing import capture_logs

from codedeploy_server.api import create_api
from codedeploy_server.store import open_store
from tests.server.api.conftest import (
    CREDENTIALS,
    SECRET_KEY,
    Api,
    RecordingRollout,
    make_client,
    signed_headers,
)


@pytest.mark.asyncio
async def test_wrong_secret_raises_invalid_signature(api: Api) -> None:
    """boto3 signing with the wrong secret gets ClientError InvalidSignatureException (400)."""
    api.client = make_client(api.session, api.url, secret_key="wrong-secret")  # noqa: S106 - a test key
    error = await api.error("list_applications")
    assert error.response["Error"]["Code"] == "InvalidSignatureException"
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error.response["Error"]["Message"].startswith(
        "The request signature we calculated does not match"
    )


@pytest.mark.asyncio
async def test_unknown_key_raises_unrecognized_client(api: Api) -> None:
    """boto3 with an access key the server does not know gets UnrecognizedClientException."""
    api.client = make_client(api.session, api.url, access_key="AKIDNOTCONFIGURED")
    error = await api.error("list_applications")
    assert error.response["Error"]["Code"] == "UnrecognizedClientException"
    assert error.response["Error"]["Message"] == (
        "The security token included in the request is invalid."
    )


@pytest.mark.asyncio
async def test_unsigned_request_raises_missing_token(api: Api) -> None:
    """An unsigned boto3 call gets MissingAuthenticationTokenException."""
    api.client = api.session.create_client(
        "codedeploy",
        endpoint_url=api.url,
        region_name="us-east-1",
        config=Config(signature_version=UNSIGNED, retries={"total_max_attempts": 1}),
    )
    error = await api.error("list_applications")
    assert error.response["Error"]["Code"] == "MissingAuthenticationTokenException"


@pytest.mark.asyncio
async def test_stale_client_clock_raises_signature_expired(
    tmp_path: Path, botocore_session: botocore.session.Session
) -> None:
    """A server whose clock is 10 minutes ahead of the client refuses with "Signature expired"."""
    store = await open_store(str(tmp_path / "state.db"))
    app = create_api(
        store,
        credentials=CREDENTIALS,
        rollout=RecordingRollout(),
        clock=lambda: time.time() + 600,
    )
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        client = make_client(botocore_session, str(server.make_url("")).rstrip("/"))
        api = Api(client, "", store, RecordingRollout(), botocore_session)
        error = await api.error("list_applications")
    finally:
        await server.close()
        await store.close()
    assert error.response["Error"]["Code"] == "InvalidSignatureException"
    assert error.response["Error"]["Message"].startswith("Signature expired: ")
    assert " is now earlier than " in error.response["Error"]["Message"]


@pytest.mark.asyncio
async def test_success_headers(api: Api) -> None:
    """A successful answer has the JSON 1.1 content type and a request id."""
    body = b"{}"
    headers = signed_headers(api.url + "/", body, target="ListApplications")
    async with (
        aiohttp.ClientSession() as session,
        session.post(api.url + "/", data=body, headers=headers) as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/x-amz-json-1.1"
        assert len(response.headers["x-amzn-RequestId"]) == 36
        assert json.loads(await response.read()) == {"applications": []}


@pytest.mark.asyncio
async def test_unknown_operation(api: Api) -> None:
    """A target that names no operation is UnknownOperationException, 400, as JSON."""
    body = b"{}"
    headers = signed_headers(api.url + "/", body, target="LaunchRockets")
    async with (
        aiohttp.ClientSession() as session,
        session.post(api.url + "/", data=body, headers=headers) as response,
    ):
        assert response.status == 400
        assert response.headers["Content-Type"] == "application/x-amz-json-1.1"
        answer = json.loads(await response.read())
    assert answer["__type"] == "UnknownOperationException"
    assert "CodeDeploy_20141006.<Operation>" in answer["message"]


@pytest.mark.asyncio
async def test_body_that_is_not_an_object(api: Api) -> None:
    """A signed body that is JSON but not an object is SerializationException."""
    body = b"[1, 2]"
    headers = signed_headers(api.url + "/", body, target="ListApplications")
    async with (
        aiohttp.ClientSession() as session,
        session.post(api.url + "/", data=body, headers=headers) as response,
    ):
        answer = json.loads(await response.read())
        assert response.status == 400
    assert answer == {
        "__type": "SerializationException",
        "message": "The request body must be a JSON object.",
    }


@pytest.mark.asyncio
async def test_validation_error_names_member_and_constraint(api: Api) -> None:
    """A name breaking the model's pattern gets the member's exception and AWS-style message."""
    error = await api.error("get_application", applicationName="bad name!")
    assert error.response["Error"]["Code"] == "InvalidApplicationNameException"
    assert error.response["Error"]["Message"] == (
        "Value \"bad name!\" at 'applicationName' failed to satisfy constraint: Member must "
        "satisfy regular expression pattern: [A-Za-z0-9+=,.@_-]*"
    )


@pytest.mark.asyncio
async def test_unknown_members_are_ignored(api: Api) -> None:
    """Members a newer SDK might send are dropped, not refused."""
    body = json.dumps({"applicationName": "web", "someFutureField": 1}).encode()
    headers = signed_headers(api.url + "/", body, target="CreateApplication")
    async with (
        aiohttp.ClientSession() as session,
        session.post(api.url + "/", data=body, headers=headers) as response,
    ):
        assert response.status == 200
    assert (await api.call("list_applications"))["applications"] == ["web"]


@pytest.mark.asyncio
@pytest.mark.parametrize("start", [5.110675150942848e17, -1, "yesterday", True])
async def test_absurd_timestamps_are_refused(api: Api, start: object) -> None:
    """Timestamps botocore's own check chokes on are refused as the member's exception."""
    body = json.dumps({"createTimeRange": {"start": start}}).encode()
    headers = signed_headers(api.url + "/", body, target="ListDeployments")
    async with (
        aiohttp.ClientSession() as session,
        session.post(api.url + "/", data=body, headers=headers) as response,
    ):
        answer = json.loads(await response.read())
        assert response.status == 400
    assert answer["__type"] == "InvalidTimeRangeException"
    assert answer["message"].startswith("Value ")
    assert "at 'createTimeRange.start' failed to satisfy constraint" in answer["message"]


@pytest.mark.asyncio
async def test_iso_timestamps_are_accepted(api: Api) -> None:
    """An ISO 8601 createTimeRange (as some clients send) is read as UTC."""
    body = json.dumps(
        {"createTimeRange": {"start": "2020-01-01T00:00:00", "end": "2999-01-01T00:00:00Z"}}
    ).encode()
    headers = signed_headers(api.url + "/", body, target="ListDeployments")
    async with (
        aiohttp.ClientSession() as session,
        session.post(api.url + "/", data=body, headers=headers) as response,
    ):
        assert response.status == 200
        assert json.loads(await response.read()) == {"deployments": []}


class FailingRollout(RecordingRollout):
    """A rollout engine whose calls fail, to see what clients get then."""

    async def deployment_created(self, deployment_id: str) -> None:
        """Fail after recording."""
        await super().deployment_created(deployment_id)
        raise RuntimeError("engine down")

    async def stop_deployment(self, deployment_id: str, auto_rollback_enabled: bool | None) -> str:
        """Fail."""
        raise RuntimeError("engine down")


@pytest.mark.asyncio
async def test_server_failures_are_500_without_traceback(
    tmp_path: Path, botocore_session: botocore.session.Session
) -> None:
    """A failing engine call is a 500 InternalFailure naming the request id; CreateDeployment
    still answers its id (the rows are committed and the engine resumes them)."""
    store = await open_store(str(tmp_path / "state.db"))
    rollout = FailingRollout()
    server = TestServer(
        create_api(store, credentials=CREDENTIALS, rollout=rollout), host="127.0.0.1"
    )
    await server.start_server()
    try:
        url = str(server.make_url("")).rstrip("/")
        api = Api(make_client(botocore_session, url), url, store, rollout, botocore_session)
        await api.group()
        deployment_id = await api.deploy()
        assert rollout.created == [deployment_id]
        with capture_logs() as logs:
            error = await api.error("stop_deployment", deploymentId=deployment_id)
        await store.close()
        closed = await api.error("list_applications")
    finally:
        await server.close()
    assert error.response["Error"]["Code"] == "InternalFailure"
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    request_id = error.response["ResponseMetadata"]["RequestId"]
    assert error.response["Error"]["Message"] == (
        f"The server failed to process the request; see its log for request id {request_id}."
    )
    assert [(log["event"], log["request_id"]) for log in logs] == [("request failed", request_id)]
    assert closed.response["Error"]["Code"] == "InternalFailure"
    assert closed.response["Error"]["Message"].startswith("The database is closed (request id ")


@pytest.mark.asyncio
async def test_refusals_never_log_secrets(api: Api) -> None:
    """A refused signature is logged by error name, without the secret or the signature."""
    api.client = make_client(api.session, api.url, secret_key="a-wrong-secret-value")  # noqa: S106 - a test key
    with capture_logs() as logs:
        await api.error("list_applications")
    assert [(log["event"], log["error"]) for log in logs] == [
        ("request refused", "InvalidSignatureException")
    ]
    text = repr(logs)
    assert "a-wrong-secret-value" not in text
    assert SECRET_KEY not in text
    assert "Signature=" not in text

"""HTTP statuses of the authentication errors, as a raw HTTP client sees them.

CodeDeploy speaks JSON 1.1: its authentication errors are `...Exception` bodies with status
400, not the 403 of the Query-protocol names on AWS's generic "Common Errors" page (evidence in
codedeploy_server/api/errors.py). boto3 only reads `__type`, so these tests use aiohttp.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.server.api.conftest import Api, signed_headers

BODY = b"{}"
JSON_CONTENT_TYPE = "application/x-amz-json-1.1"


@pytest.fixture
def database(tmp_path: Path) -> str:
    """SQLite only: the store plays no part in authentication."""
    return str(tmp_path / "state.db")


async def _post(url: str, headers: dict[str, str]) -> tuple[int, str, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "/", data=BODY, headers=headers) as response,
    ):
        answer = json.loads(await response.read())
        return response.status, response.headers["Content-Type"], answer


def _without_authorization(url: str) -> dict[str, str]:
    headers = signed_headers(url + "/", BODY, target="ListApplications")
    return {k: v for k, v in headers.items() if k.lower() != "authorization"}


def _unknown_key(url: str) -> dict[str, str]:
    return signed_headers(
        url + "/", BODY, target="ListApplications", access_key="AKIDNOTCONFIGURED"
    )


def _wrong_secret(url: str) -> dict[str, str]:
    return signed_headers(
        url + "/",
        BODY,
        target="ListApplications",
        secret_key="not-the-secret",  # noqa: S106 - a test key
    )


def _no_signature_field(url: str) -> dict[str, str]:
    headers = signed_headers(url + "/", BODY, target="ListApplications")
    authorization = headers["Authorization"]
    headers["Authorization"] = authorization[: authorization.index(", Signature=")]
    return headers


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("make_headers", "code"),
    [
        (_without_authorization, "MissingAuthenticationTokenException"),
        (_unknown_key, "UnrecognizedClientException"),
        (_wrong_secret, "InvalidSignatureException"),
        (_no_signature_field, "IncompleteSignatureException"),
    ],
    ids=["unsigned", "unknown-key", "wrong-secret", "no-signature-field"],
)
async def test_authentication_errors_are_400_json(api: Api, make_headers: Any, code: str) -> None:
    """Each refusal of a request's credentials is a JSON 1.1 error with CodeDeploy's status 400,
    and the request never reaches an operation."""
    status, content_type, answer = await _post(api.url, make_headers(api.url))
    assert (status, answer["__type"]) == (400, code), answer
    assert content_type == JSON_CONTENT_TYPE
    assert answer["message"]
    assert api.rollout.created == []


@pytest.mark.asyncio
async def test_a_signed_request_is_answered_200(api: Api) -> None:
    """The same request signed with a configured key is answered 200 (the refusals above are
    about the credentials, not the request)."""
    status, content_type, answer = await _post(
        api.url, signed_headers(api.url + "/", BODY, target="ListApplications")
    )
    assert (status, content_type, answer) == (200, JSON_CONTENT_TYPE, {"applications": []})

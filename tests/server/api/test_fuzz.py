"""Input a client can send never makes the API fail: hypothesis-generated bodies (built from
botocore's input shapes, with wrong types, odd strings and absurd numbers mixed in), validly
signed, only ever get 200 or a 400 with a CodeDeploy exception name."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from botocore.model import Shape  # type: ignore[import-untyped,unused-ignore]
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codedeploy_server.api.errors import error_codes
from codedeploy_server.api.operations import OPERATIONS
from codedeploy_server.api.shapes import service_model
from tests.server.api.conftest import ROLE_ARN, S3_REVISION, Api, signed_headers

CODES = error_codes() - {"InternalFailure"}
NAMES = [
    "web",
    "prod",
    "host-1",
    "d-ABCDEFGHI",
    "CodeDeployDefault.OneAtATime",
    "arn:aws:codedeploy:us-east-1:123456789012:application:web",
    "arn:aws:iam::123456789012:role/r",
    "",
    "x" * 300,
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
WRONG = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=3),
    st.dictionaries(st.text(max_size=5), SCALARS, max_size=2),
)


def for_shape(shape: Shape, depth: int = 0, *, chaos: bool = True) -> st.SearchStrategy[Any]:
    """Values that fit `shape`'s types; with `chaos`, sometimes not at all."""
    right: st.SearchStrategy[Any]
    kind = shape.type_name
    if depth > 5:
        return SCALARS
    if kind == "structure":
        required = set(shape.required_members)
        right = st.fixed_dictionaries(
            {name: for_shape(shape.members[name], depth + 1, chaos=chaos) for name in required},
            optional={
                name: for_shape(member, depth + 1, chaos=chaos)
                for name, member in shape.members.items()
                if name not in required
            },
        )
    elif kind == "list":
        right = st.lists(for_shape(shape.member, depth + 1, chaos=chaos), max_size=4)
    elif kind == "map":
        right = st.dictionaries(
            st.one_of(st.text(max_size=8), st.sampled_from(shape.key.enum or ["k"])),
            for_shape(shape.value, depth + 1, chaos=chaos),
            max_size=3,
        )
    elif kind == "string":
        right = st.one_of(
            st.sampled_from(shape.enum or NAMES),
            st.sampled_from(shape.enum or NAMES),
            st.text(max_size=40),
        )
    elif kind in ("integer", "long"):
        right = st.integers(min_value=-(2**40), max_value=2**40)
    elif kind == "boolean":
        right = st.booleans()
    elif kind == "timestamp":
        right = st.one_of(
            st.floats(allow_nan=False, allow_infinity=False), st.integers(), st.text(max_size=30)
        )
    else:
        right = SCALARS
    return st.one_of(right, right, right, WRONG) if chaos else right


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """An operation and a body for it."""
    operation = draw(st.sampled_from(sorted(OPERATIONS)))
    shape = service_model().operation_model(operation).input_shape
    # Half the bodies are well-typed, so they get past validation into the operations.
    chaos = draw(st.booleans())
    body = draw(for_shape(shape, -1, chaos=chaos)) if shape is not None else {}
    return operation, body if isinstance(body, dict) else {"applicationName": body}


@pytest.mark.asyncio
@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request=requests())
async def test_generated_bodies_get_codedeploy_errors_only(
    api: Api, request: tuple[str, dict[str, Any]]
) -> None:
    """Every generated request is answered 200, or 400 with a CodeDeploy exception name."""
    await _seed(api)
    operation, params = request
    body = json.dumps(params).encode()
    headers = signed_headers(api.url + "/", body, target=operation)
    async with (
        aiohttp.ClientSession() as session,
        session.post(api.url + "/", data=body, headers=headers) as response,
    ):
        text = await response.text()
    if response.status != 200:
        assert response.status == 400, (operation, params, text)
        answer = json.loads(text)
        assert answer["__type"] in CODES, (operation, params, answer)
        assert answer["message"], (operation, params, answer)


async def _seed(api: Api) -> None:
    """An application, group, instance and deployment for the generated requests to reach
    (once per server: generated requests may delete or rename them afterwards)."""
    if getattr(api, "fuzz_seeded", False):
        return
    api.fuzz_seeded = True  # type: ignore[attr-defined]
    await api.register("host-1", env="prod")
    await api.call("create_application", applicationName="web")
    await api.call(
        "create_deployment_group",
        applicationName="web",
        deploymentGroupName="prod",
        serviceRoleArn=ROLE_ARN,
        onPremisesInstanceTagFilters=[{"Key": "env", "Value": "prod", "Type": "KEY_AND_VALUE"}],
    )
    await api.call(
        "create_deployment", applicationName="web", deploymentGroupName="prod", revision=S3_REVISION
    )


@pytest.mark.asyncio
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
async def test_arbitrary_bytes(api: Api, body: bytes) -> None:
    """Bodies that are not JSON objects are SerializationException, never a failure."""
    headers = signed_headers(api.url + "/", body, target="CreateApplication")
    async with (
        aiohttp.ClientSession() as session,
        session.post(api.url + "/", data=body, headers=headers) as response,
    ):
        assert response.status in (200, 400)
        answer = json.loads(await response.text())
    if response.status == 400:
        assert answer["__type"] in CODES

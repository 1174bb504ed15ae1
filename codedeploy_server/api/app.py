"""The CodeDeploy API as an aiohttp application: `POST /`, JSON 1.1, SigV4, dispatch.

Every request is verified (sigv4.py) before anything else is looked at; then
`X-Amz-Target: CodeDeploy_20141006.<Operation>` picks the operation, the body is validated
against botocore's input shape (shapes.py), the handler runs, and its result is reduced to the
output shape. Answers carry `Content-Type: application/x-amz-json-1.1` and `x-amzn-RequestId`;
errors are `{"__type": "<Name>", "message": "..."}` with the exception's status. A failure that
is not the client's (database down, a bug) is logged with its traceback and answered as a 500
`InternalFailure` naming the request id, never with the traceback.

The bundle store's routes (`PUT/GET /bundles/...`) are mounted by `bundles_route(app)`; their
handlers find the verifier under `app[SIGV4_VERIFIER]` (`verify_aiohttp`).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Final

import structlog
from aiohttp import web
from botocore.model import OperationModel  # type: ignore[import-untyped,unused-ignore]

from codedeploy_server.api import errors as e
from codedeploy_server.api.context import ApiContext, Handler
from codedeploy_server.api.operations import OPERATIONS
from codedeploy_server.api.rollout import RolloutControl
from codedeploy_server.api.shapes import (
    operation_model,
    service_model,
    shape_output,
    validate_input,
)
from codedeploy_server.api.sigv4 import SignedRequest, SigV4Verifier, payload_hash
from codedeploy_server.errors import StoreError
from codedeploy_server.store import Store

log = structlog.get_logger("codedeploy_server.api")

TARGET_PREFIX: Final = "CodeDeploy_20141006"
CONTENT_TYPE: Final = "application/x-amz-json-1.1"
#: The largest API request body accepted (AWS's JSON APIs stop well below this).
MAX_BODY_BYTES: Final = 1024 * 1024

SIGV4_VERIFIER: Final = web.AppKey("codedeploy_sigv4_verifier", SigV4Verifier)
API_CONTEXT: Final = web.AppKey("codedeploy_api_context", ApiContext)


def create_api(
    store: Store,
    *,
    credentials: Mapping[str, str],
    rollout: RolloutControl,
    clock: Callable[[], float] = time.time,
    bundles_route: Callable[[web.Application], None] | None = None,
    region: str = "us-east-1",
    account_id: str = "000000000000",
) -> web.Application:
    """The API application; `credentials` maps access key ids to secret keys."""
    service_model()  # load botocore's model now, not during the first request
    app = web.Application()
    app[SIGV4_VERIFIER] = SigV4Verifier(credentials, region=region, clock=clock)
    app[API_CONTEXT] = ApiContext(
        store=store, rollout=rollout, clock=clock, region=region, account_id=account_id
    )
    app.router.add_post("/", _handle)
    if bundles_route is not None:
        bundles_route(app)
    return app


def _headers(request: web.BaseRequest) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for name, value in request.headers.items():
        headers.setdefault(name.lower(), []).append(value)
    return headers


def signed_request(request: web.BaseRequest, payload: str) -> SignedRequest:
    """What SigV4 covers in an aiohttp request, with `payload` as the payload hash."""
    return SignedRequest(
        method=request.method,
        path=request.raw_path.split("?", 1)[0],
        query=request.rel_url.raw_query_string,
        headers=_headers(request),
        payload_hash=payload,
    )


def verify_aiohttp(request: web.Request, body: bytes | None = None) -> str:
    """Verify `request`'s signature; the access key id, or a CodeDeployError.

    With `body`, the payload hash is the body's (and a declared `x-amz-content-sha256` must
    match it). Without, the declared `x-amz-content-sha256` is trusted for the signature and
    the caller must check the streamed body against it (the bundle store's uploads).
    """
    verifier = request.app[SIGV4_VERIFIER]
    if body is not None:
        return verifier.verify(signed_request(request, payload_hash(_headers(request), body)))
    declared_hash = request.headers.get("x-amz-content-sha256")
    if not declared_hash:
        raise e.IncompleteSignatureException(
            "Streamed uploads must send x-amz-content-sha256 (the body's sha256)."
        )
    return verifier.verify(signed_request(request, declared_hash))


async def _handle(request: web.Request) -> web.Response:
    request_id = str(uuid.uuid4())
    operation = "?"
    try:
        body = await _body(request)
        verify_aiohttp(request, body)
        operation, model, handler = _operation(request.headers.get("X-Amz-Target", ""))
        params = validate_input(model, _decode(body))
        result = await handler(request.app[API_CONTEXT], params)
        return _answer(200, shape_output(model, result), request_id)
    except e.CodeDeployError as exc:
        log.info(
            "request refused",
            request_id=request_id,
            operation=operation,
            error=exc.code,
            message=exc.message,
        )
        return _answer(exc.status, exc.body(), request_id)
    except StoreError as exc:
        log.error("database error", request_id=request_id, operation=operation, error=str(exc))
        failure = e.InternalFailure(f"{exc} (request id {request_id})")
        return _answer(failure.status, failure.body(), request_id)
    except Exception:
        log.exception("request failed", request_id=request_id, operation=operation)
        failure = e.InternalFailure(
            f"The server failed to process the request; see its log for request id {request_id}."
        )
        return _answer(failure.status, failure.body(), request_id)


def _operation(target: str) -> tuple[str, OperationModel, Handler]:
    """The operation `X-Amz-Target` names, its model and its handler."""
    prefix, _, operation = target.partition(".")
    model = operation_model(operation) if prefix == TARGET_PREFIX else None
    handler = OPERATIONS.get(operation) if model is not None else None
    if model is None or handler is None:
        raise e.UnknownOperationException(
            f"Unknown operation {target!r}: set X-Amz-Target to "
            f"{TARGET_PREFIX}.<Operation> with a CodeDeploy operation name."
        )
    return operation, model, handler


async def _body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise e.SerializationException(f"The request body is larger than {MAX_BODY_BYTES} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise e.SerializationException(
                f"The request body is larger than {MAX_BODY_BYTES} bytes."
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _decode(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object (an empty body is `{}`)."""
    if not body.strip():
        return {}
    try:
        decoded = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise e.SerializationException(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(decoded, dict):
        raise e.SerializationException("The request body must be a JSON object.")
    return decoded


def _answer(status: int, payload: Mapping[str, Any], request_id: str) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8"),
        headers={"Content-Type": CONTENT_TYPE, "x-amzn-RequestId": request_id},
    )

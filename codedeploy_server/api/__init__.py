"""The CodeDeploy API (JSON 1.1 over HTTP, SigV4-verified) served by aiohttp.

app = create_api(store, credentials={"AKIA...": secret}, rollout=engine)
web.run_app(app, host="127.0.0.1", port=8443)
"""

from __future__ import annotations

from codedeploy_server.api.app import (
    API_CONTEXT,
    SIGV4_VERIFIER,
    create_api,
    signed_request,
    verify_aiohttp,
)
from codedeploy_server.api.rollout import RolloutControl

__all__ = [
    "API_CONTEXT",
    "SIGV4_VERIFIER",
    "RolloutControl",
    "create_api",
    "signed_request",
    "verify_aiohttp",
]

"""Fixtures for the wire-contract tests: a signing key pair on disk and a valid job document."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from codedeploy_agent.protocol.keys import Ed25519PrivateKey
from codedeploy_agent.protocol.signing import generate_keypair, load_private_key

#: PROTOCOL.md's example job document (with concrete values where it has placeholders).
EXAMPLE_DOCUMENT: dict[str, Any] = {
    "Schema": "codedeploy-agent/job/1",
    "DeploymentId": "d-ABCDEFGHI",
    "DeploymentGroupId": "5b9c7a8e-1111-2222-3333-444455556666",
    "DeploymentGroupName": "web",
    "ApplicationName": "shop",
    "DeploymentCreator": "user",
    "DeploymentType": "IN_PLACE",
    "AppSpecFilename": "appspec.yml",
    "Revision": {
        "RevisionType": "S3",
        "S3Revision": {
            "Bucket": "b",
            "Key": "app.zip",
            "BundleType": "zip",
            "Version": "v1",
            "ETag": '"0123abcd"',
        },
        "Download": {
            "Url": "https://store.example/app.zip?sig=1",
            "Sha256": "ab" * 32,
            "Size": 123,
        },
    },
    "AgentActionOverrides": {"AgentOverrides": {"FileExistsBehavior": "DISALLOW"}},
    "AllPossibleLifecycleEvents": [
        "BeforeBlockTraffic",
        "AfterBlockTraffic",
        "ApplicationStop",
        "DownloadBundle",
        "BeforeInstall",
        "Install",
        "AfterInstall",
        "ApplicationStart",
        "ValidateService",
        "BeforeAllowTraffic",
        "AfterAllowTraffic",
    ],
    "LifecycleEvents": [
        "ApplicationStop",
        "DownloadBundle",
        "BeforeInstall",
        "Install",
        "AfterInstall",
        "ApplicationStart",
        "ValidateService",
    ],
    "IgnoreApplicationStopFailures": False,
    "Environment": {"DB_PASSWORD": {"SsmParameter": "/shop/db/password"}},
    "IssuedAt": "2026-11-26T10:00:00Z",
    "ExpiresAt": "2026-11-26T11:00:00Z",
}


@pytest.fixture(scope="session")
def example_document() -> dict[str, Any]:
    """The example document itself (session-scoped, for hypothesis tests: copy before use)."""
    return EXAMPLE_DOCUMENT


@pytest.fixture
def document() -> dict[str, Any]:
    """A fresh deep copy of the example document, free to mutate."""
    return copy.deepcopy(EXAMPLE_DOCUMENT)


@pytest.fixture
def make_document() -> Callable[..., dict[str, Any]]:
    """Build a copy of the example document with top-level keys replaced (None deletes)."""

    def make(**changes: Any) -> dict[str, Any]:
        doc = copy.deepcopy(EXAMPLE_DOCUMENT)
        for key, value in changes.items():
            if value is None:
                doc.pop(key, None)
            else:
                doc[key] = value
        return doc

    return make


@pytest.fixture
def key_files(tmp_path: Path) -> tuple[Path, Path]:
    """A freshly generated key pair on disk: (private PEM, public PEM)."""
    private, public = tmp_path / "signing.pem", tmp_path / "signing.pub.pem"
    generate_keypair(private, public)
    return private, public


@pytest.fixture
def private_key(key_files: tuple[Path, Path]) -> Ed25519PrivateKey:
    """The private key of `key_files`."""
    return load_private_key(key_files[0])

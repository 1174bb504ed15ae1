"""Bundles and signed job documents for tests that drive the real agent (helpers, no fixtures).

    private, public = make_keys(tmp_path / "keys")
    bundle = write_bundle(tmp_path / "bundle", {"BeforeInstall": "echo hi", "ValidateService": "exit 3"})
    document = signed_job_document(
        private, "control-plane-1",
        deployment_id="d-ABCDEFGHI", group_id="dg-1",
        location=bundle, bundle_type="directory",
    )
    service.queue_job("host-1", "job-1", document)

Everything here is synchronous file work (small files): call it before the event loop needs to
be responsive, or through `asyncio.to_thread`.
"""

from __future__ import annotations

import base64
import copy
import tarfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import yaml

from codedeploy_agent.protocol.jobdoc import IN_PLACE_EVENTS, build_job_document
from codedeploy_agent.protocol.keys import Ed25519PrivateKey
from codedeploy_agent.protocol.signing import generate_keypair, load_private_key, sign_document
from codedeploy_agent.spec import BundleType, LocalRevision, RevisionType

#: Script timeout written into the appspec when the test gives none (seconds).
DEFAULT_HOOK_TIMEOUT: Final = 60


def script_path(event: str) -> str:
    """Where `write_bundle` puts the script of `event`, relative to the bundle root."""
    return f"scripts/{event}.sh"


def write_bundle(
    root: Path,
    hooks: Mapping[str, str],
    *,
    files: Mapping[str, str | bytes] | None = None,
    install: Mapping[str, str] | None = None,
    timeouts: Mapping[str, int] | None = None,
    runas: Mapping[str, str] | None = None,
    appspec_extra: Mapping[str, Any] | None = None,
) -> Path:
    """A directory bundle in `root`: `appspec.yml` and one executable `scripts/<Event>.sh` per hook.

    `hooks` maps an event name to the script's shell body; `#!/bin/bash` is put in front unless
    the body starts with its own `#!`. `files` adds more files (path relative to the bundle ->
    content). `install` fills the appspec's `files:` section (source -> destination).
    `timeouts` / `runas` set a hook's `timeout` (default 60 s) / `runas`. `appspec_extra` adds
    top-level appspec keys (`permissions`, `file_exists_behavior`). Returns `root`.
    """
    root.mkdir(parents=True, exist_ok=True)
    appspec: dict[str, Any] = {}
    if install:
        appspec["files"] = [{"source": src, "destination": dst} for src, dst in install.items()]
    if hooks:
        appspec["hooks"] = {}
    for event, body in hooks.items():
        script = root / script_path(event)
        script.parent.mkdir(parents=True, exist_ok=True)
        text = body if body.startswith("#!") else f"#!/bin/bash\n{body}"
        script.write_text(text if text.endswith("\n") else text + "\n")
        script.chmod(0o755)
        entry: dict[str, Any] = {
            "location": script_path(event),
            "timeout": (timeouts or {}).get(event, DEFAULT_HOOK_TIMEOUT),
        }
        if runas and event in runas:
            entry["runas"] = runas[event]
        appspec["hooks"][event] = [entry]
    appspec.update(appspec_extra or {})
    for relative, content in (files or {}).items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    # `version: 0.0` written by hand: the agent wants the number 0.0, the way operators write it.
    body = yaml.safe_dump(appspec, sort_keys=False, default_flow_style=False) if appspec else ""
    (root / "appspec.yml").write_text(f"version: 0.0\nos: linux\n{body}")
    return root


def make_tgz(src: Path, dest: Path) -> Path:
    """Pack the contents of directory `src` into the gzipped tar `dest` (appspec.yml at the
    archive root, modes kept); return `dest`."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(dest, "w:gz") as tar:
        for path in sorted(src.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(src)), recursive=False)
    return dest


def make_keys(directory: Path) -> tuple[Path, Path]:
    """A new Ed25519 key pair in `directory`: (private PEM, public PEM)."""
    directory.mkdir(parents=True, exist_ok=True)
    private, public = directory / "signing.pem", directory / "signing.pub.pem"
    generate_keypair(private, public)
    return private, public


def job_document(
    *,
    deployment_id: str,
    group_id: str,
    location: Path | str,
    bundle_type: BundleType | str,
    events: Sequence[str] = IN_PLACE_EVENTS,
    expires_in: timedelta = timedelta(hours=1),
    issued_at: datetime | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An unsigned job document for a `LocalRevision` at `location`.

    The revision type is `Local Directory` for `bundle_type` "directory", else `Local File`.
    `ExpiresAt` is `IssuedAt + expires_in`; with a zero or negative `expires_in` (an expired
    job) and no `issued_at`, IssuedAt is put an hour before ExpiresAt so the document is valid
    apart from being expired. `extra` goes to `build_job_document` (`deployment_group_name`,
    `application_name` default to "web" and "app"; `file_exists_behavior`, `environment`,
    `all_possible_lifecycle_events`, `ignore_application_stop_failures`, ...).
    """
    kind = BundleType(bundle_type)
    revision = LocalRevision(
        str(location),
        kind,
        RevisionType.LOCAL_DIRECTORY if kind is BundleType.DIRECTORY else RevisionType.LOCAL_FILE,
    )
    now = datetime.now(UTC)
    issued = issued_at or now
    expires = (issued_at or now) + expires_in
    if issued_at is None and expires <= issued:
        issued = expires - timedelta(hours=1)
    extra.setdefault("deployment_group_name", "web")
    extra.setdefault("application_name", "app")
    return build_job_document(
        deployment_id=deployment_id,
        deployment_group_id=group_id,
        revision=revision,
        issued_at=issued,
        expires_at=expires,
        lifecycle_events=events,
        **extra,
    )


def signed_job_document(
    private_key: Ed25519PrivateKey | Path,
    key_id: str,
    *,
    deployment_id: str,
    group_id: str,
    location: Path | str,
    bundle_type: BundleType | str,
    events: Sequence[str] = IN_PLACE_EVENTS,
    expires_in: timedelta = timedelta(hours=1),
    issued_at: datetime | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """`job_document(...)` signed with `private_key` (a key or a PEM file) under `key_id`."""
    key = (
        private_key if isinstance(private_key, Ed25519PrivateKey) else load_private_key(private_key)
    )
    document = job_document(
        deployment_id=deployment_id,
        group_id=group_id,
        location=location,
        bundle_type=bundle_type,
        events=events,
        expires_in=expires_in,
        issued_at=issued_at,
        **extra,
    )
    return sign_document(document, key, key_id)


def corrupt_signature(document: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a signed `document` whose signature no longer matches (one bit flipped)."""
    result = copy.deepcopy(dict(document))
    raw = bytearray(base64.b64decode(result["Signature"]["Value"]))
    raw[0] ^= 0x01
    result["Signature"]["Value"] = base64.b64encode(bytes(raw)).decode("ascii")
    return result

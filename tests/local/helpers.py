"""Sample bundles for end-to-end deployments (helpers imported by the tests).

The sample bundles reproduce the real agent's feature fixtures (reference §10.1): every script
appends its event name to `$SCRIPT_DIR/../../../../../executed_proof_file`, which resolves to the
directory that contains root_dir.
"""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

HOOK_EVENTS = (
    "BeforeBlockTraffic",
    "AfterBlockTraffic",
    "ApplicationStop",
    "BeforeInstall",
    "AfterInstall",
    "ApplicationStart",
    "ValidateService",
    "BeforeAllowTraffic",
    "AfterAllowTraffic",
)
FIRST_DEPLOY_PROOF = [
    "BeforeInstall",
    "AfterInstall",
    "ApplicationStart",
    "ValidateService",
    "BeforeAllowTraffic",
    "AfterAllowTraffic",
]
SECOND_DEPLOY_PROOF = [
    "BeforeBlockTraffic",
    "AfterBlockTraffic",
    "ApplicationStop",
    *FIRST_DEPLOY_PROOF,
]


def snake(event: str) -> str:
    """ApplicationStart -> application_start."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in event).lstrip("_")


def proof_script(event: str) -> str:
    """The sample script of one event."""
    return (
        "#!/bin/bash\n"
        'SCRIPT_DIR="$( cd "$( dirname "${BASH_SOURCE[0]}" )" && pwd )"\n'
        f'echo "{event}" >> "$SCRIPT_DIR/../../../../../executed_proof_file"\n'
    )


def appspec_text(events: tuple[str, ...], extra: str = "") -> str:
    """An appspec with one proof script per event."""
    lines = ["version: 0.0", "os: linux", "hooks:"]
    for event in events:
        lines += [f"  {event}:", f"    - location: scripts/{snake(event)}.sh", "      timeout: 60"]
    return "\n".join(lines) + "\n" + extra


def write_sample_bundle(root: Path, events: tuple[str, ...] = HOOK_EVENTS) -> Path:
    """sample_app_bundle_linux: appspec.yml, 4 override appspecs and scripts/ (6 entries)."""
    root.mkdir(parents=True, exist_ok=True)
    scripts = root / "scripts"
    scripts.mkdir(exist_ok=True)
    base = appspec_text(events)
    (root / "appspec.yml").write_text(base)
    (root / "appspec_override.yaml").write_text(base)
    for behavior in ("disallow", "overwrite", "retain"):
        (root / f"appspec_override_file_exists_behavior_{behavior}.yaml").write_text(
            base + f"file_exists_behavior: {behavior.upper()}\n"
        )
    for event in events:
        script = scripts / f"{snake(event)}.sh"
        script.write_text(proof_script(event))
        script.chmod(0o755)
    return root


def tar_bundle(src: Path, dest: Path, *, gz: bool = False, top: str | None = None) -> Path:
    """Pack `src`'s contents into a tar (or tgz), optionally under one top-level folder."""
    with tarfile.open(dest, "w:gz" if gz else "w") as tar:
        for path in sorted(src.rglob("*")):
            arcname = str(path.relative_to(src))
            tar.add(path, arcname=f"{top}/{arcname}" if top else arcname, recursive=False)
    return dest


def zip_bundle(src: Path, dest: Path, *, top: str | None = None) -> Path:
    """Pack `src`'s contents into a zip keeping unix modes, optionally under one folder."""
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(src.rglob("*")):
            arcname = str(path.relative_to(src))
            if top:
                arcname = f"{top}/{arcname}"
            if path.is_dir():
                info = zipfile.ZipInfo(arcname + "/")
                info.external_attr = (0o40755 << 16) | 0x10
                zf.writestr(info, b"")
            else:
                info = zipfile.ZipInfo(arcname)
                info.external_attr = (path.stat().st_mode & 0xFFFF) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, path.read_bytes())
    return dest

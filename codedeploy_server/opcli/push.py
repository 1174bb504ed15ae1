"""`codedeploy push`: bundle a folder, check its appspec, upload it, register the revision.

The flags are `aws deploy push`'s. Without `--s3-location` the bundle goes to the server's own
bundle store (a codedeploy-server feature: against AWS CodeDeploy, `--s3-location` is required).
Nothing is uploaded when the appspec has errors. Like `aws deploy push`, it ends by printing the
command that deploys the revision.
"""

from __future__ import annotations

import shlex
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from codedeploy_server.opcli.bundle import (
    check_bundle,
    collect_entries,
    source_date_epoch,
    write_bundle,
)
from codedeploy_server.opcli.client import Clients
from codedeploy_server.opcli.errors import BundleError, UsageError
from codedeploy_server.opcli.locations import parse_s3_url, s3_shorthand
from codedeploy_server.opcli.render import Output
from codedeploy_server.opcli.upload import Uploaded, upload_to_bundle_store, upload_to_s3


@dataclass(frozen=True, slots=True)
class PushOptions:
    """The arguments of `push`."""

    application_name: str
    source: Path
    s3_location: str | None = None
    description: str | None = None
    ignore_hidden_files: bool = False


def run_push(clients: Clients, options: PushOptions, output: Output) -> int:
    """Bundle, check, upload, register; print the next command. Returns the exit status."""
    s3_url = parse_s3_url(options.s3_location) if options.s3_location else None
    if s3_url is None and clients.is_aws():
        raise UsageError(
            "--s3-location is required with AWS CodeDeploy: the bundle store is a "
            "codedeploy-server feature. Give --s3-location s3://<bucket>/<key>, or "
            "--endpoint-url (or CODEDEPLOY_ENDPOINT_URL) for a codedeploy-server."
        )
    entries = collect_entries(
        options.source,
        ignore_hidden_files=options.ignore_hidden_files,
        clamp=source_date_epoch(),
    )
    with tempfile.TemporaryDirectory(prefix="codedeploy-push-") as tmp:
        mirror = Path(tmp) / "revision"
        mirror.mkdir()
        report = check_bundle(options.source, entries, mirror)
        if not report.ok:
            output.note(report.format())
            raise BundleError(
                "The appspec has errors; nothing was uploaded. Fix them, and push again."
            )
        for warning in report.warnings:
            where = f"{warning.path}: " if warning.path else ""
            output.note(f"WARN   {where}{warning.message}")
        bundle = write_bundle(entries, Path(tmp) / "bundle.zip")
        if s3_url is not None:
            uploaded = upload_to_s3(clients, bundle, s3_url)
        else:
            uploaded = upload_to_bundle_store(clients, bundle)
    description = options.description or (
        f"Uploaded by codedeploy {datetime.now(UTC).replace(tzinfo=None).isoformat()} UTC"
    )
    clients.codedeploy.register_application_revision(
        applicationName=options.application_name,
        revision={"revisionType": "S3", "s3Location": uploaded.s3_location()},
        description=description,
    )
    output.out.write(next_command(options.application_name, uploaded))
    output.out.flush()
    return 0


def next_command(application_name: str, uploaded: Uploaded) -> str:
    """The text `aws deploy push` prints after a push, naming `codedeploy deploy`."""
    location = s3_shorthand(uploaded.s3_location())
    return (
        "To deploy with this revision, run:\n"
        f"codedeploy deploy --application-name {shlex.quote(application_name)} "
        f"--s3-location {shlex.quote(location)} "
        "--deployment-group-name <deployment-group-name> "
        "--deployment-config-name <deployment-config-name> "
        "--description <description>\n"
    )

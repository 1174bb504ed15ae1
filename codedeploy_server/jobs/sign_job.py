"""Sign a job document for AWS IoT Core Jobs (`codedeploy-server sign-job`).

Operators who drive agents with AWS IoT Core Jobs (`aws iot create-job --document
file://job.json`) rather than with our server can still have the agents check signatures
(`security.trusted_keys`). `sign_job_document` takes the document as written (PROTOCOL.md "Job
document"), sets `IssuedAt` (now) and `ExpiresAt` (now + `expires_in`) unless present, checks
it with the agent's own decoder (`jobdoc.parse_job_document`, so a document the agent would
reject is refused here with the agent's message) and that it has not expired yet, signs it
(`signing.sign_document`) and returns compact JSON of at most 32 KB, the IoT Jobs limit on a job
document (anchors.md §1.4).

A document using IoT Jobs' presigned-URL placeholder (`${aws:iot:s3-presigned-url:...}`) is
refused: IoT Jobs replaces the placeholder after signing, so every agent would find the
signature broken; a signed document carries its own URL (`Revision.Download`, or an
`S3Revision` the agent fetches with its own credentials).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgspec

from codedeploy_agent.protocol.errors import JobRejected, ProtocolError
from codedeploy_agent.protocol.jobdoc import MAX_DOCUMENT_BYTES, parse_job_document
from codedeploy_agent.protocol.messages import format_time
from codedeploy_agent.protocol.signing import SIGNATURE_KEY, Signer, sign_document
from codedeploy_server.errors import ServerError

#: Default lifetime of a signed document (`--expires-in`).
DEFAULT_EXPIRES_IN: Final = 3600
#: The substitution IoT Jobs performs on job documents (CreateJob `presignedUrlConfig`).
PRESIGNED_URL_PLACEHOLDER: Final = "${aws:iot:s3-presigned-url:"


class SignJobError(ServerError):
    """Raised by `sign_job_document` for a document that cannot be signed; one-line message."""


def sign_job_document(
    data: bytes,
    private_key: Signer,
    key_id: str,
    *,
    now: datetime,
    expires_in: int = DEFAULT_EXPIRES_IN,
) -> bytes:
    """The signed job document as compact UTF-8 JSON ending in a newline (module docstring).

    `data` is the document's JSON; `now` (aware) is the signing time. Raises SignJobError
    naming what is wrong (the agent's own message for an invalid document).
    """
    if expires_in < 1:
        raise SignJobError(f"--expires-in must be at least 1 second, not {expires_in}")
    try:
        document = msgspec.json.decode(data)
    except msgspec.DecodeError as err:
        raise SignJobError(f"The job document is not valid JSON: {_one_line(str(err))}") from None
    except RecursionError:
        raise SignJobError("The job document is nested too deeply") from None
    if not isinstance(document, dict):
        raise SignJobError(f"The job document must be a JSON object, got {type(document).__name__}")
    if PRESIGNED_URL_PLACEHOLDER in json.dumps(document, ensure_ascii=False):
        raise SignJobError(
            "The job document uses the IoT Jobs placeholder ${aws:iot:s3-presigned-url:...}: "
            "IoT Jobs replaces it after signing, so agents would reject the signature; put a "
            "download URL in Revision.Download, or use an S3Revision the agent fetches itself"
        )
    # An old signature is replaced, never checked: re-signing after an edit is the point.
    document.pop(SIGNATURE_KEY, None)
    signed_at = now.astimezone(UTC).replace(microsecond=0)
    # Absent, null and "" are all "not set" to the agent's decoder.
    if document.get("IssuedAt") in (None, ""):
        document["IssuedAt"] = format_time(signed_at)
    if document.get("ExpiresAt") in (None, ""):
        document["ExpiresAt"] = format_time(signed_at + timedelta(seconds=expires_in))
    try:
        decoded = parse_job_document(document)
        signed = sign_document(document, private_key, key_id)
    except (JobRejected, ProtocolError) as err:
        raise SignJobError(_one_line(str(err))) from None
    if decoded.expires_at is not None and decoded.expires_at <= signed_at:
        raise SignJobError(
            f"ExpiresAt {format_time(decoded.expires_at)} is already past (now "
            f"{format_time(signed_at)}): every agent would reject the job as expired; remove "
            "ExpiresAt to get now + --expires-in, or set a later time"
        )
    return _encode(signed)


def _encode(signed: dict[str, Any]) -> bytes:
    """Compact JSON (IoT Jobs counts the bytes as given), with the 32 KB check."""
    text = json.dumps(signed, separators=(",", ":"), ensure_ascii=False) + "\n"
    output = text.encode("utf-8")
    if len(output) > MAX_DOCUMENT_BYTES:
        raise SignJobError(
            f"The signed job document is {len(output)} bytes; AWS IoT Jobs accepts job "
            f"documents of at most {MAX_DOCUMENT_BYTES} bytes (32 KB). Keep bundles and large "
            "values out of the document: reference the revision by URL"
        )
    return output


def _one_line(message: str) -> str:
    return " ".join(message.split())


__all__ = ["DEFAULT_EXPIRES_IN", "SignJobError", "sign_job_document"]

"""AWS Signature Version 4 (header form) verification against the server's credentials.

The canonical request is rebuilt the way botocore builds it for a JSON service (the reference
clients are boto3 and the AWS CLI): the path as sent, dot segments removed, then quoted again
with `/~` safe (non-S3 services double-encode); the raw query pairs sorted; the signed headers
with their values trimmed and repeated values joined by commas; and the payload hash, which is
`x-amz-content-sha256` when the client sent one (it must then match the body) or the body's
sha256. Errors and messages are AWS's:

- no `Authorization` header: `MissingAuthenticationTokenException`;
- a malformed header, no `X-Amz-Date`, `host` not signed: `IncompleteSignatureException`;
- an access key the server does not know: `UnrecognizedClientException` "The security token
  included in the request is invalid.";
- a date more than 5 minutes off: `InvalidSignatureException` "Signature expired: <date> is now
  earlier than <now - 5 min> (<now> - 5 min.)" (or "not yet current" for a future date);
- a wrong scope or signature: `InvalidSignatureException`.

Secrets never leave this module, and nothing here logs.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final
from urllib.parse import quote

from codedeploy_server.api.errors import (
    IncompleteSignatureException,
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    UnrecognizedClientException,
)

ALGORITHM: Final = "AWS4-HMAC-SHA256"
#: AWS's clock tolerance.
MAX_SKEW_SECONDS: Final = 300.0
UNSIGNED_PAYLOAD: Final = "UNSIGNED-PAYLOAD"
_AMZ_DATE_FORMAT: Final = "%Y%m%dT%H%M%SZ"
_TERMINATOR: Final = "aws4_request"
_BAD_SIGNATURE: Final = (
    "The request signature we calculated does not match the signature you provided. Check "
    "your AWS Secret Access Key and signing method. Consult the service documentation for "
    "details."
)


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """What the signature covers, as received."""

    method: str
    #: The path exactly as sent (percent-encoded), without the query.
    path: str
    #: The query string exactly as sent, without `?`.
    query: str
    #: Lower-case header name -> every value, in the order received.
    headers: Mapping[str, Sequence[str]]
    #: The payload hash that goes into the canonical request (see `payload_hash`).
    payload_hash: str

    def header(self, name: str) -> str | None:
        """The first value of a header (lower-case name), or None."""
        values = self.headers.get(name)
        return values[0] if values else None


@dataclass(frozen=True, slots=True)
class Authorization:
    """The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header."""

    access_key_id: str
    date: str
    region: str
    service: str
    terminator: str
    signed_headers: tuple[str, ...]
    signature: str

    @classmethod
    def parse(cls, header: str) -> Authorization:
        """Decode the header; IncompleteSignatureException saying what is missing."""
        algorithm, _, rest = header.strip().partition(" ")
        if algorithm != ALGORITHM:
            raise IncompleteSignatureException(
                f"Unsupported AWS 'algorithm': '{algorithm}'. Sign requests with "
                f"{ALGORITHM} (Signature Version 4)."
            )
        fields: dict[str, str] = {}
        for part in rest.split(","):
            name, sep, value = part.strip().partition("=")
            if sep:
                fields[name] = value
        missing = [
            name for name in ("Credential", "SignedHeaders", "Signature") if not fields.get(name)
        ]
        if missing:
            raise IncompleteSignatureException(
                " ".join(f"Authorization header requires '{name}' parameter." for name in missing)
            )
        scope = fields["Credential"].split("/")
        if len(scope) != 5 or not all(scope):
            raise IncompleteSignatureException(
                "Authorization header requires a Credential of the form "
                "'<access key id>/<YYYYMMDD>/<region>/<service>/aws4_request'."
            )
        return cls(
            access_key_id=scope[0],
            date=scope[1],
            region=scope[2],
            service=scope[3],
            terminator=scope[4],
            signed_headers=tuple(fields["SignedHeaders"].split(";")),
            signature=fields["Signature"],
        )


class SigV4Verifier:
    """Verifies requests signed with one of `credentials` (access key id -> secret)."""

    def __init__(
        self,
        credentials: Mapping[str, str],
        *,
        region: str,
        service: str = "codedeploy",
        clock: Callable[[], float] = time.time,
        max_skew: float = MAX_SKEW_SECONDS,
    ) -> None:
        self._secrets = dict(credentials)
        self._region = region
        self._service = service
        self._clock = clock
        self._max_skew = max_skew

    def verify(self, request: SignedRequest) -> str:
        """The access key id that signed `request`; a CodeDeployError when it is not valid."""
        header = request.header("authorization")
        if header is None:
            raise MissingAuthenticationTokenException(
                "Missing Authentication Token. Sign the request with AWS Signature Version 4 "
                "using an access key configured in the server's `credentials`."
            )
        auth = Authorization.parse(header)
        amz_date = request.header("x-amz-date")
        if amz_date is None:
            raise IncompleteSignatureException(
                "Authorization header requires existence of either a 'X-Amz-Date' or a "
                "'Date' header."
            )
        signed = set(auth.signed_headers)
        if "host" not in signed:
            raise IncompleteSignatureException(
                "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
            )
        if "x-amz-date" not in signed:
            raise IncompleteSignatureException(
                "'X-Amz-Date' must be a 'SignedHeader' in the AWS Authorization."
            )
        self._check_scope(auth, amz_date)
        self._check_clock(amz_date)
        secret = self._secrets.get(auth.access_key_id)
        if secret is None:
            raise UnrecognizedClientException(
                "The security token included in the request is invalid."
            )
        expected = signature(
            secret,
            string_to_sign(request, auth, amz_date),
            date=auth.date,
            region=auth.region,
            service=auth.service,
        )
        if not hmac.compare_digest(expected, auth.signature.lower()):
            raise InvalidSignatureException(_BAD_SIGNATURE)
        return auth.access_key_id

    def _check_scope(self, auth: Authorization, amz_date: str) -> None:
        if auth.terminator != _TERMINATOR:
            raise InvalidSignatureException(
                f"Credential should be scoped with a valid terminator: '{_TERMINATOR}', not "
                f"'{auth.terminator}'."
            )
        if auth.service != self._service:
            raise InvalidSignatureException(
                f"Credential should be scoped to correct service: '{self._service}'. "
            )
        if auth.region != self._region:
            raise InvalidSignatureException(
                f"Credential should be scoped to a valid region, not '{auth.region}'. This "
                f"server's region is '{self._region}': configure the client with it."
            )
        if auth.date != amz_date[:8]:
            raise InvalidSignatureException(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of "
                f"date from HTTP: '{auth.date}' != '{amz_date[:8]}', from 'X-Amz-Date'."
            )

    def _check_clock(self, amz_date: str) -> None:
        try:
            signed_at = datetime.strptime(amz_date, _AMZ_DATE_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            raise IncompleteSignatureException(
                f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'. See "
                "http://en.wikipedia.org/wiki/ISO_8601"
            ) from None
        now = self._clock()
        when = signed_at.timestamp()
        skew_minutes = round(self._max_skew / 60)
        if when < now - self._max_skew:
            raise InvalidSignatureException(
                f"Signature expired: {amz_date} is now earlier than "
                f"{_amz(now - self._max_skew)} ({_amz(now)} - {skew_minutes} min.)"
            )
        if when > now + self._max_skew:
            raise InvalidSignatureException(
                f"Signature not yet current: {amz_date} is still later than "
                f"{_amz(now + self._max_skew)} ({_amz(now)} + {skew_minutes} min.)"
            )


def payload_hash(headers: Mapping[str, Sequence[str]], body: bytes) -> str:
    """The payload hash for a request whose whole body is `body`.

    A client that sends `x-amz-content-sha256` signs that value; it must then be the body's
    sha256 (an unsigned payload is refused: the API signs every byte it acts on).
    """
    actual = hashlib.sha256(body).hexdigest()
    declared_values = headers.get("x-amz-content-sha256")
    if not declared_values:
        return actual
    declared = declared_values[0]
    if declared == UNSIGNED_PAYLOAD:
        raise InvalidSignatureException(
            "UNSIGNED-PAYLOAD is not accepted: sign the request body (x-amz-content-sha256 must "
            "be its sha256)."
        )
    if not hmac.compare_digest(declared.lower(), actual):
        raise InvalidSignatureException(
            "The provided 'x-amz-content-sha256' header does not match what was computed."
        )
    return declared


def canonical_request(request: SignedRequest, signed_headers: Sequence[str]) -> str:
    """The SigV4 canonical request, as botocore builds it for a non-S3 service."""
    lines = [
        request.method.upper(),
        quote(_remove_dot_segments(request.path) or "/", safe="/~"),
        _canonical_query(request.query),
    ]
    lines.extend(
        f"{name}:{','.join(' '.join(value.split()) for value in request.headers.get(name, ()))}"
        for name in signed_headers
    )
    lines.extend(["", ";".join(signed_headers), request.payload_hash])
    return "\n".join(lines)


def string_to_sign(request: SignedRequest, auth: Authorization, amz_date: str) -> str:
    """The SigV4 string to sign for `request` under `auth`'s scope."""
    scope = "/".join((auth.date, auth.region, auth.service, auth.terminator))
    digest = hashlib.sha256(
        canonical_request(request, auth.signed_headers).encode("utf-8")
    ).hexdigest()
    return "\n".join((ALGORITHM, amz_date, scope, digest))


def signature(secret: str, to_sign: str, *, date: str, region: str, service: str) -> str:
    """The hex HMAC-SHA256 signature with the key derived from `secret` for the scope."""
    key = _hmac(f"AWS4{secret}".encode(), date)
    for part in (region, service, _TERMINATOR):
        key = _hmac(key, part)
    return hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def _canonical_query(query: str) -> str:
    if not query:
        return ""
    pairs = sorted(pair.partition("=")[::2] for pair in query.split("&"))
    return "&".join(f"{key}={value}" for key, value in pairs)


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4, and empty segments dropped (as AWS services expect)."""
    if not path:
        return ""
    kept: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if kept:
                kept.pop()
        elif segment and segment != ".":
            kept.append(segment)
    first = "/" if path.startswith("/") else ""
    last = "/" if path.endswith("/") and kept else ""
    return first + "/".join(kept) + last


def _amz(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime(_AMZ_DATE_FORMAT)

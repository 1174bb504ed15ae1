"""Strip credentials from URLs before they reach a log line or an error message.

A bundle URL may carry secrets in three places: the user-info part (`https://user:pass@host`),
the query string of a presigned URL (`X-Amz-Signature`, `X-Amz-Credential`,
`X-Amz-Security-Token`, GitHub's codeload `token`, Azure's `sig`, ...), and the fragment. Every
URL this package logs or raises goes through `redact_url` first.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

#: Query parameters whose value is a credential, compared lower-cased.
SECRET_PARAMETERS: Final = frozenset(
    {
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "x-goog-signature",
        "x-goog-credential",
        "signature",
        "sig",
        "awsaccesskeyid",
        "token",
        "access_token",
        "id_token",
        "refresh_token",
        "private_token",
        "api_key",
        "apikey",
        "password",
        "passwd",
        "secret",
        "client_secret",
        "auth",
        "authorization",
        "jwt",
    }
)
#: Any parameter whose name contains one of these is treated as a credential too.
_SECRET_FRAGMENTS: Final = ("signature", "token", "credential", "password", "secret")
#: What replaces a secret.
MASK: Final = "REDACTED"


def is_secret_parameter(name: str) -> bool:
    """True when a query parameter of this name carries a credential."""
    lowered = name.lower()
    return lowered in SECRET_PARAMETERS or any(part in lowered for part in _SECRET_FRAGMENTS)


def redact_url(url: str) -> str:
    """`url` with passwords, user names that stand alone (tokens), secret query values and the
    fragment replaced; an unparseable URL becomes `<invalid URL>` (it could hold anything)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "<invalid URL>"
    netloc = parts.hostname or ""
    if ":" in netloc:  # an IPv6 literal
        netloc = f"[{netloc}]"
    if port is not None:
        netloc += f":{port}"
    if parts.username is not None or parts.password is not None:
        # `https://TOKEN@github.com/...` puts the credential in the user name: without a
        # password, the user name itself is masked.
        user = quote(parts.username or "", safe="") if parts.password is not None else ""
        netloc = f"{user}:{MASK}@{netloc}" if user else f"{MASK}@{netloc}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_secret_parameter(name) for name, _ in pairs):
            query = "&".join(
                f"{quote(name, safe='-_.~')}="
                + (MASK if is_secret_parameter(name) else quote(value, safe="-_.~/:"))
                for name, value in pairs
            )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))

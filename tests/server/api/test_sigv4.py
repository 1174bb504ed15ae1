"""SigV4 verification against requests signed by botocore's own signer (the reference client)."""

from __future__ import annotations

import hashlib
from calendar import timegm
from time import strptime
from urllib.parse import urlsplit

import pytest

from codedeploy_server.api.errors import (
    CodeDeployError,
    IncompleteSignatureException,
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    UnrecognizedClientException,
)
from codedeploy_server.api.sigv4 import SignedRequest, SigV4Verifier, payload_hash
from tests.server.api.conftest import ACCESS_KEY, CREDENTIALS, signed_headers

URL = "http://127.0.0.1:8443/"
BODY = b'{"applicationName":"web"}'


def _request(
    headers: dict[str, str], body: bytes = BODY, url: str = URL, method: str = "POST"
) -> SignedRequest:
    parts = urlsplit(url)
    lowered: dict[str, list[str]] = {"host": [parts.netloc]}
    for name, value in headers.items():
        lowered.setdefault(name.lower(), []).append(value)
    return SignedRequest(
        method=method,
        path=parts.path,
        query=parts.query,
        headers=lowered,
        payload_hash=payload_hash(lowered, body),
    )


def _signed_at(headers: dict[str, str]) -> float:
    return float(timegm(strptime(headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ")))


def _verifier(now: float, *, region: str = "us-east-1") -> SigV4Verifier:
    return SigV4Verifier(CREDENTIALS, region=region, clock=lambda: now)


def _refusal(verifier: SigV4Verifier, request: SignedRequest) -> CodeDeployError:
    with pytest.raises(CodeDeployError) as info:
        verifier.verify(request)
    return info.value


def test_botocore_signed_request_is_accepted() -> None:
    """A request botocore signed with a configured key verifies and names that key."""
    headers = signed_headers(URL, BODY, target="GetApplication")
    assert _verifier(_signed_at(headers)).verify(_request(headers)) == ACCESS_KEY


def test_path_and_query_are_canonicalised_like_botocore() -> None:
    """An encoded path with dot segments and an unsorted query verify as botocore signed them."""
    url = "http://127.0.0.1:8443/bundles/./a%20b/../" + "c" * 64 + "?z=1&a=%2F&a=0"
    headers = signed_headers(url, b"", method="GET")
    assert _verifier(_signed_at(headers)).verify(_request(headers, b"", url, "GET")) == ACCESS_KEY


def test_changed_body_is_a_bad_signature() -> None:
    """A body changed after signing gives AWS's signature-mismatch message."""
    headers = signed_headers(URL, BODY, target="GetApplication")
    error = _refusal(_verifier(_signed_at(headers)), _request(headers, b'{"applicationName":"x"}'))
    assert isinstance(error, InvalidSignatureException)
    assert error.message == (
        "The request signature we calculated does not match the signature you provided. Check "
        "your AWS Secret Access Key and signing method. Consult the service documentation for "
        "details."
    )


def test_wrong_secret_is_a_bad_signature() -> None:
    """A known key signed with the wrong secret is refused as InvalidSignatureException."""
    headers = signed_headers(URL, BODY, target="GetApplication", secret_key="not-the-secret")  # noqa: S106 - a test key
    error = _refusal(_verifier(_signed_at(headers)), _request(headers))
    assert isinstance(error, InvalidSignatureException)


def test_unknown_access_key_is_unrecognized() -> None:
    """A key the server does not know is UnrecognizedClientException with AWS's message."""
    headers = signed_headers(URL, BODY, target="GetApplication", access_key="AKIDUNKNOWN")
    error = _refusal(_verifier(_signed_at(headers)), _request(headers))
    assert isinstance(error, UnrecognizedClientException)
    assert error.message == "The security token included in the request is invalid."


def test_stale_date_is_signature_expired() -> None:
    """A date more than 5 minutes in the past gives AWS's "Signature expired" message."""
    headers = signed_headers(URL, BODY, target="GetApplication")
    signed = _signed_at(headers)
    error = _refusal(_verifier(signed + 301), _request(headers))
    assert isinstance(error, InvalidSignatureException)
    stamp = headers["X-Amz-Date"]
    assert error.message.startswith(f"Signature expired: {stamp} is now earlier than ")
    assert error.message.endswith(" - 5 min.)")


def test_expired_message_names_both_times() -> None:
    """The expired message shows now - 5 min and now, in AWS's basic ISO format."""
    headers = signed_headers(URL, BODY, target="GetApplication")
    signed = _signed_at(headers)
    error = _refusal(_verifier(signed + 600), _request(headers))

    def stamp(epoch: float) -> str:
        from datetime import UTC, datetime  # noqa: PLC0415

        return datetime.fromtimestamp(epoch, UTC).strftime("%Y%m%dT%H%M%SZ")

    assert error.message == (
        f"Signature expired: {headers['X-Amz-Date']} is now earlier than "
        f"{stamp(signed + 300)} ({stamp(signed + 600)} - 5 min.)"
    )


def test_future_date_is_not_yet_current() -> None:
    """A date more than 5 minutes ahead is refused as "Signature not yet current"."""
    headers = signed_headers(URL, BODY, target="GetApplication")
    error = _refusal(_verifier(_signed_at(headers) - 400), _request(headers))
    assert isinstance(error, InvalidSignatureException)
    assert error.message.startswith(f"Signature not yet current: {headers['X-Amz-Date']} is ")
    assert error.message.endswith(" + 5 min.)")


def test_date_within_tolerance_is_accepted() -> None:
    """Four minutes of skew either way is within AWS's tolerance."""
    headers = signed_headers(URL, BODY, target="GetApplication")
    signed = _signed_at(headers)
    assert _verifier(signed + 240).verify(_request(headers)) == ACCESS_KEY
    assert _verifier(signed - 240).verify(_request(headers)) == ACCESS_KEY


def test_missing_authorization_is_missing_token() -> None:
    """An unsigned request is MissingAuthenticationTokenException."""
    error = _refusal(_verifier(0), _request({"X-Amz-Target": "CodeDeploy_20141006.GetApplication"}))
    assert isinstance(error, MissingAuthenticationTokenException)


def test_other_region_in_scope_is_refused() -> None:
    """A signature scoped to another region names the region the server expects."""
    headers = signed_headers(URL, BODY, target="GetApplication", region="eu-west-1")
    error = _refusal(_verifier(_signed_at(headers)), _request(headers))
    assert isinstance(error, InvalidSignatureException)
    assert error.message == (
        "Credential should be scoped to a valid region, not 'eu-west-1'. This server's region "
        "is 'us-east-1': configure the client with it."
    )


def test_other_service_in_scope_is_refused() -> None:
    """A signature for another service is refused with AWS's scope message."""
    headers = signed_headers(URL, BODY, target="GetApplication", service="s3")
    error = _refusal(_verifier(_signed_at(headers)), _request(headers))
    assert error.message == "Credential should be scoped to correct service: 'codedeploy'. "


def test_host_must_be_signed() -> None:
    """An Authorization header whose SignedHeaders omit host is incomplete."""
    headers = signed_headers(URL, BODY, target="GetApplication")
    headers["Authorization"] = headers["Authorization"].replace("host;", "")
    error = _refusal(_verifier(_signed_at(headers)), _request(headers))
    assert isinstance(error, IncompleteSignatureException)
    assert error.message == (
        "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
    )


def test_malformed_authorization_lists_missing_parts() -> None:
    """An Authorization header without its parts names each missing one."""
    request = _request(
        {
            "Authorization": "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/codedeploy/aws4_request",
            "X-Amz-Date": "20240101T000000Z",
        }
    )
    error = _refusal(_verifier(0), request)
    assert isinstance(error, IncompleteSignatureException)
    assert error.message == (
        "Authorization header requires 'SignedHeaders' parameter. Authorization header "
        "requires 'Signature' parameter."
    )


def test_declared_payload_hash_must_match_body() -> None:
    """An x-amz-content-sha256 that is not the body's hash is refused before any signature."""
    headers = signed_headers(
        URL, BODY, headers={"X-Amz-Content-SHA256": hashlib.sha256(b"other").hexdigest()}
    )
    with pytest.raises(InvalidSignatureException) as info:
        _request(headers)
    assert info.value.message == (
        "The provided 'x-amz-content-sha256' header does not match what was computed."
    )


def test_declared_payload_hash_matching_body_is_accepted() -> None:
    """A correct x-amz-content-sha256 is what the signature covers."""
    headers = signed_headers(
        URL, BODY, headers={"X-Amz-Content-SHA256": hashlib.sha256(BODY).hexdigest()}
    )
    assert _verifier(_signed_at(headers)).verify(_request(headers)) == ACCESS_KEY

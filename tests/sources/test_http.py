"""`sources.http.download` against local HTTP(S) servers: streaming, checks, errors, retries,
redirects, resume, parallel parts and what reaches logs and messages."""

from __future__ import annotations

import datetime
import hashlib
import os
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from codedeploy_agent.sources.http import DownloadError, DownloadResult, default_backoff, download
from codedeploy_agent.sources.redact import redact_url
from tests.sources.conftest import Exchange, LocalServer, make_config, unused_port

NO_WAIT = (0.0, 0.0, 0.0)
DATA = bytes(range(256)) * 4096  # 1 MiB


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch(url: str, dest: Path, **options: object) -> DownloadResult:
    config = options.pop("config", None) or make_config(dest.parent)
    options.setdefault("retry_delays", NO_WAIT)
    # No proxy variables from the machine running the tests; the test CA when trusted.
    options.setdefault("environ", {k: v for k, v in os.environ.items() if k == "SSL_CERT_FILE"})
    return download(url, dest, config=config, label="test object", **options)  # type: ignore[arg-type]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


# --- plain downloads and checks ----------------------------------------------------------------


def test_download_streams_the_body_and_reports_size_hash_and_etag(
    http_server: LocalServer, tmp_path: Path
) -> None:
    """The file gets the body; the result has its size, SHA-256 and the unquoted ETag."""
    url = http_server.serve_bytes("/bundle.tgz", DATA, etag='"abc-2"')
    result = fetch(url, tmp_path / "bundle.tar")
    assert result == DownloadResult(size=len(DATA), sha256=sha(DATA), etag="abc-2")
    assert (tmp_path / "bundle.tar").read_bytes() == DATA
    assert leftovers(tmp_path) == []
    seen = http_server.requests_to("/bundle.tgz")[0]
    assert seen.headers["user-agent"].startswith("codedeploy-agent/")
    assert seen.headers["accept-encoding"] == "identity"


def test_download_without_content_length_is_hashed_whole(
    http_server: LocalServer, tmp_path: Path
) -> None:
    """A chunked body of unknown length is read to its end and hashed."""
    url = http_server.serve_bytes("/b", DATA * 3, chunked=True, etag=None)
    result = fetch(url, tmp_path / "bundle.tar", expected_sha256=sha(DATA * 3))
    assert result.size == 3 * len(DATA)
    assert result.etag is None
    assert (tmp_path / "bundle.tar").read_bytes() == DATA * 3


def test_download_replaces_an_existing_destination(
    http_server: LocalServer, tmp_path: Path
) -> None:
    """A bundle left at the destination (a symlink here) is replaced, not written through."""
    target = tmp_path / "elsewhere"
    target.write_bytes(b"keep me")
    (tmp_path / "bundle.tar").symlink_to(target)
    fetch(http_server.serve_bytes("/b", DATA), tmp_path / "bundle.tar")
    assert not (tmp_path / "bundle.tar").is_symlink()
    assert target.read_bytes() == b"keep me"


def test_sha256_mismatch_names_both_digests_and_removes_the_file(
    http_server: LocalServer, tmp_path: Path
) -> None:
    """A wrong SHA-256 fails with expected and actual digests; no file is left behind."""
    url = http_server.serve_bytes("/b", DATA)
    wrong = "ab" * 32
    with pytest.raises(DownloadError) as caught:
        fetch(url, tmp_path / "bundle.tar", expected_sha256=wrong.upper())
    assert str(caught.value) == (
        f"Cannot download test object from {url}: its SHA-256 is {sha(DATA)} but {wrong} was "
        "expected. The file changed since the deployment was created, or it was corrupted on "
        "the way; check the Sha256 of the revision."
    )
    assert list(tmp_path.iterdir()) == []


def test_size_mismatch_fails_before_the_body_is_read(
    http_server: LocalServer, tmp_path: Path
) -> None:
    """Content-Length differing from the expected size fails at once, naming both sizes."""
    url = http_server.serve_bytes("/b", DATA)
    with pytest.raises(DownloadError) as caught:
        fetch(url, tmp_path / "bundle.tar", expected_size=1000)
    assert str(caught.value) == (
        f"Cannot download test object from {url}: the server has {len(DATA)} bytes but the "
        "revision says 1000. The object changed since the deployment was created, or its Size "
        "in the revision is wrong."
    )
    assert list(tmp_path.iterdir()) == []


def test_etag_mismatch_uses_the_real_agents_message(
    http_server: LocalServer, tmp_path: Path
) -> None:
    """A different ETag fails with CodeDeploy's text first, then which object and what to do."""
    url = http_server.serve_bytes("/b", DATA, etag='"v2"')
    with pytest.raises(DownloadError) as caught:
        fetch(url, tmp_path / "bundle.tar", expected_etag='"v1"')
    assert str(caught.value) == (
        f"Expected deployment artifact bundle etag v1 but was actually v2. test object at {url} "
        "changed since the deployment was created, or the revision names the wrong ETag; deploy "
        "the current revision again."
    )
    assert list(tmp_path.iterdir()) == []


def test_etag_matches_quoted_or_not(http_server: LocalServer, tmp_path: Path) -> None:
    """The expected ETag may be given with or without quotes, as the real agent strips them."""
    url = http_server.serve_bytes("/b", DATA, etag='"3858f62230ac3c915f300c664312c63f-2"')
    result = fetch(url, tmp_path / "a", expected_etag="3858f62230ac3c915f300c664312c63f-2")
    assert result.etag == "3858f62230ac3c915f300c664312c63f-2"
    fetch(url, tmp_path / "b", expected_etag='"3858f62230ac3c915f300c664312c63f-2"')


# --- HTTP errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "reason", "hint"),
    [
        (401, "Unauthorized", "Check the credentials configured for this source."),
        (
            403,
            "Forbidden",
            (
                "Check the credentials and their permissions on the object; a presigned URL may "
                "also have expired."
            ),
        ),
        (404, "Not Found", "Check that the object exists (its name, version or commit)."),
        (400, "Bad Request", "The request was refused; check the URL."),
    ],
)
def test_client_errors_fail_at_once_with_a_hint(
    http_server: LocalServer, tmp_path: Path, status: int, reason: str, hint: str
) -> None:
    """4xx answers are not retried; the message names the object, the code and what to check."""
    url = http_server.route("/b", lambda ex: ex.respond(status))
    with pytest.raises(DownloadError) as caught:
        fetch(url, tmp_path / "bundle.tar")
    assert str(caught.value) == (
        f"Cannot download test object from {url}: the server answered {status} '{reason}'. {hint}"
    )
    assert caught.value.status == status
    assert not caught.value.transient
    assert len(http_server.requests_to("/b")) == 1
    assert list(tmp_path.iterdir()) == []


def test_s3_error_body_gives_code_and_message_but_nothing_else(
    http_server: LocalServer, tmp_path: Path
) -> None:
    """An S3 XML error adds its Code and Message; the string-to-sign and key id stay out."""
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
        b"<Message>Request has expired</Message><AWSAccessKeyId>AKIAEXAMPLEKEY</AWSAccessKeyId>"
        b"<StringToSign>AWS4-HMAC-SHA256 secret-ish</StringToSign></Error>"
    )
    url = http_server.route("/b", lambda ex: ex.respond(403, body))
    with pytest.raises(DownloadError) as caught:
        fetch(url, tmp_path / "bundle.tar")
    message = str(caught.value)
    assert "answered 403 'Forbidden' (AccessDenied: Request has expired). Check" in message
    assert "AKIA" not in message
    assert "StringToSign" not in message
    assert caught.value.detail == "AccessDenied: Request has expired"


def test_server_errors_are_retried_until_success(http_server: LocalServer, tmp_path: Path) -> None:
    """500 and 503 answers are retried; the third attempt succeeds and each retry is logged."""
    statuses = {1: 500, 2: 503}

    def flaky(ex: Exchange) -> None:
        if ex.count in statuses:
            ex.respond(statuses[ex.count])
        else:
            ex.serve(DATA)

    url = http_server.route("/b", flaky)
    with capture_logs() as logs:
        result = fetch(url, tmp_path / "bundle.tar")
    assert result.sha256 == sha(DATA)
    assert len(http_server.requests_to("/b")) == 3
    retries = [entry for entry in logs if entry["event"] == "download retrying"]
    assert [(r["error"], r["attempt"], r["log_level"]) for r in retries] == [
        ("500 'Internal Server Error'", 1, "warning"),
        ("503 'Service Unavailable'", 2, "warning"),
    ]


def test_server_errors_exhaust_the_attempts(http_server: LocalServer, tmp_path: Path) -> None:
    """After every attempt failed with 5xx/429 the error lists each code in order."""
    codes = iter([503, 429, 502, 500])
    url = http_server.route("/b", lambda ex: ex.respond(next(codes)))
    with pytest.raises(DownloadError) as caught:
        fetch(url, tmp_path / "bundle.tar")
    assert str(caught.value) == (
        f"Cannot download test object from {url}: the server kept failing (503 'Service "
        "Unavailable'; 429 'Too Many Requests'; 502 'Bad Gateway'; 500 'Internal Server Error'). "
        "It is failing or overloaded; try again later."
    )
    assert caught.value.failures == (
        "503 'Service Unavailable'",
        "429 'Too Many Requests'",
        "502 'Bad Gateway'",
        "500 'Internal Server Error'",
    )
    assert caught.value.transient
    assert caught.value.status == 500


def test_attempts_default_to_the_configured_retries(
    http_server: LocalServer, tmp_path: Path
) -> None:
    """Without retry_delays, download.retries is the number of attempts."""
    url = http_server.route("/b", lambda ex: ex.respond(500))
    config = make_config(tmp_path, retries=2)
    with pytest.raises(DownloadError):
        download(url, tmp_path / "b", config=config, label="x", environ={})
    assert len(http_server.requests_to("/b")) == 2


def test_default_backoff_is_short_and_capped() -> None:
    """The default waits double from half a second and stop growing at 8 seconds."""
    assert [default_backoff(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


def test_connection_refused_says_to_check_the_network(tmp_path: Path) -> None:
    """A closed port fails after the retries with a message about network and proxy."""
    port = unused_port()
    url = f"http://127.0.0.1:{port}/b"
    with pytest.raises(DownloadError) as caught:
        fetch(url, tmp_path / "bundle.tar", retry_delays=(0.0,))
    failure = f"connection refused while connecting to 127.0.0.1:{port}"
    assert str(caught.value) == (
        f"Cannot download test object from {url}: {failure} (2 failed attempts: {failure}; "
        f"{failure}). Check the network, DNS, firewall and proxy settings (this download went "
        "without a proxy; see :proxy_uri:, HTTPS_PROXY, NO_PROXY and download.no_proxy)."
    )
    assert caught.value.status is None
    assert caught.value.transient


def test_a_stalled_response_times_out_and_is_retried(
    http_server: LocalServer, tmp_path: Path
) -> None:
    """A server that sends nothing within the read timeout is retried (not 'execution expired')."""

    def stall_once(ex: Exchange) -> None:
        if ex.count == 1:
            time.sleep(2.5)
            ex.drop()
        else:
            ex.serve(DATA)

    url = http_server.route("/b", stall_once)
    config = replace(make_config(tmp_path), http_read_timeout=1)
    with capture_logs() as logs:
        result = fetch(url, tmp_path / "bundle.tar", config=config)
    assert result.sha256 == sha(DATA)
    [retry] = [entry for entry in logs if entry["event"] == "download retrying"]
    assert (
        retry["error"]
        == f"timed out after 1 s while waiting for 127.0.0.1:{http_server.port} to answer"
    )


def test_invalid_urls_are_refused_without_a_request(tmp_path: Path) -> None:
    """Only http(s) URLs naming a host are fetched; the message redacts the URL."""
    with pytest.raises(DownloadError) as caught:
        fetch("ftp://user:pw@host/file", tmp_path / "b")
    assert str(caught.value) == (
        "Cannot download test object from ftp://user:REDACTED@host/file: only http:// and "
        "https:// URLs naming a host can be downloaded."
    )


# --- redirects ---------------------------------------------------------------------------------


def test_redirect_to_another_origin_drops_the_callers_headers(
    http_server: LocalServer, other_server: LocalServer, tmp_path: Path
) -> None:
    """Authorization goes to the first origin only; the redirect target never sees it."""
    target = other_server.serve_bytes("/archive", DATA)
    url = http_server.route("/start", lambda ex: ex.redirect(target + "?token=abc", 302))
    fetch(url, tmp_path / "b", headers={"Authorization": "token SECRET", "Accept": "x/y"})
    assert http_server.requests_to("/start")[0].headers["authorization"] == "token SECRET"
    [seen] = other_server.requests_to("/archive")
    assert "authorization" not in seen.headers
    assert "accept" not in seen.headers
    assert seen.target == "/archive?token=abc"
    assert (tmp_path / "b").read_bytes() == DATA


def test_redirect_within_the_origin_keeps_the_headers(
    http_server: LocalServer, tmp_path: Path
) -> None:
    """A relative redirect (same host and port) still carries Authorization."""
    http_server.serve_bytes("/final", DATA)
    url = http_server.route("/start", lambda ex: ex.redirect("/final", 307))
    fetch(url, tmp_path / "b", headers={"Authorization": "token SECRET"})
    assert http_server.requests_to("/final")[0].headers["authorization"] == "token SECRET"


def test_redirect_loops_stop_after_five(http_server: LocalServer, tmp_path: Path) -> None:
    """More than five redirects fail with a message that says so."""
    url = http_server.route("/loop", lambda ex: ex.redirect("/loop", 301))
    with pytest.raises(DownloadError) as caught:
        fetch(url, tmp_path / "b")
    assert str(caught.value) == (
        f"Cannot download test object from {url}: more than 5 redirects; the server is "
        "redirecting in a loop."
    )
    assert len(http_server.requests_to("/loop")) == 6


def test_https_never_redirects_to_plain_http(
    https_server: LocalServer, trust_test_ca: Path, tmp_path: Path
) -> None:
    """A redirect from https to a non-loopback http URL is refused before connecting."""
    url = https_server.route(
        "/b", lambda ex: ex.redirect("http://bundles.example.test/b?X-Amz-Signature=s1")
    )
    with pytest.raises(DownloadError) as caught:
        fetch(url, tmp_path / "b")
    assert str(caught.value) == (
        f"Cannot download test object from {url}: the server redirected to "
        "http://bundles.example.test/b?X-Amz-Signature=REDACTED, a plain http:// URL; an https "
        "download is never continued without TLS."
    )


# --- TLS ---------------------------------------------------------------------------------------


def test_https_download_verifies_the_certificate(
    https_server: LocalServer, trust_test_ca: Path, tmp_path: Path
) -> None:
    """With the CA trusted (SSL_CERT_FILE) the https download succeeds."""
    url = https_server.serve_bytes("/b", DATA)
    result = download(url, tmp_path / "b", config=make_config(tmp_path), label="test object")
    assert result.sha256 == sha(DATA)


def test_untrusted_certificate_fails_without_retrying(
    https_server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A certificate no trusted CA signed fails at once with what to check."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    url = https_server.serve_bytes("/b", DATA)
    with pytest.raises(DownloadError) as caught:
        fetch(url, tmp_path / "b", environ={})
    assert str(caught.value) == (
        f"Cannot download test object from {url}: the TLS certificate of 127.0.0.1 was not "
        "accepted (unable to get local issuer certificate). Check the host name, the system's "
        "CA certificates (or SSL_CERT_FILE), and any TLS-inspecting proxy."
    )
    assert http_server_requests(https_server) == 0


def http_server_requests(server: LocalServer) -> int:
    return len(server.requests)


# --- resume ------------------------------------------------------------------------------------


def test_a_cut_download_resumes_with_a_range_request(
    http_server: LocalServer, tmp_path: Path
) -> None:
    """A body cut after 300,000 bytes resumes with Range and If-Range; the file is whole."""

    def cut_once(ex: Exchange) -> None:
        ex.serve(DATA, cut_after=300_000 if ex.count == 1 else None)

    url = http_server.route("/b", cut_once)
    config = make_config(tmp_path, parallel_parts=1)
    with capture_logs() as logs:
        result = fetch(url, tmp_path / "bundle.tar", config=config, expected_sha256=sha(DATA))
    first, second = http_server.requests_to("/b")
    assert "range" not in first.headers
    assert second.headers["range"] == "bytes=300000-1048575"
    assert second.headers["if-range"] == '"v1"'
    assert (tmp_path / "bundle.tar").read_bytes() == DATA
    assert result.size == len(DATA)
    [resumed] = [entry for entry in logs if entry["event"] == "download resumed"]
    assert resumed["offset"] == 300_000
    [finished] = [entry for entry in logs if entry["event"] == "download finished"]
    assert finished["resumed"] == 1


def test_resume_uses_last_modified_when_there_is_no_etag(
    http_server: LocalServer, tmp_path: Path
) -> None:
    """Without an ETag, Last-Modified is the If-Range validator."""
    stamp = datetime.datetime(2026, 2, 19, 15, 12, 11, tzinfo=datetime.UTC)

    def cut_once(ex: Exchange) -> None:
        ex.serve(DATA, etag=None, last_modified=stamp, cut_after=1000 if ex.count == 1 else None)

    url = http_server.route("/b", cut_once)
    fetch(url, tmp_path / "b", config=make_config(tmp_path, parallel_parts=1))
    second = http_server.requests_to("/b")[1]
    assert second.headers["if-range"] == "Thu, 19 Feb 2026 15:12:11 GMT"
    assert second.headers["range"] == "bytes=1000-1048575"
    assert (tmp_path / "b").read_bytes() == DATA


def test_without_a_validator_the_download_starts_over(
    http_server: LocalServer, tmp_path: Path
) -> None:
    """With neither ETag nor Last-Modified a cut download restarts from byte zero."""

    def cut_once(ex: Exchange) -> None:
        ex.serve(DATA, etag=None, cut_after=500_000 if ex.count == 1 else None)

    url = http_server.route("/b", cut_once)
    result = fetch(url, tmp_path / "b", config=make_config(tmp_path, parallel_parts=1))
    assert "range" not in http_server.requests_to("/b")[1].headers
    assert (tmp_path / "b").read_bytes() == DATA
    assert result.sha256 == sha(DATA)


def test_a_server_that_ignores_ranges_makes_the_download_start_over(
    http_server: LocalServer, tmp_path: Path
) -> None:
    """A 200 answer to a resume request restarts the file and the hash from zero."""

    def cut_then_full(ex: Exchange) -> None:
        if ex.count == 1:
            ex.serve(DATA, cut_after=700_000)
        else:
            ex.serve(DATA, ranges=False)

    url = http_server.route("/b", cut_then_full)
    with capture_logs() as logs:
        result = fetch(url, tmp_path / "b", config=make_config(tmp_path, parallel_parts=1))
    assert http_server.requests_to("/b")[1].headers["range"] == "bytes=700000-1048575"
    assert result.sha256 == sha(DATA)
    assert (tmp_path / "b").read_bytes() == DATA
    assert "download restarting" in [entry["event"] for entry in logs]


def test_a_replaced_object_is_caught_when_the_download_starts_over(
    http_server: LocalServer, tmp_path: Path
) -> None:
    """If the object changed between attempts (new ETag on the restarted body), the expected
    ETag check still applies: the download fails instead of mixing versions."""

    def replaced(ex: Exchange) -> None:
        if ex.count == 1:
            ex.serve(DATA, etag='"v1"', cut_after=10_000)
        else:
            ex.serve(DATA[::-1], etag='"v2"')  # If-Range no longer matches: a full 200

    url = http_server.route("/b", replaced)
    with pytest.raises(DownloadError) as caught:
        fetch(
            url, tmp_path / "b", config=make_config(tmp_path, parallel_parts=1), expected_etag="v1"
        )
    assert str(caught.value).startswith(
        "Expected deployment artifact bundle etag v1 but was actually v2."
    )
    assert list(tmp_path.iterdir()) == []


def test_progress_resets_the_attempt_count(http_server: LocalServer, tmp_path: Path) -> None:
    """A connection that drops every 100,000 bytes still finishes: each attempt got further."""
    url = http_server.route("/b", lambda ex: ex.serve(DATA, cut_after=100_000))
    result = fetch(
        url, tmp_path / "b", config=make_config(tmp_path, parallel_parts=1), retry_delays=(0.0,)
    )
    assert result.sha256 == sha(DATA)
    assert len(http_server.requests_to("/b")) == 11


# --- parallel parts ----------------------------------------------------------------------------


def test_parallel_ranged_download_of_a_large_file(http_server: LocalServer, tmp_path: Path) -> None:
    """64 MiB in 8 MiB parts on 4 connections gives the same bytes and hash as the source."""
    data = os.urandom(64 * 1024**2)
    part = 8 * 1024**2
    active = [0]
    peak = [0]
    lock = threading.Lock()
    another_part_started = threading.Event()

    def counting(ex: Exchange) -> None:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            if ex.headers["range"] != f"bytes=0-{part - 1}":
                another_part_started.set()
                ex.serve(data)
                return
            # The first part holds back half its body until another part is being fetched:
            # the parts must overlap in time, however loaded the machine is.
            headers = {"ETag": '"v1"', "Content-Range": f"bytes 0-{part - 1}/{len(data)}"}
            ex.respond_headers(206, {**headers, "Content-Length": str(part)})
            ex.write(data[: part // 2])
            another_part_started.wait(10)
            ex.write(data[part // 2 : part])
        finally:
            with lock:
                active[0] -= 1

    url = http_server.route("/big", counting)
    config = make_config(tmp_path, part_size=part, parallel_parts=4)
    with capture_logs() as logs:
        result = fetch(url, tmp_path / "bundle.tar", config=config, expected_size=len(data))
    assert result == DownloadResult(len(data), sha(data), "v1")
    assert (tmp_path / "bundle.tar").read_bytes() == data
    ranges = sorted(seen.headers["range"] for seen in http_server.requests_to("/big"))
    assert ranges == sorted(f"bytes={i * part}-{(i + 1) * part - 1}" for i in range(8))
    assert all(seen.headers.get("if-range") == '"v1"' for seen in http_server.requests[1:])
    assert 2 <= peak[0] <= 4
    [finished] = [entry for entry in logs if entry["event"] == "download finished"]
    assert finished["parts"] == 8
    assert finished["bytes"] == len(data)


def test_a_cut_part_resumes_on_its_own(http_server: LocalServer, tmp_path: Path) -> None:
    """A part whose connection drops asks again for the rest of that part only."""
    data = os.urandom(4 * 1024**2 + 123)
    part = 1024**2

    def cut_third_part_once(ex: Exchange) -> None:
        first_of_third = ex.headers.get("range", "").startswith(f"bytes={2 * part}-")
        ex.serve(data, cut_after=1000 if first_of_third else None)

    url = http_server.route("/b", cut_third_part_once)
    config = make_config(tmp_path, part_size=part, parallel_parts=3)
    result = fetch(url, tmp_path / "b", config=config)
    assert result.sha256 == sha(data)
    ranges = [seen.headers["range"] for seen in http_server.requests_to("/b")]
    assert f"bytes={2 * part + 1000}-{3 * part - 1}" in ranges
    assert len(ranges) == 6
    assert (tmp_path / "b").read_bytes() == data


def test_a_part_answered_503_is_retried_alone(http_server: LocalServer, tmp_path: Path) -> None:
    """A 5xx on one part is retried for that part only; the file is whole."""
    data = os.urandom(3 * 1024**2)
    part = 1024**2
    failed: list[str] = []

    def fail_second_part_once(ex: Exchange) -> None:
        wanted = ex.headers.get("range", "")
        if wanted.startswith(f"bytes={part}-") and not failed:
            failed.append(wanted)
            ex.respond(503)
        else:
            ex.serve(data)

    url = http_server.route("/b", fail_second_part_once)
    result = fetch(
        url, tmp_path / "b", config=make_config(tmp_path, part_size=part, parallel_parts=3)
    )
    assert result.sha256 == sha(data)
    ranges = [seen.headers["range"] for seen in http_server.requests_to("/b")]
    assert ranges.count(f"bytes={part}-{2 * part - 1}") == 2
    assert len(ranges) == 4


def test_a_failing_part_stops_the_whole_download(http_server: LocalServer, tmp_path: Path) -> None:
    """A part answered 403 fails the download with that error; no file is left."""
    data = os.urandom(4 * 1024**2)
    part = 1024**2

    def deny_last_part(ex: Exchange) -> None:
        if ex.headers.get("range", "").startswith(f"bytes={3 * part}-"):
            ex.respond(403)
        else:
            ex.serve(data)

    url = http_server.route("/b", deny_last_part)
    with pytest.raises(DownloadError) as caught:
        fetch(url, tmp_path / "b", config=make_config(tmp_path, part_size=part, parallel_parts=2))
    assert caught.value.status == 403
    assert list(tmp_path.iterdir()) == []


def test_a_server_without_range_support_is_read_on_one_connection(
    http_server: LocalServer, tmp_path: Path
) -> None:
    """When the first ranged request gets a 200, the whole body comes on that connection."""
    data = os.urandom(3 * 1024**2)
    url = http_server.serve_bytes("/b", data, ranges=False)
    config = make_config(tmp_path, part_size=1024**2, parallel_parts=4)
    result = fetch(url, tmp_path / "b", config=config)
    assert result.sha256 == sha(data)
    assert len(http_server.requests_to("/b")) == 1


def test_an_empty_object_is_fetched_after_a_416(http_server: LocalServer, tmp_path: Path) -> None:
    """An empty object refuses bytes=0-N with 416; the download asks again without a range."""
    url = http_server.serve_bytes("/empty", b"")
    result = fetch(url, tmp_path / "b", config=make_config(tmp_path, parallel_parts=4))
    assert result == DownloadResult(0, sha(b""), "v1")
    assert (tmp_path / "b").read_bytes() == b""
    assert [s.headers.get("range") for s in http_server.requests_to("/empty")] == [
        f"bytes=0-{64 * 1024**2 - 1}",
        None,
    ]


def test_a_range_of_unknown_total_size_is_not_split(
    http_server: LocalServer, tmp_path: Path
) -> None:
    """A 206 whose Content-Range hides the total (`/*`) is dropped for a plain GET."""

    def unknown_total(ex: Exchange) -> None:
        if "range" in ex.headers:
            ex.respond(206, DATA[:1000], {"Content-Range": "bytes 0-999/*"})
        else:
            ex.serve(DATA)

    url = http_server.route("/b", unknown_total)
    result = fetch(url, tmp_path / "b", config=make_config(tmp_path, part_size=1000))
    assert result.sha256 == sha(DATA)
    assert [s.headers.get("range") for s in http_server.requests_to("/b")] == ["bytes=0-999", None]


# --- size cap ----------------------------------------------------------------------------------


def test_size_cap_checks_content_length_up_front(http_server: LocalServer, tmp_path: Path) -> None:
    """A Content-Length above download.max_bytes fails before the body is read."""
    url = http_server.serve_bytes("/b", DATA)
    config = make_config(tmp_path, max_bytes=1000, parallel_parts=1)
    with pytest.raises(DownloadError) as caught:
        fetch(url, tmp_path / "b", config=config)
    assert str(caught.value) == (
        f"Cannot download test object from {url}: it is {len(DATA)} bytes, more than "
        "download.max_bytes (1000). Raise download.max_bytes in the agent config if bundles this "
        "large are expected."
    )
    assert list(tmp_path.iterdir()) == []


def test_size_cap_counts_bytes_of_a_body_of_unknown_length(
    http_server: LocalServer, tmp_path: Path
) -> None:
    """A chunked body is cut off as soon as it passes download.max_bytes."""
    url = http_server.serve_bytes("/b", DATA, chunked=True)
    config = make_config(tmp_path, max_bytes=200_000, parallel_parts=1)
    with pytest.raises(DownloadError) as caught:
        fetch(url, tmp_path / "b", config=config)
    assert "it is more than download.max_bytes (200000) bytes" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


# --- logs and secrets --------------------------------------------------------------------------


def test_logs_name_the_source_and_redact_the_url(http_server: LocalServer, tmp_path: Path) -> None:
    """Start and end lines carry size, seconds and MB/s; signatures never reach the log."""
    http_server.serve_bytes("/k", DATA)
    url = (
        f"{http_server.url}/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAXYZ%2F2026"
        "&X-Amz-Security-Token=TOKENVALUE&X-Amz-Signature=abcdef0123&X-Amz-Expires=60"
    )
    with capture_logs() as logs:
        fetch(url, tmp_path / "b")
    started, finished = (e for e in logs if e["event"].startswith("download "))
    assert started["url"] == (
        f"{http_server.url}/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=REDACTED"
        "&X-Amz-Security-Token=REDACTED&X-Amz-Signature=REDACTED&X-Amz-Expires=60"
    )
    assert started["source"] == "test object"
    assert started["proxy"] == "none"
    assert finished["bytes"] == len(DATA)
    assert finished["seconds"] > 0
    assert finished["mb_per_s"] > 0
    text = repr(logs)
    for secret in ("AKIAXYZ", "TOKENVALUE", "abcdef0123"):
        assert secret not in text


def test_errors_never_carry_credentials(http_server: LocalServer, tmp_path: Path) -> None:
    """Passwords in the URL and query signatures are redacted from error messages."""
    http_server.route("/k", lambda ex: ex.respond(404))
    url = (
        f"http://alice:hunter2@127.0.0.1:{http_server.port}/k?X-Amz-Signature=deadbeef"
        "&access_token=gho_123&versionId=7"
    )
    with capture_logs() as logs, pytest.raises(DownloadError) as caught:
        fetch(url, tmp_path / "b")
    message = str(caught.value)
    assert message.startswith(
        f"Cannot download test object from http://alice:REDACTED@127.0.0.1:{http_server.port}/k"
        "?X-Amz-Signature=REDACTED&access_token=REDACTED&versionId=7: the server answered 404"
    )
    for secret in ("hunter2", "deadbeef", "gho_123"):
        assert secret not in message
        assert secret not in repr(logs)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://host/p?a=1", "https://host/p?a=1"),
        ("https://TOKEN@github.com/o/r", "https://REDACTED@github.com/o/r"),
        ("http://u:p%40ss@proxy:3128", "http://u:REDACTED@proxy:3128"),
        ("https://h/p?sig=x&se=2026&sp=r", "https://h/p?sig=REDACTED&se=2026&sp=r"),
        (
            "https://h/p?Signature=x&AWSAccessKeyId=AKIA",
            "https://h/p?Signature=REDACTED&AWSAccessKeyId=REDACTED",
        ),
        ("https://h/p?X-Goog-Credential=c&x=1#frag", "https://h/p?X-Goog-Credential=REDACTED&x=1"),
        ("https://[::1]:8443/p", "https://[::1]:8443/p"),
        ("https://h:99999/p", "<invalid URL>"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    """Credentials in user info and in known secret query parameters are masked."""
    assert redact_url(url) == shown

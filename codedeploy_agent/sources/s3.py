"""S3 revisions (reference §6.1): a presigned URL, or GetObject with the host's own credentials.

With `Download.Url` the control plane has signed the request already, so the bundle comes over
plain HTTPS (`http.download`, stopped when the deployment is): no AWS credentials, no clock
check; plain http:// is refused except to loopback, as for URL revisions. Without it the host
calls GetObject itself (SigV4, so the clock is checked first), honouring the revision's
version, streamed to `bundle.tar`:

- The first request asks for the first `download.part_size` bytes; its `Content-Range` gives the
  object's size and its ETag. A small object is then complete. A larger one is fetched in
  `download.parallel_parts` concurrent ranged requests into a preallocated file, each with
  `If-Match: <ETag>` so that an object replaced mid-way fails cleanly instead of mixing versions.
- Completed byte ranges are recorded in `bundle.tar.parts` (with the ETag) as they finish and
  when a request breaks off; a broken request is retried from where it stopped, and a later
  attempt (after the agent restarted) fetches only what is missing. The file is removed on
  success.
- The ETag is compared quoted or not, as strings (multipart ETags `"...-N"` are not MD5s), with
  the real agent's message; the SHA-256, when the revision gives one, is computed while the
  bytes arrive in order and read back for ranges that arrived out of order.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
import stat
import threading
import time
from collections.abc import Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from codedeploy_agent.config import AgentConfig
from codedeploy_agent.errors import BundleError, ConfigError
from codedeploy_agent.host.layout import DeploymentDir
from codedeploy_agent.log import get_logger
from codedeploy_agent.sources.aws import (
    AwsClient,
    AwsFailure,
    FailureKind,
    S3Api,
    advice,
    check_clock,
    classify,
    s3_client,
)
from codedeploy_agent.sources.proxy import is_loopback
from codedeploy_agent.sources.redact import redact_url
from codedeploy_agent.spec import S3Revision

_log = get_logger(__name__)

#: Bytes read from a response body and written at once.
_CHUNK: Final = 1024 * 1024
_PROGRESS_FORMAT: Final = 1
#: Failures after which a request is retried (the others are the operator's to fix).
_RETRYABLE: Final = frozenset(
    {FailureKind.INTERRUPTED, FailureKind.NETWORK, FailureKind.UNAVAILABLE}
)


async def fetch_s3(revision: S3Revision, deployment: DeploymentDir, config: AgentConfig) -> None:
    """Download `revision` to `deployment.bundle`; raise BundleError naming the object and
    what to check (or ClockSkewError before any AWS-signed call on a skewed clock)."""
    if revision.download_url:
        from codedeploy_agent.sources import http  # noqa: PLC0415 - one source, one import

        url = check_download_url(revision)
        # run_cancellable: a stopped deployment (or the agent stopping) stops the download
        # thread at its next chunk and removes bundle.tar.part, instead of leaving it to run on
        # and rename bundle.tar under a deployment that is already over.
        await http.run_cancellable(
            lambda cancel: http.download(
                url,
                deployment.bundle,
                config=config,
                label=f"S3 object {_describe(revision)}",
                expected_sha256=revision.sha256,
                expected_size=revision.size,
                expected_etag=revision.etag,
                cancel=cancel,
            )
        )
        return
    await check_clock(config)
    stop = threading.Event()
    try:
        await asyncio.to_thread(_fetch, revision, deployment.bundle, config, stop)
    except asyncio.CancelledError:
        # The thread cannot be cancelled; tell it to stop at its next chunk (progress is kept).
        stop.set()
        raise


def check_download_url(revision: S3Revision) -> str:
    """The revision's `Download.Url` once it passes the URL revisions' scheme rule (https, or
    plain http to loopback only); BundleError otherwise.

    The SHA-256 and the signed job document protect the bundle's integrity, not its secrecy: a
    presigned link fetched over plain http can be read, and replayed until it expires, by anyone
    on the network path. Loopback stays allowed (a control plane on the same host, tests).
    """
    url = (revision.download_url or "").strip()
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        raise BundleError(
            f"The download URL of {_describe(revision)} is not a valid URL (check its host "
            "and port)."
        ) from None
    scheme, host = parts.scheme.lower(), parts.hostname or ""
    if scheme not in ("http", "https") or not host:
        raise BundleError(
            f"The download URL of {_describe(revision)} ({shown}) must be an https:// URL naming "
            "a host (http:// only for loopback)."
        )
    if scheme == "http" and not is_loopback(host):
        raise BundleError(
            f"The download URL of {_describe(revision)} ({shown}) uses http://, which is refused: "
            "without TLS anyone on the network path can read the bundle and reuse the link. "
            "Have the control plane hand out https:// links (codedeploy-server: tls_cert and "
            "tls_key, or an https bundle_store.public_url; S3: an https endpoint); plain "
            "http:// is accepted only for loopback addresses (127.0.0.1, ::1, localhost)."
        )
    return url


def _fetch(revision: S3Revision, bundle: Path, config: AgentConfig, stop: threading.Event) -> None:
    try:
        client = s3_client(config)
    except ConfigError as exc:
        raise BundleError(f"Cannot download {_describe(revision)}: {exc}") from exc
    _Download(client, revision, bundle, config, stop).run()


def _describe(revision: S3Revision) -> str:
    version = f" (version {revision.version})" if revision.version else ""
    return f"s3://{revision.bucket}/{revision.key}{version}"


def _unquote(etag: str) -> str:
    return etag.replace('"', "")


class _StoppedError(Exception):
    """The deployment was cancelled while the download ran."""


class _ShortBodyError(Exception):
    """A response body ended before the range it announced (no exception from botocore)."""


@dataclass(slots=True)
class _Cursor:
    """How far one part has been written."""

    position: int


class _Progress:
    """Byte ranges of `bundle.tar` already written, persisted in `bundle.tar.parts` (JSON)."""

    def __init__(self, path: Path, identity: dict[str, str | None], etag: str, size: int) -> None:
        self.path = path
        self.identity = identity
        self.etag = etag
        self.size = size
        self.done: list[tuple[int, int]] = []
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path, identity: dict[str, str | None], bundle: Path) -> _Progress | None:
        """The progress of an earlier attempt at the same object, if its file still matches."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            info = bundle.lstat()
        except (OSError, ValueError):
            return None
        try:
            if data["format"] != _PROGRESS_FORMAT or data["object"] != identity:
                return None
            progress = cls(path, identity, str(data["etag"]), int(data["size"]))
            for start, end in data["done"]:
                if not 0 <= int(start) < int(end) <= progress.size:
                    return None
                progress.add(int(start), int(end))
        except (KeyError, TypeError, ValueError):
            return None
        if not stat.S_ISREG(info.st_mode) or info.st_size != progress.size:
            return None
        return progress

    def add(self, start: int, end: int) -> None:
        """Record [start, end) as written (merged with its neighbours)."""
        with self._lock:
            ranges = sorted([*self.done, (start, end)])
            merged: list[tuple[int, int]] = []
            for low, high in ranges:
                if merged and low <= merged[-1][1]:
                    merged[-1] = (merged[-1][0], max(merged[-1][1], high))
                else:
                    merged.append((low, high))
            self.done = merged

    def missing(self) -> list[tuple[int, int]]:
        """The byte ranges not written yet, in order."""
        with self._lock:
            gaps: list[tuple[int, int]] = []
            position = 0
            for start, end in self.done:
                if start > position:
                    gaps.append((position, start))
                position = max(position, end)
            if position < self.size:
                gaps.append((position, self.size))
            return gaps

    @property
    def written(self) -> int:
        """How many bytes are recorded as written."""
        with self._lock:
            return sum(end - start for start, end in self.done)

    def save(self) -> None:
        """Write the progress file atomically (the data must be on disk first: see callers)."""
        with self._lock:
            document = {
                "format": _PROGRESS_FORMAT,
                "object": self.identity,
                "etag": self.etag,
                "size": self.size,
                "done": self.done,
            }
            temporary = self.path.with_name(self.path.name + ".tmp")
            try:
                temporary.write_text(json.dumps(document), encoding="utf-8")
                temporary.replace(self.path)
            except OSError as exc:
                raise BundleError(
                    f"Cannot write the download progress file {self.path}: {exc.strerror}. "
                    "Check free space and permissions in the deployment root."
                ) from exc

    def discard(self) -> None:
        """Forget the progress (the file too)."""
        with self._lock:
            self.done = []
            self.path.unlink(missing_ok=True)


class _Sha256:
    """SHA-256 of the bundle: fed from memory while bytes arrive in order, read back after."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._position = 0
        self._lock = threading.Lock()

    def feed(self, offset: int, data: bytes) -> None:
        with self._lock:
            if offset == self._position:
                self._hash.update(data)
                self._position += len(data)

    def finish(self, fd: int, size: int) -> str:
        with self._lock:
            while self._position < size:
                data = os.pread(fd, min(_CHUNK, size - self._position), self._position)
                if not data:
                    break
                self._hash.update(data)
                self._position += len(data)
            return self._hash.hexdigest()


class _Download:
    """One GetObject download of a revision into `bundle` (runs in a worker thread)."""

    def __init__(
        self,
        client: AwsClient[S3Api],
        revision: S3Revision,
        bundle: Path,
        config: AgentConfig,
        stop: threading.Event,
    ) -> None:
        self.client = client
        self.revision = revision
        self.bundle = bundle
        self.settings = config.download
        self.stop = stop
        self.target = _describe(revision)
        self.identity: dict[str, str | None] = {
            "bucket": revision.bucket,
            "key": revision.key,
            "version": revision.version,
        }
        self.progress_path = bundle.with_name(bundle.name + ".parts")
        self.sha = _Sha256() if revision.sha256 else None
        self.fd = -1
        self.requests = 0
        self._count_lock = threading.Lock()
        self.started = time.monotonic()

    # --- the whole download ---------------------------------------------------------------

    def run(self) -> None:
        progress = _Progress.load(self.progress_path, self.identity, self.bundle)
        expected = self.revision.etag
        if progress is not None and expected and _unquote(progress.etag) != _unquote(expected):
            progress = None  # kept for another version of the object
        response, first, progress = self._first_response(progress)
        body = response["Body"]
        resumed = progress.written if progress is not None else 0
        try:
            try:
                progress, first = self._prepare(response, first, progress)
            except BaseException:
                body.close()
                raise
            pieces = [first] if first[1] > first[0] else []
            for start, end in progress.missing():
                for low in range(start, end, self.settings.part_size):
                    piece = (low, min(low + self.settings.part_size, end))
                    if piece[1] <= first[0] or piece[0] >= first[1]:
                        pieces.append(piece)
            self._run_pieces(progress, pieces, body)
            self._verify(progress)
        finally:
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1
        progress.discard()
        _log.info(
            "s3_bundle_downloaded",
            object=self.target,
            size=progress.size,
            requests=self.requests,
            resumed_bytes=resumed,
            seconds=round(time.monotonic() - self.started, 3),
        )

    def _first_response(
        self, progress: _Progress | None
    ) -> tuple[Mapping[str, Any], tuple[int, int], _Progress | None]:
        """GET the first missing range (the first part when starting afresh)."""
        if progress is not None:
            missing = progress.missing()
            if missing:
                start = missing[0][0]
                end = min(missing[0][1], start + self.settings.part_size)
                try:
                    return self._get((start, end), progress.etag), (start, end), progress
                except _RequestFailedError as failed:
                    if failed.failure.kind is not FailureKind.CHANGED:
                        raise self._error(failed.failure) from failed.cause
                    _log.info("s3_object_changed_restarting", object=self.target)
            progress.discard()
        first = (0, self.settings.part_size)
        try:
            return self._get(first, None), first, None
        except _RequestFailedError as failed:
            if failed.failure.code != "InvalidRange":
                raise self._error(failed.failure) from failed.cause
        # S3 answers a ranged GET of an empty object with 416 InvalidRange.
        try:
            return self._get(None, None), (0, 0), None
        except _RequestFailedError as failed:
            raise self._error(failed.failure) from failed.cause

    def _prepare(
        self, response: Mapping[str, Any], first: tuple[int, int], progress: _Progress | None
    ) -> tuple[_Progress, tuple[int, int]]:
        """Check the object against the revision, open (or create) the bundle file, and say
        which byte range the first response's body holds."""
        etag = str(response.get("ETag") or "")
        size = _object_size(response)
        expected = self.revision.etag
        if expected and _unquote(expected) != _unquote(etag):
            raise BundleError(
                f"Expected deployment artifact bundle etag {expected} but was actually {etag}"
                f" (object {self.target}). The object was replaced after the revision was "
                "registered: register the revision again, or deploy a pinned version."
            )
        if size > self.settings.max_bytes:
            raise BundleError(
                f"The bundle {self.target} is {size} bytes, more than download.max_bytes "
                f"({self.settings.max_bytes}). Raise download.max_bytes in the agent config "
                "if the bundle is meant to be this large."
            )
        if self.revision.size is not None and size != self.revision.size:
            raise BundleError(
                f"The bundle {self.target} is {size} bytes, but the revision says "
                f"{self.revision.size}. Register the revision again with the object's size."
            )
        if not response.get("ContentRange"):
            # The server ignored Range (or the object is empty): the body is the whole object.
            progress, first = None, (0, size)
        first = (first[0], min(first[1], size))
        if progress is not None:
            try:
                self.fd = os.open(self.bundle, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError as exc:
                raise BundleError(
                    f"Cannot open {self.bundle} to resume {self.target}: {exc.strerror}."
                ) from exc
            _log.info(
                "s3_download_resuming",
                object=self.target,
                written=progress.written,
                size=progress.size,
            )
            return progress, first
        progress = _Progress(self.progress_path, self.identity, etag, size)
        self._create_file(size)
        progress.save()
        return progress, first

    def _create_file(self, size: int) -> None:
        try:
            self.bundle.unlink(missing_ok=True)
            self.fd = os.open(
                self.bundle,
                os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o644,
            )
        except OSError as exc:
            raise BundleError(
                f"Cannot create {self.bundle} for {self.target}: {exc.strerror}."
            ) from exc
        if size == 0:
            return
        try:
            # Reserve the space now: a full disk fails here, not after minutes of download.
            try:
                os.posix_fallocate(self.fd, 0, size)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise
                os.ftruncate(self.fd, size)  # file systems without fallocate
        except OSError as exc:
            raise BundleError(
                f"Cannot make room for the bundle {self.target} ({size} bytes) in "
                f"{self.bundle.parent}: {exc.strerror}. Free disk space (or lower "
                "max_revisions so that old deployments are removed)."
            ) from exc

    # --- pieces ---------------------------------------------------------------------------

    def _run_pieces(
        self, progress: _Progress, pieces: list[tuple[int, int]], first_body: Any
    ) -> None:
        if not pieces:
            first_body.close()
            return
        workers = max(1, min(self.settings.parallel_parts, len(pieces)))
        with ThreadPoolExecutor(workers, thread_name_prefix="s3-part") as pool:
            futures: list[Future[None]] = [
                pool.submit(self._fetch_piece, progress, pieces[0], first_body)
            ]
            futures += [pool.submit(self._fetch_piece, progress, p, None) for p in pieces[1:]]
            done, _pending = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in done if f.exception() is not None]
            if failed:
                self.stop.set()  # the other parts stop at their next chunk, progress kept
                wait(futures)
        errors = [error for f in futures if (error := f.exception()) is not None]
        if errors:
            # Report the first real failure, not a part that stopped because of it.
            first = next((e for e in errors if not isinstance(e, _StoppedError)), errors[0])
            if isinstance(first, _StoppedError):
                raise BundleError(f"The download of {self.target} was stopped.") from first
            raise first

    def _fetch_piece(self, progress: _Progress, piece: tuple[int, int], body: Any) -> None:
        """Write [start, end) of the object, retrying (from where it broke off) on failures."""
        from botocore.exceptions import BotoCoreError  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415

        start, end = piece
        cursor = _Cursor(start)
        failures = 0
        while cursor.position < end:
            try:
                if body is None:
                    body = self._get((cursor.position, end), progress.etag)["Body"]
                self._stream(body, cursor, end)
            except (_RequestFailedError, _ShortBodyError, _StoppedError, BotoCoreError) as exc:
                with suppress(Exception):
                    if body is not None:
                        body.close()
                body = None
                if cursor.position > start:
                    self._record(progress, start, cursor.position)
                    start = cursor.position
                    failures = 0  # progress was made: this break costs no attempt
                if isinstance(exc, _StoppedError):
                    raise
                failure = _piece_failure(exc)
                failures += 1
                if failure.kind not in _RETRYABLE or failures >= self.settings.retries:
                    raise self._error(failure, progress) from exc
                _log.warning(
                    "s3_part_retry",
                    object=self.target,
                    range=f"{cursor.position}-{end - 1}",
                    error=failure.summary,
                    attempt=failures + 1,
                )
                self.stop.wait(min(0.2 * 2**failures, 5.0))  # a stop cuts the pause short
        if body is not None:
            body.close()
        self._record(progress, start, end)

    def _stream(self, body: Any, cursor: _Cursor, end: int) -> None:
        """Copy `body` to the file from `cursor.position` up to `end`, advancing the cursor."""
        while cursor.position < end:
            if self.stop.is_set():
                raise _StoppedError
            chunk = body.read(min(_CHUNK, end - cursor.position))
            if not chunk:
                raise _ShortBodyError
            self._write(cursor.position, chunk)
            cursor.position += len(chunk)

    def _record(self, progress: _Progress, start: int, end: int) -> None:
        # Data first, then the record of it: a crash in between loses work, never corrupts.
        os.fdatasync(self.fd)
        progress.add(start, end)
        progress.save()

    def _write(self, offset: int, data: bytes) -> None:
        view = memoryview(data)
        position = offset
        try:
            while view:
                written = os.pwrite(self.fd, view, position)
                view = view[written:]
                position += written
        except OSError as exc:
            raise BundleError(
                f"Cannot write the bundle {self.target} to {self.bundle}: {exc.strerror}. "
                "Check free space in the deployment root."
            ) from exc
        if self.sha is not None:
            self.sha.feed(offset, data)

    def _verify(self, progress: _Progress) -> None:
        if progress.missing():
            raise BundleError(f"Internal error: {self.target} incomplete after download")
        if self.sha is None or self.revision.sha256 is None:
            return
        actual = self.sha.finish(self.fd, progress.size)
        if actual != self.revision.sha256.lower():
            progress.discard()
            self.bundle.unlink(missing_ok=True)
            raise BundleError(
                f"The bundle {self.target} has SHA-256 {actual}, but the revision says "
                f"{self.revision.sha256}. The object is not the one registered: register "
                "the revision again with the right Sha256, or restore the object."
            )

    # --- requests and errors --------------------------------------------------------------

    def _get(self, byte_range: tuple[int, int] | None, if_match: str | None) -> Mapping[str, Any]:
        from botocore.exceptions import (  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415
            BotoCoreError,
            ClientError,
        )

        params: dict[str, str] = {"Bucket": self.revision.bucket, "Key": self.revision.key}
        if self.revision.version:
            params["VersionId"] = self.revision.version
        if byte_range is not None:
            params["Range"] = f"bytes={byte_range[0]}-{byte_range[1] - 1}"
        if if_match is not None:
            params["IfMatch"] = if_match
        with self._count_lock:
            self.requests += 1
        try:
            return self.client.api.get_object(**params)
        except (BotoCoreError, ClientError) as exc:
            failure = classify(exc)
            if failure is None:  # pragma: no cover - both classes are classified
                raise
            raise _RequestFailedError(failure, exc) from exc

    def _error(self, failure: AwsFailure, progress: _Progress | None = None) -> BundleError:
        revision = self.revision
        where = f"(region {self.client.region}, endpoint {self.client.endpoint_url})"
        if failure.kind is FailureKind.NOT_FOUND or _is_bad_version(failure, revision):
            if failure.code == "NoSuchBucket":
                text = (
                    f"The S3 bucket {revision.bucket} does not exist {where}, so the bundle "
                    f"{self.target} cannot be downloaded. Check the bucket name and the region."
                )
            elif revision.version and failure.code != "NoSuchKey":
                text = (
                    f"Version {revision.version} of s3://{revision.bucket}/{revision.key} "
                    f"does not exist ({failure.summary}). Check the version id (`aws s3api "
                    "list-object-versions` lists them) and that the bucket is versioned."
                )
            else:
                text = (
                    f"The bundle {self.target} does not exist: the bucket {revision.bucket} "
                    f"has no object with the key {revision.key} {where}. Check the key "
                    "(it is case-sensitive)."
                )
            return BundleError(text)
        if failure.kind is FailureKind.CHANGED:
            return BundleError(
                f"The object {self.target} changed while it was being downloaded (its ETag is "
                "no longer the one the download started with). Deploy again, or deploy a "
                "pinned version of the object."
            )
        if failure.kind is FailureKind.INTERRUPTED and progress is not None:
            return BundleError(
                f"The download of {self.target} broke off ({failure.summary}) after "
                f"{self.settings.retries} attempt(s) (download.retries); {progress.written} of "
                f"{progress.size} bytes are kept in {self.bundle} and the next attempt resumes "
                "from there. " + advice(failure, self.client, permissions="")
            )
        permissions = f"s3:GetObject on arn:aws:s3:::{revision.bucket}/{revision.key}"
        if revision.version:
            permissions += " and s3:GetObjectVersion (the revision names a version)"
        permissions += "; kms:Decrypt on the bucket's KMS key if it uses SSE-KMS"
        return BundleError(
            f"Cannot download the bundle {self.target}: {failure.sentence} "
            + advice(failure, self.client, permissions=permissions)
        )


class _RequestFailedError(Exception):
    """A GetObject request failed before its body (classified)."""

    def __init__(self, failure: AwsFailure, cause: BaseException) -> None:
        super().__init__(failure.summary)
        self.failure = failure
        self.cause = cause


def _piece_failure(exc: BaseException) -> AwsFailure:
    if isinstance(exc, _RequestFailedError):
        return exc.failure
    if isinstance(exc, _ShortBodyError):
        return AwsFailure(
            FailureKind.INTERRUPTED, "IncompleteBody", "the response ended before its range"
        )
    return classify(exc) or AwsFailure(FailureKind.OTHER, type(exc).__name__, str(exc))


def _is_bad_version(failure: AwsFailure, revision: S3Revision) -> bool:
    """S3 answers a malformed version id with 400 InvalidArgument instead of NoSuchVersion."""
    return bool(
        revision.version
        and failure.code == "InvalidArgument"
        and "version" in failure.detail.lower()
    )


def _object_size(response: Mapping[str, Any]) -> int:
    """The whole object's size: from `Content-Range` (`bytes a-b/total`) or `Content-Length`."""
    content_range = response.get("ContentRange")
    if isinstance(content_range, str) and "/" in content_range:
        total = content_range.rpartition("/")[2].strip()
        if total.isdigit():
            return int(total)
    return int(response.get("ContentLength") or 0)

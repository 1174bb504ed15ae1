"""HTTP(S) downloads of bundles: streamed, verified, resumed, and in parallel parts when large.

`download(url, dest, ...)` is synchronous and blocking (callers use `asyncio.to_thread`, or
`run_cancellable`, which also stops the download when the awaiting task is cancelled); it is
the one HTTP client of the agent, stdlib only (http.client, and ssl verifying certificates and
host names against the system's CAs, or SSL_CERT_FILE / SSL_CERT_DIR when set).
Requests go direct or through a proxy chosen per URL (`sources.proxy`); `sources.connection`
holds the request layer (redirects, headers, error sorting), `sources.parts` the parts and the
hashing thread.

- The body is streamed to `<dest>.part` in 1 MiB chunks and renamed to `dest` once verified;
  on any failure the partial file is removed. Never held whole in memory.
- SHA-256 is computed while the download runs, by a thread that follows the written bytes in
  file order (reading them back from the page cache): with parallel parts, the part being
  hashed is always the earliest unfinished one, so hashing overlaps the transfer instead of
  costing a second pass over the file (about 1 s per GB on a 2-CPU host with SHA extensions:
  bench/download.py measures it).
- `expected_etag`, `expected_size` and the `download.max_bytes` cap are checked on the first
  response, before the body is read; `expected_sha256` and `expected_size` again at the end.
- Retries: `download.retries` attempts (or `len(retry_delays) + 1`) for network errors,
  timeouts, 408, 429 and 5xx, with a short backoff. A body cut mid-way resumes with
  `Range: bytes=N-` and `If-Range: <validator>` (the ETag or Last-Modified of the first answer)
  when the server answers 206 for that very offset; otherwise it starts again from zero. An
  attempt that brings the download further than ever before resets the attempt count, so a
  connection that keeps dropping every few hundred megabytes still finishes.
- Parallel parts: when `download.parallel_parts` > 1 the first request asks for
  `bytes=0-<part_size-1>`. A 206 answer gives the size; if it is larger than `part_size` the
  rest is cut in `part_size` parts fetched on `parallel_parts` connections in all (the first
  one included), written with `os.pwrite`, each part resumable on its own. A 200 answer means
  no range support: the body is streamed on that one connection.

Errors are `DownloadError` (a BundleError) naming the source (`label`), the redacted URL and
what to check. Credentials never appear in messages or logs (see `sources.redact`).
"""

from __future__ import annotations

import asyncio
import http.client
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from codedeploy_agent.config import AgentConfig
from codedeploy_agent.log import get_logger
from codedeploy_agent.sources.connection import (
    DownloadError,
    Opened,
    RequestContext,
    Transient,
    check_url,
    describe_read_error,
    open_request,
)
from codedeploy_agent.sources.parts import CHUNK_SIZE, OrderedHasher, Part

__all__ = ["DownloadError", "DownloadResult", "default_backoff", "download", "run_cancellable"]

_log = get_logger("codedeploy_agent.sources.http")
_T = TypeVar("_T")

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


@dataclass(frozen=True, slots=True)
class DownloadResult:
    """What `download` wrote."""

    size: int
    #: Hex digest of the bytes written to `dest`.
    sha256: str
    #: The response's ETag header with its quotes stripped (None when the server sent none).
    etag: str | None


async def run_cancellable(work: Callable[[threading.Event], _T]) -> _T:
    """Run the blocking `work(cancel)` in a thread; when the awaiting task is cancelled (the
    agent is stopping), set `cancel` so that a download inside stops at its next chunk instead
    of running on unobserved and holding the process's shutdown."""
    cancel = threading.Event()
    try:
        return await asyncio.to_thread(work, cancel)
    except asyncio.CancelledError:
        cancel.set()
        raise


def default_backoff(attempt: int) -> float:
    """Seconds to wait before attempt `attempt + 1`: 0.5, 1, 2, 4, then 8 at most."""
    return float(min(0.5 * 2 ** (attempt - 1), 8.0))


def download(
    url: str,
    dest: Path,
    *,
    config: AgentConfig,
    label: str,
    headers: Mapping[str, str] | None = None,
    expected_sha256: str | None = None,
    expected_size: int | None = None,
    expected_etag: str | None = None,
    retry_delays: Sequence[float] | None = None,
    environ: Mapping[str, str] | None = None,
    cancel: threading.Event | None = None,
) -> DownloadResult:
    """Fetch `url` into `dest` (replaced atomically once complete and verified).

    `label` names the source and object in every message ("S3 object s3://b/k"). `headers` go
    with every request to `url`'s origin and never past a redirect to another origin.
    `retry_delays` replaces the default backoff: attempts are then `len(retry_delays) + 1`,
    each waiting the next delay first (GitHub's 10, 30, 90 s; zeros in tests). `environ` (the
    process's environment by default) supplies the proxy variables and SSL_CERT_FILE. Setting
    `cancel` from another thread stops the download at its next chunk or retry wait (the
    download also sets it when it fails, to stop its other parts). Raises DownloadError.
    """
    ctx = RequestContext(
        url=url,
        label=label,
        config=config,
        environ=dict(os.environ if environ is None else environ),
        headers=dict(headers or {}),
    )
    check_url(ctx, url)
    proxy = ctx.proxy(url)
    _log.info(
        "download started",
        source=label,
        url=ctx.shown_url,
        proxy=proxy.display if proxy is not None else "none",
    )
    started = time.perf_counter()
    partial = dest.with_name(dest.name + ".part")
    try:
        fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise DownloadError(
            f"Cannot download {label}: cannot create {partial} ({exc.strerror}). Check that the "
            "deployment root exists and is writable by the agent.",
            url=ctx.shown_url,
        ) from None
    try:
        transfer = _Transfer(ctx, fd, partial, retry_delays, cancel)
        transfer.expected_etag = _bare_etag(expected_etag) if expected_etag else None
        transfer.expected_size = expected_size
        size, digest = transfer.run()
        _verify(ctx, size, digest, expected_size, expected_sha256)
        partial.replace(dest)
    except BaseException:
        os.close(fd)
        partial.unlink(missing_ok=True)
        raise
    os.close(fd)
    seconds = time.perf_counter() - started
    _log.info(
        "download finished",
        source=label,
        bytes=size,
        seconds=round(seconds, 3),
        mb_per_s=round(size / 1e6 / seconds, 1) if seconds > 0 else 0.0,
        parts=transfer.part_count,
        resumed=transfer.resumed,
    )
    return DownloadResult(size=size, sha256=digest, etag=transfer.etag)


def _verify(
    ctx: RequestContext,
    size: int,
    digest: str,
    expected_size: int | None,
    expected_sha256: str | None,
) -> None:
    if expected_size is not None and size != expected_size:
        raise ctx.fail(
            f"received {size} bytes but the revision says {expected_size}. The object changed "
            "since the deployment was created, or its Size in the revision is wrong."
        )
    if expected_sha256 is not None and digest != expected_sha256.strip().lower():
        raise ctx.fail(
            f"its SHA-256 is {digest} but {expected_sha256.strip().lower()} was expected. The "
            "file changed since the deployment was created, or it was corrupted on the way; "
            "check the Sha256 of the revision."
        )


def _bare_etag(value: str) -> str:
    """An ETag without `W/` and quotes, as the real agent compares them."""
    return value.strip().removeprefix("W/").strip('"')


class _Aborted(Exception):  # noqa: N818 - control flow between threads of one download
    """Another part failed: stop this one."""


class _Transfer:
    """The state of one download: parts, validators, the hasher and the failures so far."""

    def __init__(
        self,
        ctx: RequestContext,
        fd: int,
        path: Path,
        retry_delays: Sequence[float] | None,
        cancel: threading.Event | None,
    ) -> None:
        self.ctx = ctx
        self.fd = fd
        self.path = path
        settings = ctx.config.download
        self.attempts = len(retry_delays) + 1 if retry_delays is not None else settings.retries
        self.retry_delays = retry_delays
        self.parallel = settings.parallel_parts > 1
        self.expected_etag: str | None = None
        self.expected_size: int | None = None
        self.total: int | None = None
        self.etag: str | None = None
        #: A strong ETag or Last-Modified of the first answer, for If-Range.
        self.validator: str | None = None
        self.discovered = False
        #: The first answer split the file in parts (the server honours ranges).
        self.split = False
        self.initial_range = self.parallel
        self.parts: list[Part] = [Part(0, 0, None)]
        self.pending: list[Part] = []
        self.failures: list[str] = []
        self.resumed = 0
        self.lock = threading.Lock()
        #: Set to stop every part: by the caller (cancel) or by the first failing part.
        self.abort = cancel if cancel is not None else threading.Event()
        self.active: set[Opened] = set()
        self.error: BaseException | None = None
        self.pool: ThreadPoolExecutor | None = None
        self.workers: list[Future[None]] = []
        self.hasher = OrderedHasher(fd, self.parts)

    @property
    def part_count(self) -> int:
        """How many parts the file was fetched in."""
        return len(self.parts)

    def run(self) -> tuple[int, str]:
        """Fetch every part; return (size, sha256 hex)."""
        self.hasher.start()
        try:
            self._fetch(self.parts[0])  # the first answer may split the file and start workers
            if self.workers:
                self._drain()
                done, _ = wait(self.workers, return_when=FIRST_EXCEPTION)
                for future in done:
                    future.result()
            size = self.parts[-1].position
            try:
                os.ftruncate(self.fd, size)
                return size, self.hasher.finish(size)
            except OSError as exc:
                raise self.ctx.fail(f"cannot finish {self.path} ({exc.strerror}).") from None
        except BaseException as exc:
            self._stop(exc)
            wait(self.workers)
            if isinstance(exc, _Aborted):
                if self.error is not None:
                    raise self.error from None
                raise self.ctx.fail("the download was cancelled.") from None
            raise
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True)
            self.hasher.stop()

    def _start_workers(self) -> None:
        """Fetch the other parts on `parallel_parts - 1` more connections."""
        count = min(self.ctx.config.download.parallel_parts, len(self.parts)) - 1
        if count < 1:
            return
        self.pool = ThreadPoolExecutor(count, thread_name_prefix="download-part")
        self.workers = [self.pool.submit(self._drain) for _ in range(count)]

    def _stop(self, error: BaseException) -> None:
        """Make every part stop; remember the first real error."""
        with self.lock:
            if self.error is None and not isinstance(error, _Aborted):
                self.error = error
            self.abort.set()
            for opened in self.active:
                opened.abort()

    def _drain(self) -> None:
        """Fetch pending parts until none is left (one connection at a time)."""
        try:
            while True:
                with self.lock:
                    if not self.pending or self.abort.is_set():
                        return
                    part = self.pending.pop(0)
                self._fetch(part)
        except BaseException as exc:
            self._stop(exc)
            raise

    def _fetch(self, part: Part) -> None:
        """Fetch one part, retrying and resuming until it is complete or has failed."""
        attempt = 1
        while not part.complete:
            if self.abort.is_set():
                raise _Aborted
            try:
                opened = self._request(part)
                with self.lock:
                    self.active.add(opened)
                try:
                    self._stream(part, opened)
                finally:
                    with self.lock:
                        self.active.discard(opened)
                    opened.close()
                if part.end is None:  # a body of unknown length ended cleanly
                    part.end = part.position
            except Transient as exc:
                if self.abort.is_set():
                    raise _Aborted from None
                if part.done > part.best:
                    part.best = part.done
                    attempt = 1
                attempt = self._failed(exc, attempt)

    def _failed(self, exc: Transient, attempt: int) -> int:
        """Record a failed attempt; wait, or raise when no attempt is left."""
        with self.lock:
            self.failures.append(exc.description)
            failures = tuple(self.failures)
        if attempt >= self.attempts:
            raise self._exhausted(exc, failures)
        delay = (
            self.retry_delays[attempt - 1]
            if self.retry_delays is not None
            else default_backoff(attempt)
        )
        if exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        _log.warning(
            "download retrying",
            source=self.ctx.label,
            url=self.ctx.shown_url,
            error=exc.description,
            attempt=attempt,
            of=self.attempts,
            delay=delay,
        )
        if self.abort.wait(delay):
            raise _Aborted
        return attempt + 1

    def _exhausted(self, exc: Transient, failures: tuple[str, ...]) -> DownloadError:
        listed = "; ".join(failures)
        kwargs = {"failures": failures, "transient": True, "status": exc.status}
        if exc.status is not None:
            return self.ctx.fail(
                f"the server kept failing ({listed}). It is failing or overloaded; try again "
                "later.",
                reason=exc.description.partition(" ")[2].strip("'"),
                **kwargs,
            )
        proxy = self.ctx.proxy(self.ctx.url)
        used = f"through the proxy {proxy.display}" if proxy is not None else "without a proxy"
        return self.ctx.fail(
            f"{exc.description} ({len(failures)} failed attempts: {listed}). Check the network, "
            f"DNS, firewall and proxy settings (this download went {used}; see :proxy_uri:, "
            "HTTPS_PROXY, NO_PROXY and download.no_proxy).",
            **kwargs,
        )

    # --- one request ---------------------------------------------------------------------

    def _request(self, part: Part) -> Opened:
        """Ask for what `part` still needs and check the answer fits."""
        headers: dict[str, str] = {}
        resuming = part.done > 0
        if not self.discovered:
            if self.initial_range:
                headers["Range"] = f"bytes=0-{self.ctx.config.download.part_size - 1}"
        elif resuming or self.split:
            if resuming and self.validator is None and not self.split:
                self._restart(part)  # resuming without a validator could stitch two versions
            else:
                last = "" if part.end is None else str(part.end - 1)
                headers["Range"] = f"bytes={part.position}-{last}"
                if self.validator is not None:
                    headers["If-Range"] = self.validator
        opened = open_request(self.ctx, headers)
        try:
            if self._range_useless(opened):
                # An empty object cannot serve bytes=0-N (416), and a range of an object whose
                # size the server does not say cannot be split: ask again without a range.
                self.initial_range = False
                opened.close()
                return self._request(part)
            self._accept(opened, part)
        except BaseException:
            opened.close()
            raise
        if "Range" in headers and part.done:
            with self.lock:
                self.resumed += 1
            _log.info("download resumed", source=self.ctx.label, offset=part.position)
        return opened

    def _accept(self, opened: Opened, part: Part) -> None:
        """Check a 200/206/416 answer against what `part` asked for."""
        status = opened.response.status
        if status == 416:
            raise self.ctx.fail(
                f"the server refused the range starting at byte {part.position} (416 'Range Not "
                "Satisfiable'); the object probably changed during the download. Try again."
            )
        if status == 206 and self.discovered:
            self._check_resumed(opened, part)
            return
        if status == 200 and self.split:  # the server stopped honouring ranges
            raise self.ctx.fail(
                "the server ignored a range request it honoured before; the object was "
                "probably replaced during the download. Try the deployment again."
            )
        if part.done:
            _log.info("download restarting", source=self.ctx.label, reason="no range support")
            self._restart(part)
        # The whole body is coming (again): learn its size and validators, check them.
        self._discover(opened, part)

    def _range_useless(self, opened: Opened) -> bool:
        """True when the first, ranged request got 416 or a 206 of unknown total size."""
        if self.discovered or not self.initial_range:
            return False
        status = opened.response.status
        return status == 416 or (status == 206 and self._content_range(opened)[2] is None)

    def _discover(self, opened: Opened, part: Part) -> None:
        """Learn size, ETag and range support from the first answer; check expectations."""
        response = opened.response
        etag = opened.header("ETag")
        self.etag = _bare_etag(etag) if etag else None
        self.validator = None
        if etag and not etag.strip().startswith("W/"):
            self.validator = etag.strip()
        elif last_modified := opened.header("Last-Modified"):
            self.validator = last_modified
        if self.expected_etag is not None and self.etag != self.expected_etag:
            actual = self.etag if self.etag is not None else "(none: the server sent no ETag)"
            raise DownloadError(
                f"Expected deployment artifact bundle etag {self.expected_etag} but was actually "
                f"{actual}. {self.ctx.label} at {self.ctx.shown_url} changed since the "
                "deployment was created, or the revision names the wrong ETag; deploy the "
                "current revision again.",
                url=self.ctx.shown_url,
            )
        total: int | None = None
        if response.status == 206:
            first, _last, total = self._content_range(opened)
            if first != 0:
                raise self.ctx.fail(
                    "the server answered the first range request with an unexpected "
                    f"Content-Range ({opened.header('Content-Range')})."
                )
        else:
            length = opened.header("Content-Length")
            total = int(length) if length and length.strip().isdigit() else None
        self._check_size(total)
        if total is not None and not self.discovered:
            _check_space(self.ctx, self.path, total)
        self.total = total
        self.discovered = True
        if response.status != 206 or total is None:
            part.end = total
            return
        size = self.ctx.config.download.part_size
        with self.hasher.condition:
            part.end = min(size, total)
            self.parts.extend(
                Part(i, start, min(start + size, total))
                for i, start in enumerate(range(size, total, size), start=1)
            )
        self.pending = list(self.parts[1:])
        self.split = len(self.parts) > 1
        if self.split:
            os.ftruncate(self.fd, total)
            self._start_workers()

    def _check_size(self, total: int | None) -> None:
        limit = self.ctx.config.download.max_bytes
        if total is not None and total > limit:
            raise self.ctx.fail(
                f"it is {total} bytes, more than download.max_bytes ({limit}). Raise "
                "download.max_bytes in the agent config if bundles this large are expected."
            )
        if total is not None and self.expected_size is not None and total != self.expected_size:
            raise self.ctx.fail(
                f"the server has {total} bytes but the revision says {self.expected_size}. The "
                "object changed since the deployment was created, or its Size in the revision "
                "is wrong."
            )

    def _check_resumed(self, opened: Opened, part: Part) -> None:
        first, _last, total = self._content_range(opened)
        etag = opened.header("ETag")
        if first != part.position or (self.total is not None and total != self.total):
            raise Transient(
                f"the server answered a range request with Content-Range "
                f"{opened.header('Content-Range')} instead of bytes {part.position}-"
            )
        if etag and self.etag is not None and _bare_etag(etag) != self.etag:
            raise self.ctx.fail(
                f"its ETag changed from {self.etag} to {_bare_etag(etag)} during the download: "
                "the object was replaced. Try the deployment again."
            )
        if self.total is None and total is not None:
            self._check_size(total)
            self.total = total
            part.end = total

    def _content_range(self, opened: Opened) -> tuple[int, int, int | None]:
        match = _CONTENT_RANGE.fullmatch((opened.header("Content-Range") or "").strip())
        if match is None:
            raise self.ctx.fail(
                "the server answered 206 without a valid Content-Range header "
                f"({opened.header('Content-Range')})."
            )
        total = None if match.group(3) == "*" else int(match.group(3))
        return int(match.group(1)), int(match.group(2)), total

    def _restart(self, part: Part) -> None:
        """Start the (single) part again from byte zero."""
        with self.hasher.condition:
            part.done = 0
            self.hasher.reset()

    # --- streaming -----------------------------------------------------------------------

    def _stream(self, part: Part, opened: Opened) -> None:
        """Copy the body into the file at the part's offset until the part is complete."""
        response = opened.response
        buffer = bytearray(CHUNK_SIZE)
        view = memoryview(buffer)
        limit = self.ctx.config.download.max_bytes
        while part.end is None or part.position < part.end:
            if self.abort.is_set():
                raise _Aborted
            want = CHUNK_SIZE if part.end is None else min(CHUNK_SIZE, part.end - part.position)
            try:
                count = response.readinto(view[:want])
            except (OSError, ValueError, http.client.HTTPException) as exc:
                # ValueError: the response was closed by an abort in another thread.
                raise Transient(describe_read_error(exc, part.position)) from None
            if count == 0:
                if part.end is None:
                    return
                raise Transient(
                    f"the connection was closed after {part.position} of {part.end} bytes"
                )
            if part.position + count > limit:
                raise self.ctx.fail(
                    f"it is more than download.max_bytes ({limit}) bytes. Raise "
                    "download.max_bytes in the agent config if bundles this large are expected."
                )
            self._write(view[:count], part.position)
            with self.hasher.condition:
                part.done += count
                self.hasher.condition.notify_all()

    def _write(self, data: memoryview, offset: int) -> None:
        try:
            while data:
                written = os.pwrite(self.fd, data, offset)
                data, offset = data[written:], offset + written
        except OSError as exc:
            raise DownloadError(
                f"Cannot download {self.ctx.label}: cannot write {self.path} "
                f"({exc.strerror}). Free space on that file system or check its permissions.",
                url=self.ctx.shown_url,
            ) from None


def _check_space(ctx: RequestContext, path: Path, size: int) -> None:
    """Fail before fetching a large file that cannot fit."""
    try:
        stats = os.statvfs(path.parent)
    except OSError:
        return
    free = stats.f_bavail * stats.f_frsize
    if size > free:
        raise ctx.fail(
            f"it is {size} bytes but only {free} bytes are free on the file system of "
            f"{path.parent}. Free space there (old revisions: see :max_revisions:)."
        )

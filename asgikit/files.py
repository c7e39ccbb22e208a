"""`FileResponse`: send a file with validators, conditional requests and byte ranges.

The file is opened, checked and (when small) read in a single thread-pool hand-off, so
a small file costs one trip to the pool; a large one streams in ``chunk_size`` reads,
each in the pool, so the event loop never blocks on disk. What to answer (``200``,
``206``, ``304``, ``416``) is decided by the pure functions of `asgikit._ranges`.
"""

from __future__ import annotations

import mimetypes
import os
import secrets
from collections.abc import AsyncIterator, Mapping
from functools import lru_cache, partial

from asgikit._concurrency import StepsThenClose
from asgikit._fileplan import (
    FilePlan,
    FileUnavailable,
    RequestConditions,
    offers_pathsend,
    open_regular_file,
    plan_file_response,
    plan_in_thread,
    read_exactly,
    request_conditions,
)
from asgikit._http import content_type_header
from asgikit._ranges import (
    content_disposition,
    content_range,
    multipart_byteranges_layout,
)
from asgikit.background import BackgroundTask
from asgikit.datastructures import encode_header
from asgikit.responses import JSONResponse, Response, headers_to_raw
from asgikit.streaming import StreamingResponse
from asgikit.types import Receive, Scope, Send

__all__ = ["FileResponse", "guess_media_type"]

_COMPRESSED_TYPES = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "br": "application/x-brotli",
    "compress": "application/x-compress",
}
# Headers a 304 keeps from the 200 it stands for (RFC 9110, section 15.4.5).
_KEPT_BY_304 = {b"cache-control", b"content-location", b"date", b"expires", b"vary", b"set-cookie"}


def guess_media_type(filename: str) -> str:
    """The media type for ``filename`` from its extension (``application/octet-stream``
    when unknown; ``.gz`` and friends are served as the compressed type)."""
    base = filename.replace("\\", "/").rpartition("/")[2]
    dot = base.find(".")
    return _media_type_for_suffixes(base[dot:].lower() if dot >= 0 else "")


@lru_cache(maxsize=512)
def _media_type_for_suffixes(suffixes: str) -> str:
    media_type, encoding = mimetypes.guess_type("file" + suffixes, strict=False)
    if encoding is not None:
        return _COMPRESSED_TYPES.get(encoding, "application/octet-stream")
    return media_type or "application/octet-stream"


def _prepare(
    path: str,
    conditions: RequestConditions | None,
    read_limit: int,
    send_body: bool,
    pathsend: bool,
) -> FilePlan:
    fd, file_stat = open_regular_file(path)
    return plan_file_response(
        fd, file_stat, conditions, read_limit=read_limit, send_body=send_body, pathsend=pathsend
    )


async def _read_parts(
    reads: StepsThenClose,
    fd: int,
    parts: list[tuple[bytes, tuple[int, int]]],
    tail: bytes,
    chunk_size: int,
) -> AsyncIterator[bytes]:
    """Each part's header bytes, then its range of the file in ``chunk_size`` reads (each
    a step of ``reads`` in the thread pool), then ``tail``."""
    for head, (start, stop) in parts:
        if head:
            yield head
        offset = start
        while offset < stop:
            end = min(offset + chunk_size, stop)
            yield await reads.run(read_exactly, fd, offset, end)
            offset = end
    if tail:
        yield tail


def _send_fails_when_gone(scope: Scope) -> bool:
    """Whether the server's ``send`` raises once the client has gone (ASGI spec 2.4)."""
    version = str(scope.get("asgi", {}).get("spec_version", "2.0"))
    try:
        return tuple(int(part) for part in version.split(".")) >= (2, 4)
    except ValueError:
        return False


class _FileBody(StreamingResponse):
    """The streamed body of a `FileResponse` on a server whose ``send`` does not fail
    when the client has gone (before ASGI 2.4: all the tested ones). It listens for a
    disconnect from its start: a file is read as fast as the disk goes, so in the 100 ms
    a stream of tokens waits before listening, megabytes would go to a client that has
    left."""

    _listens_at_once = True


_COMPUTED_HEADERS = frozenset({b"content-length", b"content-range"})


class FileResponse(Response):
    """Send the file at ``path``, in chunks, without blocking the event loop.

    Sets ``Content-Length``, ``Last-Modified``, a strong ``ETag`` and
    ``Accept-Ranges: bytes``. For ``GET``/``HEAD`` with status 200 it answers ``304``
    to a matching ``If-None-Match`` or ``If-Modified-Since``, and ``GET`` ranges
    (``bytes=0-99``, ``bytes=100-``, ``bytes=-100``, several at once as
    ``multipart/byteranges``) with ``206``, honouring ``If-Range``. Unsatisfiable
    ranges, or more than 16 of them, get ``416`` with ``Content-Range: bytes */size``;
    overlapping ranges are merged. ``HEAD`` never reads the file.

    ``filename`` adds ``Content-Disposition`` (``attachment`` unless
    ``content_disposition_type="inline"``) with an ASCII fallback and an RFC 5987
    ``filename*``. ``media_type`` defaults to a guess from ``filename`` or ``path``.
    A missing file answers ``404`` (an unreadable one ``403``) before anything else is
    sent. When the server offers the ``http.response.pathsend`` extension, whole-file
    ``200`` responses let the server send the file itself. A client that leaves mid-file
    stops the response (as it stops a `StreamingResponse`) and ``background`` does not
    run; otherwise it runs once the response was sent (after a ``304`` or ``404`` too).

    >>> response = FileResponse("cards/model-card.md", media_type="text/markdown")
    """

    chunk_size = 256 * 1024

    def __init__(
        self,
        path: str | os.PathLike[str],
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        filename: str | None = None,
        *,
        background: BackgroundTask | None = None,
        content_disposition_type: str = "attachment",
    ) -> None:
        self.path = os.fspath(path)
        self.status_code = status_code
        self.filename = filename
        self.background = background
        self.body = b""
        if media_type is None:
            media_type = guess_media_type(filename or self.path)
        self.media_type = media_type
        raw = headers_to_raw(headers)
        given = {name for name, _ in raw}
        if b"content-type" not in given:
            raw.append((b"content-type", content_type_header(media_type, self.charset)))
        if filename is not None and b"content-disposition" not in given:
            raw.append(
                encode_header(
                    "content-disposition",
                    content_disposition(content_disposition_type, filename),
                )
            )
        self.raw_headers = raw

    def _conditions(self, scope: Scope) -> RequestConditions | None:
        if self.status_code != 200 or scope.get("method", "GET") not in ("GET", "HEAD"):
            return None
        return request_conditions(scope)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            plan = await plan_in_thread(
                _prepare,
                self.path,
                self._conditions(scope),
                self.chunk_size,
                scope.get("method") != "HEAD",
                offers_pathsend(scope),
            )
        except FileUnavailable as exc:
            await JSONResponse({"detail": exc.detail}, status_code=exc.status)(scope, receive, send)
            if self.background is not None:
                await self.background()
        else:
            await self.send_planned(plan, self.path, scope, receive, send)

    async def send_planned(
        self, plan: FilePlan, path: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Send what ``plan`` decided (used by `StaticFiles`, which plans in its own
        thread hand-off), then run ``background`` unless the client left mid-body.
        Closes the plan's file descriptor."""
        try:
            status = plan.status
            streamed = False  # (a streamed body runs the background itself, if complete)
            if status == 304:
                await self._send_not_modified(plan, send)
            elif status == 416:
                response = JSONResponse(
                    {"detail": plan.detail},
                    status_code=416,
                    headers={"content-range": f"bytes */{plan.size}"},
                )
                await response(scope, receive, send)
            elif status == 206 and len(plan.ranges) > 1:
                streamed = await self._send_multipart(plan, scope, receive, send)
            else:
                streamed = await self._send_single(plan, path, scope, receive, send)
        finally:
            plan.close()
        if not streamed and self.background is not None:
            await self.background()

    def _validator_headers(self, plan: FilePlan) -> list[tuple[bytes, bytes]]:
        # The length and range are the file's own, whatever the caller passed.
        raw = [pair for pair in self.raw_headers if pair[0] not in _COMPUTED_HEADERS]
        given = {name for name, _ in raw}  # now, not at init: .headers may have changed
        if b"last-modified" not in given:
            raw.append((b"last-modified", plan.last_modified.encode("latin-1")))
        if b"etag" not in given:
            raw.append((b"etag", plan.etag.encode("latin-1")))
        if b"accept-ranges" not in given:
            raw.append((b"accept-ranges", b"bytes"))
        return raw

    async def _send_not_modified(self, plan: FilePlan, send: Send) -> None:
        raw = [(name, value) for name, value in self.raw_headers if name in _KEPT_BY_304]
        raw.append((b"last-modified", plan.last_modified.encode("latin-1")))
        raw.append((b"etag", plan.etag.encode("latin-1")))
        await send({"type": "http.response.start", "status": 304, "headers": raw})
        await send({"type": "http.response.body", "body": b""})

    async def _send_single(
        self, plan: FilePlan, path: str, scope: Scope, receive: Receive, send: Send
    ) -> bool:
        raw = self._validator_headers(plan)
        start, stop = plan.ranges[0]
        if plan.status == 206:
            raw.append((b"content-range", content_range(start, stop, plan.size).encode("latin-1")))
            status = 206
        else:
            status = self.status_code
        raw.append((b"content-length", str(stop - start).encode("latin-1")))
        streamed = plan.body is None and scope.get("method") != "HEAD" and stop != start
        if streamed and (status == 206 or not offers_pathsend(scope)):
            parts = [(b"", (start, stop))]
            await self._stream(plan, status, raw, parts, b"", scope, receive, send)
            return True
        await send({"type": "http.response.start", "status": status, "headers": raw})
        if plan.body is not None:
            await send({"type": "http.response.body", "body": plan.body})
        elif scope.get("method") == "HEAD" or stop == start:
            await send({"type": "http.response.body", "body": b""})
        else:
            await send({"type": "http.response.pathsend", "path": os.path.abspath(path)})
        return False

    async def _send_multipart(
        self, plan: FilePlan, scope: Scope, receive: Receive, send: Send
    ) -> bool:
        boundary = secrets.token_hex(16)
        part_type = content_type_header(self.media_type or "application/octet-stream")
        for name, value in self.raw_headers:
            if name == b"content-type":
                part_type = value  # what a whole-file response would have said
        heads, tail, length = multipart_byteranges_layout(
            plan.ranges, plan.size, part_type.decode("latin-1"), boundary
        )
        raw = [
            (name, value)
            for name, value in self._validator_headers(plan)
            if name != b"content-type"
        ]
        raw.append((b"content-type", f"multipart/byteranges; boundary={boundary}".encode()))
        raw.append((b"content-length", str(length).encode("latin-1")))
        if plan.body is None:
            parts = list(zip(heads, plan.ranges, strict=True))
            await self._stream(plan, 206, raw, parts, tail, scope, receive, send)
            return True
        # Already read: the ranges' bytes, back to back.
        pieces: list[bytes] = []
        offset = 0
        for head, (start, stop) in zip(heads, plan.ranges, strict=True):
            pieces.append(head)
            pieces.append(plan.body[offset : offset + stop - start])
            offset += stop - start
        pieces.append(tail)
        await send({"type": "http.response.start", "status": 206, "headers": raw})
        await send({"type": "http.response.body", "body": b"".join(pieces)})
        return False

    async def _stream(
        self,
        plan: FilePlan,
        status: int,
        raw: list[tuple[bytes, bytes]],
        parts: list[tuple[bytes, tuple[int, int]]],
        tail: bytes,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        """Send the file's ``parts`` (each part's header bytes, if any, then its range of
        the file) and ``tail`` as a `StreamingResponse`: the disconnect watch every
        stream has (listening from the start, before ASGI 2.4) stops it when the client
        leaves, and
        ``background`` runs only once the body is complete. Each chunk is read in the
        thread pool; the descriptor is closed once, never under a read
        (`StepsThenClose`)."""
        fd = plan.fd
        assert fd is not None
        plan.fd = None  # closed by `reads` from here on
        reads = StepsThenClose(partial(os.close, fd))
        chunks = _read_parts(reads, fd, parts, tail, self.chunk_size)
        body_class = StreamingResponse if _send_fails_when_gone(scope) else _FileBody
        body = body_class(chunks, status, background=self.background)
        body.raw_headers = raw
        try:
            await body(scope, receive, send)
        finally:
            reads.close()  # now, or by the read still running (its caller has gone)

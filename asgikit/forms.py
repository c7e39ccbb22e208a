"""Form bodies: ``application/x-www-form-urlencoded`` and ``multipart/form-data``.

`parse_form` is what `Request.form` runs. Both formats are parsed incrementally, chunk
by chunk as the body arrives, so memory stays bounded whatever the body size:

- urlencoded bodies are split on ``&`` as they arrive; only the pair being received is
  buffered. Decoding is the WHATWG one (``+`` is a space, UTF-8), but strict: a broken
  percent escape or invalid UTF-8 is a 400, not silently mangled text.
- multipart bodies go through the `multipart` package's sans-I/O `PushMultipartParser`.
  Text fields are collected in memory (each at most ``max_part_size``); file parts go to
  an `UploadFile` whose spooled file stays in memory up to 1 MiB, then moves to disk.

Disk writes never block the event loop and never cost a thread hand-off per body chunk:
a file part's chunks are held (they are the very ``bytes`` objects the server gave us, so
holding them copies nothing) until more than 1 MiB is waiting, then queued as one batch
to a single writer thread per form, which writes it with one ``writev`` while the loop
parses the next MiB (see `_DiskWriter`). Starlette pays one hand-off per 64 KiB message.

Every limit exceeded answers 413 with the limit's name in ``detail``; a malformed body
answers 400; another content type 415. Whatever ends the parse early (a limit, bad input,
a client disconnect, cancellation), the files opened so far are closed and deleted.
"""

from __future__ import annotations

import codecs
import os
import queue
import re
import threading
from collections.abc import AsyncGenerator, Callable
from typing import IO, TYPE_CHECKING, Any, cast
from urllib.parse import unquote_to_bytes

import anyio
import anyio.abc
import anyio.from_thread
from multipart import (  # type: ignore[import-untyped]
    MultipartError,
    MultipartSegment,
    ParserLimitReached,
    PushMultipartParser,
    parse_content_disposition,
    parse_options_header,
)

from asgikit._concurrency import run_in_threadpool
from asgikit._http import body_too_large
from asgikit._http import content_length as parse_body_length
from asgikit.datastructures import SPOOL_MAX_SIZE, FormData, Headers, UploadFile
from asgikit.exceptions import HTTPException

if TYPE_CHECKING:
    from asgikit.requests import Request

__all__ = [
    "IN_MEMORY_FILES_BUDGET",
    "MAX_PART_HEADERS",
    "MAX_PART_HEADER_SIZE",
    "decode_rfc5987",
    "decode_urlencoded_pair",
    "parse_form",
]

MAX_PART_HEADER_SIZE = 8192
"""Longest header line of a multipart part, in bytes (a long ``filename*`` fits)."""
MAX_PART_HEADERS = 16
"""Most headers in one multipart part (RFC 7578 needs at most three)."""
IN_MEMORY_FILES_BUDGET = 8 * SPOOL_MAX_SIZE
"""Bytes of small files one form keeps in memory; later files are spooled to disk."""

_MAX_BATCH_CHUNKS = 512  # below every platform's IOV_MAX (1024 on Linux)
_writev: Callable[[int, list[bytes]], int] | None = getattr(os, "writev", None)
# RFC 2046 section 5.1.1: 1 to 70 characters from bchars, not ending in a space.
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
_BAD_PERCENT_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_FILENAME_STAR = re.compile(r";\s*filename\*\s*=\s*([^;]*)", re.IGNORECASE)
_URLENCODED = "application/x-www-form-urlencoded"
_MULTIPART = "multipart/form-data"


async def parse_form(
    request: Request,
    *,
    max_files: int = 1000,
    max_fields: int = 1000,
    max_part_size: int = 1_048_576,
    max_file_size: int | None = None,
    max_size: int | None = None,
) -> FormData:
    """Read ``request``'s body as a form and return its fields and files.

    ``max_files``/``max_fields`` cap the number of file parts and of other fields,
    ``max_part_size`` the bytes of one non-file field, ``max_file_size`` (``None``: no
    cap) the bytes of one file, ``max_size`` (``None``: no cap) the whole body, checked
    against ``Content-Length`` first and then against the bytes received. Exceeding any
    raises `HTTPException(413)` naming the limit; a malformed body raises 400; a body that
    is neither form type 415. `ClientDisconnect` propagates; no temp file survives it.
    """
    _check_limit("max_files", max_files)
    _check_limit("max_fields", max_fields)
    _check_limit("max_part_size", max_part_size)
    if max_file_size is not None:
        _check_limit("max_file_size", max_file_size)
    content_length = parse_body_length(request.scope["headers"])
    if max_size is not None:
        _check_limit("max_size", max_size)
        if content_length is not None and content_length > max_size:
            raise body_too_large(max_size)

    header = request.headers.get("content-type")
    if header is None:
        raise HTTPException(415, f"A form needs Content-Type {_URLENCODED} or {_MULTIPART}")
    media_type, options = parse_options_header(header)
    body = cast(AsyncGenerator[bytes, None], request.stream())
    try:
        if media_type == _MULTIPART:
            parser = _multipart_parser(
                options.get("boundary"), content_length, max_files + max_fields + 1
            )
            reader = _MultipartReader(max_files, max_fields, max_part_size, max_file_size)
            return await reader.read(parser, body, max_size, content_length)
        if media_type == _URLENCODED:
            return await _read_urlencoded(body, max_size, max_fields, max_part_size)
    finally:
        await body.aclose()
    raise HTTPException(
        415, f"Unsupported form content type {media_type!r}: expected {_URLENCODED} or {_MULTIPART}"
    )


def _check_limit(name: str, value: int) -> None:
    if not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, not {value!r}")


# --------------------------------------------------------------------------- urlencoded


def decode_urlencoded_pair(pair: bytes, max_part_size: int) -> tuple[str, str]:
    """Decode one ``name=value`` pair of an urlencoded body (``+`` is a space, UTF-8).

    A pair without ``=`` is a name with an empty value. Raises `HTTPException(400)` for
    a broken percent escape or invalid UTF-8, 413 for a value over ``max_part_size``.
    """
    raw_name, _, raw_value = pair.partition(b"=")
    name = _decode_component(raw_name)
    value_bytes = _unquote_plus(raw_value)
    if len(value_bytes) > max_part_size:
        raise _field_too_large(name, max_part_size)
    try:
        return name, value_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(400, f"Form field {name!r} is not valid UTF-8") from None


def _unquote_plus(raw: bytes) -> bytes:
    if b"+" in raw:
        raw = raw.replace(b"+", b" ")
    if b"%" in raw:
        bad = _BAD_PERCENT_ESCAPE.search(raw)
        if bad is not None:
            escape = raw[bad.start() : bad.start() + 3].decode("latin-1")
            raise HTTPException(400, f"Invalid percent-encoding {escape!r} in form body")
        raw = unquote_to_bytes(raw)
    return raw


def _decode_component(raw: bytes) -> str:
    try:
        return _unquote_plus(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(400, "Form field name is not valid UTF-8") from None


def _field_too_large(name: str, max_part_size: int) -> HTTPException:
    return HTTPException(
        413, f"Form field {name!r} is larger than max_part_size={max_part_size} bytes"
    )


def _too_many_fields(max_fields: int) -> HTTPException:
    return HTTPException(413, f"Too many form fields: the limit is max_fields={max_fields}")


async def _read_urlencoded(
    body: AsyncGenerator[bytes, None], max_size: int | None, max_fields: int, max_part_size: int
) -> FormData:
    fields: list[tuple[str, str | UploadFile]] = []
    # A percent-encoded value is at most 3x its decoded size; 4 KiB more leaves room for
    # the name. Past that the pair being received is certainly too large: stop buffering.
    max_pending = 3 * max_part_size + 4096

    def add(pair: bytes | bytearray) -> None:
        if pair:
            if len(fields) >= max_fields:
                raise _too_many_fields(max_fields)
            fields.append(decode_urlencoded_pair(bytes(pair), max_part_size))

    pending = bytearray()
    received = 0
    async for chunk in body:
        received += len(chunk)
        if max_size is not None and received > max_size:
            raise body_too_large(max_size)
        cut = chunk.rfind(b"&")
        if cut == -1:
            pending += chunk
        else:
            pending += chunk[:cut]
            for pair in pending.split(b"&"):
                add(pair)
            pending = bytearray(chunk[cut + 1 :])
        if len(pending) > max_pending:
            name = pending.partition(b"=")[0][:200].decode("utf-8", "replace")
            raise _field_too_large(name, max_part_size)
    add(pending)
    return FormData(fields)


# --------------------------------------------------------------------------- multipart


def _multipart_parser(boundary: str | None, content_length: int | None, max_parts: int) -> Any:
    if not boundary:
        raise HTTPException(400, "Missing boundary in the multipart/form-data Content-Type")
    if not _BOUNDARY.fullmatch(boundary):
        raise HTTPException(
            400, f"Invalid multipart boundary {boundary[:100]!r} (RFC 2046: 1-70 characters)"
        )
    return PushMultipartParser(
        boundary,
        # More bytes than announced is a 400; it also makes the small-body fast path
        # of _MultipartReader.read safe (no file can outgrow memory there).
        content_length=-1 if content_length is None else content_length,
        max_header_size=MAX_PART_HEADER_SIZE,
        max_header_count=MAX_PART_HEADERS,
        max_segment_count=max_parts,  # a backstop: our own counts stop the parse first
        strict=False,  # real clients send preambles and odd but harmless framing
    )


def decode_rfc5987(value: str) -> str | None:
    """Decode an RFC 5987 ``ext-value`` (``UTF-8''na%C3%AFve.txt``); ``None`` if invalid."""
    value = value.strip()
    if len(value) > 1 and value[0] == value[-1] == '"':  # wrongly quoted, but seen
        value = value[1:-1]
    charset, quote, rest = value.partition("'")
    _language, quote2, encoded = rest.partition("'")
    if not quote or not quote2:
        return None
    try:
        return unquote_to_bytes(encoded).decode(charset or "utf-8")
    except (LookupError, UnicodeDecodeError):
        return None


def _part_name_and_filename(segment: Any) -> tuple[str, str | None]:
    """The part's field name and file name; RFC 5987 ``filename*`` wins over ``filename``."""
    name: str = segment.name
    filename: str | None = segment.filename
    disposition: str = segment.header("Content-Disposition", "")
    if not name and parse_content_disposition(disposition)[1] is None:
        raise HTTPException(400, "Multipart part has no name in its Content-Disposition header")
    if "*" in disposition:
        match = _FILENAME_STAR.search(disposition)
        if match is not None:
            extended = decode_rfc5987(match.group(1))
            if extended is not None:
                filename = extended
            elif filename is None:
                raise HTTPException(400, f"Invalid filename* in part {name!r}: {match.group(1)!r}")
    return name, filename


def _part_headers(segment: Any) -> Headers:
    # Header values were decoded as UTF-8 by the parser; storing their UTF-8 bytes
    # behaves like request headers (non-ASCII bytes read back as latin-1).
    return Headers(
        raw=[(name.lower().encode("latin-1"), value.encode()) for name, value in segment.headerlist]
    )


def _append_blocking(file: IO[bytes], chunks: list[bytes], size: int, rewind: bool) -> None:
    """Append ``chunks`` (``size`` bytes in all) to a spooled upload file, in a worker thread.

    One ``writev`` system call per batch: the thread releases and retakes the GIL once
    per MiB instead of once per chunk, so it does not queue behind the parsing loop for
    the GIL after every 64 KiB. ``fileno()`` moves the spooled file to disk first (while
    it is empty, so nothing is copied); the buffered file object is bypassed and kept
    consistent by the final ``seek(0)``, which goes to the descriptor.
    """
    if _writev is None:  # no writev (Windows): plain buffered writes
        file.writelines(chunks)
    else:
        fd = file.fileno()
        written = _writev(fd, chunks)
        if written < size:
            _write_rest(fd, chunks, written)
    if rewind:
        file.seek(0)


def _write_rest(fd: int, chunks: list[bytes], skip: int) -> None:
    # A short writev (a regular file only does that when the disk is nearly full).
    for chunk in chunks:
        if skip >= len(chunk):
            skip -= len(chunk)
            continue
        view = memoryview(chunk)[skip:]
        skip = 0
        while view:
            view = view[os.write(fd, view) :]


# A disk writer thread with nothing to write for this long returns its thread-pool slot.
_IDLE_SECONDS = 0.1


class _DiskWriter:
    """Writes batches of file chunks to disk from a worker thread.

    The first batch starts a worker in the thread pool; later batches reach it through a
    thread-safe queue, so the loop keeps receiving and parsing the next MiB while the
    worker writes the previous one (writes release the GIL). A worker left without work
    for `_IDLE_SECONDS` returns, so a slow client does not hold a slot of the shared thread
    pool while it dawdles; the next batch starts a new one. Back-pressure: the loop waits
    when more than one batch is queued, so at most about 3 MiB of chunks are held. A
    write error is kept and raised by the next `submit` or by `close`, so the task group
    itself never fails.
    """

    __slots__ = (
        "_aborted",
        "_error",
        "_finished",
        "_lock",
        "_queue",
        "_submitted",
        "_task_group",
        "_wake_wanted",
        "_wakeup",
        "_worker_running",
        "_written",
    )

    def __init__(self, task_group: anyio.abc.TaskGroup) -> None:
        self._task_group = task_group
        self._queue: queue.SimpleQueue[tuple[IO[bytes], list[bytes], int, bool] | None] = (
            queue.SimpleQueue()
        )
        # Guards _worker_running against the worker deciding to leave as a batch arrives.
        self._lock = threading.Lock()
        self._worker_running = False
        self._submitted = 0
        self._written = 0  # advanced by the worker thread
        self._wake_wanted = False
        self._wakeup = anyio.Event()
        self._finished: anyio.Event | None = None  # set when the current worker returned
        self._error: BaseException | None = None
        self._aborted = False

    async def submit(self, file: IO[bytes], chunks: list[bytes], size: int, rewind: bool) -> None:
        """Queue ``chunks`` (``size`` bytes) to be appended to ``file`` (then rewound, with
        ``rewind``); waits while an earlier batch is still queued behind the one written."""
        if self._error is not None:
            raise self._error
        with self._lock:
            self._queue.put((file, chunks, size, rewind))
            start = not self._worker_running
            self._worker_running = True
        if start:
            self._finished = anyio.Event()
            self._task_group.start_soon(self._run, self._finished)
        self._submitted += 1
        await self._wait_until_written(self._submitted - 1)

    async def close(self) -> None:
        """Wait until every queued batch is written; raise a write error, if any."""
        self._stop_worker()
        if self._finished is not None:
            await self._finished.wait()
            self._finished = None
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        """Make the worker skip what is queued and return; does not block. After a
        failed parse, the task group then waits for the write in progress, if any."""
        self._aborted = True
        self._stop_worker()

    def _stop_worker(self) -> None:
        with self._lock:
            if self._worker_running:
                self._queue.put(None)  # after the batches queued before it

    async def _wait_until_written(self, batches: int) -> None:
        while self._written < batches:
            # Publish the event before the flag; the worker advances _written before
            # reading the flag. So either we see its progress or it sees our flag.
            self._wakeup = anyio.Event()
            self._wake_wanted = True
            if self._written >= batches:
                break
            await self._wakeup.wait()
        self._wake_wanted = False
        if self._error is not None:
            raise self._error

    async def _run(self, finished: anyio.Event) -> None:
        try:
            await run_in_threadpool(self._work)
        finally:
            finished.set()

    def _work(self) -> None:
        # In the worker thread.
        while True:
            try:
                batch = self._queue.get(timeout=_IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._worker_running = False
                        return
                continue
            if batch is None:
                with self._lock:
                    self._worker_running = False
                return
            if self._error is None and not self._aborted:
                try:
                    _append_blocking(*batch)
                except Exception as exc:
                    self._error = exc
            self._written += 1
            if self._wake_wanted:
                anyio.from_thread.run_sync(self._wakeup.set)


class _FileSink:
    """One file part being received: its chunks not yet written, and its size."""

    __slots__ = ("chunks", "name", "on_disk", "pending", "size", "upload")

    def __init__(self, name: str, upload: UploadFile) -> None:
        self.name = name
        self.upload = upload
        self.chunks: list[bytes] = []
        self.pending = 0  # bytes in self.chunks
        self.size = 0  # bytes received so far
        self.on_disk = False


class _MultipartReader:
    """Turns parser events into form fields and files, enforcing the form limits."""

    def __init__(
        self, max_files: int, max_fields: int, max_part_size: int, max_file_size: int | None
    ) -> None:
        self.max_files = max_files
        self.max_fields = max_fields
        self.max_part_size = max_part_size
        self.max_file_size = max_file_size
        self.items: list[tuple[str, str | UploadFile]] = []
        self.uploads: list[UploadFile] = []
        self.fields = 0
        self.in_memory_bytes = 0

    async def read(
        self,
        parser: Any,
        body: AsyncGenerator[bytes, None],
        max_size: int | None,
        content_length: int | None,
    ) -> FormData:
        """Parse the whole body; on any failure close the files opened so far."""
        error: Exception | None = None
        try:
            if content_length is not None and content_length <= SPOOL_MAX_SIZE:
                # Fast path for the common small form: every file fits in memory (the
                # parser refuses more bytes than announced), so no writer thread and
                # no task group (entering and leaving one costs a loop iteration).
                try:
                    await self._read(parser, body, max_size, None)
                except Exception as exc:
                    error = exc
            else:
                error = await self._read_with_writer(parser, body, max_size)
        except BaseException:  # cancelled
            self._discard()
            raise
        if error is None:
            return FormData(self.items)
        self._discard()
        if isinstance(error, ParserLimitReached):
            raise HTTPException(
                413,
                f"Multipart part headers too large: {error} (limits: {MAX_PART_HEADER_SIZE} "
                f"bytes per header line, {MAX_PART_HEADERS} headers per part)",
            ) from None
        if isinstance(error, MultipartError):
            raise HTTPException(400, f"Malformed multipart body: {error}") from None
        raise error

    async def _read_with_writer(
        self, parser: Any, body: AsyncGenerator[bytes, None], max_size: int | None
    ) -> Exception | None:
        """`_read` with a `_DiskWriter`; returns the error that ended it, if any."""
        error: Exception | None = None
        async with anyio.create_task_group() as task_group:
            writer = _DiskWriter(task_group)
            try:
                await self._read(parser, body, max_size, writer)
                await writer.close()
            except Exception as exc:
                # Kept, not raised: raised here it would come out of the task group
                # wrapped in an ExceptionGroup. Leaving the group waits for a write
                # still in flight, so the files are closed only after it.
                error = exc
            finally:
                writer.abort()  # a no-op once close() returned
        return error

    def _discard(self) -> None:
        # Synchronous on purpose: this also runs when the task is being cancelled.
        for upload in self.uploads:
            upload.file.close()

    async def _read(
        self,
        parser: Any,
        body: AsyncGenerator[bytes, None],
        max_size: int | None,
        writer: _DiskWriter | None,
    ) -> None:
        # writer is None only on the small-body path, where nothing goes to disk.
        sink: _FileSink | None = None
        name = ""
        field = bytearray()
        charset = "utf-8"
        max_file_size = self.max_file_size
        received = 0
        async for chunk in body:
            received += len(chunk)
            if max_size is not None and received > max_size:
                raise body_too_large(max_size)
            for event in parser.parse(chunk):
                if event is None:  # end of the part
                    if sink is not None:
                        await self._finish_file(sink, writer)
                        sink = None
                    else:
                        self.items.append((name, _decode_field(name, field, charset)))
                elif isinstance(event, MultipartSegment):
                    name, filename = _part_name_and_filename(event)
                    if filename is None:
                        self.fields += 1
                        if self.fields > self.max_fields:
                            raise _too_many_fields(self.max_fields)
                        field = bytearray()
                        charset = event.charset or "utf-8"
                    else:
                        if len(self.uploads) >= self.max_files:
                            raise HTTPException(
                                413, f"Too many files: the limit is max_files={self.max_files}"
                            )
                        upload = UploadFile(
                            filename=filename,
                            content_type=event.header("Content-Type"),
                            headers=_part_headers(event),
                        )
                        self.uploads.append(upload)
                        sink = _FileSink(name, upload)
                elif sink is not None:  # a chunk of a file part
                    sink.size += len(event)
                    if max_file_size is not None and sink.size > max_file_size:
                        raise HTTPException(
                            413,
                            f"File {sink.upload.filename!r} is larger than "
                            f"max_file_size={max_file_size} bytes",
                        )
                    sink.chunks.append(event)
                    sink.pending += len(event)
                    # Past 1 MiB the file goes to disk, a batch at a time. The chunk count
                    # cap bounds per-object overhead (and writev's iovec count) when a
                    # client trickles tiny messages.
                    if sink.pending > SPOOL_MAX_SIZE or len(sink.chunks) >= _MAX_BATCH_CHUNKS:
                        if writer is None:  # at most 1 MiB: stays in memory, in one piece
                            sink.chunks = [b"".join(sink.chunks)]
                        else:
                            await writer.submit(sink.upload.file, sink.chunks, sink.pending, False)
                            sink.chunks, sink.pending, sink.on_disk = [], 0, True
                else:  # a chunk of a text field
                    if len(field) + len(event) > self.max_part_size:
                        raise _field_too_large(name, self.max_part_size)
                    field += event
        parser.close()  # raises ParserError if the final boundary never came

    async def _finish_file(self, sink: _FileSink, writer: _DiskWriter | None) -> None:
        upload = sink.upload
        if writer is None or (
            not sink.on_disk and self.in_memory_bytes + sink.size <= IN_MEMORY_FILES_BUDGET
        ):
            # Small enough to stay in memory: written and rewound on the loop.
            self.in_memory_bytes += sink.size
            upload.file.writelines(sink.chunks)
            upload.file.seek(0)
        else:
            await writer.submit(upload.file, sink.chunks, sink.pending, True)
        sink.chunks = []
        upload.size = sink.size
        self.items.append((sink.name, upload))


def _decode_field(name: str, data: bytearray, charset: str) -> str:
    try:
        # Only text encodings: codecs also knows base64, zlib, rot13, ... (not charsets).
        if not codecs.lookup(charset)._is_text_encoding:
            raise LookupError(charset)
    except LookupError:
        raise HTTPException(
            400, f"Form field {name!r} has an unknown charset {charset!r}"
        ) from None
    try:
        return data.decode(charset)
    except (UnicodeDecodeError, LookupError):
        raise HTTPException(400, f"Form field {name!r} is not valid {charset}") from None

"""``multipart/form-data`` bodies, through the `multipart` package's sans-I/O parser.

`MultipartReader` turns the events of `PushMultipartParser` into fields and files,
enforcing the `FormLimits`. Text fields are collected in memory (each at most
``max_part_size``); file parts go to an `UploadFile` whose spooled file stays in memory
up to 1 MiB (and small files up to `IN_MEMORY_FILES_BUDGET` per form), then goes to disk
through the `DiskWriter`. Whatever ends the parse early (a limit, bad input, a client
disconnect, cancellation), the files opened so far are closed and deleted.
"""

from __future__ import annotations

import codecs
import errno
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote_to_bytes

import anyio
from multipart import (  # type: ignore[import-untyped]
    MultipartError,
    MultipartSegment,
    ParserLimitReached,
    PushMultipartParser,
    parse_content_disposition,
)

from asgikit._http import body_too_large
from asgikit.datastructures import SPOOL_MAX_SIZE, FormData, Headers, UploadFile
from asgikit.exceptions import HTTPException
from asgikit.forms._disk_writer import DiskWriter, FileSink
from asgikit.forms._limits import FormLimits
from asgikit.forms._urlencoded import field_too_large, too_many_fields

__all__ = [
    "IN_MEMORY_FILES_BUDGET",
    "MAX_PART_HEADERS",
    "MAX_PART_HEADER_SIZE",
    "MultipartReader",
    "decode_field",
    "decode_rfc5987",
    "extended_filename",
    "multipart_parser",
    "parser_error",
    "part_headers",
    "part_name_and_filename",
    "spool_error",
]

MAX_PART_HEADER_SIZE = 8192
"""Longest header line of a multipart part, in bytes (a long ``filename*`` fits)."""
MAX_PART_HEADERS = 16
"""Most headers in one multipart part (RFC 7578 needs at most three)."""
IN_MEMORY_FILES_BUDGET = 8 * SPOOL_MAX_SIZE
"""Bytes of small files one form keeps in memory; later files are spooled to disk."""

# RFC 2046 section 5.1.1: 1 to 70 characters from bchars, not ending in a space.
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
# One ``; name=value`` parameter of a header value: the value is a quoted string (whose
# ``;`` and ``=`` are text) or anything up to the next ``;``.
_PARAMETER = re.compile(r';\s*([^\s;="]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;"]*)\s*')


def multipart_parser(boundary: str | None, content_length: int | None, max_parts: int) -> Any:
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
    except (LookupError, ValueError):  # see decode_field
        return None


def parser_error(error: Exception) -> HTTPException:
    """The answer to the parser's `MultipartError`: 413 for its header limits, else 400.

    The parser keeps its error, whose frames hold the parser: a reference cycle, unless
    the traceback goes (it says nothing the ``detail`` does not)."""
    error.__traceback__ = None
    if isinstance(error, ParserLimitReached):
        return HTTPException(
            413,
            f"Multipart part headers too large: {error} (limits: "
            f"{MAX_PART_HEADER_SIZE} bytes per header line, {MAX_PART_HEADERS} "
            "headers per part)",
        )
    return HTTPException(400, f"Malformed multipart body: {error}")


def spool_error(error: OSError) -> HTTPException | None:
    """The answer when spooling a file to disk failed for want of a resource: 503 (with
    ``Retry-After``) when the process or the system is out of file descriptors (each
    file on disk holds one until the form is closed), 507 when the disk is full; None
    for any other error (a 500)."""
    if error.errno in (errno.EMFILE, errno.ENFILE):
        return HTTPException(
            503,
            "Too many open files to spool the upload to disk, retry later",
            headers={"Retry-After": "1"},
        )
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return HTTPException(507, "Not enough disk space to spool the upload")
    return None


def part_name_and_filename(segment: Any) -> tuple[str, str | None]:
    """The part's field name and file name; RFC 5987 ``filename*`` wins over ``filename``."""
    name: str = segment.name
    filename: str | None = segment.filename
    disposition: str = segment.header("Content-Disposition", "")
    if not name and parse_content_disposition(disposition)[1] is None:
        raise HTTPException(400, "Multipart part has no name in its Content-Disposition header")
    if "*" in disposition:
        raw = extended_filename(disposition)
        if raw is not None:
            extended = decode_rfc5987(raw)
            if extended is not None:
                filename = extended
            elif filename is None:
                raise HTTPException(400, f"Invalid filename* in part {name!r}: {raw!r}")
    return name, filename


def extended_filename(disposition: str) -> str | None:
    """The raw ``filename*`` parameter of a ``Content-Disposition`` value, or None.

    Parameters are read in order, each quoted value whole: a ``filename*=`` inside the
    quoted ``name`` or ``filename`` is text, not a parameter. Reading stops at the first
    parameter that does not parse."""
    position = disposition.find(";")
    while position >= 0:
        match = _PARAMETER.match(disposition, position)
        if match is None:
            return None
        if match.group(1).lower() == "filename*":
            return match.group(2)
        position = match.end()
        if position < len(disposition) and disposition[position] != ";":
            return None  # text after a quoted value: not a parameter list
        position = disposition.find(";", position)
    return None


def part_headers(segment: Any) -> Headers:
    # Header values were decoded as UTF-8 by the parser; storing their UTF-8 bytes
    # behaves like request headers (non-ASCII bytes read back as latin-1).
    return Headers(
        raw=[(name.lower().encode("latin-1"), value.encode()) for name, value in segment.headerlist]
    )


class MultipartReader:
    """Turns parser events into form fields and files, enforcing the form limits."""

    def __init__(self, limits: FormLimits) -> None:
        self.max_files = limits.max_files
        self.max_fields = limits.max_fields
        self.max_part_size = limits.max_part_size
        self.max_file_size = limits.max_file_size
        self.items: list[tuple[str, str | UploadFile]] = []
        self.uploads: list[UploadFile] = []
        self.fields = 0
        self.in_memory_bytes = 0

    async def read(
        self,
        parser: Any,
        body: AsyncIterator[bytes],
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
        try:
            if isinstance(error, MultipartError):
                raise parser_error(error) from None
            if isinstance(error, OSError):
                answer = spool_error(error)
                if answer is not None:
                    raise answer from error
            raise error
        finally:
            # The error's traceback holds this frame: without this, frame and error
            # hold each other (and the chunks in the frames) until the collector runs.
            error = None

    async def _read_with_writer(
        self, parser: Any, body: AsyncIterator[bytes], max_size: int | None
    ) -> Exception | None:
        """`_read` with a `DiskWriter`; returns the error that ended it, if any."""
        error: Exception | None = None
        async with anyio.create_task_group() as task_group:
            writer = DiskWriter(task_group)
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
        try:
            return error
        finally:
            error = None  # (the error's traceback holds this frame, see `read`)

    def _discard(self) -> None:
        # Synchronous on purpose: this also runs when the task is being cancelled.
        for upload in self.uploads:
            upload.file.close()

    async def _read(
        self,
        parser: Any,
        body: AsyncIterator[bytes],
        max_size: int | None,
        writer: DiskWriter | None,
    ) -> None:
        # writer is None only on the small-body path, where nothing goes to disk.
        sink: FileSink | None = None
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
                        self.items.append((name, decode_field(name, field, charset)))
                elif isinstance(event, MultipartSegment):
                    name, filename = part_name_and_filename(event)
                    if filename is None:
                        self.fields += 1
                        if self.fields > self.max_fields:
                            raise too_many_fields(self.max_fields)
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
                            headers=part_headers(event),
                        )
                        self.uploads.append(upload)
                        sink = FileSink(name, upload)
                elif sink is not None:  # a chunk of a file part
                    if max_file_size is not None and sink.size + len(event) > max_file_size:
                        raise HTTPException(
                            413,
                            f"File {sink.upload.filename!r} is larger than "
                            f"max_file_size={max_file_size} bytes",
                        )
                    await sink.add(event, writer)  # past 1 MiB: to disk, a batch at a time
                else:  # a chunk of a text field
                    if len(field) + len(event) > self.max_part_size:
                        raise field_too_large(name, self.max_part_size)
                    field += event
        parser.close()  # raises ParserError if the final boundary never came

    async def _finish_file(self, sink: FileSink, writer: DiskWriter | None) -> None:
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


def decode_field(name: str, data: bytes | bytearray, charset: str) -> str:
    # The charset is the client's word: whatever it names must end in a 400.
    try:
        # Only text encodings: codecs also knows base64, zlib, rot13, ... (not charsets).
        if not codecs.lookup(charset)._is_text_encoding:
            raise LookupError(charset)
    except (LookupError, ValueError):  # ValueError: a NUL in the name
        raise HTTPException(
            400, f"Form field {name!r} has an unknown charset {charset!r}"
        ) from None
    try:
        return data.decode(charset)
    except ValueError:  # UnicodeDecodeError, or the UnicodeError of a codec that never
        # decodes ("undefined") or rejects its input its own way ("punycode", "idna")
        raise HTTPException(400, f"Form field {name!r} is not valid {charset}") from None

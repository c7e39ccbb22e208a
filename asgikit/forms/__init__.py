"""Form bodies: ``application/x-www-form-urlencoded`` and ``multipart/form-data``.

`parse_form` is what `Request.form` runs: it takes the request headers, the body stream
and one `FormLimits`, and knows nothing else of the request (so forms and requests do
not import each other). Both formats are parsed incrementally, chunk by chunk as the
body arrives, so memory stays bounded whatever the body size:

- `asgikit.forms._urlencoded`: split on ``&`` as chunks arrive, strict WHATWG decoding.
- `asgikit.forms._multipart`: the `multipart` package's sans-I/O push parser; text
  fields in memory, files in `UploadFile`\\ s spooled to disk past 1 MiB.
- `asgikit.forms._disk_writer`: file chunks go to disk in batches of at least 1 MiB,
  written by one worker thread per form with one ``writev`` while the loop parses the
  next MiB (Starlette pays one thread hand-off per 64 KiB message).
- `asgikit.forms._limits`: `FormLimits`, the limits and their defaults, written once.
- `asgikit.forms._parts`: `Request.parts`, a multipart body as a stream of parts, read
  by the endpoint as they arrive (nothing kept, nothing spooled).

Every limit exceeded answers 413 with the limit's name in ``detail``; a malformed body
answers 400; another content type 415. Whatever ends the parse early (a limit, bad input,
a client disconnect, cancellation), the files opened so far are closed and deleted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from multipart import parse_options_header  # type: ignore[import-untyped]

from asgikit._http import body_too_large, content_length
from asgikit.datastructures import FormData, Headers
from asgikit.exceptions import HTTPException
from asgikit.forms._limits import DEFAULT_LIMITS, FormLimits
from asgikit.forms._multipart import (
    MultipartReader,
    multipart_parser,
)
from asgikit.forms._parts import MultipartPart, read_parts
from asgikit.forms._urlencoded import read_urlencoded

# Public: the limits and the streamed part. parse_form and iter_parts are what
# Request.form and Request.parts run (for asgikit and its tests).
__all__ = ["DEFAULT_LIMITS", "FormLimits", "MultipartPart"]

_URLENCODED = "application/x-www-form-urlencoded"
_MULTIPART = "multipart/form-data"


def _announced_size(headers: Headers, max_size: int | None) -> int | None:
    """The body's ``Content-Length``; a 413 now when it announces more than ``max_size``."""
    announced = content_length(headers.raw)
    if max_size is not None and announced is not None and announced > max_size:
        raise body_too_large(max_size)
    return announced


def _media_type(headers: Headers, expected: str) -> tuple[str, dict[str, str]]:
    """The body's media type and its parameters (415 without a ``Content-Type``)."""
    header = headers.get("content-type")
    if header is None:
        raise HTTPException(415, f"A form needs Content-Type {expected}")
    media_type, options = parse_options_header(header)
    return media_type, options


async def parse_form(
    headers: Headers, body: AsyncIterator[bytes], limits: FormLimits = DEFAULT_LIMITS
) -> FormData:
    """Read ``body`` (the request body's chunks) as the form its ``headers`` announce.

    ``limits.max_size`` is checked against ``Content-Length`` first and then against
    the bytes received. Exceeding any limit raises `HTTPException(413)` naming it; a
    malformed body or ``Content-Length`` raises 400; a body that is neither form type
    415. Whatever ``body`` raises (`ClientDisconnect`) propagates; no temp file survives
    it. ``body`` is closed (``aclose()``) when the parse ends, however it ends.
    """
    try:
        max_size = limits.max_size
        announced = _announced_size(headers, max_size)
        media_type, options = _media_type(headers, f"{_URLENCODED} or {_MULTIPART}")
        if media_type == _MULTIPART:
            parser = multipart_parser(
                options.get("boundary"), announced, limits.max_files + limits.max_fields + 1
            )
            return await MultipartReader(limits).read(parser, body, max_size, announced)
        if media_type == _URLENCODED:
            return await read_urlencoded(body, limits)
    finally:
        aclose = getattr(body, "aclose", None)
        if aclose is not None:
            await aclose()
    raise HTTPException(
        415, f"Unsupported form content type {media_type!r}: expected {_URLENCODED} or {_MULTIPART}"
    )


async def iter_parts(
    headers: Headers, body: AsyncIterator[bytes], max_parts: int, max_size: int | None
) -> AsyncIterator[MultipartPart]:
    """The parts of a ``multipart/form-data`` ``body`` as they arrive (`Request.parts`).

    The checks and answers of `parse_form` (413 for ``max_size``, 400 for a malformed
    body, 415 for another content type), and 413 past ``max_parts`` parts. Nothing to
    release when the iteration ends, so nothing is done then: an endpoint that breaks
    out of the loop still reads the part it stopped at, whenever this generator is
    finalized (``body`` holds nothing but the request's ``receive``).
    """
    announced = _announced_size(headers, max_size)
    media_type, options = _media_type(headers, _MULTIPART)
    if media_type != _MULTIPART:
        raise HTTPException(
            415, f"Unsupported content type {media_type!r}: parts() reads {_MULTIPART}"
        )
    parser = multipart_parser(options.get("boundary"), announced, max_parts + 1)
    async for part in read_parts(parser, body, max_parts, max_size):
        yield part

"""``application/x-www-form-urlencoded`` bodies, parsed a pair at a time.

Bodies are split on ``&`` as they arrive; only the pair being received is buffered.
Decoding is the WHATWG one (``+`` is a space, UTF-8), but strict: a broken percent
escape or invalid UTF-8 is a 400, not silently mangled text.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from urllib.parse import unquote_to_bytes

from asgikit._http import body_too_large
from asgikit.datastructures import FormData, UploadFile
from asgikit.exceptions import HTTPException
from asgikit.forms._limits import FormLimits

__all__ = ["decode_urlencoded_pair", "field_too_large", "read_urlencoded", "too_many_fields"]

_BAD_PERCENT_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")


def decode_urlencoded_pair(pair: bytes, max_part_size: int) -> tuple[str, str]:
    """Decode one ``name=value`` pair of an urlencoded body (``+`` is a space, UTF-8).

    A pair without ``=`` is a name with an empty value. Raises `HTTPException(400)` for
    a broken percent escape or invalid UTF-8, 413 for a value over ``max_part_size``.
    """
    raw_name, _, raw_value = pair.partition(b"=")
    name = _decode_component(raw_name)
    value_bytes = _unquote_plus(raw_value)
    if len(value_bytes) > max_part_size:
        raise field_too_large(name, max_part_size)
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


def field_too_large(name: str, max_part_size: int) -> HTTPException:
    return HTTPException(
        413, f"Form field {name!r} is larger than max_part_size={max_part_size} bytes"
    )


def too_many_fields(max_fields: int) -> HTTPException:
    return HTTPException(413, f"Too many form fields: the limit is max_fields={max_fields}")


async def read_urlencoded(body: AsyncIterator[bytes], limits: FormLimits) -> FormData:
    """Read an urlencoded body into `FormData`, a pair at a time as chunks arrive.

    413 past ``limits`` (naming the limit), 400 for a broken escape or invalid UTF-8.
    """
    max_size, max_fields, max_part_size = limits.max_size, limits.max_fields, limits.max_part_size
    fields: list[tuple[str, str | UploadFile]] = []
    # A percent-encoded value is at most 3x its decoded size; 4 KiB more leaves room for
    # the name. Past that the pair being received is certainly too large: stop buffering.
    max_pending = 3 * max_part_size + 4096

    def add(pair: bytes | bytearray) -> None:
        if pair:
            if len(fields) >= max_fields:
                raise too_many_fields(max_fields)
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
            raise field_too_large(name, max_part_size)
    add(pending)
    return FormData(fields)

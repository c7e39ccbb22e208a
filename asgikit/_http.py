"""HTTP header rules shared by requests, forms and responses: pure functions over values.

Nothing here awaits or touches a scope: each function takes the header text (or bytes)
and returns a value or raises, so the rules are tested exhaustively on their own
(tests/test_http.py) and every caller applies the very same ones.

- ``Content-Length`` (`parse_content_length`): ASCII digits only. ``int()`` would also
  take ``+1``, ``1_0`` or `` 1``; a request that says its
  length in any of those is a 400, never a length. One 413 wording
  (`body_too_large`) for every body limit: `Request.body`, `Request.json`, the forms.
- Header encoding (`encode_header`, `content_type_header`): latin-1, lower-case names,
  CR/LF/NUL refused so no response can smuggle a header.
- ``Cookie`` (`parse_cookie_header`): lenient like browsers, never raises.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from email.utils import format_datetime
from http.cookies import _quote, _unquote

from asgikit.exceptions import HTTPException

__all__ = [
    "MAX_CONTENT_LENGTH_DIGITS",
    "SMALL_LENGTHS",
    "body_too_large",
    "content_length",
    "content_length_pair",
    "content_type_header",
    "content_type_pair",
    "encode_header",
    "format_set_cookie",
    "framed_length",
    "parse_content_length",
    "parse_cookie_header",
]

MAX_CONTENT_LENGTH_DIGITS = 20
"""Longest ``Content-Length`` taken (a zettabyte); longer is a 400, not a huge int."""

_FORBIDDEN_IN_HEADERS = ("\r", "\n", "\0")


# --------------------------------------------------------------------------- Content-Length


def parse_content_length(value: bytes | str) -> int:
    """The body length a ``Content-Length`` value announces.

    RFC 9110 section 8.6: one or more ASCII digits, nothing else (servers strip the
    surrounding whitespace before the application sees it). Raises
    `HTTPException(400)` naming the value otherwise (``+1``, ``1_0``, `` 1``, ``-1``,
    ``""``, ``1,1``), and for more than `MAX_CONTENT_LENGTH_DIGITS` digits.

    >>> parse_content_length(b"42")
    42
    """
    raw = value.encode("latin-1", "replace") if isinstance(value, str) else value
    # bytes.isdigit(): ASCII digits only, and False for b"" (str.isdigit would take "²").
    if len(raw) > MAX_CONTENT_LENGTH_DIGITS or not raw.isdigit():
        shown = raw[:40].decode("latin-1")
        raise HTTPException(400, f"Invalid Content-Length header {shown!r}")
    return int(raw)


def content_length(raw_headers: list[tuple[bytes, bytes]]) -> int | None:
    """The ``Content-Length`` of raw ASGI headers, ``None`` when absent.

    Several ``Content-Length`` headers must agree (RFC 9110), else `HTTPException(400)`;
    an invalid value is a 400 as for `parse_content_length`.
    """
    return _length_of(raw_headers, False)


def framed_length(raw_headers: list[tuple[bytes, bytes]]) -> int | None:
    """The body length the server framed the request by: its ``Content-Length``, unless
    a ``Transfer-Encoding`` came too (RFC 9112 section 6.3: the transfer coding frames
    the body then, and h11 accepts such a request with both headers in the scope).

    >>> framed_length([(b"content-length", b"5")])
    5
    >>> framed_length([(b"content-length", b"5"), (b"transfer-encoding", b"chunked")])
    """
    return _length_of(raw_headers, True)


def _length_of(raw_headers: list[tuple[bytes, bytes]], framed: bool) -> int | None:
    # One pass for both: a request's headers are read on every body read.
    length: int | None = None
    for name, value in raw_headers:
        if name == b"content-length":
            parsed = parse_content_length(value)
            if length is not None and parsed != length:
                raise HTTPException(400, "Conflicting Content-Length headers")
            length = parsed
        elif framed and name == b"transfer-encoding":
            return None
    return length


def body_too_large(max_size: int) -> HTTPException:
    """The 413 for a body over ``max_size`` bytes (the one wording every body reader uses)."""
    return HTTPException(413, f"Request body is larger than max_size={max_size} bytes")


# --------------------------------------------------------------------------- header encoding


def _check_header_text(text: str, what: str) -> None:
    for char in _FORBIDDEN_IN_HEADERS:
        if char in text:
            raise ValueError(
                f"header {what} {text!r} contains {char!r}; CR, LF and NUL are not allowed"
            )


def encode_header(name: str, value: str) -> tuple[bytes, bytes]:
    """One raw header pair: lower-cased latin-1 name and latin-1 value, both checked.

    Raises `ValueError` if either contains CR, LF or NUL (header injection), if the name
    is empty, has surrounding spaces or a colon, or if either is not latin-1.

    >>> encode_header("Content-Type", "text/plain")
    (b'content-type', b'text/plain')
    """
    _check_header_text(name, "name")
    _check_header_text(value, "value")
    if not name or name.strip() != name or ":" in name:
        raise ValueError(f"invalid header name {name!r}")
    return name.lower().encode("latin-1"), value.encode("latin-1")


_content_type_cache: dict[tuple[str, str], tuple[bytes, bytes]] = {}


def content_length_pair(size: int) -> tuple[bytes, bytes]:
    """The ``Content-Length`` header of a body of ``size`` bytes, as a raw header pair.

    >>> content_length_pair(13)
    (b'content-length', b'13')
    """
    return (b"content-length", b"%d" % size)


SMALL_LENGTHS = tuple(content_length_pair(size) for size in range(4096))
"""`content_length_pair` for bodies under 4 KiB, made once (formatting the number costs
as much as the rest of a small response's headers): ``SMALL_LENGTHS[size]``."""


def content_type_header(media_type: str, charset: str = "utf-8") -> bytes:
    """The ``Content-Type`` value for ``media_type``: text types get ``; charset=utf-8``.

    >>> content_type_header("text/html")
    b'text/html; charset=utf-8'
    """
    return content_type_pair(media_type, charset)[1]


def content_type_pair(media_type: str, charset: str = "utf-8") -> tuple[bytes, bytes]:
    """The whole ``Content-Type`` header for ``media_type`` as a raw header pair, made
    once per media type (a response sends the same tuple every time).

    >>> content_type_pair("text/plain")
    (b'content-type', b'text/plain; charset=utf-8')
    """
    key = (media_type, charset)
    pair = _content_type_cache.get(key)
    if pair is not None:
        return pair
    value = media_type
    if media_type[:5].lower() == "text/" and "charset=" not in media_type.lower():
        value = f"{media_type}; charset={charset}"
    pair = encode_header("content-type", value)
    if len(_content_type_cache) < 256:  # bounded: media types come from code, not clients
        _content_type_cache[key] = pair
    return pair


# --------------------------------------------------------------------------- cookies


def parse_cookie_header(header: str) -> dict[str, str]:
    """Parse a ``Cookie`` request header into ``{name: value}``. Never raises.

    Lenient like browsers: pairs without ``=`` count as a value with an empty name,
    quoted values are unquoted, and the last of repeated names wins.

    >>> parse_cookie_header('a=1; b="x y"; a=2')
    {'a': '2', 'b': 'x y'}
    """
    cookies: dict[str, str] = {}
    for chunk in header.split(";"):
        if "=" in chunk:
            key, value = chunk.split("=", 1)
        else:
            key, value = "", chunk
        key, value = key.strip(), value.strip()
        if key or value:
            cookies[key] = _unquote(value)
    return cookies


# --------------------------------------------------------------------------- Set-Cookie

# RFC 6265 cookie-name: an RFC 7230 token. Names that are also attribute names
# ("path", "expires", ...) are allowed (http.cookies.SimpleCookie refuses them).
_COOKIE_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")


def _cookie_date(expires: datetime | str | int) -> str:
    if isinstance(expires, datetime):
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=timezone.utc)
        return format_datetime(expires.astimezone(timezone.utc), usegmt=True)
    if isinstance(expires, int) and not isinstance(expires, bool):  # seconds from now
        return format_datetime(datetime.fromtimestamp(time.time() + expires, timezone.utc), True)
    return str(expires)


def format_set_cookie(
    key: str,
    value: str = "",
    *,
    max_age: int | None = None,
    expires: datetime | str | int | None = None,
    path: str | None = "/",
    domain: str | None = None,
    secure: bool = False,
    httponly: bool = False,
    samesite: str | None = "lax",
) -> str:
    """The value of a ``Set-Cookie`` header (RFC 6265).

    ``value`` is quoted when it holds characters a cookie value cannot carry (``;``,
    spaces, quotes, non-ASCII Latin-1 as octal escapes, as `http.cookies` does and
    `parse_cookie_header` undoes). ``expires`` is a `datetime` (naive means UTC), an
    HTTP date string, or seconds from now. `ValueError` for a name that is not an RFC
    6265 token, a value outside Latin-1, an attribute containing ``;``, CR or LF, or a
    ``samesite`` other than ``strict``, ``lax`` or ``none``.
    """
    if not _COOKIE_NAME.match(key):
        raise ValueError(f"invalid cookie name {key!r}: use letters, digits and !#$%&'*+-.^_`|~")
    if not all(ord(char) < 256 for char in value):
        raise ValueError(
            f"cookie {key!r}: the value must be Latin-1 text; encode it first "
            "(for example with urllib.parse.quote)"
        )
    parts = [f"{key}={_quote(value)}"]
    attributes = (("expires", None if expires is None else _cookie_date(expires)),)
    for attribute, text in (*attributes, ("Path", path), ("Domain", domain)):
        if text is not None:
            if ";" in text:
                raise ValueError(f"cookie {attribute.lower()} {text!r} must not contain ';'")
            _check_header_text(text, f"cookie {attribute.lower()}")
            parts.append(f"{attribute}={text}")
    if max_age is not None:
        parts.append(f"Max-Age={int(max_age)}")
    if secure:
        parts.append("Secure")
    if httponly:
        parts.append("HttpOnly")
    if samesite is not None:
        if samesite.lower() not in ("strict", "lax", "none"):
            raise ValueError("samesite must be 'strict', 'lax' or 'none'")
        parts.append(f"SameSite={samesite.capitalize()}")
    return "; ".join(parts)

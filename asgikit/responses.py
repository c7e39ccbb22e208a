"""Responses: ASGI callables that send a status, headers and a body.

`Response` holds a complete body; subclasses fix the media type (`PlainTextResponse`,
`HTMLResponse`) or render the content (`JSONResponse`). Streaming responses live in
`asgikit.streaming`, file responses in `asgikit.files`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote

from asgikit import _json
from asgikit._http import SMALL_LENGTHS, content_length_pair, encode_header, format_set_cookie
from asgikit._http import content_type_header as content_type_header  # its old home
from asgikit.background import BackgroundTask
from asgikit.datastructures import MutableHeaders
from asgikit.types import Receive, Scope, Send

__all__ = [
    "HTMLResponse",
    "JSONResponse",
    "PlainTextResponse",
    "RedirectResponse",
    "Response",
]


def headers_to_raw(headers: Mapping[str, str] | None) -> list[tuple[bytes, bytes]]:
    """Checked raw header pairs from a mapping (`ValueError` on CR, LF or NUL).

    Internal (shared with the streaming and file responses), not in ``__all__``."""
    if not headers:
        return []
    if isinstance(headers, MutableHeaders):
        return list(headers.raw)
    return [encode_header(key, value) for key, value in headers.items()]


_SMALL = len(SMALL_LENGTHS)

# Statuses whose response carries a Content-Length (every final status but 204 and 304):
# one set lookup on the hot path (`Response.__init__`); others take `_build_headers`.
NO_CONTENT_STATUSES = frozenset({204, 304})
"""Statuses whose responses carry no body (RFC 9110): internal, shared with streaming."""
_LENGTH_STATUSES = frozenset(range(200, 600)) - NO_CONTENT_STATUSES


def _has_header(raw: list[tuple[bytes, bytes]], name: bytes) -> bool:
    for key, _ in raw:
        if key == name:
            return True
    return False


class Response:
    """A complete HTTP response.

    ``content`` may be ``bytes``, ``str`` (encoded as UTF-8) or ``None`` (empty body).
    ``Content-Length`` is set for you, and ``Content-Type`` from ``media_type`` (text
    types get ``; charset=utf-8``). ``background`` runs after the body is sent.

    >>> response = Response(b"\\x89PNG...", media_type="image/png")
    >>> response.headers["content-type"], response.headers["content-length"]
    ('image/png', '7')
    """

    media_type: str | None = None
    charset = "utf-8"
    background: BackgroundTask | None = None
    # Computed once per class: its own Content-Type header, and whether `render` is
    # the default one with the UTF-8 charset (so `__init__` may encode text without
    # calling it, and without naming the codec: ``str.encode()`` skips that lookup).
    _content_type: tuple[bytes, bytes] | None = None
    _utf8_text = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._utf8_text = cls.render is Response.render and cls.charset == "utf-8"
        media_type = cls.media_type
        cls._content_type = (
            None
            if media_type is None
            else (b"content-type", content_type_header(media_type, cls.charset))
        )

    def __init__(
        self,
        content: Any = None,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        self.status_code = status_code
        if background is not None:  # (else the class's None: one store less)
            self.background = background
        if content.__class__ is str and self._utf8_text:
            body = self.body = content.encode()
        else:
            body = self.body = self.render(content)
        if headers is None and media_type is None and status_code in _LENGTH_STATUSES:
            content_type = self._content_type
            if content_type is not None:
                # The common case: two headers, nothing to check.
                size = len(body)
                self.raw_headers = [
                    SMALL_LENGTHS[size] if size < _SMALL else content_length_pair(size),
                    content_type,
                ]
                return
        if status_code in NO_CONTENT_STATUSES:
            self.body = b""  # RFC 9110: a 204 or 304 has no content, whatever was given
        if media_type is not None:
            self.media_type = media_type
        self.raw_headers = self._build_headers(headers)

    def render(self, content: Any) -> bytes:
        """Turn ``content`` into the body bytes (override in subclasses)."""
        if content.__class__ is str:
            encoded: bytes = content.encode(self.charset)
            return encoded
        if content is None:
            return b""
        if isinstance(content, bytes):
            return content
        if isinstance(content, str):
            return content.encode(self.charset)
        if isinstance(content, (bytearray, memoryview)):
            return bytes(content)
        raise TypeError(
            f"{type(self).__name__} content must be bytes, str or None, not "
            f"{type(content).__name__}; use JSONResponse for data structures"
        )

    def _build_headers(self, headers: Mapping[str, str] | None) -> list[tuple[bytes, bytes]]:
        raw = headers_to_raw(headers)
        status = self.status_code
        if (
            status >= 200
            and status not in NO_CONTENT_STATUSES
            and not _has_header(raw, b"content-length")
        ):
            raw.append(content_length_pair(len(self.body)))
        media_type = self.media_type
        if media_type is not None and not _has_header(raw, b"content-type"):
            raw.append((b"content-type", content_type_header(media_type, self.charset)))
        return raw

    @property
    def headers(self) -> MutableHeaders:
        """The response headers; changes write through to what is sent."""
        return MutableHeaders(raw=self.raw_headers)

    def set_cookie(
        self,
        key: str,
        value: str = "",
        max_age: int | None = None,
        expires: datetime | str | int | None = None,
        path: str | None = "/",
        domain: str | None = None,
        secure: bool = False,
        httponly: bool = False,
        samesite: Literal["lax", "strict", "none"] | None = "lax",
    ) -> None:
        """Add a ``Set-Cookie`` header.

        ``expires`` is a `datetime`, an HTTP date string, or seconds from now. Values
        are quoted as needed; a key that is not a valid cookie name (an RFC 6265 token:
        ``path`` or ``version`` are fine), a value outside Latin-1, or an attribute
        containing ``;``, CR or LF raises `ValueError`. ``samesite="none"`` needs
        ``secure=True`` in browsers.
        """
        header = format_set_cookie(
            key,
            value,
            max_age=max_age,
            expires=expires,
            path=path,
            domain=domain,
            secure=secure,
            httponly=httponly,
            samesite=samesite,
        )
        self.raw_headers.append(encode_header("set-cookie", header))

    def delete_cookie(
        self,
        key: str,
        path: str | None = "/",
        domain: str | None = None,
        secure: bool = False,
        httponly: bool = False,
        samesite: Literal["lax", "strict", "none"] | None = "lax",
    ) -> None:
        """Expire cookie ``key`` (same ``path`` and ``domain`` as when it was set)."""
        self.set_cookie(
            key,
            max_age=0,
            expires=0,
            path=path,
            domain=domain,
            secure=secure,
            httponly=httponly,
            samesite=samesite,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        await send({"type": "http.response.body", "body": self.body})
        if self.background is not None:
            await self.background()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} status_code={self.status_code}>"


class PlainTextResponse(Response):
    """A ``text/plain; charset=utf-8`` response.

    >>> PlainTextResponse("Hello, world!").headers["content-type"]
    'text/plain; charset=utf-8'
    """

    media_type = "text/plain"


class HTMLResponse(Response):
    """A ``text/html; charset=utf-8`` response.

    >>> HTMLResponse("<h1>Model card</h1>").headers["content-type"]
    'text/html; charset=utf-8'
    """

    media_type = "text/html"


class JSONResponse(Response):
    """``content`` serialised as compact UTF-8 JSON (``application/json``).

    NaN and infinities raise `ValueError` (they are not JSON).

    >>> JSONResponse({"label": "cat", "score": 0.97}).body
    b'{"label":"cat","score":0.97}'
    """

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        """``content`` as compact UTF-8 JSON (`ValueError` for NaN or infinities)."""
        return _json.encode(content)


class RedirectResponse(Response):
    """A redirect to ``url`` (``307 Temporary Redirect`` by default) with an empty body.

    >>> response = RedirectResponse("/login", status_code=303)
    >>> response.status_code, response.headers["location"]
    (303, '/login')
    """

    def __init__(
        self,
        url: str | object,
        status_code: int = 307,
        headers: Mapping[str, str] | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        super().__init__(None, status_code=status_code, headers=headers, background=background)
        location = quote(str(url), safe=":/%#?=@[]!$&'()*+,;~")
        self.raw_headers.append(encode_header("location", location))

"""GZipMiddleware: gzip response bodies for clients that accept it, chunk by chunk.

A complete body (one ``http.response.body`` message) is compressed whole when it is at
least ``minimum_size`` bytes. A streamed body is compressed as it goes: every chunk is
compressed and flushed (``Z_SYNC_FLUSH``) before it is sent, so the client can decode
each token of a model's output the moment it is produced. Nothing is ever buffered
beyond the chunk at hand.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

from asgikit.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["GZipMiddleware", "gzip_accepted"]

_GZIP_CODINGS = ("gzip", "x-gzip")
_accepted_cache: dict[str, bool] = {}


def _quality(parameters: list[str]) -> float:
    """The ``q`` value among a coding's parameters (1.0 when absent, 0.0 when malformed)."""
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "q":
            try:
                quality = float(value.strip())
            except ValueError:
                return 0.0
            return quality if 0.0 <= quality <= 1.0 else 0.0
    return 1.0


def gzip_accepted(accept_encoding: str) -> bool:
    """Whether an ``Accept-Encoding`` value allows a gzip-coded response.

    ``gzip`` (or ``x-gzip``) with a q-value above zero allows it and ``gzip;q=0`` refuses
    it; without an explicit ``gzip``, ``*`` with a q-value above zero allows it. A
    malformed q-value counts as zero.

    >>> gzip_accepted("gzip, deflate, br")
    True
    >>> gzip_accepted("br, gzip;q=0")
    False
    """
    cached = _accepted_cache.get(accept_encoding)
    if cached is not None:
        return cached
    explicit: float | None = None
    wildcard: float | None = None
    for item in accept_encoding.split(","):
        coding, *parameters = item.split(";")
        coding = coding.strip().lower()
        if coding in _GZIP_CODINGS:
            quality = _quality(parameters)
            explicit = quality if explicit is None else max(explicit, quality)
        elif coding == "*":
            wildcard = _quality(parameters)
    accepted = explicit > 0.0 if explicit is not None else wildcard is not None and wildcard > 0.0
    if len(_accepted_cache) < 512:  # header values repeat; bound the cache all the same
        _accepted_cache[accept_encoding] = accepted
    return accepted


def _should_compress_headers(status: int, headers: list[tuple[bytes, bytes]]) -> bool:
    """False for responses gzip must leave alone: partial content, already encoded, SSE."""
    if status == 206 or status < 200 or status in (204, 304):
        return False
    for name, value in headers:
        if name == b"content-encoding" or name == b"content-range":
            return False
        if name == b"content-type" and value[:17].lower() == b"text/event-stream":
            return False
    return True


def _names_the_compressed_copy(
    headers: list[tuple[bytes, bytes]], request_headers: Iterable[tuple[bytes, bytes]]
) -> bool:
    """Whether a 304 answers a request that named the weak form (``W/"x"``) of the 304's
    strong ``ETag`` (``"x"``): the tag only a compressed 200 carried. (A 304's size is
    unknown, so whether its 200 would be compressed cannot be told otherwise; an
    already encoded response or an event stream is never one.)"""
    if not _should_compress_headers(200, headers):
        return False
    for name, value in headers:
        if name == b"etag":
            if value.startswith(b"W/"):
                return False
            weak = b"W/" + value
            return any(
                tag.strip() == weak
                for name, tags in request_headers
                if name == b"if-none-match"
                for tag in tags.split(b",")
            )
    return False


def _has_content_length(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    for name, _ in headers:
        if name == b"content-length":
            return True
    return False


def _compressed_headers(
    headers: list[tuple[bytes, bytes]], content_length: int | None, *, encoded: bool = True
) -> list[tuple[bytes, bytes]]:
    """``headers`` with ``Content-Encoding: gzip``, ``Vary: Accept-Encoding`` and the new
    ``Content-Length`` (dropped for a stream, whose compressed length is unknown); a
    strong ``ETag`` becomes weak and ``Accept-Ranges`` goes. ``encoded=False``: the same
    without ``Content-Encoding``, for a 304 standing for such a response."""
    result: list[tuple[bytes, bytes]] = []
    vary_seen = False
    for name, value in headers:
        if name == b"content-length" or name == b"accept-ranges":
            continue  # ranges would refer to the compressed bytes
        if name == b"etag" and not value.startswith(b"W/"):
            value = b"W/" + value  # no longer byte-for-byte the identity representation
        elif name == b"vary":
            if not vary_seen and b"accept-encoding" not in value.lower() and value != b"*":
                value = value + b", Accept-Encoding"
            vary_seen = True
        result.append((name, value))
    if not vary_seen:
        result.append((b"vary", b"Accept-Encoding"))
    if encoded:
        result.append((b"content-encoding", b"gzip"))
    if content_length is not None:
        result.append((b"content-length", str(content_length).encode("latin-1")))
    return result


class GZipMiddleware:
    """Compress HTTP responses with gzip when the client's ``Accept-Encoding`` allows it.

    - A complete body is compressed when it has at least ``minimum_size`` bytes;
      ``Content-Length`` is rewritten to the compressed size.
    - A streamed body is compressed chunk by chunk, each chunk flushed at once, so token
      streams stay live; ``Content-Length`` is dropped.
    - Left alone: ``text/event-stream``, responses that already have a
      ``Content-Encoding``, ``206``/``Content-Range`` responses and requests with a
      ``Range`` header, ``HEAD`` requests, and every scope other than ``http``.
    - Compressed responses get ``Vary: Accept-Encoding``.

    >>> app = Router(routes, middleware=[Middleware(GZipMiddleware, minimum_size=1000)])
    """

    __slots__ = ("app", "compresslevel", "minimum_size")

    def __init__(self, app: ASGIApp, minimum_size: int = 500, compresslevel: int = 6) -> None:
        if minimum_size < 0:
            raise ValueError(f"minimum_size must be >= 0, not {minimum_size}")
        if not 0 <= compresslevel <= 9:
            raise ValueError(f"compresslevel must be between 0 and 9, not {compresslevel}")
        self.app = app
        self.minimum_size = minimum_size
        self.compresslevel = compresslevel

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "HEAD":
            # A HEAD answer has no body to compress (its headers describe the identity GET).
            await self.app(scope, receive, send)
            return
        accept_encoding = None
        headers = scope["headers"]
        for name, value in headers:
            if name == b"accept-encoding":
                accept_encoding = value
            elif name == b"range":
                # A range refers to the identity body; never mix it with compression.
                await self.app(scope, receive, send)
                return
        if accept_encoding is None or not gzip_accepted(accept_encoding.decode("latin-1")):
            await self.app(scope, receive, send)
            return
        sender = _GZipSender(send, self.minimum_size, self.compresslevel, headers)
        await self.app(scope, receive, sender)


class _GZipSender:
    """The ``send`` seen by the app: holds the response start until the first body
    message shows whether (and how) to compress, then compresses or passes through."""

    __slots__ = (
        "compresslevel",
        "compressor",
        "minimum_size",
        "mode",
        "request_headers",
        "send",
        "start",
    )

    # Modes: waiting for the first body message, passing through, compressing a stream.
    _WAITING, _PASSING, _STREAMING = 0, 1, 2

    def __init__(
        self,
        send: Send,
        minimum_size: int,
        compresslevel: int,
        request_headers: Iterable[tuple[bytes, bytes]],
    ) -> None:
        self.send = send
        self.request_headers = request_headers  # looked at only for a 304 (see below)
        self.minimum_size = minimum_size
        self.compresslevel = compresslevel
        self.mode = self._WAITING
        self.start: Message | None = None
        self.compressor: zlib._Compress | None = None

    async def __call__(self, message: Message) -> None:
        mode = self.mode
        if mode == self._PASSING:
            await self.send(message)
            return
        message_type = message["type"]
        if mode == self._STREAMING:
            if message_type == "http.response.body":
                await self._send_compressed_chunk(message)
            else:
                await self.send(message)
            return
        if message_type == "http.response.start":
            headers = message.get("headers", ())
            if message["status"] == 304 and _names_the_compressed_copy(
                headers, self.request_headers
            ):
                # The client holds the compressed 200 (it revalidates with its weak
                # ETag): the 304 carries that 200's ETag and Vary (RFC 9110, 15.4.5),
                # not the identity body's strong ETag, which a cache would then store
                # with its gzip copy.
                self.mode = self._PASSING
                revalidated = _compressed_headers(headers, None, encoded=False)
                await self.send({**message, "headers": revalidated})
                return
            if not _should_compress_headers(message["status"], headers):
                self.mode = self._PASSING
                await self.send(message)
            elif not _has_content_length(headers):
                # A stream: its headers go out now, not with the first chunk, so the
                # response has started for whoever watches (TimeoutMiddleware) and the
                # client sees the headers before the first token.
                self.mode = self._STREAMING
                self.compressor = zlib.compressobj(self.compresslevel, zlib.DEFLATED, 31)
                await self.send({**message, "headers": _compressed_headers(headers, None)})
            else:
                self.start = message  # a complete body: its size decides
            return
        start = self.start
        if start is None or message_type != "http.response.body":
            # Anything else (pathsend, trailers, ...) cannot be compressed: pass it on.
            self.mode = self._PASSING
            if start is not None:
                self.start = None
                await self.send(start)
            await self.send(message)
            return
        self.start = None
        body: bytes = message.get("body", b"")
        if not message.get("more_body", False):
            if len(body) < self.minimum_size:
                self.mode = self._PASSING
                await self.send(start)
                await self.send(message)
                return
            compressor = zlib.compressobj(self.compresslevel, zlib.DEFLATED, 31)
            compressed = compressor.compress(body) + compressor.flush(zlib.Z_FINISH)
            self.mode = self._PASSING
            headers = _compressed_headers(start.get("headers", []), len(compressed))
            await self.send({**start, "headers": headers})
            await self.send({"type": "http.response.body", "body": compressed})
            return
        self.mode = self._STREAMING
        self.compressor = zlib.compressobj(self.compresslevel, zlib.DEFLATED, 31)
        await self.send({**start, "headers": _compressed_headers(start.get("headers", []), None)})
        await self._send_compressed_chunk(message)

    async def _send_compressed_chunk(self, message: Message) -> None:
        compressor = self.compressor
        assert compressor is not None
        body: bytes = message.get("body", b"")
        more_body: bool = message.get("more_body", False)
        if more_body:
            if not body:
                return  # an empty chunk carries nothing to flush
            data = compressor.compress(body) + compressor.flush(zlib.Z_SYNC_FLUSH)
        else:
            data = compressor.compress(body) + compressor.flush(zlib.Z_FINISH)
            self.mode = self._PASSING
        await self.send({"type": "http.response.body", "body": data, "more_body": more_body})

"""Streaming responses: bodies sent chunk by chunk as an iterator produces them.

`StreamingResponse` sends each chunk as its own ``http.response.body`` message, with no
buffering. While it streams, a second task watches ``receive()`` for ``http.disconnect``:
when the client leaves, the streaming is cancelled (a pending ``await`` inside the
generator raises the cancellation) and the iterator is closed, so the generator's
``finally`` runs at once. That is how a model's generation is aborted when nobody is
listening any more. An `OSError` from ``send`` (ASGI 2.4: the server raises on a closed
connection) counts as a disconnect too.

`EventSourceResponse` frames items as server-sent events (see `asgikit._sse`) and sends
``: ping`` comments during silences; `NDJSONResponse` sends one JSON document per line.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from typing import Any, TypeAlias

import anyio
import anyio.abc

from asgikit import _json
from asgikit._concurrency import HelperTasks, iterate_in_threadpool
from asgikit._receive import ReceiveRelay
from asgikit._sse import PING, ServerSentEvent, encode_event
from asgikit.background import BackgroundTask
from asgikit.responses import Response, content_type_header, headers_to_raw
from asgikit.types import Message, Receive, Scope, Send

__all__ = ["EventSourceResponse", "NDJSONResponse", "ServerSentEvent", "StreamingResponse"]

Content: TypeAlias = AsyncIterable[Any] | Iterable[Any]

_LISTEN_AFTER = 0.001  # seconds of streaming before the disconnect listener starts


async def _iterate_sequence(items: list[Any] | tuple[Any, ...]) -> AsyncIterator[Any]:
    # An in-memory sequence cannot block: no thread hand-off per item.
    for item in items:
        yield item


def _as_async_iterator(content: Any, owner: str) -> AsyncIterator[Any]:
    """An async iterator over ``content`` (sync iterables go through the thread pool)."""
    if isinstance(content, (str, bytes, bytearray, memoryview)):
        raise TypeError(
            f"{owner} content must be an iterable of chunks, not {type(content).__name__}; "
            "use Response for a complete body"
        )
    if hasattr(content, "__aiter__"):
        iterator: AsyncIterator[Any] = content.__aiter__()
        return iterator
    if isinstance(content, (list, tuple)):
        return _iterate_sequence(content)
    if hasattr(content, "__iter__"):
        return iterate_in_threadpool(content)
    raise TypeError(
        f"{owner} content must be an async iterable or an iterable, not {type(content).__name__}"
    )


def _chunk_to_bytes(chunk: Any) -> bytes:
    if isinstance(chunk, str):
        return chunk.encode("utf-8")
    if isinstance(chunk, (bytes, bytearray, memoryview)):
        return bytes(chunk)
    raise TypeError(f"streamed chunks must be bytes or str, not {type(chunk).__name__}")


class _SendFailed(Exception):
    """The server's ``send`` raised `OSError` (ASGI 2.4: the client has gone). Kept apart
    from an `OSError` raised by the iterator itself, which is an error like any other."""


class _Disconnect:
    """Shared by the streaming loop and its helper tasks (disconnect listener, pinger).

    ``client_left()`` cancels the streaming loop's scope; ``error`` keeps an unexpected
    exception from a helper so the streaming loop can re-raise it.
    """

    __slots__ = ("cancel_scope", "error", "happened")

    def __init__(self, cancel_scope: anyio.CancelScope) -> None:
        self.cancel_scope = cancel_scope
        self.happened = False
        self.error: Exception | None = None

    def client_left(self) -> None:
        self.happened = True
        self.cancel_scope.cancel()

    def helper_failed(self, error: Exception) -> None:
        self.error = error
        self.cancel_scope.cancel()

    async def listen(self, relay: ReceiveRelay) -> None:
        """Wait for ``http.disconnect``. The relay keeps request body messages for the
        endpoint, which may still be reading the body while the response streams."""
        try:
            await relay.watch()
        except Exception as exc:
            self.helper_failed(exc)
        else:
            self.client_left()


class StreamingResponse(Response):
    """A response whose body comes from an iterator, sent chunk by chunk.

    ``content`` is an async iterable, or a sync iterable (iterated in the shared thread
    pool, one chunk per hand-off; a ``list``/``tuple`` is iterated in place), of ``bytes``
    or ``str`` (encoded as UTF-8). Each chunk goes out as its own
    ``http.response.body`` message; there is no ``Content-Length``.

    Disconnect-aware: when the client goes away the iteration is cancelled, the iterator
    is closed (``aclose()``/``close()``) so a generator's ``finally`` runs at once, and
    ``background`` does **not** run (the response was not delivered; put cleanup that
    must always happen in the generator's ``finally``). An exception raised by the
    iterator after the headers went out propagates (the server then aborts the
    connection, so the client sees a truncated body rather than a complete one).
    ``background`` runs after the last chunk.

    >>> async def tokens():
    ...     for token in model.generate(prompt):
    ...         yield token
    >>> StreamingResponse(tokens(), media_type="text/plain")
    """

    def __init__(
        self,
        content: Content,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        self.status_code = status_code
        if media_type is not None:
            self.media_type = media_type
        self.background = background
        self.body = b""
        self.body_iterator = _as_async_iterator(content, type(self).__name__)
        self.raw_headers = self._build_headers(headers)

    def _build_headers(self, headers: Mapping[str, str] | None) -> list[tuple[bytes, bytes]]:
        raw = headers_to_raw(headers)
        if self.media_type is not None:
            for key, _ in raw:
                if key == b"content-type":
                    break
            else:
                raw.append(self._streaming_content_type())
        return raw

    def _streaming_content_type(self) -> tuple[bytes, bytes]:
        assert self.media_type is not None
        return (b"content-type", content_type_header(self.media_type, self.charset))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start: Message = {
            "type": "http.response.start",
            "status": self.status_code,
            "headers": self.raw_headers,
        }
        try:
            await send(start)
            if scope.get("method") == "HEAD":
                # Headers only: the iterator (the inference) never starts.
                await self._close_iterator()
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                if self.background is not None:
                    await self.background()
                return
        except OSError:
            await self._close_iterator()
            return
        # A send wrapper that only watches for the start (the router's, TimeoutMiddleware's)
        # may offer the send behind it for the body: one coroutine call less per chunk.
        send = getattr(send, "send_after_start", send)
        if await self._stream(scope, receive, send) and self.background is not None:
            await self.background()

    async def _stream(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Send the body while listening for a disconnect; True if it was all sent."""
        error: Exception | None = None
        complete = False
        with anyio.CancelScope() as cancel_scope:
            disconnect = _Disconnect(cancel_scope)
            async with HelperTasks() as helpers:
                # Listening costs a task; a stream done within a millisecond never
                # needs it (a disconnect is then noticed a millisecond late at most).
                relay = ReceiveRelay.of(scope, receive)
                helpers.start_after(_LISTEN_AFTER, disconnect.listen, relay)
                try:
                    await self._send_body(send, helpers, disconnect)
                    # Servers report a disconnect once the response is complete: from
                    # here on it no longer means the client left early.
                    complete = True
                except _SendFailed:  # the server's send failed: the client has gone
                    disconnect.client_left()
                except Exception as exc:
                    error = exc
                finally:
                    await self._close_iterator()
        if error is None and not complete:
            error = disconnect.error
        if error is not None:
            raise error
        return complete

    async def _close_iterator(self) -> None:
        """Close the iterator so a generator's ``finally`` runs, even when cancelled."""
        aclose = getattr(self.body_iterator, "aclose", None)
        if aclose is not None:
            with anyio.CancelScope(shield=True):
                await aclose()

    async def _send_body(self, send: Send, helpers: HelperTasks, disconnect: _Disconnect) -> None:
        # The hot loop: one dict per chunk, no other allocation for bytes chunks.
        async for chunk in self.body_iterator:
            if chunk.__class__ is not bytes:
                chunk = _chunk_to_bytes(chunk)
            try:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except OSError:
                raise _SendFailed from None
        try:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            raise _SendFailed from None


class NDJSONResponse(StreamingResponse):
    """Newline-delimited JSON: each item is sent as one compact JSON document plus ``\\n``.

    ``application/x-ndjson``. Items must be JSON-serialisable (NaN and infinities raise
    `ValueError`). Disconnect-aware and ``background`` as `StreamingResponse`.

    >>> NDJSONResponse({"token": t} for t in model.generate(prompt))
    """

    media_type = "application/x-ndjson"

    def __init__(
        self,
        content: Content,
        *,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        super().__init__(content, status_code=status_code, headers=headers, background=background)

    async def _send_body(self, send: Send, helpers: HelperTasks, disconnect: _Disconnect) -> None:
        encode = _json.encode
        async for item in self.body_iterator:
            line = encode(item) + b"\n"
            try:
                await send({"type": "http.response.body", "body": line, "more_body": True})
            except OSError:
                raise _SendFailed from None
        try:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            raise _SendFailed from None


class _PingState:
    """What the keep-alive pinger shares with the event loop.

    ``last`` is the last event body sent: one reference store per event is the whole
    cost, and the pinger notices progress by identity (every body is a new bytes
    object). ``closed`` and ``ping_sent`` (set while a ping is being sent) keep a ping
    from following the final message.
    """

    __slots__ = ("closed", "last", "ping_sent")

    def __init__(self) -> None:
        self.last: bytes | None = None
        self.closed = False
        self.ping_sent: anyio.Event | None = None


class EventSourceResponse(StreamingResponse):
    """A ``text/event-stream`` of server-sent events.

    Items may be `ServerSentEvent`, ``str`` (one event whose ``data`` is the text,
    one ``data:`` line per line), ``bytes`` (UTF-8 text data) or any JSON-serialisable
    value (compact JSON ``data``). After ``ping`` seconds without an event a ``: ping``
    comment is sent, so proxies keep the connection open (``ping=None`` disables it).
    Headers: ``content-type: text/event-stream``, ``cache-control: no-cache``,
    ``x-accel-buffering: no`` (nginx must not buffer). Disconnect-aware and
    ``background`` as `StreamingResponse`.

    A reconnecting browser sends the last ``id`` it saw as
    ``request.headers["last-event-id"]``; resume from there.

    >>> async def tokens():
    ...     async for token in model.stream(prompt):
    ...         yield ServerSentEvent({"token": token}, event="token")
    >>> EventSourceResponse(tokens())
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        content: Content,
        *,
        ping: float | None = 15.0,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        if ping is not None and not ping > 0:
            raise ValueError(f"ping must be a positive number of seconds or None, not {ping!r}")
        self.ping = ping
        super().__init__(content, status_code=status_code, headers=headers, background=background)

    def _build_headers(self, headers: Mapping[str, str] | None) -> list[tuple[bytes, bytes]]:
        raw = super()._build_headers(headers)
        present = {key for key, _ in raw}
        if b"cache-control" not in present:
            raw.append((b"cache-control", b"no-cache"))
        if b"x-accel-buffering" not in present:
            raw.append((b"x-accel-buffering", b"no"))
        return raw

    def _streaming_content_type(self) -> tuple[bytes, bytes]:
        # The format is always UTF-8; no charset parameter needed.
        return (b"content-type", b"text/event-stream")

    async def _send_body(self, send: Send, helpers: HelperTasks, disconnect: _Disconnect) -> None:
        # Plain one-line str items (tokens) are framed inline: no call per event.
        if self.ping is None:
            async for item in self.body_iterator:
                if item.__class__ is str and "\n" not in item and "\r" not in item:
                    body = ("data: " + item + "\n\n").encode()
                else:
                    body = encode_event(item)
                try:
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                except OSError:
                    raise _SendFailed from None
        else:
            state = _PingState()
            helpers.start_soon(self._keep_alive, send, state, self.ping, disconnect)
            async for item in self.body_iterator:
                if item.__class__ is str and "\n" not in item and "\r" not in item:
                    body = ("data: " + item + "\n\n").encode()
                else:
                    body = encode_event(item)
                state.last = body
                try:
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                except OSError:
                    raise _SendFailed from None
            state.closed = True  # no ping starts after this; wait for one under way
            if state.ping_sent is not None:
                await state.ping_sent.wait()
        try:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            raise _SendFailed from None

    @staticmethod
    async def _keep_alive(
        send: Send, state: _PingState, interval: float, disconnect: _Disconnect
    ) -> None:
        """Send ``: ping`` once ``interval`` seconds passed without an event.

        The pinger looks for a new event four times per interval, so a ping goes out
        after between 1 and 1.25 intervals of silence. (A ping may go out while an event
        that has waited a whole interval for a slow client is still being sent: each is
        a complete message, so the stream stays well formed.)
        """
        step = interval / 4
        seen = state.last
        silent_since = time.monotonic()
        while True:
            await anyio.sleep(step)
            now = time.monotonic()
            if state.last is not seen:
                seen = state.last
                silent_since = now
                continue
            if now - silent_since < interval:
                continue
            if state.closed:
                return
            sent = state.ping_sent = anyio.Event()
            try:
                await send({"type": "http.response.body", "body": PING, "more_body": True})
            except OSError:
                disconnect.client_left()
                return
            except Exception as exc:
                disconnect.helper_failed(exc)
                return
            finally:
                state.ping_sent = None
                sent.set()
            silent_since = time.monotonic()

"""One HTTP request/response exchange between a test client and an ASGI app.

`AppExchange` runs the app as a task and plays the server's part: it feeds the request
body through ``receive`` and hands each body chunk over through an unbuffered memory
stream, so the app waits until the test reads (streaming is real). Closing the exchange
early delivers ``http.disconnect``, and the app's ``send`` then raises `ClientGone`
(an `OSError`, as ASGI 2.4 servers do). The response bodies adapt it to httpx's sync and
async stream interfaces.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import anyio.abc
import anyio.from_thread
import httpx
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from asgikit.types import ASGIApp, Message, Scope

__all__ = ["AppExchange", "AsyncResponseBody", "ClientGone", "SyncResponseBody"]


class ClientGone(OSError):
    """What the app's ``send`` raises once the test closed the connection or response
    (ASGI 2.4); shared by the HTTP and WebSocket test clients."""


class _RequestBody:
    """Feeds an httpx request body to the app as ``http.request`` messages, each chunk
    as soon as the client produces it (a server does not wait for the next one).

    The last message says ``more_body: False``: with a ``Content-Length``, the chunk
    that completes it (a server knows the body is whole then); without one (a chunked
    upload), an empty message once the client's iterator is exhausted, as servers send
    at the end of a chunked body."""

    def __init__(
        self, stream: httpx.SyncByteStream | httpx.AsyncByteStream | Any, length: int | None
    ) -> None:
        self._stream = stream
        self._async_iterator: AsyncIterator[bytes] | None = None
        self._sync_iterator: Iterator[bytes] | None = None
        if isinstance(stream, httpx.AsyncByteStream) or hasattr(stream, "__aiter__"):
            self._async_iterator = stream.__aiter__()
        else:
            self._sync_iterator = iter(stream)
        self._length = length
        self._sent = 0
        self.complete = False

    async def _next(self) -> bytes | None:
        while True:
            try:
                if self._async_iterator is not None:
                    chunk = await self._async_iterator.__anext__()
                else:
                    assert self._sync_iterator is not None
                    chunk = next(self._sync_iterator)
            except (StopAsyncIteration, StopIteration):
                return None
            if chunk:
                return bytes(chunk)

    async def message(self) -> Message:
        chunk = await self._next()
        if chunk is None:
            self.complete = True
            return {"type": "http.request", "body": b"", "more_body": False}
        self._sent += len(chunk)
        if self._length is not None and self._sent >= self._length:
            self.complete = True
            return {"type": "http.request", "body": chunk, "more_body": False}
        return {"type": "http.request", "body": chunk, "more_body": True}


class AppExchange:
    """One request/response exchange with the app, run as a task in a task group."""

    def __init__(
        self,
        app: ASGIApp,
        scope: Scope,
        request: httpx.Request,
        raise_server_exceptions: bool,
        buffered: bool,
    ) -> None:
        self.app = app
        self.scope = scope
        length = request.headers.get("content-length")
        self.body = _RequestBody(
            request.stream,
            int(length) if length is not None and length.isascii() and length.isdigit() else None,
        )
        self.raise_server_exceptions = raise_server_exceptions
        self.status: int | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.started = anyio.Event()
        self.finished = anyio.Event()
        self.disconnect = anyio.Event()
        self.response_complete = False
        self.client_gone = False
        self.error: BaseException | None = None
        self.error_reported = False
        self.buffered = buffered
        self.buffer: list[bytes] = []
        self.chunks_out: MemoryObjectSendStream[bytes]
        self.chunks_in: MemoryObjectReceiveStream[bytes]
        # No buffer: the app hands each chunk over only when the test reads it.
        self.chunks_out, self.chunks_in = anyio.create_memory_object_stream[bytes](
            math.inf if buffered else 0
        )

    async def receive(self) -> Message:
        if not self.body.complete and not self.client_gone:
            return await self.body.message()
        if not self.disconnect.is_set():  # like servers: a ready message comes at once
            await self.disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if self.client_gone:
            raise ClientGone("the test client closed the response")
        message_type = message["type"]
        if message_type == "http.response.start":
            if self.status is not None:
                raise RuntimeError("the app sent http.response.start twice")
            self.status = int(message["status"])
            self.headers = [(bytes(key), bytes(value)) for key, value in message.get("headers", [])]
            self.started.set()
        elif message_type == "http.response.body":
            if self.status is None:
                raise RuntimeError("the app sent http.response.body before http.response.start")
            if self.response_complete:
                raise RuntimeError("the app sent http.response.body after the response ended")
            chunk = bytes(message.get("body", b""))
            if chunk:
                try:
                    await self.chunks_out.send(chunk)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    raise ClientGone("the test client closed the response") from None
            if not message.get("more_body", False):
                self.response_complete = True
                self.chunks_out.close()
                self.disconnect.set()  # like uvicorn: receive() says disconnect once done
        else:
            raise RuntimeError(f"the test client does not support {message_type!r} messages")

    async def run(self) -> None:
        try:
            await self.app(self.scope, self.receive, self.send)
        except Exception as exc:
            if not (self.client_gone and isinstance(exc, OSError)):
                self.error = exc
        finally:
            self.chunks_out.close()
            self.finished.set()
            self.started.set()

    def raise_error(self) -> None:
        if self.error is not None and self.raise_server_exceptions and not self.error_reported:
            self.error_reported = True
            raise self.error

    async def response_head(self) -> tuple[int, list[tuple[bytes, bytes]]]:
        await self.started.wait()
        if self.status is None:
            await self.finished.wait()
            self.raise_error()
            if self.error is not None:
                return 500, [(b"content-type", b"text/plain; charset=utf-8")]
            raise RuntimeError("the ASGI app returned without sending a response")
        return self.status, self.headers

    async def next_chunk(self) -> bytes | None:
        """The next body chunk, or None at the end (raising the app's error if any)."""
        try:
            return await self.chunks_in.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            await self.finished.wait()
            self.raise_error()
            return None

    async def close(self) -> None:
        """The client is done with the response: tell the app, wait for it to finish."""
        if not self.finished.is_set() and not self.response_complete:
            self.client_gone = True
            self.disconnect.set()
        self.chunks_in.close()
        await self.finished.wait()
        self.raise_error()


class AsyncResponseBody(httpx.AsyncByteStream):
    def __init__(self, exchange: AppExchange, on_close: Callable[[], Any] | None = None) -> None:
        self._exchange = exchange
        self._on_close = on_close

    async def __aiter__(self) -> AsyncIterator[bytes]:
        exchange = self._exchange
        if exchange.buffered:
            for chunk in exchange.buffer:
                yield chunk
            return
        while True:
            received = await exchange.next_chunk()
            if received is None:
                return
            yield received

    async def aclose(self) -> None:
        try:
            if not self._exchange.buffered:
                await self._exchange.close()
        finally:
            if self._on_close is not None:
                await self._on_close()


class SyncResponseBody(httpx.SyncByteStream):
    def __init__(
        self,
        exchange: AppExchange,
        portal: anyio.from_thread.BlockingPortal,
        on_close: Callable[[], None],
    ) -> None:
        self._exchange = exchange
        self._portal = portal
        self._on_close = on_close
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        while True:
            chunk = self._portal.call(self._exchange.next_chunk)
            if chunk is None:
                return
            yield chunk

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._portal.call(self._exchange.close)
        finally:
            self._on_close()

"""In-process test clients on httpx: `TestClient` (sync) and `AsyncTestClient` (async).

Both run any ASGI app in the test's process through an httpx transport. Unlike
httpx's own ``ASGITransport``, response bodies stream for real: ``client.stream(...)``
yields each chunk as the app sends it (the app waits until the test reads), and
closing a stream early delivers ``http.disconnect`` to the app. Entering a client
(``with`` / ``async with``) runs the app's lifespan startup; leaving runs shutdown.

The sync client runs the app on an event loop in a helper thread (an anyio blocking
portal), asyncio by default or trio with ``backend="trio"``; the async client runs it
on the test's own event loop.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from types import TracebackType
from typing import Any, Literal

import anyio
import anyio.abc
import anyio.from_thread
import httpx
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from asgikit._testing_scope import connection_scope
from asgikit._testing_websocket import (
    AsyncWebSocketTestSession,
    WebSocketDenialResponse,
    WebSocketTestSession,
    _ClientGone,
    websocket_scope,
)
from asgikit.types import ASGIApp, Message, Scope

__all__ = [
    "AsyncTestClient",
    "AsyncWebSocketTestSession",
    "TestClient",
    "WebSocketDenialResponse",
    "WebSocketTestSession",
]

_DEFAULT_CLIENT = ("testclient", 50000)


def _http_scope(
    request: httpx.Request,
    *,
    root_path: str,
    client: tuple[str, int],
    state: dict[str, Any] | None,
) -> Scope:
    scope = connection_scope(
        request,
        scope_type="http",
        scheme=request.url.scheme,
        headers=[(key.lower(), value) for key, value in request.headers.raw],
        root_path=root_path,
        client=client,
        state=state,
    )
    scope["method"] = request.method
    scope["extensions"] = {}
    return scope


class _RequestBody:
    """Feeds an httpx request body to the app as ``http.request`` messages."""

    def __init__(self, stream: httpx.SyncByteStream | httpx.AsyncByteStream | Any) -> None:
        self._stream = stream
        self._async_iterator: AsyncIterator[bytes] | None = None
        self._sync_iterator: Iterator[bytes] | None = None
        if isinstance(stream, httpx.AsyncByteStream) or hasattr(stream, "__aiter__"):
            self._async_iterator = stream.__aiter__()
        else:
            self._sync_iterator = iter(stream)
        self._lookahead: bytes | None = None
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
        chunk = self._lookahead if self._lookahead is not None else await self._next()
        self._lookahead = None
        if chunk is None:
            self.complete = True
            return {"type": "http.request", "body": b"", "more_body": False}
        self._lookahead = await self._next()
        more = self._lookahead is not None
        self.complete = not more
        return {"type": "http.request", "body": chunk, "more_body": more}


class _AppExchange:
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
        self.body = _RequestBody(request.stream)
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
            raise _ClientGone("the test client closed the response")
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
                    raise _ClientGone("the test client closed the response") from None
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


class _AsyncResponseBody(httpx.AsyncByteStream):
    def __init__(self, exchange: _AppExchange, on_close: Callable[[], Any] | None = None) -> None:
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


class _SyncResponseBody(httpx.SyncByteStream):
    def __init__(
        self,
        exchange: _AppExchange,
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


class _Lifespan:
    """Drives the app's lifespan protocol; records whether the app supports it."""

    def __init__(self, app: ASGIApp, state: dict[str, Any]) -> None:
        self.app = app
        self.state = state
        self.events: list[Message] = [{"type": "lifespan.startup"}]
        self.inbox = anyio.Event()
        self.startup_done = anyio.Event()
        self.shutdown_done = anyio.Event()
        self.startup_failed: str | None = None
        self.shutdown_failed: str | None = None
        self.error: BaseException | None = None
        self.supported = True
        self._shutdown_requested = False

    async def receive(self) -> Message:
        if self._shutdown_requested or self.startup_done.is_set():
            await self.inbox.wait()
            return {"type": "lifespan.shutdown"}
        return {"type": "lifespan.startup"}

    async def send(self, message: Message) -> None:
        message_type = message["type"]
        if message_type == "lifespan.startup.complete":
            self.startup_done.set()
        elif message_type == "lifespan.startup.failed":
            self.startup_failed = message.get("message", "")
            self.startup_done.set()
        elif message_type == "lifespan.shutdown.complete":
            self.shutdown_done.set()
        elif message_type == "lifespan.shutdown.failed":
            self.shutdown_failed = message.get("message", "")
            self.shutdown_done.set()

    async def run(self) -> None:
        scope: Scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        try:
            await self.app(scope, self.receive, self.send)
        except Exception as exc:
            if not self.startup_done.is_set():
                if self.startup_failed is None:
                    self.supported = False  # raised without answering: no lifespan support
                else:
                    self.error = exc
            elif self.shutdown_failed is not None or self._shutdown_requested:
                self.error = exc
            else:
                self.error = exc
        finally:
            self.startup_done.set()
            self.shutdown_done.set()

    async def startup(self, task_group: anyio.abc.TaskGroup) -> None:
        task_group.start_soon(self.run)
        await self.startup_done.wait()
        if self.startup_failed is not None:
            if self.error is not None:
                raise self.error
            raise RuntimeError(f"lifespan startup failed: {self.startup_failed}")

    async def shutdown(self) -> None:
        if not self.supported:
            return
        self._shutdown_requested = True
        self.inbox.set()
        await self.shutdown_done.wait()
        if self.error is not None:
            raise self.error
        if self.shutdown_failed is not None:
            raise RuntimeError(f"lifespan shutdown failed: {self.shutdown_failed}")


class _Host:
    """A task group living on a portal's event loop, for the sync client."""

    def __init__(self) -> None:
        self.task_group: anyio.abc.TaskGroup | None = None
        self._stop = anyio.Event()

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        async with anyio.create_task_group() as task_group:
            self.task_group = task_group
            task_status.started()
            await self._stop.wait()
            task_group.cancel_scope.cancel()

    async def stop(self) -> None:
        self._stop.set()


class _SyncTransport(httpx.BaseTransport):
    def __init__(self, client: TestClient) -> None:
        self._client = client

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        client = self._client
        stack = contextlib.ExitStack()
        try:
            portal, task_group = stack.enter_context(client._portal_and_task_group())
            scope = _http_scope(
                request,
                root_path=client.root_path,
                client=client.client_address,
                state=client.lifespan_state if client._entered else None,
            )
            exchange = _AppExchange(
                client.app, scope, request, client.raise_server_exceptions, buffered=False
            )

            async def start() -> tuple[int, list[tuple[bytes, bytes]]]:
                task_group.start_soon(exchange.run)
                return await exchange.response_head()

            status, headers = portal.call(start)
        except BaseException:
            stack.close()
            raise
        return httpx.Response(
            status_code=status,
            headers=headers,
            stream=_SyncResponseBody(exchange, portal, stack.close),
            request=request,
        )


class _AsyncTransport(httpx.AsyncBaseTransport):
    def __init__(self, client: AsyncTestClient) -> None:
        self._client = client

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        client = self._client
        scope = _http_scope(
            request,
            root_path=client.root_path,
            client=client.client_address,
            state=client.lifespan_state if client._task_group is not None else None,
        )
        task_group = client._task_group
        if task_group is None:
            # Not entered: no task group outlives this call, so run the app to the end
            # and keep its body (streaming needs ``async with AsyncTestClient(app)``).
            exchange = _AppExchange(
                client.app, scope, request, client.raise_server_exceptions, buffered=True
            )
            async with anyio.create_task_group() as group:
                group.start_soon(exchange.run)
                status, headers = await exchange.response_head()
                async for chunk in exchange.chunks_in:
                    exchange.buffer.append(chunk)
            exchange.raise_error()
        else:
            exchange = _AppExchange(
                client.app, scope, request, client.raise_server_exceptions, buffered=False
            )
            task_group.start_soon(exchange.run)
            status, headers = await exchange.response_head()
        return httpx.Response(
            status_code=status,
            headers=headers,
            stream=_AsyncResponseBody(exchange),
            request=request,
        )


class TestClient(httpx.Client):
    """A synchronous `httpx.Client` that calls an ASGI app in process.

    ``with TestClient(app) as client:`` runs lifespan startup on entry and shutdown on
    exit. ``raise_server_exceptions=True`` re-raises an exception the app raised (else
    the test sees the app's 500). Redirects are followed by default.

    >>> with TestClient(router) as client:
    ...     assert client.get("/hello").text == "Hello, world!"
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        app: ASGIApp,
        base_url: str = "http://testserver",
        *,
        raise_server_exceptions: bool = True,
        root_path: str = "",
        backend: Literal["asyncio", "trio"] = "asyncio",
        backend_options: Mapping[str, Any] | None = None,
        client: tuple[str, int] = _DEFAULT_CLIENT,
        headers: Mapping[str, str] | None = None,
        cookies: httpx._types.CookieTypes | None = None,
        follow_redirects: bool = True,
        timeout: float | None = None,
    ) -> None:
        self.app = app
        self.raise_server_exceptions = raise_server_exceptions
        self.root_path = root_path
        self.backend = backend
        self.backend_options = dict(backend_options or {})
        self.client_address = client
        self.lifespan_state: dict[str, Any] = {}
        self._entered = False
        self._exit_stack: contextlib.ExitStack | None = None
        self._portal: anyio.from_thread.BlockingPortal | None = None
        self._host: _Host | None = None
        self._lifespan: _Lifespan | None = None
        super().__init__(
            base_url=base_url,
            transport=_SyncTransport(self),
            headers=headers,
            cookies=cookies,
            follow_redirects=follow_redirects,
            timeout=timeout,
        )

    @contextlib.contextmanager
    def _portal_and_task_group(
        self,
    ) -> Iterator[tuple[anyio.from_thread.BlockingPortal, anyio.abc.TaskGroup]]:
        """The event loop (portal) and task group the app runs in.

        Inside ``with client:`` they live as long as the client; otherwise a temporary
        pair is made and torn down when the ``with`` block that asked for it ends.
        """
        if self._portal is not None and self._host is not None:
            assert self._host.task_group is not None
            yield self._portal, self._host.task_group
            return
        with anyio.from_thread.start_blocking_portal(self.backend, self.backend_options) as portal:
            host = _Host()
            portal.start_task(host.serve)
            try:
                assert host.task_group is not None
                yield portal, host.task_group
            finally:
                portal.call(host.stop)

    @contextlib.contextmanager
    def websocket_connect(
        self,
        path: str,
        subprotocols: list[str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Iterator[WebSocketTestSession]:
        """Open a WebSocket to the app at ``path`` (a context manager).

        The handshake happens on entry: if the app closes instead of accepting,
        `WebSocketDisconnect` is raised (`WebSocketDenialResponse` for an HTTP
        rejection). Leaving the block closes with 1000 and waits for the app.

        >>> with client.websocket_connect("/ws") as websocket:
        ...     websocket.send_text("hi")
        ...     reply = websocket.receive_text()
        """
        request = self.build_request("GET", path, headers=headers)
        scope = websocket_scope(
            request,
            root_path=self.root_path,
            client=self.client_address,
            state=self.lifespan_state if self._entered else None,
            subprotocols=subprotocols,
        )
        with self._portal_and_task_group() as (portal, task_group):
            session = WebSocketTestSession(
                portal,
                self.app,
                scope,
                task_group,
                raise_server_exceptions=self.raise_server_exceptions,
            )
            with session as websocket:
                yield websocket

    def __enter__(self) -> TestClient:
        stack = contextlib.ExitStack()
        try:
            portal = stack.enter_context(
                anyio.from_thread.start_blocking_portal(self.backend, self.backend_options)
            )
            host = _Host()
            portal.start_task(host.serve)
            stack.callback(portal.call, host.stop)
            assert host.task_group is not None
            self._portal, self._host = portal, host
            self.lifespan_state = {}
            lifespan = _Lifespan(self.app, self.lifespan_state)
            portal.call(lifespan.startup, host.task_group)
            self._lifespan = lifespan
            self._entered = True
        except BaseException:
            self._portal = self._host = None
            stack.close()
            raise
        # httpx's own __enter__ is not called: it refuses a client that already sent a
        # request, and a test client may be used before, between and after ``with``.
        self._exit_stack = stack
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        try:
            if self._lifespan is not None and self._portal is not None:
                self._portal.call(self._lifespan.shutdown)
        finally:
            self._entered = False
            self._lifespan = None
            stack, self._exit_stack = self._exit_stack, None
            self._portal = self._host = None
            if stack is not None:
                stack.close()


class AsyncTestClient(httpx.AsyncClient):
    """An `httpx.AsyncClient` that calls an ASGI app on the test's own event loop.

    ``async with AsyncTestClient(app) as client:`` runs lifespan startup and shutdown,
    and is what makes ``client.stream(...)`` incremental; used without ``async with``,
    each response is read to its end before it is returned.

    >>> async with AsyncTestClient(router) as client:
    ...     response = await client.get("/hello")
    """

    __test__ = False

    def __init__(
        self,
        app: ASGIApp,
        base_url: str = "http://testserver",
        *,
        raise_server_exceptions: bool = True,
        root_path: str = "",
        client: tuple[str, int] = _DEFAULT_CLIENT,
        headers: Mapping[str, str] | None = None,
        cookies: httpx._types.CookieTypes | None = None,
        follow_redirects: bool = True,
        timeout: float | None = None,
    ) -> None:
        self.app = app
        self.raise_server_exceptions = raise_server_exceptions
        self.root_path = root_path
        self.client_address = client
        self.lifespan_state: dict[str, Any] = {}
        self._task_group: anyio.abc.TaskGroup | None = None
        self._lifespan: _Lifespan | None = None
        super().__init__(
            base_url=base_url,
            transport=_AsyncTransport(self),
            headers=headers,
            cookies=cookies,
            follow_redirects=follow_redirects,
            timeout=timeout,
        )

    @contextlib.asynccontextmanager
    async def _task_group_context(self) -> AsyncIterator[anyio.abc.TaskGroup]:
        """The client's task group inside ``async with client``, else a temporary one."""
        if self._task_group is not None:
            yield self._task_group
            return
        async with anyio.create_task_group() as task_group:
            yield task_group
            task_group.cancel_scope.cancel()

    @contextlib.asynccontextmanager
    async def websocket_connect(
        self,
        path: str,
        subprotocols: list[str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[AsyncWebSocketTestSession]:
        """Open a WebSocket to the app at ``path`` (an async context manager).

        Same behaviour as `TestClient.websocket_connect`, with awaitable methods.

        >>> async with client.websocket_connect("/ws") as websocket:
        ...     await websocket.send_text("hi")
        ...     reply = await websocket.receive_text()
        """
        request = self.build_request("GET", path, headers=headers)
        scope = websocket_scope(
            request,
            root_path=self.root_path,
            client=self.client_address,
            state=self.lifespan_state if self._task_group is not None else None,
            subprotocols=subprotocols,
        )
        async with self._task_group_context() as task_group:
            session = AsyncWebSocketTestSession(
                self.app, scope, task_group, raise_server_exceptions=self.raise_server_exceptions
            )
            async with session:
                yield session

    async def __aenter__(self) -> AsyncTestClient:
        # httpx's own __aenter__ is not called: it refuses a client that already sent a
        # request, and a test client may be used before, between and after ``async with``.
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        try:
            self.lifespan_state = {}
            lifespan = _Lifespan(self.app, self.lifespan_state)
            await lifespan.startup(task_group)
        except BaseException:
            task_group.cancel_scope.cancel()
            await task_group.__aexit__(None, None, None)
            raise
        self._task_group = task_group
        self._lifespan = lifespan
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        task_group, self._task_group = self._task_group, None
        lifespan, self._lifespan = self._lifespan, None
        try:
            if lifespan is not None:
                try:
                    await lifespan.shutdown()
                except Exception:
                    if exc_type is None:
                        raise  # else the test's own error is the one to see
        finally:
            if task_group is not None:
                task_group.cancel_scope.cancel()
                await task_group.__aexit__(None, None, None)

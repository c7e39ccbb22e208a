"""The two test clients and the base they share; see `asgikit.testing`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping
from http.cookiejar import CookieJar
from types import TracebackType
from typing import Any, Literal, TypeAlias

import anyio
import anyio.abc
import anyio.from_thread
import httpx

from asgikit.testing._exchange import AppExchange, AsyncResponseBody, SyncResponseBody
from asgikit.testing._lifespan import LifespanRunner
from asgikit.testing._scope import http_scope, websocket_scope
from asgikit.testing._websocket import AsyncWebSocketTestSession, WebSocketTestSession
from asgikit.types import ASGIApp, Scope

__all__ = ["AsyncTestClient", "TestClient"]

#: What ``cookies=`` accepts (the forms httpx accepts, named with public types only).
Cookies: TypeAlias = "httpx.Cookies | CookieJar | dict[str, str] | list[tuple[str, str]]"

_DEFAULT_CLIENT = ("testclient", 50000)


class _ClientBase:
    """What `TestClient` and `AsyncTestClient` share: the app and the options the test
    gave, the lifespan state, and the scopes and exchanges built for each request."""

    app: ASGIApp
    raise_server_exceptions: bool
    root_path: str
    client_address: tuple[str, int]
    lifespan_state: dict[str, Any]
    _lifespan: LifespanRunner | None

    def _configure(
        self,
        app: ASGIApp,
        *,
        raise_server_exceptions: bool,
        root_path: str,
        client: tuple[str, int],
    ) -> None:
        self.app = app
        self.raise_server_exceptions = raise_server_exceptions
        self.root_path = root_path
        self.client_address = client
        self.lifespan_state = {}
        self._lifespan = None

    def _request_state(self) -> dict[str, Any] | None:
        """The lifespan state requests see: only inside ``with``, as under a server."""
        return self.lifespan_state if self._lifespan is not None else None

    def _exchange(self, request: httpx.Request, *, buffered: bool) -> AppExchange:
        scope = http_scope(
            request,
            root_path=self.root_path,
            client=self.client_address,
            state=self._request_state(),
        )
        return AppExchange(self.app, scope, request, self.raise_server_exceptions, buffered)

    def _websocket_scope(self, request: httpx.Request, subprotocols: list[str] | None) -> Scope:
        return websocket_scope(
            request,
            root_path=self.root_path,
            client=self.client_address,
            state=self._request_state(),
            subprotocols=subprotocols,
        )


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
            exchange = client._exchange(request, buffered=False)

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
            stream=SyncResponseBody(exchange, portal, stack.close),
            request=request,
        )


class _AsyncTransport(httpx.AsyncBaseTransport):
    def __init__(self, client: AsyncTestClient) -> None:
        self._client = client

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        client = self._client
        task_group = client._task_group
        if task_group is None:
            # Not entered: no task group outlives this call, so run the app to the end
            # and keep its body (streaming needs ``async with AsyncTestClient(app)``).
            exchange = client._exchange(request, buffered=True)
            async with anyio.create_task_group() as group:
                group.start_soon(exchange.run)
                status, headers = await exchange.response_head()
                async for chunk in exchange.chunks_in:
                    exchange.buffer.append(chunk)
            exchange.raise_error()
        else:
            exchange = client._exchange(request, buffered=False)
            task_group.start_soon(exchange.run)
            status, headers = await exchange.response_head()
        return httpx.Response(
            status_code=status,
            headers=headers,
            stream=AsyncResponseBody(exchange),
            request=request,
        )


class TestClient(_ClientBase, httpx.Client):
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
        cookies: Cookies | None = None,
        follow_redirects: bool = True,
        timeout: float | None = None,
    ) -> None:
        self._configure(
            app, raise_server_exceptions=raise_server_exceptions, root_path=root_path, client=client
        )
        self.backend = backend
        self.backend_options = dict(backend_options or {})
        self._exit_stack: contextlib.ExitStack | None = None
        self._portal: anyio.from_thread.BlockingPortal | None = None
        self._host: _Host | None = None
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
        scope = self._websocket_scope(request, subprotocols)
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
            lifespan = LifespanRunner(self.app, self.lifespan_state)
            portal.call(lifespan.startup, host.task_group)
            self._lifespan = lifespan
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
            self._lifespan = None
            stack, self._exit_stack = self._exit_stack, None
            self._portal = self._host = None
            if stack is not None:
                stack.close()


class AsyncTestClient(_ClientBase, httpx.AsyncClient):
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
        cookies: Cookies | None = None,
        follow_redirects: bool = True,
        timeout: float | None = None,
    ) -> None:
        self._configure(
            app, raise_server_exceptions=raise_server_exceptions, root_path=root_path, client=client
        )
        self._task_group: anyio.abc.TaskGroup | None = None
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
        error: Exception | None = None
        async with anyio.create_task_group() as task_group:
            try:
                yield task_group
            except Exception as exc:
                # Kept, not raised: raised here it would leave the task group wrapped
                # in an ExceptionGroup, unlike the same call on an entered client.
                error = exc
            task_group.cancel_scope.cancel()
        if error is not None:
            raise error

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
        scope = self._websocket_scope(request, subprotocols)
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
            lifespan = LifespanRunner(self.app, self.lifespan_state)
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

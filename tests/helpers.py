"""Helpers shared by the test suite: raw ASGI scopes, canned and scripted ``receive``
callables, a ``send`` that records what an app sent, an app that records how it was
called, and a few small apps and client steps that several test modules need. Tests that
drive an app through raw ASGI calls use these instead of writing scope dicts and
recorders by hand; a test keeps a hand-written one only where the point is a minimal or
unusual scope or server, and says so."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio

from asgikit import Request, Router, StreamingResponse
from asgikit.testing import AsyncTestClient
from asgikit.types import ASGIApp, Message, Receive, Scope, Send


def http_scope(
    path: str = "/",
    *,
    method: str = "GET",
    headers: Iterable[tuple[bytes, bytes]] = (),
    query_string: bytes = b"",
    root_path: str = "",
    scheme: str = "http",
    spec_version: str = "2.3",
    **extra: Any,
) -> Scope:
    """An ``http`` scope as uvicorn builds it (ASGI spec 2.3 unless ``spec_version`` says
    otherwise: from "2.4" a server's ``send`` raises `OSError` once the client has gone);
    ``extra`` keys are added."""
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": spec_version},
        "http_version": "1.1",
        "method": method,
        "scheme": scheme,
        "path": path,
        "raw_path": path.encode(),
        "root_path": root_path,
        "query_string": query_string,
        "headers": list(headers),
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    scope.update(extra)
    return scope


def websocket_scope(path: str = "/", *, scheme: str = "ws", **extra: Any) -> Scope:
    """A ``websocket`` scope; ``extra`` keys are added."""
    scope = http_scope(path, scheme=scheme, subprotocols=[], **extra)
    scope["type"] = "websocket"
    del scope["method"]
    return scope


class Recorder:
    """A raw ASGI ``send`` that keeps every message.

    With ``fail_on_body=n`` the n-th body message (0-based) raises `OSError`, as a
    server's ``send`` does once the client has gone (ASGI 2.4).
    """

    def __init__(self, fail_on_body: int | None = None) -> None:
        self.messages: list[Message] = []
        self.fail_on_body = fail_on_body

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.body" and self.fail_on_body is not None:
            bodies = sum(m["type"] == "http.response.body" for m in self.messages)
            if bodies == self.fail_on_body:
                raise OSError("connection closed")
        self.messages.append(message)

    @property
    def types(self) -> list[str]:
        """The message types, in order."""
        return [message["type"] for message in self.messages]

    @property
    def status(self) -> int | None:
        """The status of the ``http.response.start`` sent, if any."""
        for message in self.messages:
            if message["type"] == "http.response.start":
                return int(message["status"])
        return None

    @property
    def bodies(self) -> list[bytes]:
        """Each body chunk sent, in order (empty ones too)."""
        return [
            message.get("body", b"")
            for message in self.messages
            if message["type"] == "http.response.body"
        ]

    @property
    def body(self) -> bytes:
        """Every body chunk sent, joined."""
        return b"".join(self.bodies)


async def receive_nothing() -> Message:
    """A ``receive`` the app must not call."""
    raise AssertionError("not expected to receive")


async def send_nothing(message: Message) -> None:
    """A ``send`` the app must not call."""
    raise AssertionError("not expected to send")


async def never_disconnects() -> Message:
    """A ``receive`` that blocks forever: the client never leaves."""
    await anyio.sleep_forever()
    raise AssertionError("unreachable")


async def client_gone() -> Message:
    """A ``receive`` whose client has already left: ``http.disconnect`` on every call."""
    return {"type": "http.disconnect"}


def request_messages(*chunks: bytes) -> list[Message]:
    """``chunks`` as the ``http.request`` messages of one body (one empty message if
    none): ``more_body`` is true on all but the last."""
    return [
        {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
        for index, chunk in enumerate(chunks or (b"",))
    ]


def receive_body(*chunks: bytes) -> Receive:
    """A ``receive`` that gives ``chunks`` as ``http.request`` messages (one empty
    message if none), then blocks until cancelled, like a server whose client waits."""
    messages = request_messages(*chunks)

    async def receive() -> Message:
        if messages:
            return messages.pop(0)
        return await never_disconnects()

    return receive


def receive_then_disconnect(*chunks: bytes) -> Receive:
    """A ``receive`` that gives ``chunks`` as ``http.request`` messages (one empty
    message if none), then ``http.disconnect`` on every later call: a client that sent
    its body and left."""
    return receive_messages(request_messages(*chunks))


def receive_messages(
    messages: list[Message],
    gone: anyio.Event | None = None,
    *,
    then: Message | None = None,
) -> Receive:
    """A server's ``receive`` scripted by ``messages``: each call takes the first one
    out of the list (so a test can see how many were never read); once the list is
    empty it reports ``then`` (``http.disconnect`` unless given), after waiting
    for ``gone`` if one is given (like a server, it waits only when nothing is ready)."""

    async def receive() -> Message:
        if messages:
            return messages.pop(0)
        if gone is not None and not gone.is_set():  # no checkpoint once it is set
            await gone.wait()
        return dict(then or {"type": "http.disconnect"})

    return receive


def receive_lifespan(stop: anyio.Event | None = None) -> Receive:
    """A server's ``receive`` for a ``lifespan`` scope: ``lifespan.startup``, then
    ``lifespan.shutdown`` on every later call (once ``stop`` is set, if given)."""
    startup: list[Message] = [{"type": "lifespan.startup"}]
    return receive_messages(startup, stop, then={"type": "lifespan.shutdown"})


async def never_called(scope: Scope, receive: Receive, send: Send) -> None:
    """An ASGI app that must not be reached."""
    raise AssertionError("the app must not be called")


def echo_router(*, check_connected: bool = False) -> Router:
    """A `Router` whose ``POST /echo`` streams the request body straight back, chunk by
    chunk, so the body reader and the response's disconnect listener share ``receive``.
    With ``check_connected`` it also asserts `Request.is_disconnected` is false after
    each chunk."""
    router = Router()

    @router.post("/echo")
    async def echo(request: Request) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            async for chunk in request.stream():
                yield chunk
                if check_connected:
                    assert not await request.is_disconnected()

        return StreamingResponse(chunks(), media_type="application/octet-stream")

    return router


class AppCalls:
    """An ASGI app that records each call as ``(scope, receive, send)`` and does nothing
    else: what a middleware handed on to the app it wraps."""

    def __init__(self) -> None:
        self.calls: list[tuple[Scope, Receive, Send]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls.append((scope, receive, send))


async def assert_passes_through(wrap: Callable[[ASGIApp], ASGIApp], scope: Scope) -> None:
    """Assert that the middleware ``wrap(app)`` hands ``scope``, ``receive`` and ``send``
    on to its app unchanged (the same objects), once, receiving and sending nothing."""
    app = AppCalls()
    await wrap(app)(scope, receive_nothing, send_nothing)
    assert app.calls == [(scope, receive_nothing, send_nothing)]


@asynccontextmanager
async def left_mid_stream(
    app: ASGIApp, path: str, until: Callable[[str], bool] = lambda line: True
) -> AsyncIterator[None]:
    """GET ``path`` from ``app`` through `AsyncTestClient`, read lines until ``until(line)``
    is true (the first line by default), then close the response as a client that leaves
    would. The body runs with the client still open, so what it sees is the app noticing
    the disconnect, not the test client shutting down."""
    async with AsyncTestClient(app) as client:
        async with client.stream("GET", path) as response:
            async for line in response.aiter_lines():
                if until(line):
                    break
        yield


T = TypeVar("T")


def wait_until(
    probe: Callable[[], T], done: Callable[[T], object] = bool, *, seconds: float = 10
) -> T:
    """Call ``probe()`` every 20 ms until ``done(value)`` holds or ``seconds`` pass (a
    bounded wait, for sync tests watching a server subprocess: a file, a log, a counter);
    returns the last value either way, for the caller to assert on and show."""
    deadline = time.monotonic() + seconds
    value = probe()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.02)
        value = probe()
    return value

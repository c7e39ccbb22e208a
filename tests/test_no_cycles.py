"""A finished request leaves no reference cycle behind: everything it made is freed by
reference counting when it ends, so a busy server does not run the garbage collector
every few dozen requests (and frees a stream's memory at once)."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from helpers import http_scope, receive_body, receive_messages

from asgikit import (
    BackgroundTask,
    EventSourceResponse,
    FileResponse,
    HTTPException,
    JSONResponse,
    PlainTextResponse,
    Request,
    Router,
    StreamingResponse,
    UploadFile,
    streaming,
)
from asgikit.middleware import (
    ConcurrencyLimitMiddleware,
    GZipMiddleware,
    Middleware,
    TimeoutMiddleware,
)

# A pause between tokens that makes a three-token stream outlive `_LISTEN_AFTER`: its
# disconnect listener (and an event stream's pinger) start.
LONG = streaming._LISTEN_AFTER * 0.6


async def _tokens(pause: float) -> AsyncIterator[str]:
    for n in range(3):
        yield f"token {n}"
        if pause:
            await anyio.sleep(pause)


def _router(tmp_path: Path) -> Router:
    router = Router()
    (tmp_path / "weights.bin").write_bytes(b"w" * 300_000)

    @router.get("/file")  # spec 2.3: watched for a disconnect through the relay
    async def file(request: Request) -> FileResponse:
        return FileResponse(tmp_path / "weights.bin")

    @router.get("/hello")
    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hi")

    @router.get("/sse")  # short: over before the disconnect listener starts
    async def sse(request: Request) -> EventSourceResponse:
        return EventSourceResponse(_tokens(0))

    @router.get("/sse-long")  # the listener and the pinger run, pings are sent
    async def sse_long(request: Request) -> EventSourceResponse:
        return EventSourceResponse(_tokens(LONG), ping=0.005)

    @router.get("/stream-long")  # the listener runs
    async def stream_long(request: Request) -> StreamingResponse:
        return StreamingResponse(chunk.encode() async for chunk in _tokens(LONG))

    @router.post("/echo")
    async def echo(request: Request) -> JSONResponse:
        return JSONResponse(await request.json())

    @router.post("/upload")  # the file goes to disk through the writer thread
    async def upload(request: Request) -> PlainTextResponse:
        file = (await request.form())["file"]
        assert isinstance(file, UploadFile)
        return PlainTextResponse(str(file.size))

    @router.get("/teapot")
    async def teapot(request: Request) -> None:
        raise HTTPException(418, "short and stout")

    @router.get("/boom")
    async def boom(request: Request) -> None:
        raise RuntimeError("a bug: answered 500, logged, raised to the server")

    @router.get("/watched", cancel_on_disconnect=True)
    async def watched(request: Request) -> dict[str, bool]:
        await anyio.sleep(0.03)  # the disconnect watch is armed
        return {"ok": True}

    return router


BOUNDARY = "cycles"
FILE = b"x" * (3 * 1024 * 1024)
UPLOAD = (
    f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=file; filename=a.bin\r\n\r\n".encode()
    + FILE
    + f"\r\n--{BOUNDARY}--\r\n".encode()
)
JSON = [(b"content-type", b"application/json")]
MULTIPART = [(b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode())]
LEFT = b"<the client leaves here>"  # a body ending so was cut: http.disconnect follows
REQUESTS: dict[str, tuple[str, str, list[tuple[bytes, bytes]], bytes]] = {
    "hello": ("GET", "/hello", [], b""),
    "short sse": ("GET", "/sse", [], b""),
    "long sse": ("GET", "/sse-long", [], b""),
    "long stream": ("GET", "/stream-long", [], b""),
    "json body": ("POST", "/echo", JSON, b'{"a": [1, 2]}'),
    "invalid json": ("POST", "/echo", JSON, b'{"a": NaN}'),
    "json body cut": ("POST", "/echo", JSON, b'{"a": [1,' + LEFT),
    "upload": ("POST", "/upload", MULTIPART, UPLOAD),
    "upload cut": ("POST", "/upload", MULTIPART, UPLOAD[: 2 * 1024 * 1024] + LEFT),
    "malformed upload": ("POST", "/upload", MULTIPART, UPLOAD[:-4]),
    "file": ("GET", "/file", [], b""),
    "http error": ("GET", "/teapot", [], b""),
    "unhandled error": ("GET", "/boom", [], b""),
    "no route": ("GET", "/nowhere", [], b""),
    "wrong method": ("DELETE", "/hello", [], b""),
    "cancel_on_disconnect": ("GET", "/watched", [], b""),
}


def _with_middleware(tmp_path: Path) -> Router:
    outer = Router(
        middleware=[
            Middleware(TimeoutMiddleware, timeout=5),
            Middleware(ConcurrencyLimitMiddleware, max_concurrency=4),
            Middleware(GZipMiddleware),
        ]
    )
    outer.mount("/", _router(tmp_path))
    return outer


class _Connection:
    """What a server passes as ``receive``: a bound method of its per-request object,
    which holds the scope (uvicorn's RequestResponseCycle does). Anything asgikit leaves
    in the scope that refers to ``receive`` makes a cycle through it."""

    def __init__(self, scope: dict[str, Any], receive: Any) -> None:
        self.scope = scope
        self._receive = receive

    async def receive(self) -> Any:
        return await self._receive()


@pytest.fixture
def no_collector() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def _left_for_the_collector(run: Callable[[], Awaitable[None]], times: int) -> list[str]:
    """The types of what ``times`` runs of ``run`` leave in reference cycles (with the
    collector off: the `no_collector` fixture). One run first: first-use setup (per-loop
    state, caches) is not per request."""
    await run()
    await anyio.sleep(0.01)
    gc.collect()
    for _ in range(times):
        await run()
    await anyio.sleep(0.01)  # cancelled helpers finish
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        return [type(obj).__name__ for obj in gc.garbage]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


@pytest.mark.anyio
@pytest.mark.parametrize("stack", ["router", "middleware and mount"])
@pytest.mark.parametrize("case", list(REQUESTS))
async def test_a_request_leaves_no_cycle(
    case: str,
    stack: str,
    no_collector: None,
    tmp_path: Path,
) -> None:
    method, path, headers, body = REQUESTS[case]
    router = _router(tmp_path) if stack == "router" else _with_middleware(tmp_path)

    sent: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message.get("body", b""))

    async def serve() -> None:
        scope = http_scope(path=path, method=method, headers=headers)
        if body.endswith(LEFT):  # in 64 KiB messages, then the client leaves
            data = body.removesuffix(LEFT)
            chunks = [data[start : start + 65536] for start in range(0, len(data), 65536)]
            messages = [
                {"type": "http.request", "body": chunk, "more_body": True} for chunk in chunks
            ]
            connection = _Connection(scope, receive_messages(messages))
        else:
            connection = _Connection(scope, receive_body(body))
        if path == "/boom":
            with pytest.raises(RuntimeError, match="a bug"):
                await router(scope, connection.receive, send)
        else:
            await router(scope, connection.receive, send)

    assert await _left_for_the_collector(serve, times=5) == []
    assert sent or body.endswith(LEFT)  # (nobody to answer once the client left)
    if path == "/sse-long":
        assert b": ping\n\n" in sent  # the pinger did run


@pytest.mark.anyio
async def test_body_bytes_nobody_read_are_kept_for_a_later_reader() -> None:
    # The stream's listener reads the body ahead (nobody else reads it): when the
    # response is over, the relay stays in the scope with those bytes, so a reader
    # after the response still gets them (the cycle is the lesser evil).
    router = Router()
    late_bodies: list[bytes] = []

    @router.post("/stream")
    async def stream(request: Request) -> StreamingResponse:
        async def slow() -> AsyncIterator[bytes]:
            yield b"a"
            await anyio.sleep(LONG * 2)  # the listener starts and reads ahead
            yield b"b"

        async def read_late() -> None:
            late_bodies.append(await request.body())

        return StreamingResponse(slow(), background=BackgroundTask(read_late))

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    for _ in range(2):
        scope = http_scope(path="/stream", method="POST")
        connection = _Connection(scope, receive_body(b"part one, ", b"part two"))
        await router(scope, connection.receive, send)
    assert late_bodies == [b"part one, part two"] * 2  # read in the background task

    router = Router()

    @router.post("/ignore")
    async def ignore(request: Request) -> StreamingResponse:
        return StreamingResponse(chunk.encode() async for chunk in _tokens(LONG))

    scope = http_scope(path="/ignore", method="POST")
    connection = _Connection(scope, receive_body(b"unread"))
    await router(scope, connection.receive, send)
    assert await Request(scope, connection.receive).body() == b"unread"


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/hello", "/sse", "/stream-long"])
async def test_a_request_queued_for_a_slot_leaves_no_cycle(
    path: str, no_collector: None, tmp_path: Path
) -> None:
    # ConcurrencyLimitMiddleware watches a queued request's receive while it waits;
    # once its turn comes, nothing of that wait (relay, cancel scopes, the watcher's
    # cancellation) is left for the collector.
    inner = _router(tmp_path)
    limit = Middleware(ConcurrencyLimitMiddleware, max_concurrency=1, max_queue=4)
    router = Router(middleware=[limit])
    router.mount("/", inner)
    released: list[anyio.Event] = []

    @inner.get("/hold")
    async def hold(request: Request) -> PlainTextResponse:
        await released[-1].wait()
        return PlainTextResponse("held")

    sent: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message.get("body", b""))

    async def request(to: str) -> None:
        scope = http_scope(path=to)
        await router(scope, _Connection(scope, receive_body(b"")).receive, send)

    async def queued_behind_another() -> None:
        released.append(anyio.Event())
        async with anyio.create_task_group() as group:
            group.start_soon(request, "/hold")
            await anyio.sleep(0.01)  # /hold has the slot
            group.start_soon(request, path)
            await anyio.sleep(0.01)  # queued
            released[-1].set()
        released.clear()

    assert await _left_for_the_collector(queued_behind_another, times=3) == []
    assert sent.count(b"held") == 4

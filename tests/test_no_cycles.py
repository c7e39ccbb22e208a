"""A finished request leaves no reference cycle behind: everything it made is freed by
reference counting when it ends, so a busy server does not run the garbage collector
every few dozen requests (and frees a stream's memory at once)."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest
from helpers import http_scope, receive_body, receive_messages

from asgikit import (
    EventSourceResponse,
    HTTPException,
    JSONResponse,
    PlainTextResponse,
    Request,
    Router,
    StreamingResponse,
    UploadFile,
)
from asgikit.middleware import (
    ConcurrencyLimitMiddleware,
    GZipMiddleware,
    Middleware,
    TimeoutMiddleware,
)


async def _tokens(pause: float) -> AsyncIterator[str]:
    for n in range(3):
        yield f"token {n}"
        if pause:
            await anyio.sleep(pause)


def _router() -> Router:
    router = Router()

    @router.get("/hello")
    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hi")

    @router.get("/sse")  # short: over before the disconnect listener starts
    async def sse(request: Request) -> EventSourceResponse:
        return EventSourceResponse(_tokens(0))

    @router.get("/sse-long")  # the listener and the pinger run, pings are sent
    async def sse_long(request: Request) -> EventSourceResponse:
        return EventSourceResponse(_tokens(0.03), ping=0.005)

    @router.get("/stream-long")  # the listener runs
    async def stream_long(request: Request) -> StreamingResponse:
        return StreamingResponse(chunk.encode() async for chunk in _tokens(0.03))

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
    "http error": ("GET", "/teapot", [], b""),
    "unhandled error": ("GET", "/boom", [], b""),
    "no route": ("GET", "/nowhere", [], b""),
    "wrong method": ("DELETE", "/hello", [], b""),
    "cancel_on_disconnect": ("GET", "/watched", [], b""),
}


def _with_middleware() -> Router:
    outer = Router(
        middleware=[
            Middleware(TimeoutMiddleware, timeout=5),
            Middleware(ConcurrencyLimitMiddleware, max_concurrency=4),
            Middleware(GZipMiddleware),
        ]
    )
    outer.mount("/", _router())
    return outer


@pytest.fixture
def no_collector() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.anyio
@pytest.mark.parametrize("stack", ["router", "middleware and mount"])
@pytest.mark.parametrize("case", list(REQUESTS))
async def test_a_request_leaves_no_cycle(case: str, stack: str, no_collector: None) -> None:
    method, path, headers, body = REQUESTS[case]
    router = _router() if stack == "router" else _with_middleware()

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
            await router(scope, receive_messages(messages), send)
        elif path == "/boom":
            with pytest.raises(RuntimeError, match="a bug"):
                await router(scope, receive_body(body), send)
        else:
            await router(scope, receive_body(body), send)

    await serve()  # first-use setup (per-loop state, caches) is not per request
    await anyio.sleep(0.01)
    gc.collect()
    for _ in range(5):
        await serve()
    await anyio.sleep(0.01)  # cancelled helpers finish
    unreachable: list[Any] = []
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        unreachable = [type(obj).__name__ for obj in gc.garbage]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert unreachable == []
    assert sent or body.endswith(LEFT)  # (nobody to answer once the client left)
    if path == "/sse-long":
        assert b": ping\n\n" in sent  # the pinger did run

"""The one app every server of the conformance suite serves (tests/servers/test_conformance.py).

Streams that must prove they are not buffered wait for a signal the client sends after
reading the first chunk (``POST /release/{token}``), so the last chunk cannot exist before
the first has arrived. Generators record how they ended in ``ENDINGS``, which
``GET /endings/{token}`` reports: that is how a test sees a ``finally`` run server-side.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import anyio
from endless import endless_endpoint

from asgikit import (
    BackgroundTask,
    EventSourceResponse,
    FileResponse,
    HTTPException,
    JSONResponse,
    Middleware,
    NDJSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Request,
    Response,
    Route,
    Router,
    ServerSentEvent,
    StreamingResponse,
    UploadFile,
    WebSocket,
    WebSocketDisconnect,
    streaming,
)
from asgikit.middleware import GZipMiddleware
from asgikit.types import ASGIApp, Message, Receive, Scope, Send

RELEASE_TIMEOUT = 30.0  # a stream waiting for a client that never signals gives up
RELEASES: dict[str, anyio.Event] = {}
ENDINGS: dict[str, str] = {}
PATHSENDS = [0]  # http.response.pathsend messages the app sent


def release_event(token: str) -> anyio.Event:
    if token not in RELEASES:
        RELEASES[token] = anyio.Event()
    return RELEASES[token]


async def wait_for_release(token: str) -> None:
    with anyio.fail_after(RELEASE_TIMEOUT):
        await release_event(token).wait()


class CountPathsend:
    """Counts the ``http.response.pathsend`` messages the app sends (pure ASGI)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.pathsend":
                PATHSENDS[0] += 1
            await send(message)

        await self.app(scope, receive, counting_send)


@contextlib.asynccontextmanager
async def lifespan(router: Router) -> AsyncIterator[Mapping[str, Any]]:
    yield {"loaded_by": "lifespan", "pid": os.getpid()}


async def gzipped(request: Request) -> PlainTextResponse:
    return PlainTextResponse("token " * 5_000)


async def gzipped_stream(request: Request) -> StreamingResponse:
    """Two compressed chunks; the second only after the client's release."""
    token = request.path_params["token"]

    async def chunks() -> AsyncIterator[bytes]:
        yield b"first " * 200 + b"\n"
        await wait_for_release(token)
        yield b"last " * 200 + b"\n"

    return StreamingResponse(chunks(), media_type="text/plain")


gzip = [Middleware(GZipMiddleware, minimum_size=100)]
router = Router(
    routes=[
        Route("/gzip", gzipped, middleware=gzip),
        Route("/gzip-stream/{token}", gzipped_stream, middleware=gzip),
    ],
    lifespan=lifespan,
    middleware=[Middleware(CountPathsend)],
)


@router.get("/hello")
async def hello(request: Request) -> str:
    return "Hello, world!"


@router.post("/json")
async def echo_json(request: Request) -> dict[str, Any]:
    return {"received": await request.json()}


@router.get("/items/{item_id:int}/{name}")
async def item(request: Request) -> dict[str, Any]:
    return {"path_params": request.path_params, "q": request.query_params.getlist("q")}


@router.get("/state")
async def state(request: Request) -> dict[str, Any]:
    """What the lifespan handed over (empty on a server without lifespan)."""
    return {"loaded_by": getattr(request.state, "loaded_by", None), "pid": os.getpid()}


@router.get("/whoami", name="whoami")
async def whoami(request: Request) -> dict[str, Any]:
    """How the app sees the request: behind a proxy, the client's view, not the proxy's."""
    client = request.client
    return {
        "client": list(client) if client else None,
        "url": str(request.url),
        "base_url": str(request.base_url),
        "url_for": str(request.url_for("whoami")),
        "root_path": request.scope.get("root_path"),
    }


@router.get("/extensions")
async def extensions(request: Request) -> dict[str, Any]:
    return {"extensions": sorted(request.scope.get("extensions") or {})}


@router.post("/upload")
async def upload(request: Request) -> dict[str, Any]:
    form = await request.form(max_file_size=64 * 1024 * 1024)
    file = form.get("file")
    if not isinstance(file, UploadFile):
        raise HTTPException(422, detail='send a file in the "file" field')
    digest = hashlib.sha256()
    size = 0
    while chunk := await file.read(1024 * 1024):
        digest.update(chunk)
        size += len(chunk)
    return {"filename": file.filename, "size": size, "sha256": digest.hexdigest()}


@router.post("/upload-parts")
async def upload_parts(request: Request) -> dict[str, Any]:
    """The file part hashed as it arrives (request.parts(): nothing spooled)."""
    facts: dict[str, Any] = {}
    async for part in request.parts():
        if part.filename is None:
            facts[part.name] = await part.text()
            continue
        digest = hashlib.sha256()
        chunks = 0
        async for chunk in part.stream():
            digest.update(chunk)
            chunks += 1
        facts[part.name] = {
            "filename": part.filename,
            "size": part.size,
            "sha256": digest.hexdigest(),
            "chunks": chunks,
        }
    return facts


@router.post("/count")
async def count(request: Request) -> dict[str, int]:
    """Reads the body as it arrives (chunked uploads included)."""
    size = 0
    chunks = 0
    async for chunk in request.stream():
        size += len(chunk)
        chunks += 1
    return {"size": size, "chunks": chunks}


@router.get("/cookies")
async def cookies(request: Request) -> PlainTextResponse:
    response = PlainTextResponse("two cookies")
    response.set_cookie("session", "abc", httponly=True)
    response.set_cookie("theme", "dark")
    return response


@router.get("/background/{token}")
async def background(request: Request) -> PlainTextResponse:
    token = request.path_params["token"]

    def record() -> None:  # a plain function: it runs in the thread pool
        ENDINGS[token] = "background ran"

    return PlainTextResponse("answered", background=BackgroundTask(record))


@router.get("/background-stream/{kind}/{token}")
async def background_stream(request: Request) -> StreamingResponse:
    """A complete stream of each kind, whose background task records that it ran."""
    token = request.path_params["token"]
    kind = request.path_params["kind"]

    async def record() -> None:
        ENDINGS[token] = "background ran"

    async def items() -> AsyncIterator[str]:
        for index in range(3):
            await anyio.sleep(0.01)
            yield f"item {index}"

    background = BackgroundTask(record)
    if kind == "sse":
        return EventSourceResponse(items(), background=background)
    if kind == "ndjson":
        return NDJSONResponse(items(), background=background)
    return StreamingResponse(items(), media_type="text/plain", background=background)


@router.get("/background-cut/{token}")
async def background_cut(request: Request) -> ASGIApp:
    """A stream whose last chunk outgrows every buffer, so its final message waits for
    the socket to drain; records ``{token}-generator`` when the generator is done,
    ``{token}`` if the background task ran, and ``{token}-done`` once the response's
    call returned (by then the background task ran or never will)."""
    token = request.path_params["token"]

    async def record() -> None:
        ENDINGS[token] = "background ran"

    async def body() -> AsyncIterator[bytes]:
        yield b"x" * 100
        await anyio.sleep(0.3)  # the disconnect listener starts after 0.1 s
        yield b"y" * (16 * 1024 * 1024)
        ENDINGS[f"{token}-generator"] = "finished"

    response = StreamingResponse(body(), background=BackgroundTask(record))

    async def answer(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await response(scope, receive, send)
        finally:
            ENDINGS[f"{token}-done"] = "done"

    return answer


@router.get("/no-content/{status:int}")
async def no_content(request: Request) -> Response:
    """Content given to a response that carries none (204, 304), complete or streamed."""
    status = request.path_params["status"]
    if request.query_params.get("stream"):

        async def chunks() -> AsyncIterator[bytes]:
            yield b"ignored"

        return StreamingResponse(chunks(), status_code=status)
    return JSONResponse({"ignored": True}, status_code=status)


@router.post("/release/{token}")
async def release(request: Request) -> None:
    release_event(request.path_params["token"]).set()


@router.get("/endings/{token}")
async def endings(request: Request) -> dict[str, Any]:
    return {"ending": ENDINGS.get(request.path_params["token"])}


@router.get("/stream/{token}")
async def stream(request: Request) -> StreamingResponse:
    """``first``, then (only after the client's release) ``last``."""
    token = request.path_params["token"]

    async def chunks() -> AsyncIterator[bytes]:
        try:
            yield b"first\n"
            await wait_for_release(token)
            yield b"last\n"
            ENDINGS[token] = "completed"
        finally:
            ENDINGS.setdefault(token, "closed early")

    return StreamingResponse(chunks(), media_type="text/plain")


router.get("/endless/{token}")(endless_endpoint(ENDINGS.__setitem__, interval=0.01))


@router.post("/ignores-body")
async def ignores_body(request: Request) -> str:
    """Answers after a moment without reading the body (a 401, a cache hit)."""
    await anyio.sleep(0.05)
    return "ignored"


@router.post("/ignores-body-stream")
async def ignores_body_stream(request: Request) -> StreamingResponse:
    """Streams without reading the body: its disconnect listener, which starts once the
    stream has run for `_LISTEN_AFTER`, reads some of it."""

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(3):
            await anyio.sleep(streaming._LISTEN_AFTER)
            yield b"tick\n"

    return StreamingResponse(chunks(), media_type="text/plain")


@router.get("/blocking-stream/{token}")
async def blocking_stream(request: Request) -> StreamingResponse:
    """Blocking model code (a sync generator, run in the thread pool) that is always in
    the middle of computing its next token: a client leaving catches it mid-step."""
    token = request.path_params["token"]

    def tokens() -> Iterator[str]:
        try:
            for _ in range(int(RELEASE_TIMEOUT / 0.05)):  # ends by itself if nobody leaves
                time.sleep(0.05)  # the forward pass
                yield "tick\n"
            ENDINGS[token] = "completed"
        finally:
            ENDINGS.setdefault(token, "closed")

    return StreamingResponse(tokens(), media_type="text/plain")


@router.get("/until-disconnect/{token}")
async def until_disconnect(request: Request) -> str:
    """Works (polls) without answering until the client leaves, as a model would.

    A release ends the loop too, so a test that fails does not leave it running.
    """
    token = request.path_params["token"]
    ENDINGS[token] = "running"
    with anyio.move_on_after(RELEASE_TIMEOUT):
        while not release_event(token).is_set():
            if await request.is_disconnected():
                ENDINGS[token] = "saw the disconnect"
                break
            await anyio.sleep(0.01)
    return "too late"


@router.get("/sse/{token}")
async def sse(request: Request) -> EventSourceResponse:
    token = request.path_params["token"]

    async def events() -> AsyncIterator[ServerSentEvent]:
        yield ServerSentEvent({"text": "Hello"}, event="token", id=0)
        await wait_for_release(token)
        yield ServerSentEvent({"text": "world"}, event="token", id=1)
        yield ServerSentEvent("[DONE]", event="done")

    return EventSourceResponse(events())


@router.get("/sse-ping/{token}")
async def sse_ping(request: Request) -> EventSourceResponse:
    """One event, then silence (keep-alive pings) until the client's release."""
    token = request.path_params["token"]

    async def events() -> AsyncIterator[ServerSentEvent]:
        yield ServerSentEvent("started")
        await wait_for_release(token)
        yield ServerSentEvent("released")

    return EventSourceResponse(events(), ping=0.05)


@router.get("/file")
async def file(request: Request) -> FileResponse:
    return FileResponse(os.environ["CONFORMANCE_FILE"], media_type="application/octet-stream")


@router.get("/pathsends")
async def pathsends(request: Request) -> dict[str, int]:
    return {"count": PATHSENDS[0]}


@router.post("/echo/{writer}")
async def echo_with(request: Request) -> StreamingResponse | JSONResponse:
    """The request's JSON, written back by one of the three JSON writers."""
    received = {"received": await request.json()}  # a 400 for what JSON cannot carry
    writer = request.path_params["writer"]
    if writer == "json":
        return JSONResponse(received)
    if writer == "ndjson":
        return NDJSONResponse([received])
    if writer == "sse":
        return EventSourceResponse([received])
    raise HTTPException(404, detail=f"no writer {writer!r}")


class Unencodable:
    """Nothing JSON can write."""


def bad_item(kind: str) -> Any:
    if kind == "nan":
        return float("nan")
    if kind == "object":
        return Unencodable()
    raise RuntimeError("model crashed")  # kind "raise": the iterator itself fails


@router.get("/unencodable/{writer}/{source}/{kind}/{token}")
async def unencodable(request: Request) -> StreamingResponse:
    """Two good items, then one that cannot be written (or an error), then one more.

    The generator's ``finally`` records ``closed``; the background task (which must not
    run: the response was not delivered) records ``background ran`` under
    ``{token}-background``.
    """
    writer, source, kind, token = (
        request.path_params[key] for key in ("writer", "source", "kind", "token")
    )

    async def items() -> AsyncIterator[Any]:
        try:
            yield {"i": 0}
            await anyio.sleep(0.01)  # the first item is on its way meanwhile
            yield {"i": 1}
            yield bad_item(kind)
            yield {"i": 3}
        finally:
            ENDINGS[token] = "closed"

    def sync_items() -> Iterator[Any]:  # iterated in the thread pool
        try:
            yield {"i": 0}
            yield {"i": 1}
            yield bad_item(kind)
            yield {"i": 3}
        finally:
            ENDINGS[token] = "closed"

    def record_background() -> None:
        ENDINGS[f"{token}-background"] = "background ran"

    content = items() if source == "async" else sync_items()
    background = BackgroundTask(record_background)
    if writer == "ndjson":
        return NDJSONResponse(content, background=background)
    return EventSourceResponse(content, background=background)


@router.get("/shutdown-stream/{seconds}/{token}")
async def shutdown_stream(request: Request) -> StreamingResponse:
    """Ticks for ``seconds``, then ``done``. How the generator ended (``completed`` or
    ``cut``) goes to the file ``token`` in ``$CONFORMANCE_ENDINGS``: the server may be
    gone by the time the test looks (tests/servers/test_shutdown_streams.py)."""
    seconds = float(request.path_params["seconds"])
    ending_file = Path(os.environ["CONFORMANCE_ENDINGS"], request.path_params["token"])

    async def ticks() -> AsyncIterator[bytes]:
        ending = "cut"
        try:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                yield b"tick\n"
                await anyio.sleep(0.01)
            yield b"done\n"
            ending = "completed"
        finally:
            ending_file.write_text(ending)

    return StreamingResponse(ticks(), media_type="text/plain")


api = Router()
router.mount("/api", api, name="api")


@api.get("/users/{user_id:int}", name="user")
async def user(request: Request) -> dict[str, Any]:
    return {
        "root_path": request.scope.get("root_path"),
        "url": str(request.url),
        "url_for": str(request.url_for("api:user", user_id=request.path_params["user_id"])),
    }


@api.get("/latest")
async def latest(request: Request) -> RedirectResponse:
    return RedirectResponse(str(request.url_for("api:user", user_id=1)))


@router.websocket("/ws/echo")
async def ws_echo(websocket: WebSocket) -> None:
    await websocket.accept()
    with contextlib.suppress(WebSocketDisconnect):
        async for text in websocket.iter_text():
            await websocket.send_text(text)


@router.websocket("/ws/tokens")
async def ws_tokens(websocket: WebSocket) -> None:
    await websocket.accept()
    async for message in websocket.iter_json():
        words = str(message["prompt"]).split()
        for index, word in enumerate(words):
            await websocket.send_json({"index": index, "token": word.upper()})
        await websocket.send_json({"done": True, "count": len(words)})


@router.websocket("/ws/endless/{token}")
async def ws_endless(websocket: WebSocket) -> None:
    """Sends tokens while a concurrent receive waits for the client to leave.

    The receive is what makes this portable: hypercorn, daphne and granian drop messages
    sent after the client closed without an error, so a send-only loop never ends there.
    """
    token = websocket.path_params["token"]
    await websocket.accept()
    try:
        async with anyio.create_task_group() as tasks:

            async def until_client_leaves() -> None:
                with contextlib.suppress(WebSocketDisconnect):
                    async for _ in websocket.iter_text():
                        pass
                tasks.cancel_scope.cancel()

            tasks.start_soon(until_client_leaves)
            index = 0
            while True:  # a model that never stops: only the client leaving ends it
                await websocket.send_text(f"token {index}")
                index += 1
                await anyio.sleep(0.01)
    finally:
        ENDINGS[token] = "closed"


@router.websocket("/ws/pair/{token}")
async def ws_pair(websocket: WebSocket) -> None:
    """A reader task beside a writer that, when its send fails, leaves the ending to
    the reader: the endpoint ends only if the reader gets the disconnect too."""
    token = websocket.path_params["token"]
    await websocket.accept()
    try:
        async with anyio.create_task_group() as tasks:

            async def read() -> None:
                async for _ in websocket.iter_text():
                    pass
                tasks.cancel_scope.cancel()

            tasks.start_soon(read)
            index = 0
            while True:
                try:
                    await websocket.send_text(f"token {index}")
                except WebSocketDisconnect:
                    break
                index += 1
                await anyio.sleep(0)  # as fast as it can: it fails while the reader waits
    finally:
        ENDINGS[token] = "closed"


@router.websocket("/ws/send-only/{token}")
async def ws_send_only(websocket: WebSocket) -> None:
    """Never receives: it learns that the client left only if a send raises (and
    records the close code and reason it was given under ``{token}-code``)."""
    token = websocket.path_params["token"]
    await websocket.accept()
    try:
        index = 0
        while True:
            await websocket.send_text(f"token {index}")
            index += 1
            await anyio.sleep(0.01)
    except WebSocketDisconnect as exc:
        ENDINGS[f"{token}-code"] = f"{exc.code} {exc.reason}"
        raise
    finally:
        ENDINGS[token] = "closed"


@router.websocket("/ws/goodbye")
async def ws_goodbye(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.close(code=4001, reason="quota exhausted")


@router.websocket("/ws/private")
async def ws_private(websocket: WebSocket) -> None:
    await websocket.send_denial_response(PlainTextResponse("Missing API key", status_code=401))


@router.websocket("/ws/broken")
async def ws_broken(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.receive_text()
    raise RuntimeError("model crashed")


app = router

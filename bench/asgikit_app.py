"""The scenarios written the way asgikit's documentation teaches."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import scenarios
from scenarios import HELLO_BODY, JSON_DOC, N_DECOYS, ROUTE_TEMPLATE, decoy_templates

from asgikit import (
    EventSourceResponse,
    JSONResponse,
    NDJSONResponse,
    PlainTextResponse,
    Request,
    Router,
    StreamingResponse,
)

HELLO_TEXT = HELLO_BODY.decode()


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse(HELLO_TEXT)


async def json_doc(request: Request) -> JSONResponse:
    return JSONResponse(JSON_DOC)


async def user_item(request: Request) -> PlainTextResponse:
    params = request.path_params
    return PlainTextResponse(f"user {params['id']} item {params['item']}")


async def decoy(request: Request) -> PlainTextResponse:
    return PlainTextResponse("decoy")


async def _chunks() -> AsyncIterator[bytes]:
    stream_chunk = scenarios.stream_chunk
    for i in range(scenarios.STREAM_CHUNKS):
        yield stream_chunk(i)


async def stream(request: Request) -> StreamingResponse:
    return StreamingResponse(_chunks(), media_type="text/plain")


async def _tokens() -> AsyncIterator[str]:
    # scenarios.SSE_TOKENS: looked up per request, so the shared harness (whose
    # scenarios module has only the stream) can import this module too.
    for token in scenarios.SSE_TOKENS:
        yield token


async def sse(request: Request) -> EventSourceResponse:
    return EventSourceResponse(_tokens())


async def _rows() -> AsyncIterator[Any]:
    for row in scenarios.NDJSON_ROWS:
        yield row


async def ndjson(request: Request) -> NDJSONResponse:
    return NDJSONResponse(_rows())


async def echo_json(request: Request) -> JSONResponse:
    return JSONResponse(await request.json())


async def upload(request: Request) -> PlainTextResponse:
    # request.parts(), as docs/uploads.md teaches for a big file read once: the file
    # part is consumed chunk by chunk as it arrives (here only counted), nothing
    # spooled; the other parts are skipped. (request.form() spools the 10 MiB to a temp
    # file first: bench/bench_multipart.py measures that path.)
    size = None
    async for part in request.parts(max_parts=10):
        if part.name == scenarios.UPLOAD_FIELD:
            size = 0
            async for chunk in part.stream():
                size += len(chunk)
    if size is None:
        return PlainTextResponse("missing file field", status_code=400)
    return PlainTextResponse(str(size))


def _add_decoys(router: Router, count: int) -> None:
    for template in decoy_templates(count):
        router.add_route(template, decoy)


app = Router()
app.add_route("/hello", hello)
app.add_route("/json", json_doc)
app.add_route("/stream", stream)
app.add_route("/sse", sse)
app.add_route("/ndjson", ndjson)
app.add_route("/echo-json", echo_json, methods=["POST"])
app.add_route("/upload", upload, methods=["POST"])
_add_decoys(app, N_DECOYS)
app.add_route(ROUTE_TEMPLATE, user_item)


def make_routing_app(n_routes: int) -> Router:
    router = Router()
    _add_decoys(router, n_routes - 1)
    router.add_route(ROUTE_TEMPLATE, user_item)
    return router

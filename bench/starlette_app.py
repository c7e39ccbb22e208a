"""The scenarios written the way Starlette's documentation teaches."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import scenarios
from scenarios import HELLO_BODY, JSON_DOC, N_DECOYS, ROUTE_TEMPLATE, decoy_templates
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

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
    return StreamingResponse(_chunks(), media_type="text/plain; charset=utf-8")


async def _tokens() -> AsyncIterator[str]:
    for token in scenarios.SSE_TOKENS:
        yield token


async def sse(request: Request) -> EventSourceResponse:
    # sse-starlette: the SSE package Starlette users install (no pings within the bench).
    return EventSourceResponse(_tokens(), sep="\n")


async def _lines() -> AsyncIterator[bytes]:
    for row in scenarios.NDJSON_ROWS:
        yield json.dumps(row, separators=(",", ":")).encode() + b"\n"


async def ndjson(request: Request) -> StreamingResponse:
    return StreamingResponse(_lines(), media_type="application/x-ndjson")


async def echo_json(request: Request) -> JSONResponse:
    return JSONResponse(await request.json())


async def upload(request: Request) -> PlainTextResponse:
    # python-multipart; the file part is spooled (1 MB in memory, then on disk).
    async with request.form() as form:
        file = form[scenarios.UPLOAD_FIELD]
        size = file.size  # type: ignore[union-attr]
    return PlainTextResponse(str(size))


def _decoys(count: int) -> list[Route]:
    return [Route(template, decoy) for template in decoy_templates(count)]


app = Starlette(
    routes=[
        Route("/hello", hello),
        Route("/json", json_doc),
        Route("/stream", stream),
        Route("/sse", sse),
        Route("/ndjson", ndjson),
        Route("/echo-json", echo_json, methods=["POST"]),
        Route("/upload", upload, methods=["POST"]),
        *_decoys(N_DECOYS),
        Route(ROUTE_TEMPLATE, user_item),
    ]
)


def make_routing_app(n_routes: int) -> Starlette:
    return Starlette(routes=[*_decoys(n_routes - 1), Route(ROUTE_TEMPLATE, user_item)])

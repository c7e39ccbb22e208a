"""Raw ASGI whose streamed bodies come from async generators, like a framework user's.

`raw_app` streams from a plain ``for`` loop; an endpoint written for any framework
yields its chunks from an async generator, and stepping one (``async for``) costs
about as much again as sending the chunk. This app is the floor for that: the same
bytes as `raw_app`, each stream driven by ``async for`` over a generator, with no
framework around it. Compare with::

    python bench/inproc.py --apps raw_app,raw_generator_app,falcon_app,asgikit_app \
        --scenarios stream,sse,ndjson
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import raw_app
import scenarios

TEXT = b"text/plain; charset=utf-8"


async def _chunks() -> AsyncIterator[bytes]:
    stream_chunk = scenarios.stream_chunk
    for i in range(scenarios.STREAM_CHUNKS):
        yield stream_chunk(i)


async def _tokens() -> AsyncIterator[str]:
    for token in scenarios.SSE_TOKENS:
        yield token


async def _rows() -> AsyncIterator[Any]:
    for row in scenarios.NDJSON_ROWS:
        yield row


async def stream(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", TEXT)]})
    async for chunk in _chunks():
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def sse(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": raw_app.SSE_HEADERS})
    async for token in _tokens():
        body = ("data: " + token + "\n\n").encode()
        await send({"type": "http.response.body", "body": body, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def ndjson(scope: Any, receive: Any, send: Any) -> None:
    headers = [(b"content-type", b"application/x-ndjson")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
    async for row in _rows():
        body = dumps(row).encode() + b"\n"
        await send({"type": "http.response.body", "body": body, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


STREAMS = {"/stream": stream, "/sse": sse, "/ndjson": ndjson}


async def app(scope: Any, receive: Any, send: Any) -> None:
    handler = STREAMS.get(scope["path"]) if scope["type"] == "http" else None
    if handler is not None and scope["method"] == "GET":
        await handler(scope, receive, send)
        return
    await raw_app.app(scope, receive, send)


def make_routing_app(n_routes: int) -> Any:
    return app

"""Streams whose iterators never await, served by a real server in
tests/test_server_streaming.py. Each request counts, under its ``id``, how many items
its iterator produced, whether the iterator finished, whether its ``finally`` ran and
whether ``background`` ran; ``GET /stats/{id}`` reports the counts and ``GET /hello``
answers how many items the streams have produced so far."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from asgikit import (
    BackgroundTask,
    EventSourceResponse,
    NDJSONResponse,
    Request,
    Router,
    StreamingResponse,
)

STATS: dict[str, dict[str, int]] = {}
PRODUCED = [0]

router = Router()


def _stats(request_id: str) -> dict[str, int]:
    return STATS.setdefault(
        request_id, {"produced": 0, "finished": 0, "finally": 0, "background": 0}
    )


async def _items(item: Any, count: int, stats: dict[str, int]) -> AsyncIterator[Any]:
    try:
        for _ in range(count):
            stats["produced"] += 1
            PRODUCED[0] += 1
            yield item  # never awaits: rows already in memory
        stats["finished"] += 1
    finally:
        stats["finally"] += 1


def _background(stats: dict[str, int]) -> None:
    stats["background"] += 1


@router.get("/{kind}/{request_id}")
async def stream(request: Request) -> StreamingResponse:
    kind = request.path_params["kind"]
    stats = _stats(request.path_params["request_id"])
    count = int(request.query_params.get("n", "1000000"))
    background = BackgroundTask(_background, stats)
    if kind == "ndjson":
        return NDJSONResponse(_items({"token": "x" * 16}, count, stats), background=background)
    if kind == "sse":
        return EventSourceResponse(_items("x" * 16, count, stats), background=background)
    return StreamingResponse(_items(b"x" * 16, count, stats), background=background)


@router.get("/stats/{request_id}")
async def stats(request: Request) -> dict[str, int]:
    return _stats(request.path_params["request_id"])


@router.get("/hello")
async def hello(request: Request) -> dict[str, int]:
    return {"produced": PRODUCED[0]}

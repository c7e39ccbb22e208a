"""Streaming responses and the serving helpers, typed as a user relies on them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from typing_extensions import assert_type

from asgikit import (
    EventSourceResponse,
    NDJSONResponse,
    Request,
    Router,
    ServerSentEvent,
    StreamingResponse,
)
from asgikit.serving import (
    Batcher,
    Overloaded,
    iterate_in_threadpool,
    run_in_threadpool,
    set_threadpool_size,
)

router = Router()


def predict_batch(texts: list[str]) -> list[float]:
    return [float(len(text)) for text in texts]


def tokenize(text: str, *, lower: bool = False) -> list[str]:
    return (text.lower() if lower else text).split()


def blocking_tokens(text: str) -> Iterator[str]:
    yield from text.split()


async def use_the_helpers() -> None:
    set_threadpool_size(8)
    tokens = await run_in_threadpool(tokenize, "A b", lower=True)
    assert_type(tokens, list[str])
    async for token in iterate_in_threadpool(blocking_tokens("a b")):
        assert_type(token, str)
    async with Batcher(predict_batch, max_batch_size=32, max_wait=0.005, max_queue=64) as batcher:
        score = await batcher("text")
        assert_type(score, float)
        assert_type(batcher.queued, int)
    try:
        raise Overloaded("busy", retry_after=2)
    except Overloaded as exc:
        assert_type(exc.retry_after, int)
        assert_type(exc.status_code, int)


@router.get("/tokens")
async def tokens(request: Request) -> StreamingResponse:
    async def generate() -> AsyncIterator[str]:
        yield "Hello"
        yield " world"

    return StreamingResponse(generate(), media_type="text/plain")


@router.get("/sync-tokens")
async def sync_tokens(request: Request) -> StreamingResponse:
    return StreamingResponse(blocking_tokens("runs in the thread pool"), media_type="text/plain")


@router.get("/events")
async def events(request: Request) -> EventSourceResponse:
    async def stream() -> AsyncIterator[ServerSentEvent]:
        yield ServerSentEvent({"text": "Hello"}, event="token", id="0")
        yield ServerSentEvent(comment="keep-alive", retry=3000)

    return EventSourceResponse(stream(), ping=15)


@router.get("/ndjson")
async def ndjson(request: Request) -> NDJSONResponse:
    return NDJSONResponse([{"token": "Hello"}, {"token": " world"}])

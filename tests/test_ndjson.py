"""NDJSONResponse: one compact JSON document per line, disconnect-aware."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest
from helpers import left_mid_stream

from asgikit import NDJSONResponse, Request, Router
from asgikit.testing import AsyncTestClient

pytestmark = pytest.mark.anyio


async def test_one_compact_document_per_line() -> None:
    router = Router()

    @router.get("/rows")
    async def rows(request: Request) -> NDJSONResponse:
        def items() -> Iterator[object]:
            yield {"token": "héllo", "ids": [1, 2]}
            yield "text\nwith newline"
            yield None

        return NDJSONResponse(items())

    async with AsyncTestClient(router) as client:
        response = await client.get("/rows")
    assert response.headers["content-type"] == "application/x-ndjson"
    assert response.content.decode() == (
        '{"token":"héllo","ids":[1,2]}\n"text\\nwith newline"\nnull\n'
    )
    assert [json.loads(line) for line in response.text.splitlines()][1] == "text\nwith newline"


async def test_each_item_is_streamed_as_it_comes() -> None:
    router = Router()
    gate = anyio.Event()

    @router.get("/rows")
    async def rows(request: Request) -> NDJSONResponse:
        async def items() -> AsyncIterator[dict[str, int]]:
            yield {"n": 1}
            await gate.wait()
            yield {"n": 2}

        return NDJSONResponse(items())

    async with AsyncTestClient(router) as client, client.stream("GET", "/rows") as response:
        lines = response.aiter_lines()
        assert json.loads(await lines.__anext__()) == {"n": 1}
        gate.set()
        assert json.loads(await lines.__anext__()) == {"n": 2}


async def test_disconnect_closes_the_generator() -> None:
    router = Router()
    closed = anyio.Event()

    @router.get("/rows")
    async def rows(request: Request) -> NDJSONResponse:
        async def items() -> AsyncIterator[int]:
            try:
                yield 1
                await anyio.sleep_forever()
            finally:
                closed.set()

        return NDJSONResponse(items())

    with anyio.fail_after(5):
        async with left_mid_stream(router, "/rows"):
            await closed.wait()


async def test_nan_is_an_error() -> None:
    router = Router()
    router.add_route("/", lambda request: NDJSONResponse([float("nan")]), methods=["GET"])
    async with AsyncTestClient(router) as client:
        with pytest.raises(ValueError):
            await client.get("/")

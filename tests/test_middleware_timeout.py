"""TimeoutMiddleware: 504 and cancellation before the start, never cuts a started stream."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from helpers import http_scope, never_disconnects

from asgikit import Middleware, Request, Router, StreamingResponse
from asgikit.middleware import TimeoutMiddleware
from asgikit.testing import AsyncTestClient

pytestmark = pytest.mark.anyio


async def test_slow_handler_gets_504_and_is_cancelled() -> None:
    cancelled = anyio.Event()
    router = Router(middleware=[Middleware(TimeoutMiddleware, timeout=0.05)])

    @router.get("/slow")
    async def slow(request: Request) -> str:
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()
        return "never"

    messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    with anyio.fail_after(5):
        await router(http_scope("/slow"), never_disconnects, send)
    assert messages[0]["status"] == 504
    assert json.loads(messages[1]["body"]) == {"detail": "No response within 0.05 seconds"}
    assert cancelled.is_set()


async def test_fast_handler_unaffected() -> None:
    router = Router(middleware=[Middleware(TimeoutMiddleware, timeout=5)])
    router.add_route("/", lambda request: "ok", methods=["GET"])
    async with AsyncTestClient(router) as client:
        response = await client.get("/")
    assert response.status_code == 200 and response.text == "ok"


async def test_started_stream_is_never_cut() -> None:
    router = Router(middleware=[Middleware(TimeoutMiddleware, timeout=0.05)])

    @router.get("/stream")
    async def stream(request: Request) -> StreamingResponse:
        async def chunks() -> AsyncIterator[str]:
            yield "start "
            await anyio.sleep(0.15)  # well past the timeout, after the headers went out
            yield "end"

        return StreamingResponse(chunks())

    async with AsyncTestClient(router) as client:
        response = await client.get("/stream")
    assert response.status_code == 200
    assert response.text == "start end"


async def test_504_goes_out_while_a_sync_handler_holds_its_thread() -> None:
    release = threading.Event()
    router = Router(middleware=[Middleware(TimeoutMiddleware, timeout=0.05)])

    @router.get("/blocking")
    def blocking(request: Request) -> str:
        release.wait(10)  # a model call that cannot be interrupted
        return "late"

    messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)
        if not message.get("more_body", False) and message["type"] == "http.response.body":
            release.set()  # only the 504 itself can free the thread

    with anyio.fail_after(5):
        await router(http_scope("/blocking"), never_disconnects, send)
    assert [m["type"] for m in messages] == ["http.response.start", "http.response.body"]
    assert messages[0]["status"] == 504


def test_invalid_timeout() -> None:
    with pytest.raises(ValueError):
        TimeoutMiddleware(Router(), timeout=0)


async def test_504_body_reaches_the_async_test_client() -> None:
    # The watchdog sends the 504 from inside the scope it cancelled: on trio the body
    # must still get through a send that waits for its reader.
    router = Router(middleware=[Middleware(TimeoutMiddleware, timeout=0.05)])

    @router.get("/slow")
    async def slow(request: Request) -> str:
        await anyio.sleep_forever()
        return "never"

    async with AsyncTestClient(router) as client:
        response = await client.get("/slow")
    assert response.status_code == 504
    assert response.json() == {"detail": "No response within 0.05 seconds"}

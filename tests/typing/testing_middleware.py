"""Tests and a custom pure-ASGI middleware, typed as a user writes them."""

from __future__ import annotations

import time

import httpx
from typing_extensions import assert_type

from asgikit import Middleware, Request, Router
from asgikit.testing import AsyncTestClient, TestClient
from asgikit.types import ASGIApp, Message, Receive, Scope, Send


class ServerTiming:
    """Adds ``server-timing`` with the time to the first byte."""

    def __init__(self, app: ASGIApp, *, name: str = "app") -> None:
        self.app = app
        self.name = name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def send_with_timing(message: Message) -> None:
            if message["type"] == "http.response.start":
                elapsed = (time.perf_counter() - start) * 1000
                header = f"{self.name};dur={elapsed:.1f}".encode()
                message["headers"] = [*message.get("headers", []), (b"server-timing", header)]
            await send(message)

        await self.app(scope, receive, send_with_timing)


router = Router(middleware=[Middleware(ServerTiming, name="model")])


@router.get("/")
async def index(request: Request) -> str:
    return "hi"


def sync_test() -> None:
    with TestClient(router) as client:
        assert_type(client, TestClient)
        response = client.get("/")
        assert_type(response, httpx.Response)
        assert response.text == "hi"
        with client.websocket_connect("/ws") as websocket:
            websocket.send_text("hello")
            text = websocket.receive_text()
            assert_type(text, str)


async def async_test() -> None:
    async with AsyncTestClient(router) as client:
        response = await client.get("/")
        assert_type(response, httpx.Response)
        async with client.stream("GET", "/") as streamed:
            async for chunk in streamed.aiter_raw():
                assert_type(chunk, bytes)

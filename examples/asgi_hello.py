"""Hello, world as a plain ASGI app: no framework, just the ASGI interface.

An ASGI app is an ``async`` callable taking ``scope`` (what the connection is),
``receive`` (await it for the next incoming message) and ``send`` (await it with each
outgoing message). This one answers every HTTP request with ``Hello, world!``.
Run it with ``uvicorn --app-dir examples asgi_hello:app``; the asgikit version is
``asgikit_hello.py``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return  # no lifespan or WebSocket handling here: the server carries on without
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain; charset=utf-8")],
        }
    )
    await send({"type": "http.response.body", "body": b"Hello, world!"})

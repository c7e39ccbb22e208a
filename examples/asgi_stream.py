"""A plain ASGI app streaming ``Hello``, ``, ``, ``world!``, one second apart.

Each piece is its own ``http.response.body`` message with ``more_body=True``; the last
one says ``more_body=False`` and ends the response. Without a ``content-length`` the
server sends the body chunked, so a client sees each piece as it is sent.
Run it with ``uvicorn --app-dir examples asgi_stream:app`` and watch it with
``curl -N http://127.0.0.1:8000/``; ``ASGI_STREAM_DELAY=0.2`` shortens the pause.
The asgikit version is ``asgikit_stream.py``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PIECES = [b"Hello", b", ", b"world!"]


def make_app(delay: float = 1.0) -> ASGIApp:
    """The streaming app, pausing `delay` seconds between pieces."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")],
            }
        )
        for index, piece in enumerate(PIECES):
            if index:
                await asyncio.sleep(delay)
            last = index == len(PIECES) - 1
            await send({"type": "http.response.body", "body": piece, "more_body": not last})

    return app


app = make_app(float(os.environ.get("ASGI_STREAM_DELAY", "1.0")))

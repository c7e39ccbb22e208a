"""A plain ASGI app that reads its scope: ``Received GET request to /some/path``.

The request line lives in the ``scope`` dict (``method``, ``path``, ``query_string``,
``headers``); the body would come from ``receive()`` as ``http.request`` messages.
Run it with ``uvicorn --app-dir examples asgi_echo_request:app``; the asgikit version is
``asgikit_echo_request.py``.
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
        return
    body = f"Received {scope['method']} request to {scope['path']}".encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})

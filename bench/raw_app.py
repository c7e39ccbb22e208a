"""Pure ASGI: the floor every framework is compared with. No route table, no objects."""

from __future__ import annotations

import json
from typing import Any

from scenarios import HELLO_BODY, JSON_DOC

TEXT = b"text/plain; charset=utf-8"


async def _respond(send: Any, content_type: bytes, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-length", str(len(body)).encode()),
                (b"content-type", content_type),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def app(scope: Any, receive: Any, send: Any) -> None:
    path = scope["path"]
    if path == "/hello":
        await _respond(send, TEXT, HELLO_BODY)
    elif path == "/json":
        body = json.dumps(JSON_DOC, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        await _respond(send, b"application/json", body.encode())
    elif path.startswith("/users/"):
        _, _, user, _, item = path.split("/")
        await _respond(send, TEXT, f"user {user} item {item}".encode())
    else:
        await _respond(send, TEXT, b"not found")


def make_routing_app(n_routes: int) -> Any:
    return app

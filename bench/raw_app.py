"""Pure ASGI: the floor every framework is compared with.

A hand-written app still has to do what any real one does: dispatch on method and path,
validate the parametric path, answer 404/405, build its headers and serialise its
JSON per request. It has no route table and no objects, so the 100 decoy routes of the
framework apps cost it nothing.
"""

from __future__ import annotations

import json
from typing import Any

import scenarios
from multipart import MultipartSegment, ParserError, PushMultipartParser, parse_options_header
from scenarios import HELLO_BODY, JSON_DOC

TEXT = b"text/plain; charset=utf-8"
JSON = b"application/json"


async def _respond(send: Any, status: int, content_type: bytes, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-length", str(len(body)).encode()),
                (b"content-type", content_type),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def hello(scope: Any, receive: Any, send: Any) -> None:
    await _respond(send, 200, TEXT, HELLO_BODY)


async def json_doc(scope: Any, receive: Any, send: Any) -> None:
    body = json.dumps(JSON_DOC, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    await _respond(send, 200, JSON, body.encode())


async def user_item(send: Any, user: str, item: str) -> None:
    await _respond(send, 200, TEXT, f"user {user} item {item}".encode())


async def stream(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", TEXT)]})
    stream_chunk = scenarios.stream_chunk
    for i in range(scenarios.STREAM_CHUNKS):
        await send({"type": "http.response.body", "body": stream_chunk(i), "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


async def sse(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
    for token in scenarios.SSE_TOKENS:
        body = ("data: " + token + "\n\n").encode()
        await send({"type": "http.response.body", "body": body, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def ndjson(scope: Any, receive: Any, send: Any) -> None:
    headers = [(b"content-type", b"application/x-ndjson")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
    for row in scenarios.NDJSON_ROWS:
        body = dumps(row).encode() + b"\n"
        await send({"type": "http.response.body", "body": body, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


async def echo_json(scope: Any, receive: Any, send: Any) -> None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    try:
        data = json.loads(b"".join(chunks))
    except ValueError:
        await _respond(send, 400, TEXT, b"invalid JSON")
        return
    await _respond(send, 200, JSON, _dumps(data))


async def upload(scope: Any, receive: Any, send: Any) -> None:
    """Parse the multipart body with the push parser asgikit uses and count the file
    part's bytes: the parse-only floor (it keeps nothing, where a ``form()`` spools the
    file)."""
    content_type = b""
    for name, value in scope["headers"]:
        if name == b"content-type":
            content_type = value
            break
    ctype, options = parse_options_header(content_type.decode("latin-1"))
    if ctype != "multipart/form-data" or "boundary" not in options:
        await _respond(send, 400, TEXT, b"expected multipart/form-data with a boundary")
        return
    size = 0
    in_file = False
    try:
        with PushMultipartParser(options["boundary"]) as parser:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                if chunk:
                    for event in parser.parse(chunk):
                        if isinstance(event, MultipartSegment):
                            in_file = event.name == scenarios.UPLOAD_FIELD
                        elif event and in_file:  # a piece of the part's body
                            size += len(event)
                if not message.get("more_body", False):
                    break
    except ParserError as exc:
        await _respond(send, 400, TEXT, f"invalid multipart body: {exc}".encode())
        return
    await _respond(send, 200, TEXT, str(size).encode())


HANDLERS = {
    ("GET", "/hello"): hello,
    ("GET", "/json"): json_doc,
    ("GET", "/stream"): stream,
    ("GET", "/sse"): sse,
    ("GET", "/ndjson"): ndjson,
    ("POST", "/echo-json"): echo_json,
    ("POST", "/upload"): upload,
}
PATHS = {path for _, path in HANDLERS}


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":  # under a real server (e2e.py)
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    path = scope["path"]
    method = scope["method"]
    handler = HANDLERS.get((method, path))
    if handler is not None:
        await handler(scope, receive, send)
        return
    if path.startswith("/users/"):
        parts = path.split("/")  # ["", "users", id, "items", item]
        if len(parts) == 5 and parts[3] == "items" and parts[2] and parts[4]:
            if method == "GET":
                await user_item(send, parts[2], parts[4])
            else:
                await _respond(send, 405, TEXT, b"Method Not Allowed")
            return
    if path in PATHS:
        await _respond(send, 405, TEXT, b"Method Not Allowed")
    else:
        await _respond(send, 404, TEXT, b"Not Found")


def make_routing_app(n_routes: int) -> Any:
    return app

"""Helpers shared by the test suite: raw ASGI scopes, canned ``receive`` callables and a
``send`` that records what an app sent. Tests that drive an app through raw ASGI calls
use these instead of writing scope dicts and recorders by hand."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import anyio

from asgikit.types import Message, Receive, Scope, Send


def http_scope(
    path: str = "/",
    *,
    method: str = "GET",
    headers: Iterable[tuple[bytes, bytes]] = (),
    query_string: bytes = b"",
    root_path: str = "",
    scheme: str = "http",
    **extra: Any,
) -> Scope:
    """An ``http`` scope as uvicorn builds it (ASGI spec 2.3); ``extra`` keys are added."""
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": scheme,
        "path": path,
        "raw_path": path.encode(),
        "root_path": root_path,
        "query_string": query_string,
        "headers": list(headers),
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    scope.update(extra)
    return scope


def websocket_scope(path: str = "/", *, scheme: str = "ws", **extra: Any) -> Scope:
    """A ``websocket`` scope; ``extra`` keys are added."""
    scope = http_scope(path, scheme=scheme, subprotocols=[], **extra)
    scope["type"] = "websocket"
    del scope["method"]
    return scope


class Recorder:
    """A raw ASGI ``send`` that keeps every message.

    With ``fail_on_body=n`` the n-th body message (0-based) raises `OSError`, as a
    server's ``send`` does once the client has gone (ASGI 2.4).
    """

    def __init__(self, fail_on_body: int | None = None) -> None:
        self.messages: list[Message] = []
        self.fail_on_body = fail_on_body

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.body" and self.fail_on_body is not None:
            bodies = sum(m["type"] == "http.response.body" for m in self.messages)
            if bodies == self.fail_on_body:
                raise OSError("connection closed")
        self.messages.append(message)

    @property
    def types(self) -> list[str]:
        """The message types, in order."""
        return [message["type"] for message in self.messages]

    @property
    def status(self) -> int | None:
        """The status of the ``http.response.start`` sent, if any."""
        for message in self.messages:
            if message["type"] == "http.response.start":
                return int(message["status"])
        return None

    @property
    def body(self) -> bytes:
        """Every body chunk sent, joined."""
        return b"".join(
            message.get("body", b"")
            for message in self.messages
            if message["type"] == "http.response.body"
        )


async def receive_nothing() -> Message:
    """A ``receive`` the app must not call."""
    raise AssertionError("not expected to receive")


async def send_nothing(message: Message) -> None:
    """A ``send`` the app must not call."""
    raise AssertionError("not expected to send")


async def never_disconnects() -> Message:
    """A ``receive`` that blocks forever: the client never leaves."""
    await anyio.sleep_forever()
    raise AssertionError("unreachable")


def receive_body(*chunks: bytes) -> Receive:
    """A ``receive`` that gives ``chunks`` as ``http.request`` messages (one empty
    message if none), then blocks until cancelled, like a server whose client waits."""
    messages: list[Message] = [
        {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
        for index, chunk in enumerate(chunks or (b"",))
    ]

    async def receive() -> Message:
        if messages:
            return messages.pop(0)
        return await never_disconnects()

    return receive


async def never_called(scope: Scope, receive: Receive, send: Send) -> None:
    """An ASGI app that must not be reached."""
    raise AssertionError("the app must not be called")

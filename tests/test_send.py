"""The one send step of every streaming response: what a failing ``send`` (ASGI 2.4: the
server raises `OSError` once the client has gone) does, and what each response encodes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from asgikit import BackgroundTask, EventSourceResponse, NDJSONResponse, StreamingResponse, _json
from asgikit.types import Message, Scope

pytestmark = pytest.mark.anyio


def http_scope() -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "headers": [],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


class Spec24Server:
    """``send`` raises `OSError` from the ``fail_at``-th body message on (ASGI 2.4)."""

    def __init__(self, fail_at: int) -> None:
        self.fail_at = fail_at
        self.bodies: list[bytes] = []

    async def receive(self) -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.body":
            if len(self.bodies) + 1 >= self.fail_at:
                raise OSError("connection closed")
            self.bodies.append(message["body"])


@pytest.mark.parametrize(
    ("response_class", "item", "framed"),
    [
        (StreamingResponse, "tök", "tök".encode()),
        (NDJSONResponse, {"t": "\ud800"}, b'{"t":"\\ud800"}\n'),
        (EventSourceResponse, "tok", b"data: tok\n\n"),
    ],
)
async def test_failing_send_stops_the_stream_and_skips_background(
    response_class: Any, item: Any, framed: bytes
) -> None:
    closed = []
    background_ran = []

    async def items() -> AsyncIterator[Any]:
        try:
            while True:
                yield item
        finally:
            closed.append(True)

    server = Spec24Server(fail_at=4)
    response = response_class(items(), background=BackgroundTask(background_ran.append, True))
    await response(http_scope(), server.receive, server.send)  # no error escapes
    assert server.bodies == [framed] * 3
    assert closed == [True]
    assert background_ran == []


async def test_oserror_from_the_iterator_is_an_error_not_a_disconnect() -> None:
    async def items() -> AsyncIterator[bytes]:
        yield b"a"
        raise OSError("the model's file vanished")

    server = Spec24Server(fail_at=100)
    with pytest.raises(OSError, match="vanished"):
        await StreamingResponse(items())(http_scope(), server.receive, server.send)


def test_ndjson_line_is_the_json_codec_plus_newline() -> None:
    for value in ({"a": [1, 2.5, None]}, "\ud800", {"é": "ü"}, []):
        assert _json.encode_line(value) == _json.encode(value) + b"\n"
    with pytest.raises(ValueError):
        _json.encode_line(float("nan"))

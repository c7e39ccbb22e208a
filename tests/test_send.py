"""The one send step of every streaming response: what a failing ``send`` (ASGI 2.4: the
server raises `OSError` once the client has gone) does, and what each response encodes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from helpers import Recorder, http_scope, receive_body

from asgikit import BackgroundTask, EventSourceResponse, NDJSONResponse, StreamingResponse, _json

pytestmark = pytest.mark.anyio


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

    send = Recorder(fail_on_body=3)
    response = response_class(items(), background=BackgroundTask(background_ran.append, True))
    with anyio.fail_after(5):  # the items never end: only the failing send stops them
        await response(http_scope(spec_version="2.4"), receive_body(), send)  # no error escapes
    assert send.bodies == [framed] * 3
    assert closed == [True]
    assert background_ran == []


async def test_oserror_from_the_iterator_is_an_error_not_a_disconnect() -> None:
    async def items() -> AsyncIterator[bytes]:
        yield b"a"
        raise OSError("the model's file vanished")

    with pytest.raises(OSError, match="vanished"):
        await StreamingResponse(items())(http_scope(spec_version="2.4"), receive_body(), Recorder())


def test_ndjson_line_is_the_json_codec_plus_newline() -> None:
    for value in ({"a": [1, 2.5, None]}, "\ud800", {"é": "ü"}, []):
        assert _json.encode_line(value) == _json.encode(value) + b"\n"
    with pytest.raises(ValueError):
        _json.encode_line(float("nan"))

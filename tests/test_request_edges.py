"""`Request` in the states handlers rarely meet: no receive channel, a body already
read, no client address, no matched route."""

from __future__ import annotations

import pytest

from asgikit import HTTPException, Request
from asgikit.types import Message

pytestmark = pytest.mark.anyio


def scope(**extra: object) -> dict[str, object]:
    return {"type": "http", "method": "POST", "path": "/v1/generate", "headers": [], **extra}


def body_of(*chunks: bytes) -> list[Message]:
    messages: list[Message] = [
        {"type": "http.request", "body": chunk, "more_body": True} for chunk in chunks
    ]
    messages.append({"type": "http.request", "body": b"", "more_body": False})
    return messages


async def test_a_request_built_without_receive_says_so_when_read() -> None:
    request = Request(scope())
    with pytest.raises(RuntimeError, match="without a receive channel"):
        await request.body()


async def test_attributes_without_a_route_or_a_client_address() -> None:
    request = Request(scope())
    assert request.path_params == {}
    assert request.client is None
    assert Request(scope(client=("10.0.0.7", 51000))).client == ("10.0.0.7", 51000)


async def test_a_body_read_once_is_served_again_and_still_checked_against_max_size() -> None:
    messages = body_of(b'{"prompt": ', b'"hi"}')

    async def receive() -> Message:
        return messages.pop(0)

    request = Request(scope(), receive)
    body = await request.body()
    assert body == b'{"prompt": "hi"}'
    assert await request.body(max_size=100) == body  # no second read from the server
    with pytest.raises(HTTPException) as info:
        await request.body(max_size=4)
    assert info.value.status_code == 413
    assert [chunk async for chunk in request.stream()] == [body]


async def test_an_empty_body_read_once_streams_nothing() -> None:
    messages = body_of()

    async def receive() -> Message:
        return messages.pop(0)

    request = Request(scope(), receive)
    assert await request.body() == b""
    assert [chunk async for chunk in request.stream()] == []
    await request.close()  # nothing to release: no form was parsed

"""Streaming responses at their edges, against a scripted ASGI server.

``HEAD`` never starts the inference, headers the caller set are kept, a chunk of the
wrong type is a clear error, and a server whose ``send`` fails (the client has gone)
stops the stream quietly: the generator's ``finally`` runs, ``background`` does not.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest

from asgikit import BackgroundTask, EventSourceResponse, NDJSONResponse, StreamingResponse
from asgikit.types import Message

pytestmark = pytest.mark.anyio


class Server:
    """Records what the app sends; ``send`` fails with OSError from message ``fail_at``
    on, or (``fail_final``) for the message that ends the body."""

    def __init__(self, fail_at: int | None = None, fail_final: bool = False) -> None:
        self.sent: list[Message] = []
        self.fail_at = fail_at
        self.fail_final = fail_final

    async def receive(self) -> Message:
        await anyio.sleep_forever()  # the client stays: no disconnect
        raise AssertionError("unreachable")

    async def send(self, message: Message) -> None:
        if self.fail_at is not None and len(self.sent) >= self.fail_at:
            raise OSError("connection reset by peer")
        final = message["type"] == "http.response.body" and not message.get("more_body", False)
        if self.fail_final and final:
            raise OSError("connection reset by peer")
        self.sent.append(message)

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        return list(self.sent[0]["headers"])


def scope(method: str = "GET") -> dict[str, Any]:
    return {"type": "http", "method": method, "path": "/generate", "headers": []}


class Tokens:
    """A generator of tokens that records whether it started and whether it finished."""

    def __init__(self, count: int = 3) -> None:
        self.count = count
        self.started = False
        self.finalised = False

    async def __call__(self) -> AsyncIterator[str]:
        self.started = True
        try:
            for index in range(self.count):
                yield f"token {index}\n"
                await anyio.sleep(0)
        finally:
            self.finalised = True


async def test_head_sends_headers_only_and_still_runs_background() -> None:
    tokens = Tokens()
    ran: list[str] = []
    response = StreamingResponse(
        tokens(), media_type="text/plain", background=BackgroundTask(ran.append, "logged")
    )
    server = Server()
    await response(scope("HEAD"), server.receive, server.send)
    assert not tokens.started  # the inference never runs for a HEAD
    assert [m["type"] for m in server.sent] == ["http.response.start", "http.response.body"]
    assert server.body == b""
    assert ran == ["logged"]


async def test_a_content_type_in_headers_wins_over_the_media_type() -> None:
    response = StreamingResponse(
        iter([b"{}"]),
        media_type="text/plain",
        headers={"Content-Type": "application/x-custom"},
    )
    server = Server()
    await response(scope(), server.receive, server.send)
    assert [value for name, value in server.headers if name == b"content-type"] == [
        b"application/x-custom"
    ]
    assert server.body == b"{}"


async def test_an_event_stream_keeps_the_callers_caching_headers() -> None:
    response = EventSourceResponse(
        iter(["hello"]), headers={"Cache-Control": "no-store", "X-Accel-Buffering": "yes"}
    )
    server = Server()
    await response(scope(), server.receive, server.send)
    headers = server.headers
    assert [v for n, v in headers if n == b"cache-control"] == [b"no-store"]
    assert [v for n, v in headers if n == b"x-accel-buffering"] == [b"yes"]
    assert server.body == b"data: hello\n\n"


async def test_a_chunk_that_is_not_bytes_or_str_is_a_clear_error() -> None:
    def chunks() -> Iterator[Any]:
        yield b"ok"
        yield 42

    server = Server()
    with pytest.raises(TypeError, match="bytes or str, not int"):
        await StreamingResponse(chunks())(scope(), server.receive, server.send)


@pytest.mark.parametrize(
    "failure",
    [{"fail_at": 0}, {"fail_at": 1}, {"fail_at": 2}, {"fail_final": True}],
    ids=["start", "first-chunk", "later-chunk", "final-body"],
)
async def test_a_failing_server_send_stops_the_stream_quietly(failure: dict[str, Any]) -> None:
    server = Server(**failure)
    tokens = Tokens(count=5)
    ran: list[str] = []
    response = StreamingResponse(tokens(), background=BackgroundTask(ran.append, "logged"))
    with anyio.fail_after(5):
        await response(scope(), server.receive, server.send)  # no exception escapes
    assert ran == []  # the response was not delivered: no background
    assert tokens.finalised or not tokens.started
    if server.fail_at is not None:
        assert len(server.sent) == server.fail_at


async def test_ndjson_over_a_failing_send_closes_the_iterator() -> None:
    closed: list[bool] = []

    async def rows() -> AsyncIterator[dict[str, int]]:
        try:
            for index in range(1000):
                yield {"row": index}
        finally:
            closed.append(True)

    server = Server(fail_at=3)
    with anyio.fail_after(5):
        await NDJSONResponse(rows())(scope(), server.receive, server.send)
    assert closed == [True]
    assert server.body.splitlines()[0] == b'{"row":0}'


async def test_a_ping_that_cannot_be_sent_ends_a_silent_event_stream() -> None:
    # The model is thinking (no event for a long time); the client has gone, and the
    # keep-alive ping is the first send that notices.
    finalised: list[bool] = []
    ran: list[str] = []

    async def events() -> AsyncIterator[str]:
        try:
            await anyio.sleep(30)
            yield "too late"
        finally:
            finalised.append(True)

    server = Server(fail_at=1)  # the headers go out, nothing after them
    response = EventSourceResponse(
        events(), ping=0.02, background=BackgroundTask(ran.append, "logged")
    )
    with anyio.fail_after(10):
        await response(scope(), server.receive, server.send)
    assert finalised == [True]
    assert ran == []
    assert [m["type"] for m in server.sent] == ["http.response.start"]

"""Server-sent events: WHATWG framing, injection safety, pings, headers, disconnects."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from helpers import http_scope, left_mid_stream, never_disconnects

from asgikit import EventSourceResponse, Request, Router, ServerSentEvent
from asgikit._sse import encode_event
from asgikit.testing import AsyncTestClient


def test_str_item_is_one_data_event() -> None:
    assert encode_event("hello") == b"data: hello\n\n"


@pytest.mark.parametrize("text", ["a\nb\nc", "a\r\nb\rc"])
def test_multiline_data_split_on_cr_lf_crlf(text: str) -> None:
    assert encode_event(text) == b"data: a\ndata: b\ndata: c\n\n"


def test_unicode_line_separators_are_not_sse_line_breaks() -> None:
    assert encode_event("a\u2028b\x0bc") == "data: a\u2028b\x0bc\n\n".encode()


def test_non_str_data_is_compact_json() -> None:
    assert encode_event({"token": "é", "n": [1, 2]}) == 'data: {"token":"é","n":[1,2]}\n\n'.encode()
    with pytest.raises(ValueError):
        encode_event(float("nan"))


def test_all_fields_in_order() -> None:
    event = ServerSentEvent("x\ny", event="token", id=7, retry=1500, comment="one\ntwo")
    assert event.encode() == (
        b": one\n: two\nevent: token\nid: 7\nretry: 1500\ndata: x\ndata: y\n\n"
    )


def test_comment_only_event() -> None:
    assert ServerSentEvent(comment="keep-alive").encode() == b": keep-alive\n\n"


@pytest.mark.parametrize("field", ["event", "id"])
@pytest.mark.parametrize("value", ["a\nb", "a\rdata: injected", "x\r\n"])
def test_line_breaks_in_event_or_id_are_rejected(field: str, value: str) -> None:
    with pytest.raises(ValueError, match="CR or LF"):
        ServerSentEvent("data", **{field: value})


def test_nul_in_id_rejected() -> None:
    with pytest.raises(ValueError, match="NUL"):
        ServerSentEvent("data", id="a\0b")


def test_retry_validation() -> None:
    with pytest.raises(ValueError):
        ServerSentEvent(retry=-1)
    with pytest.raises(TypeError):
        ServerSentEvent(retry=1.5)  # type: ignore[arg-type]


def test_ping_must_be_positive() -> None:
    with pytest.raises(ValueError, match="ping"):
        EventSourceResponse([], ping=0)


def parse_events(text: str) -> list[dict[str, str]]:
    events = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if line and not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = fields[name] + "\n" + value if name in fields else value
        if fields:
            events.append(fields)
    return events


@pytest.mark.anyio
async def test_headers_and_stream_through_router() -> None:
    router = Router()

    @router.get("/events")
    async def events(request: Request) -> EventSourceResponse:
        async def items() -> AsyncIterator[Any]:
            yield "plain"
            yield {"n": 1}
            yield ServerSentEvent("done", event="end", id="3")

        return EventSourceResponse(items())

    async with AsyncTestClient(router) as client:
        response = await client.get("/events")
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert parse_events(response.text) == [
        {"data": "plain"},
        {"data": '{"n":1}'},
        {"event": "end", "id": "3", "data": "done"},
    ]


@pytest.mark.anyio
async def test_ping_comment_during_silence() -> None:
    resume = anyio.Event()
    router = Router()

    @router.get("/events")
    async def events(request: Request) -> EventSourceResponse:
        async def items() -> AsyncIterator[str]:
            yield "before"
            await resume.wait()  # a slow model: silence until the test sees a ping
            yield "after"

        return EventSourceResponse(items(), ping=0.02)

    lines = []
    async with AsyncTestClient(router) as client, client.stream("GET", "/events") as response:
        with anyio.fail_after(5):
            async for line in response.aiter_lines():
                lines.append(line)
                if line == ": ping":
                    resume.set()
    assert lines[:2] == ["data: before", ""]
    assert ": ping" in lines
    assert lines[-2:] == ["data: after", ""]


@pytest.mark.anyio
async def test_a_ping_never_comes_before_a_whole_interval_of_silence() -> None:
    # The pinger starts some time into the stream (on asyncio with the disconnect
    # listener); the silence it measures begins no earlier than the last event, so the
    # ping never comes early.
    interval = 0.08
    sent: list[tuple[float, bytes]] = []
    ping_sent = anyio.Event()

    async def send(message: dict[str, Any]) -> None:
        body = message.get("body", b"")
        sent.append((time.monotonic(), body))
        if body == b": ping\n\n":
            ping_sent.set()

    async def events() -> Any:
        yield "first"
        await ping_sent.wait()  # silence until the ping

    with anyio.fail_after(5):
        await EventSourceResponse(events(), ping=interval)(http_scope(), never_disconnects, send)
    first = next(when for when, body in sent if body == b"data: first\n\n")
    ping = next(when for when, body in sent if body == b": ping\n\n")
    assert ping - first >= interval


@pytest.mark.anyio
async def test_pings_only_in_silences_of_a_whole_interval_and_repeat() -> None:
    # Events closer together than the interval (each is noticed, though the pinger looks
    # at only one per tick), then a long silence (pings repeat), then events again.
    interval = 0.06
    sent: list[tuple[float, bytes]] = []
    pings = 0
    three_pings = anyio.Event()

    async def send(message: dict[str, Any]) -> None:
        nonlocal pings
        body = message.get("body", b"")
        sent.append((time.monotonic(), body))
        if body == b": ping\n\n":
            pings += 1
            if pings == 3:
                three_pings.set()

    async def events() -> Any:
        for n in range(15):
            yield f"early {n}"
            await anyio.sleep(interval / 4)
        await three_pings.wait()
        for n in range(5):
            yield f"late {n}"
            await anyio.sleep(interval / 4)

    with anyio.fail_after(10):
        await EventSourceResponse(events(), ping=interval)(http_scope(), never_disconnects, send)
    bodies = [body for _, body in sent]
    assert bodies.count(b": ping\n\n") >= 3
    assert bodies.index(b"data: late 0\n\n") > bodies.index(b": ping\n\n")
    last_event = None
    for when, body in sent:
        if body.startswith(b"data: "):
            last_event = when
        elif body == b": ping\n\n":
            assert last_event is not None
            assert when - last_event >= interval  # never a ping while events come


@pytest.mark.anyio
async def test_disconnect_stops_event_generation() -> None:
    stopped = anyio.Event()
    router = Router()

    @router.get("/events")
    async def events(request: Request) -> EventSourceResponse:
        async def items() -> AsyncIterator[str]:
            try:
                n = 0
                while True:
                    yield str(n)
                    n += 1
                    await anyio.sleep(0)
            finally:
                stopped.set()

        return EventSourceResponse(items())

    with anyio.fail_after(5):
        async with left_mid_stream(router, "/events", until=lambda line: line == "data: 3"):
            await stopped.wait()


@pytest.mark.anyio
async def test_last_event_id_header_allows_resumption() -> None:
    router = Router()

    @router.get("/events")
    async def events(request: Request) -> EventSourceResponse:
        start = int(request.headers.get("last-event-id", "-1")) + 1
        return EventSourceResponse(ServerSentEvent(i, id=i) for i in range(start, 5))

    async with AsyncTestClient(router) as client:
        response = await client.get("/events", headers={"Last-Event-ID": "2"})
    assert [e["data"] for e in parse_events(response.text)] == ["3", "4"]


@pytest.mark.anyio
async def test_no_ping_follows_the_final_message() -> None:
    # A ping still being sent when the stream ends must go out before the final message.
    from asgikit import EventSourceResponse

    messages: list[dict[str, Any]] = []
    ping_started = anyio.Event()

    async def send(message: dict[str, Any]) -> None:  # not a Recorder: this one is slow
        if message.get("body") == b": ping\n\n":
            ping_started.set()
            await anyio.sleep(0.2)  # a slow client: the ping takes a while to go out
        messages.append(message)

    async def events() -> Any:
        yield "first"
        await ping_started.wait()  # end the stream while the ping is under way

    with anyio.fail_after(5):
        await EventSourceResponse(events(), ping=0.02)(http_scope(), never_disconnects, send)
    assert messages[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    assert any(message.get("body") == b": ping\n\n" for message in messages)

"""StreamingResponse: chunk-per-message streaming, disconnects, errors, background."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest
from helpers import (
    Recorder,
    client_gone,
    echo_router,
    http_scope,
    left_mid_stream,
    never_disconnects,
    request_messages,
)

from asgikit import BackgroundTask, Request, Router, StreamingResponse, streaming
from asgikit.testing import AsyncTestClient
from asgikit.types import Message

pytestmark = pytest.mark.anyio


async def test_each_chunk_is_its_own_body_message() -> None:
    async def chunks() -> AsyncIterator[str | bytes]:
        yield b"one "
        yield "two "
        yield "drei ✓"

    send = Recorder()
    await StreamingResponse(chunks(), media_type="text/plain")(
        http_scope(), never_disconnects, send
    )
    start, *bodies, last = send.messages
    assert start["type"] == "http.response.start"
    assert (b"content-type", b"text/plain; charset=utf-8") in start["headers"]
    assert all(name != b"content-length" for name, _ in start["headers"])
    assert [m["body"] for m in bodies] == [b"one ", b"two ", "drei ✓".encode()]
    assert all(m["more_body"] for m in bodies)
    assert last == {"type": "http.response.body", "body": b"", "more_body": False}


async def test_sync_iterator_runs_in_threadpool_one_chunk_per_hop() -> None:
    threads: set[int] = set()

    def chunks() -> Iterator[bytes]:
        for i in range(3):
            threads.add(threading.get_ident())
            yield b"%d" % i

    router = Router()
    router.add_route("/", lambda request: StreamingResponse(chunks()), methods=["GET"])
    async with AsyncTestClient(router) as client:
        response = await client.get("/")
    assert response.content == b"012"
    assert threading.get_ident() not in threads


async def test_disconnect_cancels_pending_await_and_runs_finally() -> None:
    cleaned_up = anyio.Event()
    produced: list[int] = []

    async def tokens() -> AsyncIterator[str]:
        try:
            yield "first\n"
            produced.append(1)
            await anyio.sleep_forever()  # inference that would never end
            yield "never\n"
        finally:
            cleaned_up.set()

    background_ran: list[bool] = []
    router = Router()

    @router.get("/")
    async def endpoint(request: Request) -> StreamingResponse:
        task = BackgroundTask(background_ran.append, True)
        return StreamingResponse(tokens(), background=task)

    with anyio.fail_after(5):
        async with AsyncTestClient(router) as client:
            async with client.stream("GET", "/") as response:
                async for chunk in response.aiter_bytes():
                    assert chunk == b"first\n"
                    break
            await cleaned_up.wait()
    assert produced == [1]
    assert background_ran == []  # the response was not delivered


async def test_disconnect_closes_sync_generator() -> None:
    closed = threading.Event()

    def numbers() -> Iterator[str]:
        try:
            i = 0
            while True:
                yield f"{i}\n"
                i += 1
        finally:
            closed.set()

    router = Router()
    router.add_route("/", lambda request: StreamingResponse(numbers()), methods=["GET"])
    with anyio.fail_after(5):
        async with left_mid_stream(router, "/"):
            while not closed.is_set():  # a threading.Event: polled
                await anyio.sleep(0.01)


async def test_http_disconnect_message_stops_raw_stream() -> None:
    finished = []

    async def slow() -> AsyncIterator[bytes]:
        try:
            yield b"a"
            await anyio.sleep_forever()
        finally:
            finished.append(True)

    send = Recorder()
    with anyio.fail_after(5):
        await StreamingResponse(slow())(http_scope(), client_gone, send)
    assert finished == [True]
    # The closing empty body never went out: the response is cut, not completed.
    assert all(m.get("more_body", True) for m in send.messages[1:])


async def test_oserror_from_send_is_a_disconnect() -> None:
    closed = []
    ran = []

    async def chunks() -> AsyncIterator[bytes]:
        try:
            for _ in range(10):
                yield b"x"
        finally:
            closed.append(True)

    send = Recorder(fail_on_body=2)
    response = StreamingResponse(chunks(), background=BackgroundTask(ran.append, 1))
    await response(http_scope(), never_disconnects, send)  # returns quietly
    assert closed == [True]
    assert ran == []
    assert len(send.messages) == 3  # start + two chunks


async def test_background_runs_after_last_byte() -> None:
    events: list[str] = []

    async def chunks() -> AsyncIterator[bytes]:
        yield b"x"

    class Send(Recorder):
        async def __call__(self, message: Message) -> None:  # keeps the order only
            events.append(message["type"] + ("+" if message.get("more_body") else ""))

    async def task() -> None:
        events.append("background")

    await StreamingResponse(chunks(), background=BackgroundTask(task))(
        http_scope(), never_disconnects, Send()
    )
    assert events == [
        "http.response.start",
        "http.response.body+",
        "http.response.body",
        "background",
    ]


async def test_error_after_start_never_sends_second_start() -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"partial"
        raise RuntimeError("model crashed")

    router = Router()
    router.add_route("/", lambda request: StreamingResponse(broken()), methods=["GET"])
    send = Recorder()
    with pytest.raises(RuntimeError, match="model crashed"):
        await router(http_scope(), never_disconnects, send)
    starts = [m for m in send.messages if m["type"] == "http.response.start"]
    assert len(starts) == 1 and starts[0]["status"] == 200
    assert send.messages[-1] == {
        "type": "http.response.body",
        "body": b"partial",
        "more_body": True,
    }


def test_rejects_non_iterable_content() -> None:
    with pytest.raises(TypeError, match="iterable of chunks"):
        StreamingResponse("whole body")
    with pytest.raises(TypeError, match="iterable"):
        StreamingResponse(42)  # type: ignore[arg-type]


async def test_bad_chunk_type_raises() -> None:
    with pytest.raises(TypeError, match="bytes or str"):
        await StreamingResponse([1])(http_scope(), never_disconnects, Recorder())


def test_head_sends_headers_only_and_never_starts_the_generator() -> None:
    from asgikit import EventSourceResponse, Router
    from asgikit.testing import TestClient

    started: list[str] = []
    router = Router()

    @router.get("/events")
    async def events(request: Any) -> EventSourceResponse:
        async def forever() -> AsyncIterator[str]:
            started.append("generating")
            for _ in range(10_000):  # long, yet bounded: a HEAD that ran it fails, not hangs
                yield "tick"

        return EventSourceResponse(forever())

    with TestClient(router) as client:
        response = client.head("/events")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.content == b""
    assert started == []


def test_streaming_the_request_body_back_loses_nothing() -> None:
    # The disconnect listener and the endpoint's body reader share receive(): every body
    # chunk must still reach the reader, in order.
    from asgikit.testing import TestClient

    def body() -> Iterator[bytes]:
        for index in range(20):
            yield b"%03d," % index
            time.sleep(streaming._LISTEN_AFTER / 8)  # the listener falls due meanwhile

    with TestClient(echo_router()) as client:
        response = client.post("/echo", content=body())
    assert response.content == b"".join(b"%03d," % index for index in range(20))


async def test_queue_like_receive_keeps_body_order_while_streaming() -> None:
    # Like hypercorn: each receive() call takes the next message off one queue.
    # Hand-written: it yields to the event loop before each message, unlike the shared ones.
    messages = request_messages(*[b"%d;" % index for index in range(10)])
    done = anyio.Event()

    async def receive() -> Message:
        if messages:
            await anyio.sleep(streaming._LISTEN_AFTER / 4)  # the listener falls due
            return messages.pop(0)
        await done.wait()
        return {"type": "http.disconnect"}

    send = Recorder()
    with anyio.fail_after(5):
        await echo_router()(http_scope("/echo", method="POST"), receive, send)
    assert send.body == b"".join(b"%d;" % index for index in range(10))


def test_oserror_from_the_iterator_is_an_error_not_a_disconnect() -> None:
    from asgikit.testing import TestClient

    router = Router()

    @router.get("/upstream")
    async def upstream(request: Request) -> StreamingResponse:
        async def tokens() -> AsyncIterator[bytes]:
            yield b"first "
            raise ConnectionRefusedError("the model server is down")

        return StreamingResponse(tokens())

    with pytest.raises(ConnectionRefusedError), TestClient(router) as client:
        client.get("/upstream")

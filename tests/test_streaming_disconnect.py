"""A client that leaves stops every streaming response, even one that never awaits.

Servers on ASGI spec 2.3 (uvicorn), hypercorn and granian report a disconnect through
``receive`` only: their ``send`` keeps returning without raising. A stream whose
iterator never suspends (a list, rows in memory, a full queue) must still give the
event loop turns, notice the disconnect within a bounded number of chunks, run the
iterator's ``finally`` and skip ``background``. Here the server side is scripted in
process; tests/test_server_streaming.py does the same through uvicorn.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import pytest
from helpers import http_scope

from asgikit import (
    BackgroundTask,
    EventSourceResponse,
    NDJSONResponse,
    Request,
    Response,
    Router,
    StreamingResponse,
    streaming,
)
from asgikit._receive import RELAY_KEY, ReceiveRelay
from asgikit.types import Message, Scope

pytestmark = pytest.mark.anyio

TOTAL = 1_000_000  # far more chunks than a stopped stream may produce
# A stopped stream gives the loop a turn at least every 1,024 chunks; the listener
# needs a few turns to start, read the disconnect and interrupt. Generous, not timed.
BOUND = 20_000


def stream_scope() -> Scope:
    """GET /stream as uvicorn (ASGI spec 2.3) gives it: ``send`` never raises."""
    return http_scope("/stream", headers=[(b"host", b"testserver")])


class Spec23Server:  # not the shared Recorder: the client leaves after some chunks
    """The server's side of one request, as uvicorn (spec 2.3) behaves: ``receive``
    hands over the empty body, then blocks until the client has left and reports
    ``http.disconnect``; ``send`` never raises, it drops what comes after the client
    left. The client leaves after ``leave_after`` body chunks."""

    def __init__(self, leave_after: int) -> None:
        self.leave_after = leave_after
        self.body_given = False
        self.left = anyio.Event()
        self.chunks = 0
        self.complete = False

    async def receive(self) -> Message:
        if not self.body_given:
            self.body_given = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.left.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if message["type"] != "http.response.body":
            return
        if message.get("more_body", False):
            self.chunks += 1
            if self.chunks == self.leave_after:
                self.left.set()
        else:
            self.complete = True


class Finally:
    """Counts how far an iterator got and whether its ``finally`` ran."""

    def __init__(self, total: int = TOTAL) -> None:
        self.total = total
        self.produced = 0
        self.closed = False

    async def agen(self, item: Any) -> AsyncIterator[Any]:
        try:
            for _ in range(self.total):
                self.produced += 1
                yield item  # never awaits anything
        finally:
            self.closed = True

    def gen(self, item: Any) -> Iterator[Any]:
        try:
            for _ in range(self.total):
                self.produced += 1
                yield item
        finally:
            self.closed = True


def never_awaiting_streams(tracker: Finally) -> dict[str, Callable[[], Response]]:
    return {
        "streaming-async-gen": lambda: StreamingResponse(tracker.agen(b"x" * 16)),
        "ndjson-async-gen": lambda: NDJSONResponse(tracker.agen({"token": "x"})),
        "sse-async-gen": lambda: EventSourceResponse(tracker.agen("token")),
        "sse-async-gen-no-ping": lambda: EventSourceResponse(tracker.agen("token"), ping=None),
    }


KINDS = sorted(never_awaiting_streams(Finally()))


@pytest.mark.parametrize("kind", KINDS)
async def test_never_awaiting_stream_stops_after_disconnect(kind: str) -> None:
    tracker = Finally()
    background_ran = []
    response = never_awaiting_streams(tracker)[kind]()
    response.background = BackgroundTask(background_ran.append, True)
    server = Spec23Server(leave_after=10)
    with anyio.fail_after(30):
        await response(stream_scope(), server.receive, server.send)
    assert tracker.closed, "the iterator's finally did not run"
    assert tracker.produced < BOUND, f"{tracker.produced} items produced after the client left"
    assert not server.complete
    assert background_ran == []


@pytest.mark.parametrize("container", [list, tuple])
@pytest.mark.parametrize("response_class", [StreamingResponse, NDJSONResponse, EventSourceResponse])
async def test_in_memory_sequence_stops_after_disconnect(
    container: Callable[[Any], Any], response_class: Callable[..., Response]
) -> None:
    item: Any = "line" if response_class is not StreamingResponse else b"line"
    if response_class is NDJSONResponse:
        item = {"row": 1}
    background_ran = []
    response = response_class(
        container([item] * TOTAL), background=BackgroundTask(background_ran.append, True)
    )
    server = Spec23Server(leave_after=10)
    with anyio.fail_after(30):
        await response(stream_scope(), server.receive, server.send)
    assert server.chunks < BOUND
    assert not server.complete
    assert background_ran == []


async def test_sync_generator_stops_after_disconnect() -> None:
    # Iterated in the thread pool: every chunk awaits, the listener runs at once.
    tracker = Finally()
    background_ran = []
    response = StreamingResponse(
        tracker.gen(b"x"), background=BackgroundTask(background_ran.append, True)
    )
    server = Spec23Server(leave_after=10)
    with anyio.fail_after(30):
        await response(stream_scope(), server.receive, server.send)
    assert tracker.closed
    assert tracker.produced < BOUND
    assert background_ran == []


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_generator_over_a_full_queue_stops_after_disconnect() -> None:
    # asyncio.Queue.get() returns at once while items are queued: it never suspends.
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for _ in range(200_000):
        queue.put_nowait(b"token ")
    closed = []

    async def from_queue() -> AsyncIterator[bytes]:
        try:
            while True:
                yield await queue.get()
        finally:
            closed.append(True)

    background_ran = []
    response = StreamingResponse(
        from_queue(), background=BackgroundTask(background_ran.append, True)
    )
    server = Spec23Server(leave_after=10)
    with anyio.fail_after(30):
        await response(stream_scope(), server.receive, server.send)
    assert closed == [True]
    assert queue.qsize() > 200_000 - BOUND
    assert background_ran == []


@pytest.mark.parametrize("kind", KINDS)
async def test_other_tasks_run_while_a_never_awaiting_stream_is_written(kind: str) -> None:
    """The stream gives the loop turns: a concurrent task (another request, say)
    finishes while the stream is still far from its end."""
    tracker = Finally(total=5 * BOUND)
    response = never_awaiting_streams(tracker)[kind]()
    server = Spec23Server(leave_after=TOTAL)  # the client stays
    produced_when_other_finished: list[int] = []

    async def other_request() -> None:
        for _ in range(3):  # a few awaits, as a short request's handler would do
            await anyio.lowlevel.checkpoint()
        produced_when_other_finished.append(tracker.produced)

    with anyio.fail_after(60):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(response, stream_scope(), server.receive, server.send)
            task_group.start_soon(other_request)
    assert server.complete
    assert tracker.produced == 5 * BOUND
    assert produced_when_other_finished and produced_when_other_finished[0] < BOUND


async def test_client_leaving_while_the_iterator_waits_stops_it_at_once() -> None:
    # The long-await case: the listener interrupts the generator where it waits.
    closed = anyio.Event()
    started = anyio.Event()

    async def slow_model() -> AsyncIterator[str]:
        try:
            yield "first"
            started.set()
            await anyio.sleep_forever()
            yield "never"  # pragma: no cover
        finally:
            closed.set()

    server = Spec23Server(leave_after=TOTAL)
    background_ran = []
    response = StreamingResponse(
        slow_model(), background=BackgroundTask(background_ran.append, True)
    )
    with anyio.fail_after(10):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(response, stream_scope(), server.receive, server.send)
            await started.wait()
            server.left.set()
            await closed.wait()
    assert server.chunks == 1
    assert background_ran == []


async def test_client_leaving_while_a_blocking_step_runs_closes_the_generator_after_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Blocking model code (a sync generator, in the thread pool) is computing its next
    # token when the client leaves. A thread cannot be interrupted: the response ends
    # at once, and the generator is closed as soon as that token is done (its finally
    # runs, the token is dropped), with nothing logged as an error.
    computing = threading.Event()
    release = threading.Event()
    ended: list[str] = []

    def model() -> Iterator[str]:
        try:
            yield "first"
            computing.set()
            release.wait(10)
            yield "dropped"
            ended.append("went on")
        finally:
            ended.append("closed")

    server = Spec23Server(leave_after=TOTAL)
    background_ran = []
    response = StreamingResponse(model(), background=BackgroundTask(background_ran.append, 1))
    try:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(response, stream_scope(), server.receive, server.send)
                await anyio.to_thread.run_sync(computing.wait, 10)
                server.left.set()
        assert ended == []  # the response is over; the token is still being computed
    finally:
        release.set()
    with anyio.fail_after(10):
        while not ended:  # written by the worker thread: polled, bounded
            await anyio.sleep(0.01)
    assert ended == ["closed"]
    assert server.chunks == 1
    assert background_ran == []
    assert not [record for record in caplog.records if record.levelname == "ERROR"]


async def test_an_outer_cancellation_still_propagates() -> None:
    # The stream's own cancellation (the disconnect) is taken back; a deadline around
    # the response is not swallowed.
    closed = []

    async def forever() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"x"
                await anyio.sleep(0.001)
        finally:
            closed.append(True)

    server = Spec23Server(leave_after=TOTAL)
    with anyio.move_on_after(streaming._LISTEN_AFTER * 2) as scope:  # the listener runs
        await StreamingResponse(forever())(stream_scope(), server.receive, server.send)
    assert scope.cancelled_caught
    assert closed == [True]


async def test_completed_stream_runs_background_and_is_not_cancelled_later() -> None:
    background_ran = []
    server = Spec23Server(leave_after=TOTAL)
    response = StreamingResponse(
        [b"a"] * 5000, background=BackgroundTask(background_ran.append, True)
    )
    await response(stream_scope(), server.receive, server.send)
    assert server.complete and server.chunks == 5000
    assert background_ran == [True]
    server.left.set()  # the server reports the end of the connection afterwards
    await anyio.sleep(0.01)  # the task goes on awaiting: no stray cancellation arrives


class ListenerSpy:
    """A server side that notes whether anything read ``receive`` after the body:
    that is the disconnect listener starting."""

    def __init__(self) -> None:
        self.body_given = False
        self.listened = False
        self.chunks = 0

    async def receive(self) -> Message:
        if not self.body_given:
            self.body_given = True
            return {"type": "http.request", "body": b"", "more_body": False}
        self.listened = True
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.body" and message.get("more_body", False):
            self.chunks += 1


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the tick is asyncio's
async def test_a_stream_that_lets_the_loop_run_is_not_made_to_give_turns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Several milliseconds of streaming (past the 1 ms turn guard, short of the
    # listener's start) from a generator that awaits now and then, as one does under a
    # server whose send waits when its buffer is full: the loop runs meanwhile, so the
    # stream is not made to give extra turns, nor does a checkpoint start its listener.
    checkpoints: list[float] = []
    real_checkpoint = streaming._Watch.checkpoint

    async def counting_checkpoint(watch: Any) -> None:
        checkpoints.append(anyio.current_time())
        await real_checkpoint(watch)

    monkeypatch.setattr(streaming._Watch, "checkpoint", counting_checkpoint)

    async def chunks() -> AsyncIterator[bytes]:
        started = anyio.current_time()
        index = 0
        while anyio.current_time() - started < 0.008:
            index += 1
            if index % 16 == 0:
                await asyncio.sleep(0)  # lets the loop run
            yield b"x"

    server = ListenerSpy()
    with anyio.fail_after(10):
        await StreamingResponse(chunks())(stream_scope(), server.receive, server.send)
    assert server.chunks > 256  # long enough for the turn guard to have looked
    assert checkpoints == []
    assert not server.listened


async def test_a_stream_that_holds_the_loop_gives_turns_and_listens_at_once() -> None:
    # The same length of streaming from a generator that never awaits: it is made to
    # give the loop turns, and its listener starts at the first (not `_LISTEN_AFTER` later).
    async def chunks() -> AsyncIterator[bytes]:
        started = anyio.current_time()
        while anyio.current_time() - started < 0.008:
            yield b"x"

    server = ListenerSpy()
    with anyio.fail_after(10):
        await StreamingResponse(chunks())(stream_scope(), server.receive, server.send)
    assert server.listened


def test_the_listener_timer_wakes_once_per_due_stream_on_uvloop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # uvloop rounds a timer's delay down to whole milliseconds: a timer asked for "in
    # 0.4 ms" fires at once. The listeners' timer must not then wake again and again
    # until a stream is due (it did: about five wake-ups per stream under load).
    uvloop = pytest.importorskip("uvloop")
    wakeups = 0
    start_due = streaming._Listening.start_due

    def counted(self: streaming._Listening) -> None:
        nonlocal wakeups
        wakeups += 1
        start_due(self)

    monkeypatch.setattr(streaming._Listening, "start_due", counted)

    async def one_stream(delay: float) -> None:
        await asyncio.sleep(delay)

        async def slow() -> AsyncIterator[bytes]:
            for _ in range(10):
                await asyncio.sleep(streaming._LISTEN_AFTER / 4)  # its listener starts
                yield b"x"

        server = Spec23Server(leave_after=TOTAL)
        await StreamingResponse(slow())(stream_scope(), server.receive, server.send)

    async def main() -> None:
        # Five streams started 0.3 ms apart: each is due `_LISTEN_AFTER` after its start.
        await asyncio.gather(*(one_stream(0.0003 * number) for number in range(5)))

    uvloop.run(main())
    assert 1 <= wakeups <= 10


class SlowUploadServer:
    """The server's side of a POST whose body comes in ``len(chunks)`` messages, each
    after ``pause`` seconds; then ``receive`` blocks until the client has left. Two
    ``receive()`` calls at once fail the test: that is a body message taken by a second
    reader. The client leaves once the response has sent ``leave_after`` chunks."""

    def __init__(self, chunks: list[bytes], pause: float, leave_after: int) -> None:
        self.chunks = list(chunks)
        self.pause = pause
        self.leave_after = leave_after
        self.reading = False
        self.overlapped = False
        self.left = anyio.Event()
        self.sent: list[bytes] = []

    async def receive(self) -> Message:
        if self.reading:
            self.overlapped = True
            raise AssertionError("two readers awaited receive() at once")
        self.reading = True
        try:
            if self.chunks:
                await anyio.sleep(self.pause)
                body = self.chunks.pop(0)
                return {"type": "http.request", "body": body, "more_body": bool(self.chunks)}
            await self.left.wait()
            return {"type": "http.disconnect"}
        finally:
            self.reading = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.body" and message.get("more_body", False):
            self.sent.append(message["body"])
            if len(self.sent) == self.leave_after:
                self.left.set()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the lazy listener is asyncio's
async def test_a_listener_due_while_the_stream_reads_the_body_waits_for_the_read() -> None:
    # The generator echoes the request body, whose messages come slowly: the listener
    # falls due while a read waits on the server's receive. It must not read beside it
    # (the message would be lost to the relay's reader); it starts once the body is
    # read, and still notices the client leaving while the stream waits.
    ended = anyio.Event()
    router = Router()

    @router.post("/echo")
    async def echo(request: Request) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in request.stream():
                    yield chunk
                await anyio.sleep_forever()  # a model still thinking
                yield b"never"
            finally:
                ended.set()

        return StreamingResponse(chunks())

    body = [b"one", b"two", b"three", b"four"]
    server = SlowUploadServer(body, pause=streaming._LISTEN_AFTER * 0.75, leave_after=4)
    scope = http_scope("/echo", method="POST", headers=[(b"content-length", b"15")])
    with anyio.fail_after(10):
        await router(scope, server.receive, server.send)
    assert not server.overlapped
    assert server.sent == body
    assert ended.is_set()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the lazy listener is asyncio's
async def test_an_event_stream_pings_while_its_listener_waits_for_a_body_read() -> None:
    # The listener is put off while the generator waits for a slow request body; the
    # keep-alive pinger needs no relay and must not be put off with it.
    router = Router()

    @router.post("/events")
    async def events(request: Request) -> EventSourceResponse:
        async def echo() -> AsyncIterator[bytes]:
            yield await request.body()

        return EventSourceResponse(echo(), ping=streaming._LISTEN_AFTER / 2)

    server = SlowUploadServer([b"late"], pause=streaming._LISTEN_AFTER * 3, leave_after=10)
    scope = http_scope("/events", method="POST", headers=[(b"content-length", b"4")])
    with anyio.fail_after(10):
        await router(scope, server.receive, server.send)
    assert not server.overlapped
    assert server.sent[0] == b": ping\n\n"  # while the body was on its way
    assert server.sent[-1] == b"data: late\n\n"


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the lazy listener is asyncio's
async def test_pings_more_frequent_than_the_listener_delay_start_with_the_stream() -> None:
    # The pinger normally starts with the disconnect listener; an interval shorter than
    # the listener's delay starts it with the stream, so the first ping comes after one
    # interval of silence, not after the listener's delay plus one interval.
    events: list[str] = []
    gone = anyio.Event()

    async def receive() -> Message:
        if not events:
            events.append("body")
            return {"type": "http.request", "body": b"", "more_body": False}
        events.append("listener")
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message.get("body") == b": ping\n\n":
            events.append("ping")
            gone.set()  # the client leaves after its first ping

    async def silent() -> AsyncIterator[str]:
        await anyio.sleep_forever()
        yield "never"

    response = EventSourceResponse(silent(), ping=streaming._LISTEN_AFTER / 5)
    await receive()  # the request body, as the endpoint would have read it
    with anyio.fail_after(10):
        await response(stream_scope(), receive, send)
    assert events[:2] == ["body", "ping"]  # before any listener read


async def test_a_relay_left_mid_read_keeps_the_body_message_that_read_brings() -> None:
    # leave() while the watcher awaits receive is put off until that read ends; a body
    # message it brings is kept first, so the relay stays in the scope for the reader.
    to_app, from_server = anyio.create_memory_object_stream[Message](10)
    scope: Scope = http_scope("/upload", method="POST")
    relay = ReceiveRelay.of(scope, from_server.receive)
    async with to_app, from_server, anyio.create_task_group() as group:
        group.start_soon(relay.watch)
        with anyio.fail_after(5):
            while not relay._receiving:
                await anyio.sleep(0)
        relay.leave(scope)  # (a response ends while its listener still reads)
        assert scope.get(RELAY_KEY) is relay  # a read is in flight: later
        await to_app.send({"type": "http.request", "body": b"abc", "more_body": False})
        with anyio.fail_after(5):
            while not relay._buffer:
                await anyio.sleep(0)
        assert scope.get(RELAY_KEY) is relay  # its bytes are unread: it stays
        assert await Request(scope, from_server.receive).body() == b"abc"
        group.cancel_scope.cancel()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # ping tasks are asyncio's
async def test_no_ping_starts_once_the_body_has_ended() -> None:
    # A tick may start a ping task that runs only after the stream called finish() and
    # began its last send: that task must send nothing after the last message.
    sent: list[bytes] = []

    async def send(message: Message) -> None:
        sent.append(message.get("body", b""))

    async def receive() -> Message:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    task = asyncio.current_task()
    assert task is not None
    watch = streaming._Watch(stream_scope(), receive, task, None)
    pinger = streaming._Pinger(1.0)
    pinger.start(send, watch)
    assert pinger.finish() is None  # no ping under way: the stream sends its last now
    assert await pinger.send_ping()
    assert sent == []
    pinger.stop()

"""Streaming responses: bodies sent chunk by chunk as an iterator produces them.

`StreamingResponse` sends each chunk as its own ``http.response.body`` message, with no
buffering. While it streams, a second task watches ``receive()`` for ``http.disconnect``:
when the client leaves, the streaming is cancelled (a pending ``await`` inside the
generator raises the cancellation) and the iterator is closed, so the generator's
``finally`` runs at once. That is how a model's generation is aborted when nobody is
listening any more. An `OSError` from ``send`` (ASGI 2.4: the server raises on a closed
connection) counts as a disconnect too.

`EventSourceResponse` frames items as server-sent events (see `asgikit._sse`) and sends
``: ping`` comments during silences; `NDJSONResponse` sends one JSON document per line.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import types
from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine, Iterable, Mapping
from typing import Any, TypeAlias

import anyio
import anyio.abc
import anyio.lowlevel

from asgikit import _json
from asgikit._concurrency import iterate_in_threadpool
from asgikit._http import content_type_pair
from asgikit._receive import ReceiveRelay, reading_body
from asgikit._sse import PING, ServerSentEvent, encode_event
from asgikit._tasks import NOWHERE, RUNNING, PerLoop
from asgikit.background import BackgroundTask
from asgikit.responses import NO_CONTENT_STATUSES, Response, headers_to_raw
from asgikit.types import Message, Receive, Scope, Send

__all__ = ["EventSourceResponse", "NDJSONResponse", "ServerSentEvent", "StreamingResponse"]

Content: TypeAlias = AsyncIterable[Any] | Iterable[Any]

# Seconds of streaming before the disconnect listener starts: a listener task costs
# tens of microseconds, a stream shorter than this never pays it, and a longer one pays
# it once (a disconnect is noticed at most this much later). Not shorter: under load a
# short stream lasts longer by the clock (it waits its turn among the others), and at
# 20 ms a loaded granian started listeners for 100-chunk streams (3-4% of throughput).
_LISTEN_AFTER = 0.1
_TIMER_GRAIN = 0.001  # event loop timers are this coarse (uvloop: whole milliseconds)
# A stream that never suspends gives the loop a turn after this long or this many
# chunks, whichever comes first (one turn costs a few microseconds).
_TURN_EVERY = 0.001
_TURN_CHUNKS = 1024
_CHECK_EVERY = 64  # chunks between two looks at the clock (~20 us of streaming)
_BoundMethod = types.MethodType
_AsyncGenerator = types.AsyncGeneratorType


async def _iterate_sequence(items: list[Any] | tuple[Any, ...]) -> AsyncIterator[Any]:
    # An in-memory sequence cannot block: no thread hand-off per item.
    for item in items:
        yield item


def _as_async_iterator(content: Any, owner: str) -> AsyncIterator[Any]:
    """An async iterator over ``content`` (sync iterables go through the thread pool)."""
    if isinstance(content, (str, bytes, bytearray, memoryview)):
        raise TypeError(
            f"{owner} content must be an iterable of chunks, not {type(content).__name__}; "
            "use Response for a complete body"
        )
    if hasattr(content, "__aiter__"):
        iterator: AsyncIterator[Any] = content.__aiter__()
        return iterator
    if isinstance(content, (list, tuple)):
        return _iterate_sequence(content)
    if hasattr(content, "__iter__"):
        return iterate_in_threadpool(content)
    raise TypeError(
        f"{owner} content must be an async iterable or an iterable, not {type(content).__name__}"
    )


def _chunk_to_bytes(chunk: Any) -> bytes:
    if isinstance(chunk, str):
        return chunk.encode()  # UTF-8 (naming the codec costs a lookup per call)
    if isinstance(chunk, (bytes, bytearray, memoryview)):
        return bytes(chunk)
    raise TypeError(f"streamed chunks must be bytes or str, not {type(chunk).__name__}")


class _NeverReady:
    """No item is of this type: every item of an NDJSON or SSE stream is encoded."""


class _ClientGone(Exception):
    """The client has gone: the server's ``send`` raised `OSError` (ASGI 2.4), or the
    listener saw ``http.disconnect``. Kept apart from an `OSError` raised by the iterator
    itself, which is an error like any other."""


async def _end_body_after_error(scope: Scope, send: Send) -> None:
    """After the body failed half-way, end it on a server that would not (daphne).

    uvicorn, hypercorn and granian abort the connection when the application raises
    after ``http.response.start``: the client sees an incomplete body (httpx:
    ``RemoteProtocolError``), which is what the error then propagating gets. daphne
    instead keeps the connection open with the response unfinished, so the client waits
    for good (it has no response timeout by default), and its attempt to answer a 500
    on a started response stops the task that logs and reaps its applications, for the
    life of the process. daphne is the one server that announces no ASGI
    ``spec_version``; there the body is ended first (the client promptly gets what was
    sent so far) and the error still propagates, to be logged.
    """
    asgi = scope.get("asgi")
    if asgi is None or "spec_version" in asgi:
        return
    # Best effort: if this fails too, the client has gone; the original error matters.
    with contextlib.suppress(Exception):
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _send_message(send: Send, message: Message) -> None:
    """``send(message)``; a failing server ``send`` (`OSError`) becomes `_ClientGone`."""
    try:
        await send(message)
    except OSError:
        raise _ClientGone from None


class _Watch:
    """Notices the client leaving while one response streams, and stops the stream.

    Theory of operation. A disconnect reaches the stream in one of three ways:

    - the server's ``send`` raises `OSError` (ASGI spec 2.4 servers): `_ClientGone`;
    - the listener task reads ``http.disconnect`` from ``receive`` (through the request's
      `ReceiveRelay`, so body messages the endpoint still wants are kept) and cancels the
      streaming task, which stops the iterator wherever it awaits;
    - a stream that never suspends (a list, rows in memory, a full queue, a server whose
      ``send`` returns at once) gives the loop a turn at `checkpoint` at least every
      `_TURN_EVERY` seconds or `_TURN_CHUNKS` chunks, so the listener and every other
      request get to run, and it stops within a few turns of a disconnect.

    The listener starts only once the stream has run for `_LISTEN_AFTER` seconds: a
    short response never pays for a task (a disconnect is then noticed that much later).

    On asyncio the listener is a plain task that cancels the streaming task (no anyio
    cancel scope or task group per response: they cost more than a whole short stream);
    the cancellation it caused is taken back (``Task.uncancel``) so it cannot leak to the
    caller. Elsewhere (trio) the same steps run in an anyio cancel scope and task group.
    """

    # Rarely set, so class-level defaults (no per-response store): the anyio path's
    # scope and group, a failed helper's error, the SSE pinger, the helper tasks.
    cancel_scope: anyio.CancelScope | None = None
    task_group: anyio.abc.TaskGroup | None = None
    error: Exception | None = None
    pinger: _Pinger | None = None
    # (an event stream's ping interval and send, on asyncio: its pinger is made with
    # the listener)
    pinging: tuple[float, Send] | None = None
    helpers: list[asyncio.Task[None]] | None = None
    # The request's relay, once the listener started (a short stream never makes one).
    relay: ReceiveRelay | None = None
    listening: _Listening | None = None  # waiting there for the listener to start
    checks = _TURN_CHUNKS // _CHECK_EVERY  # looks at the clock left before a turn is due
    ticking = False  # a tick was asked of the loop and has not run (see turn_due)
    ticked = False  # it ran: the loop turned since
    disconnected = False
    last: bytes | None = None  # the last encoded item's bytes (see `_Pinger`)
    cancel_requested = False
    streaming = True  # the streaming task may still be interrupted

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        task: asyncio.Task[Any] | None,
        listening: _Listening | None,
    ) -> None:
        self.scope = scope
        self.receive = receive
        self.task = task
        # When the stream started (the listener's timer) and last gave the loop a turn.
        self.started = self.last_turn = time.monotonic()
        if listening is not None:  # asyncio: the loop's _Listening starts the listener
            self.listening = listening
            listening.add(self)

    # -- both backends -------------------------------------------------------------------
    def client_left(self) -> None:
        self.disconnected = True
        self._interrupt()

    def helper_failed(self, error: Exception) -> None:
        self.error = error
        self._interrupt()

    def _interrupt(self) -> None:
        if not self.streaming:
            return
        if self.task is not None:
            if not self.cancel_requested:
                self.cancel_requested = True
                self.task.cancel()
        elif self.cancel_scope is not None:
            self.cancel_scope.cancel()

    async def listen(self) -> None:
        """Wait for ``http.disconnect`` (body messages stay in the relay for readers)."""
        relay = self.relay
        assert relay is not None  # made when the listener started
        try:
            await relay.watch()
        except Exception as exc:
            self.helper_failed(exc)
        else:
            self.client_left()
        finally:
            # The response's own leave() came while this still read: done reading now.
            relay.leave(self.scope)

    def turn_due(self) -> bool:
        """Called every `_CHECK_EVERY` chunks: whether the stream has held the event loop
        for `_TURN_EVERY` seconds or `_TURN_CHUNKS` chunks, whichever comes first (then
        `checkpoint`). A plain call: most times nothing is due, and a coroutine would
        cost more than the look at the clock.

        A stream that awaits now and then (a server whose ``send`` waits when its
        buffers are full, a generator waiting for tokens) lets the loop run without a
        checkpoint, which would cost it a turn and more: so on asyncio, the first time
        one is due, a tick is asked of the loop (``call_soon``) and the stream goes on
        for another `_CHECK_EVERY` chunks; a turn is given only if the tick has not run
        by then (the stream held the loop all along)."""
        now = time.monotonic()
        self.checks -= 1
        if now - self.last_turn < _TURN_EVERY and self.checks:
            return False
        if self.task is not None:  # asyncio: has the loop run since a tick was asked?
            if not self.ticked and not self.ticking:
                self.ticking = True
                self.task.get_loop().call_soon(self._tick)
                return False
            held = not self.ticked  # the tick has not run: the stream held the loop
            self.ticked = self.ticking = False
        else:
            held = True
        self.last_turn = now
        self.checks = _TURN_CHUNKS // _CHECK_EVERY
        return held

    def _tick(self) -> None:
        # A loop callback: the loop ran. (After a checkpoint the flag is cleared again.)
        self.ticking = False
        self.ticked = True

    async def checkpoint(self) -> None:
        """Give the event loop a turn (`turn_due` said so), and stop the stream if the
        client has gone meanwhile."""
        if self.task is not None:
            if self.listening is not None:  # it holds the loop: listen now, not later
                self.start_listening()
            await asyncio.sleep(0)
            self.ticked = False  # a tick that ran during this turn says nothing
        else:
            await anyio.lowlevel.checkpoint()
        if self.disconnected or self.error is not None:
            # The helper's interruption was swallowed by the iterator: stop here.
            raise _ClientGone

    def start_soon(self, func: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> None:
        if self.task is not None:
            helper = self.task.get_loop().create_task(func(*args))
            helper.add_done_callback(_consume_result)
            if self.helpers is None:
                self.helpers = []
            self.helpers.append(helper)
        else:
            assert self.task_group is not None
            self.task_group.start_soon(func, *args)

    def start_listening(self) -> None:
        """Start the helpers a stream needs once it has run for `_LISTEN_AFTER` (asyncio;
        the anyio path starts them at once): the SSE pinger, and the listener. The
        relay is put in the scope now, not earlier, and only while no body read waits
        on ``receive`` (`reading_body`: that read may have gone straight to the
        server's, and a second reader beside it could take its message); else the
        listener is due again `_LISTEN_AFTER` later. Body reads from then on go
        through the relay."""
        listening = self.listening
        assert listening is not None  # (asyncio, not started yet)
        listening.pending.pop(self, None)
        self.start_pinger()  # the pinger needs no relay: now in any case
        if reading_body(self.scope):
            self.started = time.monotonic()
            listening.add(self)
            return
        self.listening = None
        self.relay = ReceiveRelay.of(self.scope, self.receive)
        self.start_soon(self.listen)

    def start_pinger(self) -> None:
        """Start an event stream's pinger (asyncio), unless it runs already or the last
        message is being sent."""
        if self.pinging is not None:
            interval, send = self.pinging
            self.pinging = None
            pinger = _Pinger(interval)
            pinger.start(send, self)
            pinger.tick_later()

    # -- asyncio -------------------------------------------------------------------------
    def stop(self) -> None:
        """No interruption from here on; stop the helpers without waiting for them."""
        self.streaming = False
        if self.listening is not None:
            self.listening.pending.pop(self, None)
        if self.pinger is not None:
            self.pinger.stop()
        if self.helpers is not None:
            for helper in self.helpers:
                helper.cancel()
            # A cancelled helper's traceback holds its frames, which hold this watch:
            # without this list the task is freed when it ends, not by the collector.
            self.helpers = None

    def take_back_cancel(self) -> bool:
        """Undo the cancellation the listener asked for; False if someone else also
        cancelled the task (then the `CancelledError` must propagate)."""
        assert self.task is not None
        uncancel = getattr(self.task, "uncancel", None)  # Python 3.11+
        return uncancel is None or uncancel() == 0


class _Listening:
    """Starts the listeners of the streams of one asyncio loop that have run for
    `_LISTEN_AFTER` seconds: one timer per loop, not one per response (a timer costs
    about as much as the rest of a short stream's bookkeeping)."""

    __slots__ = ("bound", "loop", "pending", "thread", "timer")

    bound: asyncio.AbstractEventLoop | None  # (asgikit._tasks.LoopState)
    thread: int

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pending: dict[_Watch, None] = {}  # in the order the streams started
        self.timer: asyncio.TimerHandle | None = None

    def add(self, watch: _Watch) -> None:
        """Start ``watch``'s listener once it is due (`_LISTEN_AFTER` after its start)."""
        self.pending[watch] = None
        if self.timer is None:
            self.timer = self.loop.call_later(_LISTEN_AFTER, self.start_due)

    def start_due(self) -> None:
        """Start the listeners that are due, then sleep until the next one is. Event
        loops keep time in milliseconds (uvloop rounds a timer's delay down to whole
        milliseconds): so listeners due within `_TIMER_GRAIN` start now, a little early,
        and the timer never wakes up before the next one is due only to sleep again."""
        self.timer = None
        due = time.monotonic() - _LISTEN_AFTER + _TIMER_GRAIN
        pending = self.pending
        ready = []
        while pending:
            watch = next(iter(pending))
            if watch.started > due:  # the rest started later still
                self.timer = self.loop.call_later(
                    watch.started - due + _TIMER_GRAIN, self.start_due
                )
                break
            del pending[watch]
            ready.append(watch)
        for watch in ready:  # (one put off for a body read is added again, at the end)
            watch.start_listening()


_LISTENING = PerLoop(_Listening)  # each loop's (see asgikit._tasks)
_here = _LISTENING.here  # (bound once: one attribute lookup less per response)


def _consume_result(task: asyncio.Task[None]) -> None:
    # Helpers catch their errors; this only keeps asyncio from warning about a task
    # cancelled before it ever ran.
    if not task.cancelled():
        task.exception()


class StreamingResponse(Response):
    """A response whose body comes from an iterator, sent chunk by chunk.

    ``content`` is an async iterable, or a sync iterable (iterated in the shared thread
    pool, one chunk per hand-off; a ``list``/``tuple`` is iterated in place), of ``bytes``
    or ``str`` (encoded as UTF-8). Each chunk goes out as its own
    ``http.response.body`` message; there is no ``Content-Length``.

    Disconnect-aware: when the client goes away the iteration is cancelled, the iterator
    is closed (``aclose()``/``close()``) so a generator's ``finally`` runs at once, and
    ``background`` does **not** run (the response was not delivered; put cleanup that
    must always happen in the generator's ``finally``). An exception raised by the
    iterator (or by encoding an item) after the headers went out closes the iterator
    and propagates: the server then aborts the connection, so the client sees an
    incomplete body rather than a complete one (daphne cannot abort: there the body is
    ended first, so its client is not left waiting). ``background`` runs after the
    last chunk.

    >>> async def tokens():
    ...     for token in model.generate(prompt):
    ...         yield token
    >>> response = StreamingResponse(tokens(), media_type="text/plain")
    >>> response.headers["content-type"]
    'text/plain; charset=utf-8'
    """

    def __init__(
        self,
        content: Content,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        self.status_code = status_code
        if media_type is not None:
            self.media_type = media_type
        if background is not None:  # (else the class's None: one store less)
            self.background = background
        if status_code in NO_CONTENT_STATUSES:  # a 204 or 304 has no body: sent as for HEAD
            self._headers_only = True
        self.body_iterator: AsyncIterator[Any]
        if content.__class__ is _AsyncGenerator:  # the common case: its own iterator
            self.body_iterator = content
        else:
            self.body_iterator = _as_async_iterator(content, type(self).__name__)
        self.raw_headers = self._build_headers(headers)

    body = b""  # (a streamed body is not held)
    _headers_only = False  # a status without a body (204, 304)

    def _build_headers(self, headers: Mapping[str, str] | None) -> list[tuple[bytes, bytes]]:
        if not headers:  # the common case: the Content-Type alone
            if self.media_type is None:
                return []
            return [self._fixed_content_type or content_type_pair(self.media_type, self.charset)]
        raw = headers_to_raw(headers)
        if self.media_type is not None:
            for key, _ in raw:
                if key == b"content-type":
                    break
            else:
                raw.append(
                    self._fixed_content_type or content_type_pair(self.media_type, self.charset)
                )
        return raw

    _fixed_content_type: tuple[bytes, bytes] | None = None  # a subclass's own header

    # How items become body bytes: items of exactly `_ready_type` go out as they are,
    # others through `_encode` (here: str as UTF-8; NDJSON lines and SSE framing in
    # the subclasses, whose items are never sent as they are).
    _ready_type: type = bytes
    _encode: Callable[[Any], bytes] = staticmethod(_chunk_to_bytes)
    # Whether the disconnect listener starts with the body rather than after
    # `_LISTEN_AFTER` (a body known to be large and fast: a file).
    _listens_at_once = False
    # Seconds of silence before a ``: ping`` comment (event streams; see `_Pinger`).
    _keepalive: float | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Sends its start before anything that can fail (the router relies on it: an
        # error from here on is one after the start; see asgikit._dispatch).
        start: Message = {
            "type": "http.response.start",
            "status": self.status_code,
            "headers": self.raw_headers,
        }
        try:
            await send(start)
            if self._headers_only or scope.get("method") == "HEAD":
                # Headers only: the iterator (the inference) never starts.
                await self._close_iterator()
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                if self.background is not None:
                    await self.background()
                return
        except OSError:
            await self._close_iterator()
            return
        # A send wrapper that only watches for the start (a `StartTrackingSend`:
        # TimeoutMiddleware's, the router's) offers the send behind it for the body: one
        # coroutine call less per chunk. (getattr, not isinstance: a runtime protocol
        # check costs more than a short stream. A server's own send is a bound method,
        # on which a missing attribute costs as much again: not looked up.)
        if send.__class__ is not _BoundMethod:
            send = getattr(send, "send_after_start", send)
        # The body, while watching for a disconnect (see _Watch). On trio no asyncio
        # loop runs in this thread (anyio decides the same way): the anyio path.
        # This thread's loop's `_Listening` and the running task (asgikit._tasks).
        listening: _Listening
        task: asyncio.Task[Any] | None
        try:
            listening = _here.state
            task = RUNNING[listening.bound]
        except (AttributeError, KeyError):  # the slow way (see asgikit._tasks)
            found = _LISTENING.bind()
            listening, task = found if found is not None else (NOWHERE, None)
        if task is None:  # not in an asyncio task (trio)
            await self._stream_anyio(scope, receive, send)
            return
        if self._listens_at_once:
            watch = _Watch(scope, receive, task, None)
            watch.listening = listening  # (not added: it starts now)
            watch.start_listening()
        else:
            watch = _Watch(scope, receive, task, listening)
            interval = self._keepalive
            if interval is not None:  # an event stream: its pinger starts with the listener
                watch.pinging = (interval, send)
                # Started with the listener, a pinger that finds an event sent counts the
                # silence from then: up to _LISTEN_AFTER late, more than the quarter
                # interval a ping may be late for intervals under 4 x _LISTEN_AFTER.
                if interval < 4 * _LISTEN_AFTER:
                    watch.start_pinger()
        try:
            await self._send_body(send, watch)
        except _ClientGone:
            watch.disconnected = watch.error is None
        except asyncio.CancelledError:
            if not (watch.cancel_requested and watch.take_back_cancel()):
                watch.stop()
                await self._close_iterator()
                raise
        except BaseException as exc:
            watch.stop()
            await self._close_iterator()
            if isinstance(exc, Exception):  # the iterator or an item's encoding failed
                await _end_body_after_error(scope, send)
            raise
        else:
            # Servers report a disconnect once the response is complete: from here on
            # it no longer means the client left early.
            watch.stop()
            if watch.cancel_requested and not watch.take_back_cancel():
                raise asyncio.CancelledError  # pragma: no cover - a second canceller
            if self.background is not None:
                await self.background()
            return
        finally:
            if watch.relay is not None:  # the listener started (no cycle through the
                watch.relay.leave(scope)  # server's request object, see ReceiveRelay)
        # The client has gone (or a helper failed): no background.
        watch.stop()
        await self._close_iterator()
        if watch.error is not None:
            await _end_body_after_error(scope, send)
            raise watch.error

    async def _stream_anyio(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The body on trio: the listener (and an event stream's pinger) from the start,
        in a task group under a cancel scope."""
        watch = _Watch(scope, receive, None, None)
        relay = watch.relay = ReceiveRelay.of(scope, receive)  # before any body read
        error: Exception | None = None
        complete = False
        try:
            with anyio.CancelScope() as cancel_scope:
                watch.cancel_scope = cancel_scope
                async with anyio.create_task_group() as task_group:
                    watch.task_group = task_group
                    task_group.start_soon(watch.listen)
                    if self._keepalive is not None:
                        _Pinger(self._keepalive).start(send, watch)
                    try:
                        await self._send_body(send, watch)
                        complete = True
                    except _ClientGone:
                        watch.disconnected = watch.error is None
                    except Exception as exc:
                        error = exc
                    finally:
                        watch.streaming = False
                        if watch.pinger is not None:
                            watch.pinger.stop()
                        task_group.cancel_scope.cancel()
                        await self._close_iterator()
            watch.cancel_scope = watch.task_group = None  # (no cycle through trio's nursery)
            if error is None and not complete:
                error = watch.error
            if error is not None:
                await _end_body_after_error(scope, send)
                raise error
        finally:
            relay.leave(scope)
        if complete and self.background is not None:  # (not once the client has gone)
            await self.background()

    async def _close_iterator(self) -> None:
        """Close the iterator so a generator's ``finally`` runs, even when cancelled."""
        aclose = getattr(self.body_iterator, "aclose", None)
        if aclose is not None:
            with anyio.CancelScope(shield=True):
                await aclose()

    async def _send_body(self, send: Send, watch: _Watch) -> None:
        """The one send loop (every streaming response): encode, send, and every
        `_CHECK_EVERY` chunks let `_Watch.checkpoint` give the loop a turn if due."""
        ready = self._ready_type
        encode = self._encode
        countdown = _CHECK_EVERY
        # The hot loop: one type test, one dict per chunk; bytes chunks of a plain
        # stream go out as they are. An encoded item is noted in ``watch.last`` (one
        # store): an SSE pinger looks there for events, see `_Pinger`.
        async for item in self.body_iterator:
            if item.__class__ is not ready:
                item = watch.last = encode(item)
            try:
                await send({"type": "http.response.body", "body": item, "more_body": True})
            except OSError:
                raise _ClientGone from None
            countdown -= 1
            if not countdown:
                countdown = _CHECK_EVERY
                if watch.turn_due():
                    await watch.checkpoint()
        if watch.pinger is not None:
            ping_sent = watch.pinger.finish()
            if ping_sent is not None:
                await ping_sent.wait()
        watch.pinging = None  # no pinger starts during the last send
        # A disconnect during the last send is the client leaving only while the server
        # still holds the message (uvicorn waiting to drain the socket to a client that
        # left): on asyncio the listener's Task.cancel lands only in such a wait, so it
        # may interrupt. On trio, hypercorn reports the disconnect of a complete
        # response within this send, and a cancel scope would cut the send after the
        # server took the message: there the stream is over from here on, once the
        # listener has had a turn to report a disconnect that came before it.
        if watch.task is None:
            await anyio.lowlevel.checkpoint()
            if watch.disconnected:
                raise _ClientGone
            watch.streaming = False
        try:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            raise _ClientGone from None


class NDJSONResponse(StreamingResponse):
    """Newline-delimited JSON: each item is sent as one compact JSON document plus ``\\n``.

    ``application/x-ndjson``. Items must be JSON-serialisable (NaN and infinities raise
    `ValueError`). Disconnect-aware and ``background`` as `StreamingResponse`.

    >>> response = NDJSONResponse({"token": t} for t in model.generate(prompt))
    >>> response.headers["content-type"]
    'application/x-ndjson'
    """

    media_type = "application/x-ndjson"
    _ready_type = _NeverReady
    _encode = staticmethod(_json.encode_line)

    def __init__(
        self,
        content: Content,
        *,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        super().__init__(content, status_code=status_code, headers=headers, background=background)


class _Pinger:
    """The keep-alive pinger of one event stream: ``: ping`` after ``interval`` seconds
    without an event.

    Theory of operation. The pinger looks at the stream four times per interval (a
    *tick*). The send loop keeps a reference to each event's bytes in the watch's
    ``last`` (one store per event; a new event is a new bytes object, and the one held
    in ``seen`` stays alive, so a new one is never the same object). A tick that finds
    ``last`` changed starts the silence again there; one that finds it unchanged a
    whole interval after the silence started sends a ping. So a ping goes out after
    between 1 and 1.25 intervals of silence, never earlier. (Swapping the encoder for
    a marking one while the pinger runs, and marking only the first event after each
    tick, were tried: the first cost an attribute lookup per event, the second more
    than it saved at 10,000 open streams.)

    On asyncio the pinger is made with the disconnect listener (a stream shorter than
    that never pays for it) and a tick is a timer callback: no task per stream, one is
    started only to send a ping. Elsewhere (trio) `run` ticks in the stream's task
    group. ``closed`` and ``ping_sent`` (set while a ping is being sent) keep a ping
    from following the final message.
    """

    __slots__ = (
        "closed",
        "interval",
        "ping_sent",
        "seen",
        "send",
        "silent_since",
        "timer",
        "watch",
    )

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.closed = False
        self.seen: bytes | None = None  # the watch's ``last`` at the previous tick
        self.silent_since = 0.0
        self.ping_sent: anyio.Event | None = None
        self.timer: asyncio.TimerHandle | None = None

    def start(self, send: Send, watch: _Watch) -> None:
        self.send = send
        self.watch = watch
        self.seen = watch.last  # events before the pinger started are not silence
        watch.pinger = self
        if watch.task is None:  # anyio: now; asyncio: with the listener (`tick_later`)
            watch.start_soon(self.run)

    def _begin(self) -> None:
        # Silent since the stream started if no event went out yet; else since now
        # (the last event's time is not kept: a ping may come later, never earlier).
        self.silent_since = self.watch.started if self.watch.last is None else time.monotonic()

    def ping_due(self, now: float) -> bool:
        """One tick: whether a ping is due."""
        if self.closed:
            return False
        last = self.watch.last
        if last is not self.seen:  # an event went out since: the silence starts again
            self.seen = last
            self.silent_since = now
            return False
        return now - self.silent_since >= self.interval

    async def send_ping(self) -> bool:
        """Send ``: ping``; False when the stream must stop (the client left, or the
        server's ``send`` failed: the watch has been told)."""
        if self.closed:  # the body ended since the tick: no ping after its last message
            return True
        sent = self.ping_sent = anyio.Event()
        try:
            await _send_message(
                self.send, {"type": "http.response.body", "body": PING, "more_body": True}
            )
        except _ClientGone:
            self.watch.client_left()
            return False
        except Exception as exc:
            self.watch.helper_failed(exc)
            return False
        finally:
            self.ping_sent = None
            sent.set()
        self.silent_since = time.monotonic()
        return True

    def finish(self) -> anyio.Event | None:
        """No ping starts after this; the one under way (wait for it), if any."""
        self.closed = True
        return self.ping_sent

    def stop(self) -> None:
        """No tick and no ping once the body is over, and the reference between the
        pinger and the watch is dropped: the watch is freed when the request ends, not
        left to the garbage collector (one cycle per stream would run it every few
        dozen streams)."""
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.watch.pinger = None

    # -- asyncio: timer callbacks --------------------------------------------------------
    def tick_later(self) -> None:
        """Start ticking (asyncio, with the disconnect listener)."""
        self._begin()
        self._schedule()

    def _schedule(self) -> None:
        if not self.closed:
            assert self.watch.task is not None
            loop = self.watch.task.get_loop()
            self.timer = loop.call_later(self.interval / 4, self._tick)

    def _tick(self) -> None:
        self.timer = None
        if self.ping_due(time.monotonic()):
            self.watch.start_soon(self._ping_then_tick)
        else:
            self._schedule()

    async def _ping_then_tick(self) -> None:
        if await self.send_ping():
            self._schedule()

    # -- anyio -----------------------------------------------------------------------------
    async def run(self) -> None:
        """Tick in a task until cancelled (the stream's task group ends it)."""
        self._begin()
        step = self.interval / 4
        while not self.closed:
            await anyio.sleep(step)
            if self.ping_due(time.monotonic()) and not await self.send_ping():
                return


_NO_CACHE = (b"cache-control", b"no-cache")
_NO_BUFFERING = (b"x-accel-buffering", b"no")  # nginx must not buffer the stream


class EventSourceResponse(StreamingResponse):
    """A ``text/event-stream`` of server-sent events.

    Items may be `ServerSentEvent`, ``str`` (one event whose ``data`` is the text,
    one ``data:`` line per line), ``bytes`` (UTF-8 text data) or any JSON-serialisable
    value (compact JSON ``data``). After ``ping`` seconds without an event a ``: ping``
    comment is sent, so proxies keep the connection open (``ping=None`` disables it).
    Headers: ``content-type: text/event-stream``, ``cache-control: no-cache``,
    ``x-accel-buffering: no`` (nginx must not buffer). Disconnect-aware and
    ``background`` as `StreamingResponse`.

    A reconnecting browser sends the last ``id`` it saw as
    ``request.headers["last-event-id"]``; resume from there.

    >>> async def tokens():
    ...     async for token in model.stream(prompt):
    ...         yield ServerSentEvent({"token": token}, event="token")
    >>> response = EventSourceResponse(tokens())
    >>> response.headers["cache-control"]
    'no-cache'
    """

    media_type = "text/event-stream"
    _ready_type = _NeverReady
    _encode = staticmethod(encode_event)

    def __init__(
        self,
        content: Content,
        *,
        ping: float | None = 15.0,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        self.ping = ping
        super().__init__(content, status_code=status_code, headers=headers, background=background)

    def _build_headers(self, headers: Mapping[str, str] | None) -> list[tuple[bytes, bytes]]:
        if not headers:  # the common case: the three fixed headers
            return [self._fixed_content_type, _NO_CACHE, _NO_BUFFERING]
        raw = super()._build_headers(headers)
        present = {key for key, _ in raw}
        if b"cache-control" not in present:
            raw.append(_NO_CACHE)
        if b"x-accel-buffering" not in present:
            raw.append(_NO_BUFFERING)
        return raw

    # The format is always UTF-8; no charset parameter needed.
    _fixed_content_type: tuple[bytes, bytes] = (b"content-type", b"text/event-stream")

    @property
    def ping(self) -> float | None:
        """Seconds of silence before a ``: ping`` comment is sent; None: never."""
        return self._keepalive

    @ping.setter
    def ping(self, interval: float | None) -> None:
        if interval is not None and not interval > 0:
            raise ValueError(f"ping must be a positive number of seconds or None, not {interval!r}")
        self._keepalive = interval

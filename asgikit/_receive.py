"""One reader for ``receive()``: noticing a disconnect without losing the request body.

A streaming response (or a queued request) must notice the client leaving while the
endpoint may still be reading the request body. Two tasks awaiting ``receive()`` at once
would lose or reorder body messages, so instead a `ReceiveRelay` is put in the scope:
its ``watch()`` task becomes the only caller of ``receive()``, keeps body messages (a
bounded number) for whoever reads the body, and notes the disconnect. `Request` reads
through the relay when there is one; raw ASGI code gets ``relay.receive``.
"""

from __future__ import annotations

from collections import deque

import anyio

from asgikit._concurrency import running_on_asyncio
from asgikit.types import Message, Receive, Scope

__all__ = ["READING_KEY", "RELAY_KEY", "ReceiveRelay", "reading_body", "receive_if_ready"]

RELAY_KEY = "asgikit.receive_relay"
# In the scope while a `Request` awaits ``receive`` for a body message.
READING_KEY = "asgikit.reading_body"
_DISCONNECT: Message = {"type": "http.disconnect"}


class ReceiveRelay:
    """Lets several tasks read one request's ``receive()`` without losing or reordering.

    Only one task awaits the server's ``receive()`` at a time. ``watch()`` reads ahead
    until the client disconnects, keeping body messages (at most ``max_buffered``; then
    it waits for a reader, so memory stays bounded, and an ASGI 2.4 server still reports
    a gone client by failing ``send``); ``receive()`` hands them on in order, or reads
    itself when nobody else is reading.
    """

    # Class-level defaults, so a relay made for a short response that never reads
    # ahead costs one attribute (one is made per streamed response).
    _buffer: deque[Message] | tuple[()] = ()  # a deque once watch() reads ahead
    _changed: anyio.Event | None = None
    _receiving = False  # a task is awaiting the server's receive()
    _leaving: list[Scope] | None = None  # scopes to leave once that read ends
    disconnected = False
    max_buffered = 16

    def __init__(self, receive: Receive, max_buffered: int = 16) -> None:
        self._receive = receive
        if max_buffered != 16:
            self.max_buffered = max_buffered

    @classmethod
    def of(cls, scope: Scope, receive: Receive) -> ReceiveRelay:
        """The relay reading ``receive`` for this request, put in ``scope`` on first use.

        A relay already in the scope is reused when it reads this same ``receive`` (or
        is it); one made further out, around a ``receive`` that middleware has wrapped
        since, is not: then a new relay reads the wrapped one.
        """
        relay: ReceiveRelay | None = scope.get(RELAY_KEY)
        if relay is None or not relay.serves(receive):
            relay = scope[RELAY_KEY] = cls(receive)
        return relay

    def leave(self, scope: Scope) -> None:
        """Take this relay out of ``scope`` once what needed it is over, unless someone
        is reading through it or it keeps body bytes nobody has read yet.

        A server's ``receive`` is usually a bound method of its own per-request object,
        which holds the scope: a relay left in the scope closes a reference cycle
        (scope, relay, ``receive``, the server's object, scope) that only the garbage
        collector would free. A later reader reads ``receive`` itself again, or makes a
        new relay. (A kept message without bytes, the empty body of a ``GET``, is not
        worth the cycle: the response is over.) While a read is in flight (a listener
        being cancelled), it leaves once that read ends.
        """
        if scope.get(RELAY_KEY) is not self:
            return
        if self._receiving:
            if self._leaving is None:
                self._leaving = []
            self._leaving.append(scope)
            return
        for message in self._buffer:
            if message.get("body"):
                return
        del scope[RELAY_KEY]

    def serves(self, receive: Receive) -> bool:
        """Whether reading ``receive`` should go through this relay: it is the one the
        relay reads (a bound method equal to it counts: ``server.receive`` makes a new
        one each time) or the relay's own."""
        return receive is self._receive or receive == self._receive or receive == self.receive

    def _notify(self) -> None:
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()

    async def _wait(self) -> None:
        if self._changed is None:
            self._changed = anyio.Event()
        await self._changed.wait()

    async def _pull(self, keep: bool = False) -> Message:
        """Await the server's ``receive()``; only ever one task at a time. With ``keep``
        (the watcher), a body message is kept for `receive` before the read counts as
        over: a `leave` put off until then sees it."""
        self._receiving = True
        try:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
            elif keep:
                if not isinstance(self._buffer, deque):
                    self._buffer = deque()
                self._buffer.append(message)
        finally:
            self._receiving = False
            self._notify()
            if self._leaving is not None:  # asked to leave meanwhile (see leave)
                leaving, self._leaving = self._leaving, None
                for scope in leaving:
                    self.leave(scope)
        return message

    async def watch(self) -> None:
        """Read ahead until the client disconnects, then return; body messages are kept
        for `receive`."""
        while not self.disconnected:
            if self._receiving or len(self._buffer) >= self.max_buffered:
                await self._wait()
                continue
            await self._pull(keep=True)

    async def receive(self) -> Message:
        """The next message: kept ones first, else read it (or wait for the reader)."""
        while True:
            if self._buffer:
                assert isinstance(self._buffer, deque)
                message = self._buffer.popleft()
                self._notify()  # room for the watcher
                return message
            if self.disconnected:
                return _DISCONNECT
            if not self._receiving:
                return await self._pull()
            await self._wait()


def reading_body(scope: Scope) -> bool:
    """Whether a body read of this request waits on ``receive`` now. A disconnect
    watcher that starts later than the request (the router's for cancel_on_disconnect,
    a streaming response's listener) waits while this holds: the read may have gone
    straight to the server's ``receive``, before any relay existed, and a second reader
    beside it could take its message."""
    return READING_KEY in scope


async def receive_if_ready(receive: Receive) -> Message | None:
    """The message ``receive`` has ready, or None at once if it would have to wait.

    Servers' ``receive`` waits on an event or a queue, which a cancellation leaves as it
    was, so the call runs in a cancel scope cancelled by the time it would wait. On
    asyncio a cancelled scope interrupts only a wait: it is cancelled before the call.
    trio checks for a cancellation on entry as well (a trio memory channel, hypercorn's
    ``receive`` under trio, would not hand over a ready message in a cancelled scope):
    there a helper task cancels it, and it runs only once the call waits.
    """
    if running_on_asyncio():
        with anyio.CancelScope() as cancel_scope:
            cancel_scope.cancel()
            return await receive()
        return None
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(_cancel, task_group.cancel_scope)
        message = await receive()
        task_group.cancel_scope.cancel()  # ready at once: the helper need not run
        return message
    return None


async def _cancel(cancel_scope: anyio.CancelScope) -> None:
    cancel_scope.cancel()

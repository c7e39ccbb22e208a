"""Load shedding: at most N requests in the app, at most M waiting, the rest get 503."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import anyio

from asgikit._receive import ReceiveRelay
from asgikit.responses import JSONResponse
from asgikit.types import ASGIApp, Receive, Scope, Send

__all__ = ["ConcurrencyLimitMiddleware", "ConcurrencyStats"]


@dataclass(frozen=True)
class ConcurrencyStats:
    """A snapshot of a `ConcurrencyLimitMiddleware`, read as ``middleware.stats``.

    ``running`` and ``queued`` are the state now; the rest count since the middleware was
    created (HTTP requests only).
    """

    running: int
    """Requests in the app now (at most ``max_concurrency``)."""
    queued: int
    """Requests waiting for a slot now (at most ``max_queue``)."""
    admitted: int
    """Requests let into the app."""
    shed: int
    """Requests answered with 503 because the queue was full."""
    abandoned: int
    """Queued requests whose client left (or that were cancelled) before their turn."""


class ConcurrencyLimitMiddleware:
    """Let at most ``max_concurrency`` HTTP requests run in the app at once.

    Up to ``max_queue`` more wait their turn, first come first served; any request beyond
    that is answered at once with ``503 {"detail": ...}`` and ``Retry-After:
    retry_after`` (seconds), instead of piling up until everything times out. A request
    counts until the app returns, streaming included. A waiting request whose client
    goes away (or that is cancelled) leaves the queue as soon as the server reports it.
    A server reports it only after the body it already received, and the queue reads at
    most 16 body messages ahead: a request with a larger body is admitted anyway. If
    its client left mid-body, its body read raises `ClientDisconnect` at once; if the
    whole body had arrived, the endpoint runs, unless its route has
    ``cancel_on_disconnect`` (then it is cancelled as soon as it has read the body).
    ``lifespan`` and ``websocket``
    scopes pass through untouched (a long-lived socket should not hold a request slot).
    ``stats`` is a `ConcurrencyStats` snapshot (running, queued, admitted, shed,
    abandoned) for metrics and autoscaling on queue depth.

    Put it outermost, so shed requests cost almost nothing:

    >>> app = Router(middleware=[Middleware(ConcurrencyLimitMiddleware, max_concurrency=8,
    ...                                     max_queue=32)])
    """

    def __init__(
        self, app: ASGIApp, max_concurrency: int, max_queue: int = 0, retry_after: int = 1
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, not {max_concurrency}")
        if max_queue < 0:
            raise ValueError(f"max_queue must be >= 0, not {max_queue}")
        if retry_after < 0:
            raise ValueError(f"retry_after must be >= 0 seconds, not {retry_after}")
        self.app = app
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.retry_after = retry_after
        self._active = 0
        self._admitted = 0
        self._shed_count = 0
        self._abandoned = 0
        # One event per waiting request; a finishing request hands its slot to the first.
        self._waiting: deque[anyio.Event] = deque()

    @property
    def active(self) -> int:
        """Requests running in the app now."""
        return self._active

    @property
    def waiting(self) -> int:
        """Requests queued for a slot now."""
        return len(self._waiting)

    @property
    def stats(self) -> ConcurrencyStats:
        """A `ConcurrencyStats` snapshot (for metrics: queue depth, in flight, sheds)."""
        return ConcurrencyStats(
            running=self._active,
            queued=len(self._waiting),
            admitted=self._admitted,
            shed=self._shed_count,
            abandoned=self._abandoned,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        relay: ReceiveRelay | None = None  # made while queued
        if self._active < self.max_concurrency and not self._waiting:
            self._active += 1
        elif len(self._waiting) < self.max_queue:
            relay = await self._wait_for_turn(scope, receive)
            if relay is None:
                return  # the client left while queued: nobody to answer
            receive = relay.receive
        else:
            self._shed_count += 1
            await self._shed(scope, receive, send)
            return
        self._admitted += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self._release()
            if relay is not None:
                # It goes with the request: it holds the server's receive, so left in
                # the scope it would close a cycle (scope, relay, server object).
                relay.leave(scope)

    async def _wait_for_turn(self, scope: Scope, receive: Receive) -> ReceiveRelay | None:
        """Queue for a slot while watching for the client leaving. Returns the relay
        whose ``receive`` the app must use (it replays body messages read meanwhile),
        or None if the client left first (the request then left the queue, and the
        relay the scope)."""
        turn = anyio.Event()
        self._waiting.append(turn)
        relay = ReceiveRelay.of(scope, receive)
        watching: list[anyio.CancelScope] = []  # the watcher's own scope, once it runs
        try:
            with anyio.CancelScope() as queued:  # cancelled if the client leaves
                async with anyio.create_task_group() as group:
                    group.start_soon(_watch_while_queued, relay, queued, watching)
                    await turn.wait()
                    # Only the watcher is cancelled (cancelling the group's scope would
                    # leave cancellation tracebacks in cycles, one per queued request).
                    if watching:
                        watching[0].cancel()
                    else:
                        group.cancel_scope.cancel()  # it never ran: nothing to clean
            left = queued.cancel_called
        except BaseException:
            self._leave_queue(turn)
            relay.leave(scope)
            raise
        if left:
            self._leave_queue(turn)
            relay.leave(scope)
            return None
        return relay

    def _leave_queue(self, turn: anyio.Event) -> None:
        self._abandoned += 1
        if turn.is_set():  # the slot was handed to us just now: pass it on
            self._release()
        else:
            self._waiting.remove(turn)

    def _release(self) -> None:
        if self._waiting:
            self._waiting.popleft().set()  # the slot changes hands; _active stays
        else:
            self._active -= 1

    async def _shed(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse(
            {
                "detail": f"Server at capacity ({self.max_concurrency} requests running, "
                f"{self.max_queue} queued), retry later"
            },
            status_code=503,
            headers={"Retry-After": str(self.retry_after)},
        )
        await response(scope, receive, send)


async def _watch_while_queued(
    relay: ReceiveRelay, queued: anyio.CancelScope, watching: list[anyio.CancelScope]
) -> None:
    """Cancel ``queued`` if the client leaves while its request waits for a slot. A
    ``receive`` that fails is the server's business, not a disconnect (as for the
    router's cancel_on_disconnect watcher): the request keeps its place, and a body
    read that needs ``receive`` later gets the error itself."""
    with anyio.CancelScope() as own:
        watching.append(own)
        try:
            await relay.watch()
        except Exception:
            return
        queued.cancel()

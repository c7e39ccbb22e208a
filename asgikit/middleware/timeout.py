"""Request timeouts: 504 when no response has started in time."""

from __future__ import annotations

import math

import anyio

from asgikit._concurrency import HelperTasks
from asgikit.responses import JSONResponse
from asgikit.types import ASGIApp, Message, Receive, Scope, Send, StartTrackingSend

__all__ = ["TimeoutMiddleware"]


class _Watch(StartTrackingSend):
    """One request's race between the app starting its response and the deadline."""

    __slots__ = ("answered", "cancel_scope", "send", "started", "timed_out")

    def __init__(self, send: Send, cancel_scope: anyio.CancelScope) -> None:
        self.send = send
        self.cancel_scope = cancel_scope
        self.started = False
        self.timed_out = False
        self.answered = anyio.Event()

    async def __call__(self, message: Message) -> None:
        """The app's ``send``: drops everything once the 504 has been chosen."""
        if self.timed_out:
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self.send(message)

    @property
    def send_after_start(self) -> Send:
        """Once the response started there is nothing left to watch: the body may go to
        the server's ``send`` directly (see `asgikit.streaming`)."""
        return self.send if self.started else self


class TimeoutMiddleware:
    """Answer ``504`` when the app has not started its response after ``timeout`` seconds.

    The handler is cancelled (a pending ``await`` in it raises the cancellation, so
    ``finally`` blocks run) and ``504 {"detail": ...}`` is sent at the deadline, even if
    the handler is stuck in a thread (``def`` endpoints, `run_in_threadpool`: Python
    cannot interrupt a thread, so it runs on and its result is dropped). A response that
    has started is never cut: a stream may run as long as it likes once its headers are
    out. Only ``http`` scopes are timed.

    >>> app = Router(middleware=[Middleware(TimeoutMiddleware, timeout=30.0)])
    """

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        if not timeout > 0 or math.isinf(timeout):
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with anyio.CancelScope() as cancel_scope:
            watch = _Watch(send, cancel_scope)
            async with HelperTasks() as helpers:
                helpers.start_soon(self._watchdog, watch, scope, receive)
                try:
                    await self.app(scope, receive, watch)
                finally:
                    if watch.timed_out:
                        # The 504 is going out from the watchdog: let it finish.
                        with anyio.CancelScope(shield=True):
                            await watch.answered.wait()

    async def _watchdog(self, watch: _Watch, scope: Scope, receive: Receive) -> None:
        await anyio.sleep(self.timeout)
        if watch.started:
            return
        watch.timed_out = True
        watch.cancel_scope.cancel()
        response = JSONResponse(
            {"detail": f"No response within {self.timeout:g} seconds"}, status_code=504
        )
        try:
            # Shielded: this task sits inside the scope it just cancelled (on trio the
            # cancellation would otherwise cut the 504 at its first await).
            with anyio.CancelScope(shield=True):
                await response(scope, receive, watch.send)
        except Exception:
            pass
        finally:
            watch.answered.set()

"""ASGI type aliases shared by every module.

`Scope`, `Message`, `Receive`, `Send` and `ASGIApp` describe the raw ASGI 3 interface
(https://asgi.readthedocs.io/). They are plain aliases, so any ASGI app or server's
callables satisfy them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol, TypeAlias, runtime_checkable

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]


@runtime_checkable
class StartTrackingSend(Protocol):
    """A ``send`` wrapper that only needs to see messages until the response starts.

    Wrappers that watch for ``http.response.start`` (the router's error handling, the
    timeout middleware) implement it; a streaming response asks for `send_after_start`
    once its start message went out and sends its body chunks there, skipping the
    wrapper per chunk. ``send_after_start`` is the wrapper itself until the start was
    seen, then the ``send`` it wraps.
    """

    async def __call__(self, message: Message) -> None: ...

    @property
    def send_after_start(self) -> Send: ...


__all__ = ["ASGIApp", "Message", "Receive", "Scope", "Send", "StartTrackingSend"]

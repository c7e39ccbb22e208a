"""ASGI type aliases shared by every module.

`Scope`, `Message`, `Receive`, `Send` and `ASGIApp` describe the raw ASGI 3 interface
(https://asgi.readthedocs.io/). They are plain aliases, so any ASGI app or server's
callables satisfy them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeAlias

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]

__all__ = ["ASGIApp", "Message", "Receive", "Scope", "Send"]

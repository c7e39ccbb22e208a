"""In-process test clients on httpx: `TestClient` (sync) and `AsyncTestClient` (async).

Both run any ASGI app in the test's process through an httpx transport. Unlike
httpx's own ``ASGITransport``, response bodies stream for real: ``client.stream(...)``
yields each chunk as the app sends it (the app waits until the test reads), and
closing a stream early delivers ``http.disconnect`` to the app. Entering a client
(``with`` / ``async with``) runs the app's lifespan startup; leaving runs shutdown.

The sync client runs the app on an event loop in a helper thread (an anyio blocking
portal), asyncio by default or trio with ``backend="trio"``; the async client runs it
on the test's own event loop.

How it is built (private modules): ``_scope`` builds the ASGI scopes (pure),
``_exchange`` plays the server's part of one HTTP exchange, ``_lifespan`` runs the
lifespan protocol, ``_websocket`` holds the WebSocket sessions, and ``_client`` the two
clients with the base they share.
"""

from asgikit.testing._client import AsyncTestClient, TestClient
from asgikit.testing._websocket import (
    AsyncWebSocketTestSession,
    WebSocketDenialResponse,
    WebSocketTestSession,
)

__all__ = [
    "AsyncTestClient",
    "AsyncWebSocketTestSession",
    "TestClient",
    "WebSocketDenialResponse",
    "WebSocketTestSession",
]

"""WebSocket sessions for the test clients (`TestClient.websocket_connect` and
`AsyncTestClient.websocket_connect`).

`AsyncWebSocketTestSession` runs the app's ``websocket`` scope as a task in a task group
it is given and talks to it through two in-memory queues. `WebSocketTestSession` drives
the same session from synchronous tests through an anyio blocking portal. A server
close surfaces as `WebSocketDisconnect` with its code; a handshake rejected with an HTTP
response (the ``websocket.http.response`` extension, which these sessions offer)
surfaces as `WebSocketDenialResponse`, a `WebSocketDisconnect` carrying the response.
"""

from __future__ import annotations

import functools
import json
import math
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
import anyio.from_thread
import httpx
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from asgikit.testing._exchange import ClientGone
from asgikit.types import ASGIApp, Message, Scope
from asgikit.websockets import WebSocketDisconnect

__all__ = [
    "AsyncWebSocketTestSession",
    "WebSocketDenialResponse",
    "WebSocketTestSession",
]

# After a server close with 1011 the app is about to re-raise its error: wait this
# long at most for it, so a misbehaving app cannot hang the test.
_ERROR_WAIT = 10.0


class WebSocketDenialResponse(WebSocketDisconnect):
    """The app rejected the handshake with an HTTP response instead of accepting.

    ``status_code``, ``headers`` (an `httpx.Headers`) and ``content`` describe the
    response; `json()` and ``text`` read its body.
    """

    def __init__(self, status_code: int, headers: httpx.Headers, content: bytes) -> None:
        super().__init__(1008, f"handshake rejected with HTTP {status_code}")
        self.status_code = status_code
        self.headers = headers
        self.content = content

    @property
    def text(self) -> str:
        """The response body decoded as UTF-8."""
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The response body parsed as JSON."""
        return json.loads(self.content)


class AsyncWebSocketTestSession:
    """One WebSocket connection to an app, for async tests.

    ``async with`` performs the handshake (raising `WebSocketDisconnect` if the app
    closes instead of accepting) and, on exit, closes with 1000 and waits for the app
    to finish. With ``raise_server_exceptions`` the app's exception is re-raised in
    the test at the first call that notices it.
    """

    def __init__(
        self,
        app: ASGIApp,
        scope: Scope,
        task_group: anyio.abc.TaskGroup,
        *,
        raise_server_exceptions: bool = True,
    ) -> None:
        self.app = app
        self.scope = scope
        self.raise_server_exceptions = raise_server_exceptions
        self.accepted_subprotocol: str | None = None
        self.extra_headers: list[tuple[bytes, bytes]] = []
        self._task_group = task_group
        self._to_app: MemoryObjectSendStream[Message]
        self._app_inbox: MemoryObjectReceiveStream[Message]
        self._to_app, self._app_inbox = anyio.create_memory_object_stream[Message](math.inf)
        self._from_app: MemoryObjectSendStream[Message]
        self._test_inbox: MemoryObjectReceiveStream[Message]
        self._from_app, self._test_inbox = anyio.create_memory_object_stream[Message](math.inf)
        self._app_done = anyio.Event()
        self._app_scope = anyio.CancelScope()
        self._disconnect: Message | None = None  # once set, what the app's receive returns
        self._client_closed = False
        self._server_close: Message | None = None
        self._error: BaseException | None = None
        self._error_reported = False
        self._started = False

    # ------------------------------------------------------------------ the app's side

    async def _run(self) -> None:
        try:
            with self._app_scope:
                await self.app(self.scope, self._app_receive, self._app_send)
        except WebSocketDisconnect:
            pass  # the app let the client's close escape: not an error
        except Exception as exc:
            self._error = exc
        finally:
            self._from_app.close()
            self._app_done.set()

    async def _app_receive(self) -> Message:
        if self._disconnect is not None:
            return self._disconnect
        try:
            # A message already there is handed over without a checkpoint, as servers'
            # queues do: a read in a cancelled scope (`receive_if_ready`) still gets it.
            try:
                message = self._app_inbox.receive_nowait()
            except anyio.WouldBlock:
                message = await self._app_inbox.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            message = {"type": "websocket.disconnect", "code": 1006, "reason": ""}
        if message["type"] == "websocket.disconnect":
            self._disconnect = message
        return message

    async def _app_send(self, message: Message) -> None:
        if self._client_closed or self._disconnect is not None:
            raise ClientGone("the test client closed the WebSocket")
        message_type = message["type"]
        if message_type == "websocket.close":
            # Like a server: complete the close handshake for the app.
            self._disconnect = {
                "type": "websocket.disconnect",
                "code": message.get("code", 1000),
                "reason": message.get("reason") or "",
            }
        elif message_type not in (
            "websocket.accept",
            "websocket.send",
            "websocket.http.response.start",
            "websocket.http.response.body",
        ):
            raise RuntimeError(f"the test client does not support {message_type!r} messages")
        await self._from_app.send(message)

    def _raise_error(self) -> None:
        if self._error is not None and self.raise_server_exceptions and not self._error_reported:
            self._error_reported = True
            raise self._error

    async def _next_from_app(self) -> Message:
        try:
            return await self._test_inbox.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            await self._app_done.wait()
            self._raise_error()
            raise WebSocketDisconnect(1006, "the app ended without closing the WebSocket") from None

    # ------------------------------------------------------------------ handshake

    async def connect(self) -> None:
        """Start the app and perform the handshake."""
        if self._started:
            raise RuntimeError("this WebSocket session is already connected")
        self._started = True
        self._task_group.start_soon(self._run)
        await self._to_app.send({"type": "websocket.connect"})
        message = await self._next_from_app()
        message_type = message["type"]
        if message_type == "websocket.accept":
            self.accepted_subprotocol = message.get("subprotocol")
            self.extra_headers = [(bytes(k), bytes(v)) for k, v in message.get("headers") or []]
            return
        if message_type == "websocket.close":
            self._server_close = message
            await self._app_done.wait()
            self._raise_error()
            raise WebSocketDisconnect(message.get("code", 1000), message.get("reason") or "")
        if message_type == "websocket.http.response.start":
            status = int(message["status"])
            headers = httpx.Headers([(bytes(k), bytes(v)) for k, v in message.get("headers", [])])
            body = b""
            while True:
                part = await self._next_from_app()
                body += part.get("body", b"")
                if not part.get("more_body", False):
                    break
            await self._app_done.wait()
            self._raise_error()
            raise WebSocketDenialResponse(status, headers, body)
        raise RuntimeError(f"the app answered the handshake with {message_type!r}")

    # ------------------------------------------------------------------ the test's side

    async def send(self, message: Message) -> None:
        """Send a raw ASGI message (``websocket.receive`` or ``websocket.disconnect``)."""
        await self._to_app.send(message)

    async def send_text(self, data: str) -> None:
        """Send a text message to the app."""
        await self._to_app.send({"type": "websocket.receive", "text": data})

    async def send_bytes(self, data: bytes) -> None:
        """Send a binary message to the app."""
        await self._to_app.send({"type": "websocket.receive", "bytes": bytes(data)})

    async def send_json(self, data: Any, mode: str = "text") -> None:
        """Send ``data`` as JSON in a text (or ``mode="binary"``) message."""
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        if mode == "binary":
            await self.send_bytes(text.encode("utf-8"))
        else:
            await self.send_text(text)

    async def receive(self) -> Message:
        """The next message the app sent; a server close raises `WebSocketDisconnect`."""
        if self._server_close is not None:
            raise self._disconnect_error(self._server_close)
        message = await self._next_from_app()
        if message["type"] == "websocket.close":
            self._server_close = message
            if message.get("code") == 1011:
                # The router closes with 1011 right before re-raising the endpoint's
                # error: surface that error rather than the close.
                with anyio.move_on_after(_ERROR_WAIT):
                    await self._app_done.wait()
            self._raise_error()
            raise self._disconnect_error(message)
        return message

    @staticmethod
    def _disconnect_error(message: Message) -> WebSocketDisconnect:
        return WebSocketDisconnect(message.get("code", 1000), message.get("reason") or "")

    async def receive_text(self) -> str:
        """The next message, which must be text."""
        message = await self.receive()
        text = message.get("text")
        if text is None:
            raise AssertionError(f"expected a text message, the app sent {message!r}")
        return str(text)

    async def receive_bytes(self) -> bytes:
        """The next message, which must be binary."""
        message = await self.receive()
        data = message.get("bytes")
        if data is None:
            raise AssertionError(f"expected a binary message, the app sent {message!r}")
        return bytes(data)

    async def receive_json(self, mode: str = "text") -> Any:
        """The next message parsed as JSON (text, or binary with ``mode="binary"``)."""
        message = await self.receive()
        if mode == "binary":
            return json.loads(message.get("bytes") or b"")
        text = message.get("text")
        if text is None:
            text = (message.get("bytes") or b"").decode("utf-8")
        return json.loads(text)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Close the connection with ``code`` and wait for the app to finish.

        Afterwards the app's ``receive`` returns ``websocket.disconnect`` and its
        ``send`` fails as it would on a real server.
        """
        if not self._client_closed and self._disconnect is None:
            self._client_closed = True
            await self._to_app.send(
                {"type": "websocket.disconnect", "code": code, "reason": reason or ""}
            )
        await self._app_done.wait()
        self._raise_error()

    async def __aenter__(self) -> AsyncWebSocketTestSession:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            await self.close()
            return
        # The test failed: stop the app instead of waiting for it.
        self._app_scope.cancel()
        with anyio.CancelScope(shield=True):
            await self._app_done.wait()


class WebSocketTestSession:
    """The synchronous face of `AsyncWebSocketTestSession`, for `TestClient`.

    Each call runs on the client's event loop through an anyio blocking portal.

    >>> with client.websocket_connect("/ws") as websocket:
    ...     websocket.send_text("hello")
    ...     assert websocket.receive_text() == "hello"
    """

    def __init__(
        self,
        portal: anyio.from_thread.BlockingPortal,
        app: ASGIApp,
        scope: Scope,
        task_group: anyio.abc.TaskGroup,
        *,
        raise_server_exceptions: bool = True,
    ) -> None:
        self._portal = portal
        # Built on the event loop: its events and cancel scope belong to that loop.
        self.session: AsyncWebSocketTestSession = portal.call(
            functools.partial(
                AsyncWebSocketTestSession,
                app,
                scope,
                task_group,
                raise_server_exceptions=raise_server_exceptions,
            )
        )

    @property
    def accepted_subprotocol(self) -> str | None:
        """The subprotocol the app chose in ``accept()``."""
        return self.session.accepted_subprotocol

    @property
    def extra_headers(self) -> list[tuple[bytes, bytes]]:
        """The extra handshake headers the app sent with ``accept()``."""
        return self.session.extra_headers

    def send(self, message: Message) -> None:
        """Send a raw ASGI message to the app."""
        self._portal.call(self.session.send, message)

    def send_text(self, data: str) -> None:
        """Send a text message to the app."""
        self._portal.call(self.session.send_text, data)

    def send_bytes(self, data: bytes) -> None:
        """Send a binary message to the app."""
        self._portal.call(self.session.send_bytes, data)

    def send_json(self, data: Any, mode: str = "text") -> None:
        """Send ``data`` as JSON."""
        self._portal.call(self.session.send_json, data, mode)

    def receive(self) -> Message:
        """The next raw message; a server close raises `WebSocketDisconnect`."""
        return self._portal.call(self.session.receive)

    def receive_text(self) -> str:
        """The next text message."""
        return self._portal.call(self.session.receive_text)

    def receive_bytes(self) -> bytes:
        """The next binary message."""
        return self._portal.call(self.session.receive_bytes)

    def receive_json(self, mode: str = "text") -> Any:
        """The next message parsed as JSON."""
        return self._portal.call(self.session.receive_json, mode)

    def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Close with ``code`` and wait for the app to finish."""
        self._portal.call(self.session.close, code, reason)

    def __enter__(self) -> WebSocketTestSession:
        self._portal.call(self.session.connect)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._portal.call(self.session.__aexit__, exc_type, exc_value, traceback)

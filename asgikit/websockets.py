"""WebSocket connections: `WebSocket` and `WebSocketDisconnect`.

A `WebSocket` is the connection attributes of `HTTPConnection` plus a small state
machine over the ASGI ``websocket`` messages: ``accept()`` once, then send and receive
until one side closes. A client close, or a send the server refuses because the
client has gone, raises `WebSocketDisconnect`, which the router treats as the normal
end of the endpoint.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, NoReturn

from asgikit import _json
from asgikit._receive import receive_if_ready
from asgikit.datastructures import encode_header
from asgikit.exceptions import WebSocketDisconnect
from asgikit.requests import HTTPConnection
from asgikit.responses import JSONResponse, Response
from asgikit.types import Message, Receive, Scope, Send

__all__ = ["WebSocket", "WebSocketDisconnect"]

_CONNECTING, _CONNECTED, _CLOSED = 0, 1, 2
_HTTP_RESPONSE = "websocket.http.response"
# Unread messages looked through for the close frame after a failed send (servers
# queue a few dozen at most: uvicorn's websockets implementation 32).
_UNREAD_LIMIT = 256


def _handshake_headers(
    headers: Iterable[tuple[str, str] | tuple[bytes, bytes]] | Mapping[str, str],
) -> list[tuple[bytes, bytes]]:
    """Checked raw pairs for ``websocket.accept`` (`ValueError` on CR, LF or NUL)."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    raw: list[tuple[bytes, bytes]] = []
    for name, value in pairs:
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        raw.append(encode_header(name, value))
    return raw


class WebSocket(HTTPConnection):
    """A WebSocket connection, handed to every ``@router.websocket`` endpoint.

    Call `accept` first, then `send_text`/`send_bytes`/`send_json` and
    `receive_text`/`receive_bytes`/`receive_json` (or the ``iter_*`` iterators, which
    end when the client closes). A client close raises `WebSocketDisconnect`.
    Sending after `close` raises `RuntimeError`. `close` before `accept` rejects the
    handshake (the server answers ``403``); `send_denial_response` rejects it with an
    HTTP response of your own where the server supports that.

    >>> @router.websocket("/ws/generate")
    ... async def generate(websocket: WebSocket) -> None:
    ...     await websocket.accept()
    ...     async for prompt in websocket.iter_text():
    ...         for token in model.generate(prompt):
    ...             await websocket.send_text(token)
    """

    __slots__ = (
        "_app_state",
        "_client_state",
        "_close_code",
        "_close_reason",
        "_receiving",
        "receive",
        "send",
    )

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            raise ValueError(f"WebSocket needs a 'websocket' scope, not {scope['type']!r}")
        super().__init__(scope)
        self.receive = receive
        self.send = send
        self._client_state = _CONNECTING  # what the client did: connect, then disconnect
        self._app_state = _CONNECTING  # what we did: accept, then close
        self._close_code = 1000
        self._close_reason = ""
        self._receiving = 0  # receive_message calls waiting on the server's receive

    # ------------------------------------------------------------------ state

    @property
    def closed(self) -> bool:
        """True once either side has closed the connection."""
        return self._app_state == _CLOSED or self._client_state == _CLOSED

    @property
    def subprotocols(self) -> list[str]:
        """The subprotocols the client offered, in its order of preference."""
        offered: list[str] = self.scope.get("subprotocols") or []
        return offered

    # ------------------------------------------------------------------ handshake

    async def _receive_connect(self) -> None:
        if self._client_state != _CONNECTING:
            return
        message = await self.receive()
        message_type = message["type"]
        if message_type == "websocket.disconnect":
            self._client_gone(message)
        if message_type != "websocket.connect":
            raise RuntimeError(f"expected 'websocket.connect', got {message_type!r}")
        self._client_state = _CONNECTED

    async def accept(
        self,
        subprotocol: str | None = None,
        headers: Iterable[tuple[str, str] | tuple[bytes, bytes]] | Mapping[str, str] | None = None,
    ) -> None:
        """Accept the handshake, choosing ``subprotocol`` (one of `subprotocols`).

        ``headers`` are extra response headers for the handshake: a mapping, or pairs of
        ``str`` or raw ``bytes``. Raises `ValueError` for a subprotocol the client did not
        offer or a header containing CR, LF or NUL, and `RuntimeError` if called twice.
        """
        if self._app_state != _CONNECTING:
            raise RuntimeError("accept() was already called, or the WebSocket is closed")
        if subprotocol is not None and subprotocol not in self.subprotocols:
            raise ValueError(
                f"subprotocol {subprotocol!r} was not offered by the client "
                f"(offered: {self.subprotocols!r})"
            )
        raw_headers = _handshake_headers(headers) if headers else None
        await self._receive_connect()
        message: Message = {"type": "websocket.accept", "subprotocol": subprotocol}
        if raw_headers:
            message["headers"] = raw_headers
        await self._send(message)
        self._app_state = _CONNECTED

    # ------------------------------------------------------------------ receiving

    def _client_gone(self, message: Message) -> None:
        self._client_state = _CLOSED
        self._close_code = int(message.get("code") or 1005)
        self._close_reason = message.get("reason") or ""
        raise WebSocketDisconnect(self._close_code, self._close_reason)

    async def receive_message(self) -> Message:
        """The next ``websocket.receive`` message (``{"text": ...}`` or ``{"bytes": ...}``).

        Raises `WebSocketDisconnect` when the client has closed, and `RuntimeError`
        before `accept` or after `close`.
        """
        if self._client_state == _CLOSED:
            raise WebSocketDisconnect(self._close_code, self._close_reason)
        if self._app_state != _CONNECTED:
            if self._app_state == _CONNECTING:
                raise RuntimeError("call accept() before receiving messages")
            raise RuntimeError("cannot receive: the WebSocket was closed")
        self._receiving += 1
        try:
            message = await self.receive()
        finally:
            self._receiving -= 1
        message_type = message["type"]
        if message_type == "websocket.receive":
            return message
        if message_type == "websocket.disconnect":
            self._client_gone(message)
        raise RuntimeError(f"unexpected ASGI message {message_type!r}")

    async def _reject_payload(self, code: int, reason: str) -> NoReturn:
        """The client sent something unusable: close with ``code`` and end the endpoint."""
        await self.close(code, reason)
        raise WebSocketDisconnect(code, reason)

    async def receive_text(self) -> str:
        """The next text message. A binary message closes the connection with ``1003``."""
        message = await self.receive_message()
        text = message.get("text")
        if text is None:
            await self._reject_payload(1003, "expected a text message")
        return str(text)

    async def receive_bytes(self) -> bytes:
        """The next binary message. A text message closes the connection with ``1003``."""
        message = await self.receive_message()
        data = message.get("bytes")
        if data is None:
            await self._reject_payload(1003, "expected a binary message")
        return bytes(data)

    async def receive_json(self) -> Any:
        """The next message (text, or UTF-8 bytes) parsed as JSON.

        Invalid JSON closes the connection with ``1007`` and a reason saying where.
        """
        message = await self.receive_message()
        text = message.get("text")
        try:
            return _json.decode(bytes(message.get("bytes") or b"") if text is None else text)
        except _json.InvalidJSON as exc:
            await self._reject_payload(1007, f"invalid JSON: {exc}"[:120])  # reasons: <= 123 B

    async def iter_text(self) -> AsyncIterator[str]:
        """Yield text messages until the client closes (then stop quietly)."""
        try:
            while True:
                yield await self.receive_text()
        except WebSocketDisconnect:
            return

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        """Yield binary messages until the client closes (then stop quietly)."""
        try:
            while True:
                yield await self.receive_bytes()
        except WebSocketDisconnect:
            return

    async def iter_json(self) -> AsyncIterator[Any]:
        """Yield JSON messages until the client closes (then stop quietly)."""
        try:
            while True:
                yield await self.receive_json()
        except WebSocketDisconnect:
            return

    # ------------------------------------------------------------------ sending

    async def _send(self, message: Message) -> None:
        try:
            await self.send(message)
        except OSError:
            # ASGI 2.4: the server's send fails once the client is gone.
            self._client_state = _CLOSED
            self._close_code, self._close_reason = await self._close_frame()
            raise WebSocketDisconnect(self._close_code, self._close_reason) from None

    async def _close_frame(self) -> tuple[int, str]:
        """The close code and reason of the server's ``websocket.disconnect``, when it has
        it ready behind any messages the endpoint never read (they are dropped: nothing
        can be sent back to them); else ``1006``, the code for a connection dropped
        without a close frame. Not while another task waits in ``receive``: the
        disconnect is that reader's (taken here, it would leave the reader waiting)."""
        if self._receiving:
            return 1006, "the client went away"
        try:
            for _ in range(_UNREAD_LIMIT):
                message = await receive_if_ready(self.receive)
                if message is None:
                    break
                if message["type"] == "websocket.disconnect":
                    return int(message.get("code") or 1005), message.get("reason") or ""
        except Exception:  # a server whose receive fails once the client is gone
            pass
        return 1006, "the client went away"

    def _check_can_send(self) -> None:
        if self._app_state == _CONNECTED:
            if self._client_state == _CLOSED:
                raise WebSocketDisconnect(self._close_code, self._close_reason)
            return
        if self._app_state == _CONNECTING:
            raise RuntimeError("call accept() before sending messages")
        raise RuntimeError("cannot send: the WebSocket was closed")

    async def send_text(self, data: str) -> None:
        """Send a text message. `RuntimeError` before `accept` or after `close`."""
        self._check_can_send()
        await self._send({"type": "websocket.send", "text": data})

    async def send_bytes(self, data: bytes) -> None:
        """Send a binary message. `RuntimeError` before `accept` or after `close`."""
        self._check_can_send()
        await self._send({"type": "websocket.send", "bytes": bytes(data)})

    async def send_json(self, data: Any, mode: str = "text") -> None:
        """Send ``data`` as compact JSON, as a text message (or binary with
        ``mode="binary"``)."""
        self._check_can_send()
        text = _json.encode_text(data)
        if mode == "text":
            await self._send({"type": "websocket.send", "text": text})
        elif mode == "binary":
            await self._send({"type": "websocket.send", "bytes": text.encode("utf-8")})
        else:
            raise ValueError("mode must be 'text' or 'binary'")

    # ------------------------------------------------------------------ closing

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Close the connection with ``code`` and ``reason``.

        Before `accept`, this rejects the handshake (servers answer ``403``). Closing
        again, or after the client closed, does nothing.
        """
        if self._app_state == _CLOSED or self._client_state == _CLOSED:
            self._app_state = _CLOSED
            return
        self._app_state = _CLOSED
        try:
            await self.send({"type": "websocket.close", "code": code, "reason": reason or ""})
        except OSError:
            self._client_state = _CLOSED  # already gone: nothing left to close

    async def send_denial_response(self, response: Response) -> None:
        """Reject the handshake with an HTTP ``response`` (for example a 401 with a JSON
        detail). Needs the server's ``websocket.http.response`` extension; without it
        the handshake is closed and the client sees ``403``. Only before `accept`.
        """
        if self._app_state != _CONNECTING:
            raise RuntimeError("send_denial_response() must be called before accept()")
        extensions = self.scope.get("extensions") or {}
        if _HTTP_RESPONSE not in extensions:
            await self.close()
            return
        self._app_state = _CLOSED

        async def send(message: Message) -> None:
            await self.send({**message, "type": "websocket." + message["type"]})

        await response(self.scope, self.receive, send)

    def __repr__(self) -> str:
        return f"<WebSocket {self.url.path!r}>"


async def close_after_error(websocket: WebSocket) -> None:
    """End a connection whose endpoint raised: ``1011`` once accepted, a refused
    handshake (HTTP 500 where the server allows it, else 403) before, nothing once
    closed. Used by the router (internal, not in ``__all__``); never raises for a
    client that has gone."""
    if websocket.closed:
        return
    try:
        if websocket._app_state == _CONNECTING:
            if _HTTP_RESPONSE in (websocket.scope.get("extensions") or {}):
                await websocket.send_denial_response(
                    JSONResponse({"detail": "Internal Server Error"}, status_code=500)
                )
            else:
                await websocket.close()
        else:
            await websocket.close(1011, "Internal Server Error")
    except (OSError, WebSocketDisconnect):
        pass

"""The `WebSocket` state machine against a scripted ASGI server, message by message.

Each test plays the server's side exactly (what ``receive`` returns, what ``send`` does)
and checks what an endpoint author relies on: which call raises what in which state,
and which messages reach the server.
"""

from __future__ import annotations

from typing import Any

import pytest

from asgikit import WebSocket, WebSocketDisconnect
from asgikit.types import Message

pytestmark = pytest.mark.anyio


class Server:
    """Feeds ``incoming`` to the app in order and records what the app sends."""

    def __init__(self, *incoming: Message, fail_sends_after: int | None = None) -> None:
        self.incoming = list(incoming)
        self.sent: list[Message] = []
        self.fail_sends_after = fail_sends_after

    async def receive(self) -> Message:
        return self.incoming.pop(0)

    async def send(self, message: Message) -> None:
        if self.fail_sends_after is not None and len(self.sent) >= self.fail_sends_after:
            raise OSError("connection reset by peer")
        self.sent.append(message)

    def websocket(self, path: str = "/ws/chat") -> WebSocket:
        scope: dict[str, Any] = {"type": "websocket", "path": path, "headers": []}
        return WebSocket(scope, self.receive, self.send)


CONNECT: Message = {"type": "websocket.connect"}


async def test_a_client_that_leaves_during_the_handshake_is_a_disconnect() -> None:
    server = Server({"type": "websocket.disconnect", "code": 1001, "reason": "tab closed"})
    websocket = server.websocket()
    with pytest.raises(WebSocketDisconnect) as info:
        await websocket.accept()
    assert (info.value.code, info.value.reason) == (1001, "tab closed")
    assert websocket.closed
    assert server.sent == []  # nothing is accepted for a client that is gone


async def test_a_handshake_that_does_not_start_with_connect_is_a_clear_error() -> None:
    server = Server({"type": "websocket.receive", "text": "hi"})
    with pytest.raises(RuntimeError, match=r"expected 'websocket\.connect'"):
        await server.websocket().accept()


async def test_accept_twice_is_refused() -> None:
    server = Server(CONNECT)
    websocket = server.websocket()
    await websocket.accept()
    with pytest.raises(RuntimeError, match="already called"):
        await websocket.accept()
    assert server.sent == [{"type": "websocket.accept", "subprotocol": None}]


async def test_receiving_before_accept_or_after_close_is_refused() -> None:
    server = Server(CONNECT)
    websocket = server.websocket()
    with pytest.raises(RuntimeError, match="accept"):
        await websocket.receive_text()
    await websocket.accept()
    await websocket.close()
    with pytest.raises(RuntimeError, match="closed"):
        await websocket.receive_text()


async def test_after_the_client_closed_every_receive_repeats_its_close() -> None:
    server = Server(CONNECT, {"type": "websocket.disconnect", "code": 4000})
    websocket = server.websocket()
    await websocket.accept()
    for _ in range(2):
        with pytest.raises(WebSocketDisconnect) as info:
            await websocket.receive_json()
        assert info.value.code == 4000
    # Sending to a client that closed is a disconnect too, not a message into the void.
    with pytest.raises(WebSocketDisconnect):
        await websocket.send_text("late")
    assert server.sent == [{"type": "websocket.accept", "subprotocol": None}]


async def test_an_unexpected_asgi_message_is_a_clear_error() -> None:
    server = Server(CONNECT, {"type": "websocket.connect"})
    websocket = server.websocket()
    await websocket.accept()
    with pytest.raises(RuntimeError, match=r"unexpected ASGI message 'websocket\.connect'"):
        await websocket.receive_message()


async def test_a_text_message_where_bytes_are_expected_closes_with_1003() -> None:
    server = Server(CONNECT, {"type": "websocket.receive", "text": "not bytes"})
    websocket = server.websocket()
    await websocket.accept()
    with pytest.raises(WebSocketDisconnect) as info:
        await websocket.receive_bytes()
    assert info.value.code == 1003
    assert server.sent[-1] == {
        "type": "websocket.close",
        "code": 1003,
        "reason": "expected a binary message",
    }


async def test_send_json_as_text_or_binary_and_nothing_else() -> None:
    server = Server(CONNECT)
    websocket = server.websocket()
    await websocket.accept()
    await websocket.send_json({"token": "é"})
    await websocket.send_json({"token": "é"}, mode="binary")
    with pytest.raises(ValueError, match="mode must be 'text' or 'binary'"):
        await websocket.send_json({"token": "é"}, mode="yaml")
    assert server.sent[1:] == [
        {"type": "websocket.send", "text": '{"token":"é"}'},
        {"type": "websocket.send", "bytes": '{"token":"é"}'.encode()},
    ]


async def test_closing_a_connection_the_server_already_lost_does_not_raise() -> None:
    server = Server(CONNECT, fail_sends_after=1)  # the accept goes out, the close fails
    websocket = server.websocket()
    await websocket.accept()
    await websocket.close(1000)
    assert websocket.closed
    await websocket.close()  # and again: still nothing to do


async def test_a_denial_response_after_accept_is_refused() -> None:
    from asgikit import JSONResponse

    server = Server(CONNECT)
    websocket = server.websocket()
    await websocket.accept()
    with pytest.raises(RuntimeError, match="before accept"):
        await websocket.send_denial_response(JSONResponse({"detail": "no"}, status_code=401))


def test_reprs_say_what_they_are() -> None:
    assert repr(WebSocketDisconnect(1001, "bye")) == "WebSocketDisconnect(code=1001, reason='bye')"
    assert str(WebSocketDisconnect()) == "WebSocket closed with code 1000"
    assert repr(Server().websocket("/ws/generate")) == "<WebSocket '/ws/generate'>"

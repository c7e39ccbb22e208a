"""The test client's WebSocket sessions facing apps that misbehave.

Plain ASGI apps (no router) do exactly one unusual thing each, so every test shows what
a test author sees: the app's own error, a `WebSocketDisconnect` with a telling code, or
an `AssertionError` naming the message that did not fit.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from asgikit import WebSocketDisconnect
from asgikit.testing import AsyncTestClient, TestClient, WebSocketDenialResponse
from asgikit.types import Message, Receive, Scope, Send

pytestmark = pytest.mark.anyio


def websocket_only(app: Any) -> Any:
    """``app`` for websocket scopes, with the minimal lifespan a test client runs."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        await app(scope, receive, send)

    return wrapped


def app_sending(*messages: Message, then_wait: bool = True) -> Any:
    """An app that takes the connect, sends ``messages`` in order, then waits for the
    client to leave (or returns at once with ``then_wait=False``)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert (await receive())["type"] == "websocket.connect"
        for message in messages:
            await send(message)
        while then_wait and (await receive())["type"] != "websocket.disconnect":
            pass

    return websocket_only(app)


ACCEPT: Message = {"type": "websocket.accept"}


async def test_an_app_that_ends_without_closing_is_a_1006() -> None:
    client = AsyncTestClient(app_sending(ACCEPT, then_wait=False))
    async with client, client.websocket_connect("/ws") as websocket:
        with pytest.raises(WebSocketDisconnect) as info:
            await websocket.receive_text()
    assert info.value.code == 1006
    assert "ended without closing" in info.value.reason


async def test_the_apps_error_surfaces_instead_of_a_bare_disconnect() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send(ACCEPT)
        raise LookupError("model not loaded")

    client = AsyncTestClient(websocket_only(app))
    with pytest.raises(LookupError, match="model not loaded"):
        async with client, client.websocket_connect("/ws") as websocket:
            await websocket.receive_text()


async def test_a_session_connects_once() -> None:
    client = AsyncTestClient(app_sending(ACCEPT))
    async with client, client.websocket_connect("/ws") as websocket:
        with pytest.raises(RuntimeError, match="already connected"):
            await websocket.connect()


async def test_a_handshake_answered_with_a_message_is_a_clear_error() -> None:
    client = AsyncTestClient(app_sending({"type": "websocket.send", "text": "too early"}))
    with pytest.raises(RuntimeError, match=r"answered the handshake with 'websocket\.send'"):
        async with client, client.websocket_connect("/ws"):
            pass


async def test_a_message_type_the_client_does_not_know_fails_in_the_app() -> None:
    client = AsyncTestClient(app_sending(ACCEPT, {"type": "websocket.ping"}))
    with pytest.raises(RuntimeError, match=r"does not support 'websocket\.ping'"):
        async with client, client.websocket_connect("/ws") as websocket:
            await websocket.receive()


async def test_a_denial_body_in_several_parts_is_read_whole() -> None:
    client = AsyncTestClient(
        app_sending(
            {
                "type": "websocket.http.response.start",
                "status": 401,
                "headers": [(b"content-type", b"text/plain")],
            },
            {"type": "websocket.http.response.body", "body": b"sign ", "more_body": True},
            {"type": "websocket.http.response.body", "body": b"in first"},
            then_wait=False,
        )
    )
    with pytest.raises(WebSocketDenialResponse) as info:
        async with client, client.websocket_connect("/ws"):
            pass
    assert info.value.status_code == 401
    assert info.value.headers["content-type"] == "text/plain"
    assert info.value.text == "sign in first"


async def test_receiving_the_wrong_kind_of_message_names_it() -> None:
    client = AsyncTestClient(
        app_sending(
            ACCEPT,
            {"type": "websocket.send", "bytes": b"\x00\x01"},
            {"type": "websocket.send", "text": "hello"},
        )
    )
    async with client, client.websocket_connect("/ws") as websocket:
        with pytest.raises(AssertionError, match="expected a text message"):
            await websocket.receive_text()
        with pytest.raises(AssertionError, match="expected a binary message"):
            await websocket.receive_bytes()


async def test_json_arrives_as_text_or_binary() -> None:
    client = AsyncTestClient(
        app_sending(
            ACCEPT,
            {"type": "websocket.send", "bytes": b'{"a": 1}'},
            {"type": "websocket.send", "bytes": b'{"b": 2}'},
        )
    )
    async with client, client.websocket_connect("/ws") as websocket:
        assert await websocket.receive_json(mode="binary") == {"a": 1}
        assert await websocket.receive_json() == {"b": 2}  # text mode reads UTF-8 bytes too


async def test_after_the_server_closed_every_receive_repeats_the_close() -> None:
    client = AsyncTestClient(
        app_sending(ACCEPT, {"type": "websocket.close", "code": 4001, "reason": "quota"})
    )
    async with client, client.websocket_connect("/ws") as websocket:
        for _ in range(2):
            with pytest.raises(WebSocketDisconnect) as info:
                await websocket.receive()
            assert (info.value.code, info.value.reason) == (4001, "quota")


async def test_a_raw_disconnect_reaches_the_app_and_its_sends_then_fail() -> None:
    seen: list[Any] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send(ACCEPT)
        seen.append(await receive())
        seen.append(await receive())  # asked again: the same disconnect, no hang
        try:
            await send({"type": "websocket.send", "text": "late"})
        except OSError as exc:  # what a real server's send does for a gone client
            seen.append(type(exc).__name__)

    client = AsyncTestClient(websocket_only(app))
    async with client, client.websocket_connect("/ws") as websocket:
        await websocket.send({"type": "websocket.disconnect", "code": 1001, "reason": ""})
        with anyio.fail_after(5):
            while len(seen) < 3:
                await anyio.sleep(0.01)
    assert seen[0] == seen[1] == {"type": "websocket.disconnect", "code": 1001, "reason": ""}
    assert seen[2] == "ClientGone"


async def test_a_failing_test_stops_the_app_instead_of_waiting_for_it() -> None:
    stopped = anyio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send(ACCEPT)
        try:
            await anyio.sleep_forever()
        finally:
            stopped.set()

    client = AsyncTestClient(websocket_only(app))
    with pytest.raises(KeyError):
        async with client, client.websocket_connect("/ws"):
            raise KeyError("the test failed")
    assert stopped.is_set()


def test_the_sync_session_exposes_the_handshake_and_stops_the_app_on_failure() -> None:
    stopped: list[bool] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept", "headers": [(b"x-model", b"tiny")]})
        try:
            await anyio.sleep_forever()
        finally:
            stopped.append(True)

    client = TestClient(websocket_only(app))
    with client, pytest.raises(KeyError), client.websocket_connect("/ws") as websocket:
        assert websocket.extra_headers == [(b"x-model", b"tiny")]
        assert websocket.accepted_subprotocol is None
        raise KeyError("the test failed")
    assert stopped == [True]


async def test_a_client_not_entered_raises_the_denial_itself() -> None:
    # Regression: a client used without `async with` ran the session in a temporary
    # task group, so the denial (and any error in the block) arrived wrapped in an
    # ExceptionGroup, unlike the same call on an entered client.
    client = AsyncTestClient(
        app_sending(
            {"type": "websocket.http.response.start", "status": 403, "headers": []},
            {"type": "websocket.http.response.body", "body": b"no"},
            then_wait=False,
        )
    )
    with pytest.raises(WebSocketDenialResponse):
        async with client.websocket_connect("/ws"):
            pass


async def test_a_client_not_entered_raises_the_tests_own_error_itself() -> None:
    client = AsyncTestClient(app_sending(ACCEPT))
    with pytest.raises(KeyError, match="the test failed"):
        async with client.websocket_connect("/ws"):
            raise KeyError("the test failed")

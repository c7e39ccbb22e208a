"""WebSocket: the connection API, routing, errors, and both test clients."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from helpers import (
    Recorder,
    http_scope,
    receive_messages,
    receive_nothing,
    send_nothing,
    websocket_scope,
)

from asgikit import (
    JSONResponse,
    Middleware,
    Mount,
    Router,
    WebSocket,
    WebSocketDisconnect,
    WebSocketRoute,
)
from asgikit.middleware import CORSMiddleware, GZipMiddleware
from asgikit.testing import AsyncTestClient, TestClient, WebSocketDenialResponse
from asgikit.types import Message, Receive, Scope, Send
from asgikit.websockets import close_after_error


def echo_router(events: list[str] | None = None) -> Router:
    router = Router()

    @router.websocket("/echo")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        async for text in websocket.iter_text():
            await websocket.send_text(f"echo: {text}")
        if events is not None:
            events.append("client closed")

    @router.websocket("/bytes")
    async def echo_bytes(websocket: WebSocket) -> None:
        await websocket.accept()
        async for data in websocket.iter_bytes():
            await websocket.send_bytes(data[::-1])

    @router.websocket("/json")
    async def echo_json(websocket: WebSocket) -> None:
        await websocket.accept()
        async for item in websocket.iter_json():
            await websocket.send_json({"got": item})

    return router


def test_text_bytes_and_json_round_trips() -> None:
    events: list[str] = []
    with TestClient(echo_router(events)) as client:
        with client.websocket_connect("/echo") as websocket:
            websocket.send_text("hello")
            assert websocket.receive_text() == "echo: hello"
            websocket.send_text("world")
            assert websocket.receive_text() == "echo: world"
        assert events == ["client closed"]  # iter_text ended on the client's close
        with client.websocket_connect("/bytes") as websocket:
            websocket.send_bytes(b"\x00\x01\x02")
            assert websocket.receive_bytes() == b"\x02\x01\x00"
        with client.websocket_connect("/json") as websocket:
            websocket.send_json({"prompt": "héllo"})
            assert websocket.receive_json() == {"got": {"prompt": "héllo"}}
            websocket.send_json([1, 2], mode="binary")  # JSON in a binary frame works too
            assert websocket.receive_json() == {"got": [1, 2]}


def test_without_entering_the_client() -> None:
    client = TestClient(echo_router())
    with client.websocket_connect("/echo") as websocket:
        websocket.send_text("x")
        assert websocket.receive_text() == "echo: x"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sync_client_on_each_backend(backend: Any) -> None:
    with (
        TestClient(echo_router(), backend=backend) as client,
        client.websocket_connect("/echo") as websocket,
    ):
        websocket.send_text("x")
        assert websocket.receive_text() == "echo: x"


@pytest.mark.anyio
async def test_async_client() -> None:
    events: list[str] = []
    async with AsyncTestClient(echo_router(events)) as client:
        async with client.websocket_connect("/echo") as websocket:
            await websocket.send_text("hi")
            assert await websocket.receive_text() == "echo: hi"
        assert events == ["client closed"]
    client = AsyncTestClient(echo_router())  # not entered: a temporary task group
    async with client.websocket_connect("/json") as websocket:
        await websocket.send_json(1)
        assert await websocket.receive_json() == {"got": 1}


def test_connection_attributes_and_lifespan_state() -> None:
    @contextlib.asynccontextmanager
    async def lifespan(router: Router) -> AsyncIterator[dict[str, Any]]:
        yield {"model": "tiny-llm"}

    router = Router(lifespan=lifespan)

    @router.websocket("/models/{name}/chat/{session:int}")
    async def chat(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json(
            {
                "path_params": websocket.path_params,
                "query": dict(websocket.query_params),
                "token": websocket.headers.get("x-token"),
                "cookie": websocket.cookies.get("sid"),
                "model": websocket.state.model,
                "url": str(websocket.url),
                "client": list(websocket.client or ()),
            }
        )
        await websocket.close()

    with (
        TestClient(router, cookies={"sid": "abc"}) as client,
        client.websocket_connect(
            "/models/gpt/chat/7?temperature=0.5", headers={"x-token": "t"}
        ) as websocket,
    ):
        info = websocket.receive_json()
    assert info == {
        "path_params": {"name": "gpt", "session": 7},
        "query": {"temperature": "0.5"},
        "token": "t",
        "cookie": "abc",
        "model": "tiny-llm",
        "url": "ws://testserver/models/gpt/chat/7?temperature=0.5",
        "client": ["testclient", 50000],
    }


def test_subprotocol_negotiation() -> None:
    router = Router()
    seen: list[Any] = []

    @router.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        seen.append(websocket.subprotocols)
        try:
            await websocket.accept(subprotocol="not-offered")
        except ValueError as exc:
            seen.append(str(exc))
        await websocket.accept(subprotocol="v2.tokens", headers={"x-model": "tiny"})
        await websocket.close()

    offered = ["v1.tokens", "v2.tokens"]
    with (
        TestClient(router) as client,
        client.websocket_connect("/ws", subprotocols=offered) as websocket,
    ):
        assert websocket.accepted_subprotocol == "v2.tokens"
        assert (b"x-model", b"tiny") in websocket.extra_headers
    assert seen[0] == ["v1.tokens", "v2.tokens"]
    assert "was not offered" in seen[1]


def test_server_close_surfaces_with_its_code_and_reason() -> None:
    router = Router()

    @router.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("bye")
        await websocket.close(code=4001, reason="session expired")

    with TestClient(router) as client, client.websocket_connect("/ws") as websocket:
        assert websocket.receive_text() == "bye"
        with pytest.raises(WebSocketDisconnect) as info:
            websocket.receive_text()
        assert (info.value.code, info.value.reason) == (4001, "session expired")


def test_close_before_accept_rejects_the_handshake() -> None:
    router = Router()

    @router.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        if websocket.query_params.get("token") != "secret":
            await websocket.close(code=1008, reason="bad token")
            return
        await websocket.accept()
        await websocket.close()

    with TestClient(router) as client:
        with pytest.raises(WebSocketDisconnect) as info, client.websocket_connect("/ws"):
            pass
        assert info.value.code == 1008
        assert info.value.reason == "bad token"
        with client.websocket_connect("/ws?token=secret"):
            pass


def test_denial_with_a_custom_http_response() -> None:
    router = Router()

    @router.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        response = JSONResponse({"detail": "Missing API key"}, status_code=401)
        await websocket.send_denial_response(response)

    client = TestClient(router)
    with pytest.raises(WebSocketDenialResponse) as info, client.websocket_connect("/ws"):
        pass
    assert info.value.status_code == 401
    assert info.value.json() == {"detail": "Missing API key"}
    assert info.value.headers["content-type"] == "application/json"
    assert isinstance(info.value, WebSocketDisconnect)


def test_unknown_path_closes_the_handshake() -> None:
    client = TestClient(echo_router())
    with pytest.raises(WebSocketDisconnect) as info, client.websocket_connect("/nope"):
        pass
    assert info.value.code == 1000


def test_websocket_routes_inside_mounts_and_declarative_routes() -> None:
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json(
            {"params": websocket.path_params, "root_path": websocket.scope["root_path"]}
        )
        await websocket.close()

    inner = Router(routes=[WebSocketRoute("/stream/{job}", ws, name="stream")])
    router = Router(routes=[Mount("/v1/{tenant}", inner)])
    with TestClient(router) as client, client.websocket_connect("/v1/acme/stream/42") as websocket:
        assert websocket.receive_json() == {
            "params": {"tenant": "acme", "job": "42"},
            "root_path": "/v1/acme",
        }


def test_middleware_sees_websocket_scopes_and_cors_gzip_pass_them_through() -> None:
    seen: list[str] = []

    class RecordScopeTypes:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            seen.append(scope["type"])
            await self.app(scope, receive, send)

    router = echo_router()
    app = Router(
        routes=[Mount("", router)],
        middleware=[
            Middleware(RecordScopeTypes),
            Middleware(CORSMiddleware, allow_origins=["https://example.com"]),
            Middleware(GZipMiddleware, minimum_size=1),
        ],
    )
    with (
        TestClient(app) as client,
        client.websocket_connect("/echo", headers={"origin": "https://example.com"}) as websocket,
    ):
        websocket.send_text("x" * 1000)
        assert websocket.receive_text() == "echo: " + "x" * 1000
    assert "websocket" in seen


def test_sending_after_close_and_before_accept_are_clear_errors() -> None:
    router = Router()
    errors: list[str] = []

    @router.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        try:
            await websocket.send_text("too early")
        except RuntimeError as exc:
            errors.append(str(exc))
        try:
            await websocket.receive_text()
        except RuntimeError as exc:
            errors.append(str(exc))
        await websocket.accept()
        await websocket.close()
        await websocket.close()  # closing twice is harmless
        try:
            await websocket.send_text("too late")
        except RuntimeError as exc:
            errors.append(str(exc))

    client = TestClient(router)
    with client.websocket_connect("/ws") as websocket, pytest.raises(WebSocketDisconnect):
        websocket.receive_text()
    assert errors == [
        "call accept() before sending messages",
        "call accept() before receiving messages",
        "cannot send: the WebSocket was closed",
    ]


def error_router() -> Router:
    router = Router()

    @router.websocket("/after-accept")
    async def after_accept(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.receive_text()
        raise ValueError("model exploded")

    @router.websocket("/before-accept")
    async def before_accept(websocket: WebSocket) -> None:
        raise ValueError("no model loaded")

    return router


def test_endpoint_errors_reach_the_test_by_default() -> None:
    with TestClient(error_router()) as client:
        with client.websocket_connect("/after-accept") as websocket:
            websocket.send_text("go")
            with pytest.raises(ValueError, match="model exploded"):
                websocket.receive_text()
        with (
            pytest.raises(ValueError, match="no model loaded"),
            client.websocket_connect("/before-accept"),
        ):
            pass


def test_endpoint_errors_close_with_1011_or_refuse_the_handshake() -> None:
    with TestClient(error_router(), raise_server_exceptions=False) as client:
        with client.websocket_connect("/after-accept") as websocket:
            websocket.send_text("go")
            with pytest.raises(WebSocketDisconnect) as info:
                websocket.receive_text()
            assert info.value.code == 1011
        with (
            pytest.raises(WebSocketDenialResponse) as denied,
            client.websocket_connect("/before-accept"),
        ):
            pass
        assert denied.value.status_code == 500
        assert denied.value.json() == {"detail": "Internal Server Error"}


def test_client_mistakes_close_with_protocol_codes() -> None:
    router = Router()

    @router.websocket("/text")
    async def text(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.receive_text()

    @router.websocket("/json")
    async def json_endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.receive_json()

    with TestClient(router) as client:
        with client.websocket_connect("/text") as websocket:
            websocket.send_bytes(b"\xff")
            with pytest.raises(WebSocketDisconnect) as info:
                websocket.receive()
            assert info.value.code == 1003
        with client.websocket_connect("/json") as websocket:
            websocket.send_text("{nope")
            with pytest.raises(WebSocketDisconnect) as info:
                websocket.receive()
            assert info.value.code == 1007
            assert "invalid JSON" in info.value.reason


@pytest.mark.anyio
async def test_streaming_endpoint_stops_when_the_client_leaves() -> None:
    router = Router()
    sent: list[int] = []
    finished = anyio.Event()

    @router.websocket("/tokens")
    async def tokens(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            index = 0
            while True:  # never receives: only a failing send can stop it
                await websocket.send_text(f"token {index}")
                sent.append(index)
                index += 1
                await anyio.sleep(0)
        finally:
            finished.set()

    with anyio.fail_after(5):
        async with AsyncTestClient(router) as client:
            async with client.websocket_connect("/tokens") as websocket:
                assert await websocket.receive_text() == "token 0"
                assert await websocket.receive_text() == "token 1"
            await finished.wait()
    assert len(sent) >= 2


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_send_after_the_client_closed_raises_its_close_code(backend: Any) -> None:
    router = Router()
    closed = threading.Event()
    seen: list[tuple[int, str]] = []

    @router.websocket("/push")
    async def push(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("hello")
        while not closed.is_set():  # never receives: it learns of the close by sending
            await anyio.sleep(0.01)
        try:
            await websocket.send_text("more")
        except WebSocketDisconnect as exc:
            seen.append((exc.code, exc.reason))
            raise

    with (
        TestClient(router, backend=backend) as client,
        client.websocket_connect("/push") as websocket,
    ):
        assert websocket.receive_text() == "hello"
        # close() waits for the endpoint to end: it sends again a moment later.
        threading.Timer(0.1, closed.set).start()
        websocket.close(4000, "bye")
    assert seen == [(4000, "bye")]


# ---------------------------------------------------------------- raw ASGI, no test client


CLIENT_LEFT = {"type": "websocket.disconnect", "code": 1006}


def raw_websocket(send: Recorder) -> WebSocket:
    """A WebSocket over a scripted server without extensions: the client connects and
    then leaves; ``send`` records what the app sends."""
    receive = receive_messages([{"type": "websocket.connect"}], then=CLIENT_LEFT)
    return WebSocket(websocket_scope(extensions={}), receive, send)


@pytest.mark.anyio
async def test_denial_falls_back_to_close_without_the_extension() -> None:
    send = Recorder()
    websocket = raw_websocket(send)
    await websocket.send_denial_response(JSONResponse({"detail": "no"}, status_code=401))
    assert send.messages == [{"type": "websocket.close", "code": 1000, "reason": ""}]


@pytest.mark.anyio
async def test_close_after_error_in_each_state() -> None:
    send = Recorder()
    websocket = raw_websocket(send)
    await close_after_error(websocket)  # before accept, no extension: plain close (403)
    assert send.messages == [{"type": "websocket.close", "code": 1000, "reason": ""}]
    await close_after_error(websocket)  # already closed: nothing more
    assert len(send.messages) == 1

    send = Recorder()
    websocket = raw_websocket(send)
    await websocket.accept()
    await close_after_error(websocket)
    assert send.messages[-1] == {
        "type": "websocket.close",
        "code": 1011,
        "reason": "Internal Server Error",
    }


@pytest.mark.anyio
async def test_a_server_send_failure_becomes_a_disconnect() -> None:
    accepted = False

    async def send(message: Message) -> None:  # not a Recorder: fails after the accept
        nonlocal accepted
        if accepted:
            raise OSError("connection reset")
        accepted = True

    receive = receive_messages([{"type": "websocket.connect"}], then=CLIENT_LEFT)
    websocket = WebSocket(websocket_scope(), receive, send)
    await websocket.accept()
    with pytest.raises(WebSocketDisconnect) as info:
        await websocket.send_text("token")
    assert info.value.code == 1006
    await websocket.close()  # nothing left to close: no error


def test_websocket_needs_a_websocket_scope() -> None:
    with pytest.raises(ValueError, match="websocket"):
        WebSocket(http_scope(), receive_nothing, send_nothing)
    assert (
        str(WebSocketDisconnect(1001, "going away"))
        == "WebSocket closed with code 1001: going away"
    )


def test_accept_headers_as_str_or_bytes_pairs_and_injection_refused() -> None:
    from asgikit import Router
    from asgikit.testing import TestClient

    router = Router()
    refused: list[str] = []

    @router.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        try:
            await websocket.accept(headers={"x-evil": "1\r\nx-injected: 2"})
        except ValueError as exc:
            refused.append(str(exc))
        await websocket.accept(headers=[(b"x-raw", b"1"), ("x-text", "2")])
        await websocket.send_text("hi")
        await websocket.close()

    with TestClient(router) as client, client.websocket_connect("/ws") as session:
        assert session.receive_text() == "hi"
    assert refused and "not allowed" in refused[0]

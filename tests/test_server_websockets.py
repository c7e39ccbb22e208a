"""WebSockets against a real server: uvicorn on 127.0.0.1, the `websockets` client library.

The endpoint is shaped like streaming inference: the client sends a prompt, the server
streams tokens back as messages and ends with a summary message.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

uvicorn = pytest.importorskip("uvicorn")
websockets_client = pytest.importorskip("websockets.asyncio.client")
websockets_exceptions = pytest.importorskip("websockets.exceptions")

from asgikit import JSONResponse, Router, WebSocket  # noqa: E402

pytestmark = pytest.mark.anyio

# Set by the endpoints (on the server's thread), waited on by the tests.
stream_finished = threading.Event()


def build_app() -> Router:
    router = Router()

    @router.websocket("/v1/generate")
    async def generate(websocket: WebSocket) -> None:
        await websocket.accept(subprotocol="tokens.v1" if websocket.subprotocols else None)
        async for request in websocket.iter_json():
            tokens = str(request["prompt"]).split()
            for index, token in enumerate(tokens):
                await websocket.send_json({"index": index, "token": token.upper()})
            await websocket.send_json({"done": True, "count": len(tokens)})

    @router.websocket("/v1/endless")
    async def endless(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            index = 0
            while True:  # a model that never stops: only the client leaving ends it
                await anyio.sleep(0)  # one generation step (real models await here too)
                await websocket.send_text(f"token {index}")
                index += 1
        finally:
            stream_finished.set()

    @router.websocket("/v1/private")
    async def private(websocket: WebSocket) -> None:
        await websocket.send_denial_response(
            JSONResponse({"detail": "Missing API key"}, status_code=401)
        )

    @router.websocket("/v1/broken")
    async def broken(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.receive_text()
        raise RuntimeError("model crashed")

    return router


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)  # connections queue here until uvicorn accepts them: no startup race
    port = sock.getsockname()[1]
    # uvicorn >= 0.35 has the sans-I/O websockets protocol; older ones the legacy one.
    sansio = importlib.util.find_spec("uvicorn.protocols.websockets.websockets_sansio_impl")
    ws = "websockets-sansio" if sansio is not None else "websockets"
    config = uvicorn.Config(build_app(), lifespan="on", log_level="critical", ws=ws)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the websockets client library is asyncio only


async def test_streaming_inference(server_url: str) -> None:
    async with websockets_client.connect(
        f"{server_url}/v1/generate", subprotocols=["tokens.v1"]
    ) as connection:
        assert connection.subprotocol == "tokens.v1"
        for prompt in ("the cat sat", "on the mat today"):
            await connection.send(json.dumps({"prompt": prompt}))
            received: list[dict[str, Any]] = []
            while True:
                message = json.loads(await connection.recv())
                received.append(message)
                if message.get("done"):
                    break
            words = prompt.split()
            assert received[:-1] == [
                {"index": index, "token": word.upper()} for index, word in enumerate(words)
            ]
            assert received[-1] == {"done": True, "count": len(words)}


async def test_client_leaving_stops_the_stream(server_url: str) -> None:
    stream_finished.clear()
    # max_queue=None: keep reading while closing, so the server's close frame is not
    # stuck behind tokens the test no longer reads.
    url = f"{server_url}/v1/endless"
    async with websockets_client.connect(url, max_queue=None) as connection:
        assert await connection.recv() == "token 0"
        assert await connection.recv() == "token 1"
    assert stream_finished.wait(timeout=10), "the endpoint kept streaming after the client left"


async def test_unknown_path_is_refused_with_403(server_url: str) -> None:
    with pytest.raises(websockets_exceptions.InvalidStatus) as info:
        async with websockets_client.connect(f"{server_url}/nope"):
            pass
    assert info.value.response.status_code == 403


async def test_custom_denial_response(server_url: str) -> None:
    with pytest.raises(websockets_exceptions.InvalidStatus) as info:
        async with websockets_client.connect(f"{server_url}/v1/private"):
            pass
    response = info.value.response
    assert response.status_code == 401
    assert json.loads(response.body) == {"detail": "Missing API key"}


async def test_endpoint_error_closes_with_1011(server_url: str) -> None:
    async with websockets_client.connect(f"{server_url}/v1/broken") as connection:
        await connection.send("go")
        with pytest.raises(websockets_exceptions.ConnectionClosedError) as info:
            await connection.recv()
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1011

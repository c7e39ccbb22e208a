"""Request: lazy attributes, body limits, single-consumption streams, JSON, disconnects."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest
from helpers import (
    Recorder,
    client_gone,
    echo_router,
    http_scope,
    receive_messages,
    receive_then_disconnect,
    request_messages,
)

from asgikit import ClientDisconnect, HTTPException, Request, Router
from asgikit.testing import TestClient
from asgikit.types import Message


def app_with(endpoint: Any, path: str = "/", methods: list[str] | None = None) -> Router:
    router = Router()
    router.add_route(path, endpoint, methods=methods or ["GET", "POST"])
    return router


def test_connection_attributes() -> None:
    async def endpoint(request: Request) -> dict[str, Any]:
        return {
            "method": request.method,
            "url": str(request.url),
            "scheme": request.url.scheme,
            "hostname": request.url.hostname,
            "port": request.url.port,
            "path": request.url.path,
            "query": request.url.query,
            "base_url": str(request.base_url),
            "header": request.headers["x-Custom"],
            "all": request.headers.getlist("x-multi"),
            "has": "X-CUSTOM" in request.headers,
            "q": request.query_params["q"],
            "qs": request.query_params.getlist("q"),
            "cookies": request.cookies,
            "client": list(request.client or ()),
            "params": request.path_params,
        }

    client = TestClient(
        app_with(endpoint, "/items/{id:int}"),
        base_url="http://example.org:8080",
        cookies={"session": "abc", "theme": "dark"},
    )
    response = client.get(
        "/items/5?q=1&q=2", headers=[("X-Custom", "yes"), ("X-Multi", "a"), ("X-Multi", "b")]
    )
    assert response.json() == {
        "method": "GET",
        "url": "http://example.org:8080/items/5?q=1&q=2",
        "scheme": "http",
        "hostname": "example.org",
        "port": 8080,
        "path": "/items/5",
        "query": "q=1&q=2",
        "base_url": "http://example.org:8080/",
        "header": "yes",
        "all": ["a", "b"],
        "has": True,
        "q": "2",
        "qs": ["1", "2"],
        "cookies": {"session": "abc", "theme": "dark"},
        "client": ["testclient", 50000],
        "params": {"id": 5},
    }


def test_attributes_are_cached() -> None:
    async def endpoint(request: Request) -> dict[str, bool]:
        return {
            "headers": request.headers is request.headers,
            "query": request.query_params is request.query_params,
            "url": request.url is request.url,
            "cookies": request.cookies is request.cookies,
        }

    assert all(TestClient(app_with(endpoint)).get("/").json().values())


def test_body_is_read_once_and_cached() -> None:
    async def endpoint(request: Request) -> dict[str, Any]:
        first = await request.body()
        second = await request.body()
        streamed = b"".join([chunk async for chunk in request.stream()])
        return {"same": first is second, "body": first.decode(), "streamed": streamed.decode()}

    assert TestClient(app_with(endpoint)).post("/", content=b"hello").json() == {
        "same": True,
        "body": "hello",
        "streamed": "hello",
    }


def test_stream_yields_chunks_as_they_arrive_and_only_once() -> None:
    async def endpoint(request: Request) -> dict[str, Any]:
        chunks = [chunk async for chunk in request.stream()]
        with pytest.raises(RuntimeError, match="already streamed"):
            async for _ in request.stream():
                pass
        return {"chunks": [chunk.decode() for chunk in chunks]}

    def body() -> Iterator[bytes]:
        yield b"one"
        yield b""
        yield b"two"
        yield b"three"

    response = TestClient(app_with(endpoint)).post("/", content=body())
    assert response.json() == {"chunks": ["one", "two", "three"]}


def test_body_max_size_checks_content_length_before_reading() -> None:
    read: list[int] = []

    async def endpoint(request: Request) -> bytes:
        try:
            return await request.body(max_size=10)
        finally:
            read.append(int(request._stream_consumed))

    client = TestClient(app_with(endpoint))
    response = client.post("/", content=b"x" * 11)
    assert response.status_code == 413
    assert "10 bytes" in response.json()["detail"]
    assert read == [0]  # refused on Content-Length alone
    assert client.post("/", content=b"x" * 10).content == b"x" * 10


def test_body_max_size_counts_bytes_received_without_content_length() -> None:
    async def endpoint(request: Request) -> bytes:
        return await request.body(max_size=10)

    def chunks() -> Iterator[bytes]:  # a generator body is sent chunked: no Content-Length
        yield b"x" * 6
        yield b"x" * 6

    client = TestClient(app_with(endpoint))
    assert client.post("/", content=chunks()).status_code == 413


@pytest.mark.parametrize(
    ("content_length", "chunks", "status"),
    [
        (b"3", [b"abc", b"defgh"], 413),  # a lying Content-Length is caught by counting
        (b"x", [b"abc"], 400),  # an invalid one is a 400
    ],
    ids=["lying", "invalid"],
)
def test_content_length_with_a_limit(
    content_length: bytes, chunks: list[bytes], status: int
) -> None:
    async def endpoint(request: Request) -> bytes:
        return await request.body(max_size=5)

    send = Recorder()
    scope = http_scope(method="POST", headers=[(b"content-length", content_length)])
    anyio.run(app_with(endpoint), scope, receive_then_disconnect(*chunks), send)
    assert send.messages[0]["status"] == status


def receive_held_after(*messages: Message) -> Any:
    """A server's ``receive`` that hands over ``messages``, then holds its last empty
    message back (the body is whole: a reader that waits for it hangs)."""
    queue = list(messages)

    async def receive() -> Message:
        if queue:
            return queue.pop(0)
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    return receive


@pytest.mark.anyio
@pytest.mark.parametrize("reader", ["body", "stream", "json"])
async def test_the_body_ends_with_its_content_length(reader: str) -> None:
    """granian sends the body with ``more_body`` and then an empty last message: once
    Content-Length bytes are in, the body is whole and that message is not waited for."""
    scope = http_scope(method="POST", headers=[(b"content-length", b"9")])
    first = {"type": "http.request", "body": b'{"a": ', "more_body": True}
    second = {"type": "http.request", "body": b"12}", "more_body": True}
    request = Request(scope, receive_held_after(first, second))
    with anyio.fail_after(5):  # bounded: a failure, not a hang
        if reader == "body":
            assert await request.body() == b'{"a": 12}'
        elif reader == "json":
            assert await request.json() == {"a": 12}
        else:
            assert [chunk async for chunk in request.stream()] == [b'{"a": ', b"12}"]


@pytest.mark.anyio
async def test_more_bytes_than_content_length_are_all_read() -> None:
    """A Content-Length the bytes overrun (no server frames a body like that) is not
    relied on: the body ends at the server's last message, nothing is dropped."""
    scope = http_scope(method="POST", headers=[(b"content-length", b"4")])
    receive = receive_then_disconnect(b"abcdef", b"gh")
    assert await Request(scope, receive).body() == b"abcdefgh"


@pytest.mark.anyio
async def test_a_transfer_encoding_frames_the_body_not_content_length() -> None:
    """h11 (hypercorn, uvicorn --http h11) accepts a request with both headers and
    frames it by the chunked coding, leaving both in the scope: the body then ends at
    the server's last message, however Content-Length reads."""
    headers = [(b"content-length", b"5"), (b"transfer-encoding", b"chunked")]
    scope = http_scope(method="POST", headers=headers)
    request = Request(scope, receive_then_disconnect(b"hello", b" world"))
    assert await request.body() == b"hello world"


@pytest.mark.anyio
async def test_a_size_limit_reads_to_the_servers_last_message() -> None:
    """With max_size the limit counts what arrives, whatever Content-Length says."""
    scope = http_scope(method="POST", headers=[(b"content-length", b"3")])
    request = Request(scope, receive_then_disconnect(b"abc", b"defgh"))
    with pytest.raises(HTTPException) as caught:
        await request.body(max_size=5)
    assert caught.value.status_code == 413


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"a": ', "Invalid JSON"),
        (b"\xff\xfe{}", "not valid UTF-8"),
        (b"", "Invalid JSON"),
    ],
)
def test_json_errors_are_400_with_detail(body: bytes, detail: str) -> None:
    async def endpoint(request: Request) -> Any:
        return await request.json()

    response = TestClient(app_with(endpoint)).post("/", content=body)
    assert response.status_code == 400
    assert detail in response.json()["detail"]


def test_json_parses_and_caches_and_respects_max_size() -> None:
    async def endpoint(request: Request) -> Any:
        first = await request.json()
        assert first is await request.json()
        return first

    client = TestClient(app_with(endpoint))
    assert client.post("/", json={"x": [1, 2, "é"]}).json() == {"x": [1, 2, "é"]}

    async def limited(request: Request) -> Any:
        return await request.json(max_size=4)

    assert TestClient(app_with(limited)).post("/", json={"long": "value"}).status_code == 413


def test_request_needs_http_scope() -> None:
    with pytest.raises(ValueError, match="'http' scope"):
        Request({"type": "websocket"})  # hand-written: only the type matters here


def test_client_disconnect_while_reading_is_quiet() -> None:
    outcome: list[str] = []

    async def endpoint(request: Request) -> bytes:
        try:
            return await request.body()
        except ClientDisconnect:
            outcome.append("disconnect")
            raise

    router = app_with(endpoint)
    send = Recorder()
    receive = receive_messages([{"type": "http.request", "body": b"abc", "more_body": True}])
    anyio.run(router, http_scope(method="POST"), receive, send)  # then http.disconnect
    assert outcome == ["disconnect"]
    assert send.messages == []  # nobody to answer


@pytest.mark.anyio
async def test_is_disconnected_never_blocks_and_keeps_body_chunks() -> None:
    done = anyio.Event()
    receive = receive_messages(request_messages(b"data"), done)  # like a server
    request = Request(http_scope(method="POST"), receive)
    assert await request.is_disconnected() is False  # pulled the body chunk, kept it
    assert await request.body() == b"data"
    assert await request.is_disconnected() is False  # nothing pending: does not block
    done.set()
    assert await request.is_disconnected() is True


@pytest.mark.anyio
async def test_is_disconnected_detects_a_client_that_left() -> None:
    request = Request(http_scope(), client_gone)
    assert await request.is_disconnected() is True


def test_url_for_outside_a_router_is_a_clear_error() -> None:
    request = Request(http_scope())
    with pytest.raises(RuntimeError, match="Router"):
        request.url_for("x")


def test_session_without_middleware_is_a_clear_error() -> None:
    request = Request(http_scope())
    with pytest.raises(RuntimeError, match="SessionMiddleware"):
        request.session  # noqa: B018


def test_http_exception_from_body_reaches_client() -> None:
    async def endpoint(request: Request) -> None:
        raise HTTPException(418)

    response = TestClient(app_with(endpoint)).get("/")
    assert response.status_code == 418
    assert response.json() == {"detail": "I'm a Teapot"}


@pytest.mark.anyio
async def test_stream_of_cached_body_yields_it() -> None:
    request = Request(http_scope(method="POST"), receive_then_disconnect(b"abc"))
    assert await request.body() == b"abc"

    async def collect(stream: AsyncIterator[bytes]) -> bytes:
        return b"".join([chunk async for chunk in stream])

    assert await collect(request.stream()) == b"abc"
    assert await collect(request.stream()) == b"abc"


def test_deeply_nested_json_is_a_400() -> None:
    async def endpoint(request: Request) -> Any:
        return await request.json()

    response = TestClient(app_with(endpoint)).post("/", content=b"[" * 100_000)
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["detail"]


@pytest.mark.parametrize("body", [b"NaN", b'{"x": Infinity}', b"[-Infinity]"])
def test_javascript_constants_are_not_json(body: bytes) -> None:
    async def endpoint(request: Request) -> Any:
        return await request.json()

    response = TestClient(app_with(endpoint)).post("/", content=body)
    assert response.status_code == 400
    assert "is not a JSON value" in response.json()["detail"]


def test_is_disconnected_while_streaming_the_body_loses_no_chunk() -> None:
    def body() -> Iterator[bytes]:
        for index in range(20):
            yield b"%03d," % index

    response = TestClient(echo_router(check_connected=True)).post("/echo", content=body())
    assert response.content == b"".join(b"%03d," % index for index in range(20))


def test_huge_json_integer_is_a_400() -> None:
    async def endpoint(request: Request) -> Any:
        return await request.json()

    response = TestClient(app_with(endpoint)).post("/", content=b'{"n": ' + b"1" * 5000 + b"}")
    # Python 3.11+ refuses to convert that many digits: a 400, not a 500.
    assert response.status_code == (400 if hasattr(sys, "get_int_max_str_digits") else 200)

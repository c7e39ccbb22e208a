"""The test clients: real streaming, early close -> http.disconnect, lifespan, errors, trio."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
import pytest

from asgikit import Request, Router
from asgikit.testing import AsyncTestClient, TestClient
from asgikit.types import Message, Receive, Scope, Send


class TickerApp:
    """A raw ASGI app streaming numbered lines, waiting on the test between chunks."""

    def __init__(self) -> None:
        self.sent: list[int] = []
        self.disconnected = anyio.Event()
        self.finished = False
        self.release = anyio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        try:
            for index in range(1000):
                self.sent.append(index)
                await send(
                    {"type": "http.response.body", "body": f"{index}\n".encode(), "more_body": True}
                )
            await send({"type": "http.response.body", "body": b""})
        except OSError:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.disconnected.set()
        finally:
            self.finished = True


def test_stream_is_incremental_and_early_close_disconnects() -> None:
    app = TickerApp()
    with TestClient(app) as client, client.stream("GET", "/") as response:
        lines = response.iter_lines()
        assert next(lines) == "0"
        assert next(lines) == "1"
        # The app has produced at most one chunk ahead of what the test read.
        assert len(app.sent) <= 3
    assert app.finished
    assert app.disconnected.is_set()
    assert len(app.sent) < 1000


@pytest.mark.anyio
async def test_async_stream_is_incremental_and_early_close_disconnects() -> None:
    app = TickerApp()
    async with AsyncTestClient(app) as client:
        async with client.stream("GET", "/") as response:
            async for line in response.aiter_lines():
                if line == "2":
                    break
        assert app.finished and app.disconnected.is_set()
        assert len(app.sent) <= 5


def test_without_with_block_responses_are_complete() -> None:
    app = TickerApp()
    response = TestClient(app).get("/")
    assert response.text.splitlines()[-1] == "999"


@pytest.mark.anyio
async def test_async_client_without_async_with() -> None:
    app = TickerApp()
    client = AsyncTestClient(app)
    response = await client.get("/")
    assert len(response.text.splitlines()) == 1000
    await client.aclose()


def test_trio_backend_for_sync_client() -> None:
    router = Router()

    @router.get("/lib")
    async def lib(request: Request) -> str:
        import sniffio

        return sniffio.current_async_library()

    with TestClient(router, backend="trio") as client:
        assert client.get("/lib").text == "trio"
    assert TestClient(router).get("/lib").text == "asyncio"


def test_request_body_streams_to_the_app() -> None:
    router = Router()

    @router.post("/count")
    async def count(request: Request) -> dict[str, int]:
        chunks = 0
        size = 0
        async for chunk in request.stream():
            chunks += 1
            size += len(chunk)
        return {"chunks": chunks, "size": size}

    def body() -> Any:
        for _ in range(10):
            yield b"x" * 1000

    assert TestClient(router).post("/count", content=body()).json() == {
        "chunks": 10,
        "size": 10_000,
    }


@pytest.mark.anyio
async def test_each_request_chunk_reaches_the_app_before_the_next_exists() -> None:
    """A client that sends its second chunk only once the app has the first: the
    first goes out at once (``more_body``), as a server hands it over."""
    router = Router()
    first_seen = anyio.Event()

    @router.post("/count")
    async def count(request: Request) -> dict[str, Any]:
        chunks = []
        async for chunk in request.stream():
            chunks.append(chunk.decode())
            first_seen.set()
        return {"chunks": chunks}

    async def body() -> AsyncIterator[bytes]:
        yield b"first"
        with anyio.fail_after(10):  # bounded: a failure, not a hang
            await first_seen.wait()
        yield b"second"

    async with AsyncTestClient(router) as client:
        response = await client.post("/count", content=body())
    assert response.json() == {"chunks": ["first", "second"]}


def test_a_body_with_a_length_ends_with_its_last_chunk() -> None:
    messages: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        while True:
            message = await receive()
            messages.append(message)
            if not message.get("more_body", False):
                break
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def chunks() -> Any:
        yield b"ab"
        yield b"cd"

    client = TestClient(app)
    assert client.post("/", content=chunks(), headers={"content-length": "4"}).status_code == 204
    assert [(m["body"], m["more_body"]) for m in messages] == [(b"ab", True), (b"cd", False)]
    messages.clear()
    assert client.post("/", content=chunks()).status_code == 204  # chunked: an end message
    assert [(m["body"], m["more_body"]) for m in messages] == [
        (b"ab", True),
        (b"cd", True),
        (b"", False),
    ]


def test_a_content_length_that_is_not_ascii_digits_reaches_the_app() -> None:
    """The client passes the header on (no crash in the client): the app answers 400."""
    router = Router()

    @router.post("/")
    async def endpoint(request: Request) -> bytes:
        return await request.body()

    superscript_two = "\u00b2".encode()  # str.isdigit() says yes, int() says no
    response = TestClient(router).post(
        "/", content=b"x", headers={"content-length": superscript_two}
    )
    assert response.status_code == 400
    assert "Invalid Content-Length" in response.json()["detail"]


def test_scope_details() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            raise RuntimeError("no lifespan here")  # an app without lifespan support
        seen.update(scope)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    with TestClient(app, base_url="https://api.example.org") as client:
        assert client.get("/a%20b/c?x=1").status_code == 204
    assert seen["scheme"] == "https"
    assert seen["server"] == ("api.example.org", 443)
    assert seen["path"] == "/a b/c"
    assert seen["raw_path"] == b"/a%20b/c"
    assert seen["query_string"] == b"x=1"
    assert seen["method"] == "GET"
    assert (b"host", b"api.example.org") in seen["headers"]


def test_raise_server_exceptions_false_gives_500() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise ValueError("app crashed")

    with pytest.raises(ValueError, match="app crashed"):
        TestClient(app).get("/")
    assert TestClient(app, raise_server_exceptions=False).get("/").status_code == 500


def test_app_that_never_answers_is_a_clear_error() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        return None

    with pytest.raises(RuntimeError, match="without sending a response"):
        TestClient(app).get("/")


def test_protocol_mistakes_are_reported() -> None:
    async def body_first(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.body", "body": b"x"})

    with pytest.raises(RuntimeError, match=r"before http\.response\.start"):
        TestClient(body_first).get("/")


def test_lifespan_state_and_cookies_persist_across_requests() -> None:
    @contextlib.asynccontextmanager
    async def lifespan(router: Router) -> AsyncIterator[Mapping[str, Any]]:
        yield {"name": "model-a"}

    router = Router(lifespan=lifespan)

    @router.get("/set")
    async def set_cookie(request: Request) -> Any:
        from asgikit import PlainTextResponse

        response = PlainTextResponse(request.state.name)
        response.set_cookie("seen", "1")
        return response

    @router.get("/get")
    async def get_cookie(request: Request) -> str:
        return request.cookies.get("seen", "0")

    with TestClient(router) as client:
        assert client.get("/set").text == "model-a"
        assert client.get("/get").text == "1"


def test_disconnect_after_complete_response() -> None:
    messages: list[Message] = []

    class Listener:
        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            await receive()  # the (empty) body
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"done"})
            messages.append(await receive())  # after the response: disconnect, like uvicorn

    assert TestClient(Listener()).get("/").text == "done"
    assert messages == [{"type": "http.disconnect"}]


def test_client_can_be_entered_after_use_and_again() -> None:
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(router: Router) -> AsyncIterator[Mapping[str, Any]]:
        events.append("up")
        yield {}
        events.append("down")

    router = Router(lifespan=lifespan)
    router.add_route("/", lambda request: "ok")
    client = TestClient(router)
    assert client.get("/").text == "ok"
    with client:
        assert client.get("/").text == "ok"
    with client:
        pass
    assert client.get("/").text == "ok"
    assert events == ["up", "down", "up", "down"]


@pytest.mark.anyio
async def test_async_client_startup_failure_raises_the_error_itself() -> None:
    @contextlib.asynccontextmanager
    async def lifespan(router: Router) -> AsyncIterator[None]:
        raise RuntimeError("startup boom")
        yield

    with pytest.raises(RuntimeError, match="startup boom"):
        async with AsyncTestClient(Router(lifespan=lifespan)):
            pass


@pytest.mark.anyio
async def test_async_client_runs_shutdown_when_the_test_fails() -> None:
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(router: Router) -> AsyncIterator[None]:
        yield
        events.append("shutdown")

    with pytest.raises(AssertionError):
        async with AsyncTestClient(Router(lifespan=lifespan)):
            raise AssertionError("test failed")
    assert events == ["shutdown"]


def test_root_path_goes_in_front_of_path_and_raw_path_as_a_server_puts_it() -> None:
    seen: list[tuple[str, bytes, str]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append((scope["path"], scope["raw_path"], scope["root_path"]))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    client = TestClient(app, root_path="/pre")
    for asked in ("/prefix", "/x", "/pre/x", "/pre"):
        client.get(asked)
    assert seen == [
        ("/pre/prefix", b"/pre/prefix", "/pre"),  # "/prefix" is not under "/pre"
        ("/pre/x", b"/pre/x", "/pre"),
        ("/pre/x", b"/pre/x", "/pre"),  # asked with the prefix already
        ("/pre", b"/pre", "/pre"),
    ]

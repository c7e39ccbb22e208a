"""Running a route: the same routing, error and HEAD behaviour for every router shape.

Every test here runs once per shape (a plain router, one with router middleware, one
with route middleware, a router mounted in another, and HEAD instead of GET), so the
paths a request can take through `asgikit.routing` and `asgikit._dispatch` cannot
drift apart.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import httpx
import pytest

from asgikit import (
    BackgroundTask,
    HTTPException,
    JSONResponse,
    Middleware,
    Mount,
    PlainTextResponse,
    Request,
    Response,
    Route,
    Router,
    StreamingResponse,
)
from asgikit.testing import TestClient
from asgikit.types import ASGIApp, Receive, Scope, Send


class PassThrough:
    """Pure ASGI middleware that only forwards (and counts the requests it saw)."""

    seen = 0

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        PassThrough.seen += 1
        await self.app(scope, receive, send)


class Shape:
    """One way of putting the same routes in front of a client."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.prefix = "/sub" if name == "mounted" else ""

    def __repr__(self) -> str:
        return self.name

    def router(
        self, routes: Sequence[tuple[str, Callable[..., Any], list[str]]], **options: Any
    ) -> ASGIApp:
        route_middleware = [Middleware(PassThrough)] if self.name == "route middleware" else []
        built = [
            Route(path, endpoint, methods=methods, middleware=route_middleware)
            for path, endpoint, methods in routes
        ]
        if self.name == "router middleware":
            return Router(built, middleware=[Middleware(PassThrough)], **options)
        if self.name == "mounted":
            return Router([Mount("/sub", Router(built, **options))])
        return Router(built, **options)

    def client(self, app: ASGIApp, **options: Any) -> TestClient:
        return TestClient(app, **options)

    def get(self, client: TestClient, path: str, **options: Any) -> httpx.Response:
        """GET (HEAD for the HEAD shape) ``path`` below this shape's prefix."""
        method = "HEAD" if self.name == "HEAD" else "GET"
        return client.request(method, self.prefix + path, **options)

    def body(self, expected: bytes) -> bytes:
        """The body a GET answering ``expected`` has in this shape."""
        return b"" if self.name == "HEAD" else expected


SHAPES = [
    Shape(name) for name in ("plain", "router middleware", "route middleware", "mounted", "HEAD")
]

pytestmark = pytest.mark.parametrize("shape", SHAPES, ids=repr)


class Teapot(Exception):
    pass


def test_return_values_are_converted(shape: Shape) -> None:
    async def text(request: Request) -> str:
        return "hi"

    async def json(request: Request) -> dict[str, int]:
        return {"a": 1}

    async def raw(request: Request) -> bytes:
        return b"\x00\x01"

    async def nothing(request: Request) -> None:
        return None

    async def response(request: Request) -> Response:
        return PlainTextResponse("made", status_code=201, headers={"x-made": "1"})

    routes = [
        ("/text", text, ["GET"]),
        ("/json", json, ["GET"]),
        ("/raw", raw, ["GET"]),
        ("/none", nothing, ["GET"]),
        ("/response", response, ["GET"]),
    ]
    client = shape.client(shape.router(routes))
    answer = shape.get(client, "/text")
    assert (answer.status_code, answer.content) == (200, shape.body(b"hi"))
    assert answer.headers["content-type"] == "text/plain; charset=utf-8"
    assert answer.headers["content-length"] == "2"
    answer = shape.get(client, "/json")
    assert (answer.status_code, answer.content) == (200, shape.body(b'{"a":1}'))
    assert shape.get(client, "/raw").content == shape.body(b"\x00\x01")
    assert shape.get(client, "/none").status_code == 204
    answer = shape.get(client, "/response")
    assert (answer.status_code, answer.headers["x-made"]) == (201, "1")
    assert answer.content == shape.body(b"made")


def test_sync_endpoint_runs_in_a_worker_thread(shape: Shape) -> None:
    def blocking(request: Request) -> str:
        return threading.current_thread().name

    client = shape.client(shape.router([("/sync", blocking, ["GET"])]))
    answer = shape.get(client, "/sync")
    assert answer.status_code == 200
    if shape.name != "HEAD":
        assert answer.text != threading.main_thread().name
        assert answer.text  # ran somewhere, said where


def test_path_parameters_are_converted(shape: Shape) -> None:
    async def item(request: Request) -> dict[str, Any]:
        return {
            "id": request.path_params["item_id"],
            "type": type(request.path_params["item_id"]).__name__,
        }

    client = shape.client(shape.router([("/items/{item_id:int}", item, ["GET"])]))
    answer = shape.get(client, "/items/42")
    assert answer.content == shape.body(b'{"id":42,"type":"int"}')
    assert shape.get(client, "/items/x").status_code == 404


def test_unknown_path_is_404_and_wrong_method_is_405(shape: Shape) -> None:
    async def create(request: Request) -> str:
        return "created"

    client = shape.client(shape.router([("/items", create, ["POST"])]))
    missing = shape.get(client, "/nowhere")
    assert missing.status_code == 404
    assert missing.content == shape.body(b'{"detail":"Not Found"}')
    wrong = shape.get(client, "/items")
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST"


def test_http_exception_becomes_its_json_answer(shape: Shape) -> None:
    async def limited(request: Request) -> None:
        raise HTTPException(429, "slow down", headers={"Retry-After": "3"})

    client = shape.client(shape.router([("/limited", limited, ["GET"])]))
    answer = shape.get(client, "/limited")
    assert (answer.status_code, answer.headers["retry-after"]) == (429, "3")
    assert answer.content == shape.body(b'{"detail":"slow down"}')


def test_exception_handlers_answer_by_class_and_status(shape: Shape) -> None:
    async def brew(request: Request) -> None:
        raise Teapot

    async def gone(request: Request) -> None:
        raise HTTPException(410)

    async def on_teapot(request: Request, exc: Teapot) -> Response:
        return PlainTextResponse("short and stout", status_code=418)

    def on_gone(request: Request, exc: HTTPException) -> JSONResponse:  # a sync handler
        return JSONResponse({"gone": True}, status_code=410)

    routes = [("/brew", brew, ["GET"]), ("/gone", gone, ["GET"])]
    app = shape.router(routes, exception_handlers={Teapot: on_teapot, 410: on_gone})
    client = shape.client(app)
    answer = shape.get(client, "/brew")
    assert (answer.status_code, answer.content) == (418, shape.body(b"short and stout"))
    answer = shape.get(client, "/gone")
    assert (answer.status_code, answer.content) == (410, shape.body(b'{"gone":true}'))


def test_unhandled_error_is_logged_answered_500_and_reraised(
    shape: Shape, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(request: Request) -> None:
        raise RuntimeError("model exploded")

    app = shape.router([("/broken", broken, ["GET"])])
    with caplog.at_level(logging.ERROR, logger="asgikit"):
        answer = shape.get(shape.client(app, raise_server_exceptions=False), "/broken")
    assert answer.status_code == 500
    assert answer.content == shape.body(b'{"detail":"Internal Server Error"}')
    assert "model exploded" in caplog.text
    with pytest.raises(RuntimeError, match="model exploded"):
        shape.get(shape.client(app), "/broken")


def test_bad_return_value_is_a_500_naming_the_type(
    shape: Shape, caplog: pytest.LogCaptureFixture
) -> None:
    async def odd(request: Request) -> object:
        return 3.5

    app = shape.router([("/odd", odd, ["GET"])])
    with caplog.at_level(logging.ERROR, logger="asgikit"):
        answer = shape.get(shape.client(app, raise_server_exceptions=False), "/odd")
    assert answer.status_code == 500
    assert "an endpoint returned float" in caplog.text


def test_stream_failing_before_its_start_is_a_500(shape: Shape) -> None:
    class Exploding(Response):
        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            raise ValueError("no start")

    async def endpoint(request: Request) -> Response:
        return Exploding()

    app = shape.router([("/explode", endpoint, ["GET"])])
    answer = shape.get(shape.client(app, raise_server_exceptions=False), "/explode")
    assert answer.status_code == 500


def test_streaming_response_and_background_task(shape: Shape) -> None:
    done: list[str] = []

    async def chunks() -> AsyncIterator[bytes]:
        yield b"a"
        yield b"b"

    async def stream(request: Request) -> Response:
        return StreamingResponse(chunks(), background=BackgroundTask(done.append, "after"))

    client = shape.client(shape.router([("/stream", stream, ["GET"])]))
    answer = shape.get(client, "/stream")
    assert (answer.status_code, answer.content) == (200, shape.body(b"ab"))
    assert done == ["after"]


def test_uploaded_files_are_released_after_the_response(shape: Shape) -> None:
    files: list[Any] = []

    async def upload(request: Request) -> str:
        form = await request.form()
        files.append(form["file"])
        return "ok"

    if shape.name == "HEAD":
        pytest.skip("a HEAD request carries no form")
    client = shape.client(shape.router([("/upload", upload, ["POST"])]))
    answer = client.post(shape.prefix + "/upload", files={"file": ("a.txt", b"content")})
    assert answer.text == "ok"
    assert files[0].file.closed


def test_middleware_shapes_really_run_their_middleware(shape: Shape) -> None:
    async def hello(request: Request) -> str:
        return "hello"

    before = PassThrough.seen
    shape.get(shape.client(shape.router([("/hello", hello, ["GET"])])), "/hello")
    ran = PassThrough.seen - before
    assert ran == (1 if "middleware" in shape.name else 0)

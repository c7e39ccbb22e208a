"""The middleware chain: declaration, order, build once, per-route middleware, no buffering."""

from __future__ import annotations

from typing import Any

import pytest

from asgikit import Middleware, PlainTextResponse, Request, Route, Router
from asgikit.testing import TestClient
from asgikit.types import ASGIApp, Message, Receive, Scope, Send

built: list[str] = []


class Trace:
    """Records the order it sees requests and adds itself to an ``x-trace`` header."""

    def __init__(self, app: ASGIApp, name: str, log: list[str] | None = None) -> None:
        built.append(name)
        self.app, self.name, self.log = app, name, log if log is not None else []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.log.append(f"{self.name}:{scope['type']}")

        async def traced(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-trace", self.name.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, traced)


def test_first_listed_is_outermost_and_chain_is_built_once() -> None:
    built.clear()
    log: list[str] = []
    router = Router(
        [Route("/", lambda request: "ok")],
        middleware=[
            Middleware(Trace, name="outer", log=log),
            Middleware(Trace, name="inner", log=log),
        ],
    )
    assert built == []  # built at first use, not before
    with TestClient(router) as client:
        response = client.get("/")
        client.get("/")
    assert built == ["inner", "outer"]
    assert log[:2] == ["outer:lifespan", "inner:lifespan"]
    assert log[2:4] == ["outer:http", "inner:http"]
    # The inner middleware sees the response start first, so it appends first.
    assert response.headers.get_list("x-trace") == ["inner", "outer"]


def test_per_route_middleware_applies_to_that_route_only() -> None:
    router = Router()

    @router.get("/wrapped", middleware=[Middleware(Trace, name="route")])
    async def wrapped(request: Request) -> str:
        return "wrapped"

    @router.get("/plain")
    async def plain(request: Request) -> str:
        return "plain"

    client = TestClient(router)
    assert client.get("/wrapped").headers["x-trace"] == "route"
    assert "x-trace" not in client.get("/plain").headers


def test_per_route_middleware_sees_params_and_error_answers() -> None:
    from asgikit import HTTPException

    router = Router(
        [
            Route(
                "/items/{id:int}",
                lambda request: request.path_params,
                middleware=[Middleware(Trace, name="r")],
            )
        ]
    )

    @router.get("/fail", middleware=[Middleware(Trace, name="f")])
    async def fail(request: Request) -> None:
        raise HTTPException(409, "conflict")

    client = TestClient(router)
    assert client.get("/items/3").json() == {"id": 3}
    response = client.get("/fail")
    assert response.status_code == 409
    assert response.headers["x-trace"] == "f"


def test_middleware_declaration_errors() -> None:
    with pytest.raises(TypeError):
        Middleware("not callable")  # type: ignore[arg-type]
    router = Router(middleware=["not a Middleware"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="Middleware"):
        TestClient(router).get("/")
    assert "Trace" in repr(Middleware(Trace, name="x"))


def test_middleware_passes_streaming_chunks_through_unbuffered() -> None:
    produced: list[int] = []

    class Chunks:
        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for index in range(50):
                produced.append(index)
                await send(
                    {"type": "http.response.body", "body": b"%d\n" % index, "more_body": True}
                )
            await send({"type": "http.response.body", "body": b""})

    router = Router(middleware=[Middleware(Trace, name="m")])

    @router.get("/stream")
    async def stream(request: Request) -> Any:
        return Chunks()

    with TestClient(router) as client, client.stream("GET", "/stream") as response:
        lines = response.iter_lines()
        assert next(lines) == "0"
        assert len(produced) <= 3  # nothing was buffered ahead of the reader


def test_plain_function_middleware_factory() -> None:
    def add_header(app: ASGIApp, value: str) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            async def wrapped(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message["headers"], (b"x-fn", value.encode())]
                await send(message)

            await app(scope, receive, wrapped)

        return middleware

    router = Router(
        [Route("/", lambda request: PlainTextResponse("x"))],
        middleware=[Middleware(add_header, value="yes")],
    )
    assert TestClient(router).get("/").headers["x-fn"] == "yes"


@pytest.mark.anyio
async def test_middleware_sees_lifespan_and_websocket_scopes_pass_through() -> None:
    log: list[str] = []
    router = Router(middleware=[Middleware(Trace, name="m", log=log)])
    inbox: list[Message] = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[Message] = []

    async def receive() -> Message:
        return inbox.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    await router({"type": "lifespan"}, receive, send)
    assert log == ["m:lifespan"]
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]

"""request.state under servers that handle the lifespan differently: an empty
scope["state"] (Ray Serve), no lifespan at all (daphne), and a server-side route prefix."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
import pytest

from asgikit import Request, Router
from asgikit.exceptions import LifespanNotRunError
from asgikit.testing import TestClient
from asgikit.types import ASGIApp, Message


@contextlib.asynccontextmanager
async def load_model(router: Router) -> AsyncIterator[Mapping[str, Any]]:
    yield {"model": "tiny-model"}


def model_router(**options: Any) -> Router:
    router = Router(**options)

    @router.get("/model")
    async def model(request: Request) -> str:
        try:
            return str(request.state.model)
        except AttributeError as exc:
            return f"{type(exc).__name__}: {exc}"

    return router


async def get(app: ASGIApp, path: str, **scope: Any) -> tuple[int, bytes]:
    """One GET the way a server without the test client would send it."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    http_scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"example.com")],
        "server": ("example.com", 80),
        **scope,
    }
    await app(http_scope, receive, send)
    body = b"".join(message.get("body", b"") for message in sent[1:])
    return sent[0]["status"], body


@pytest.mark.anyio
async def test_empty_state_from_the_server_falls_back_on_the_lifespan() -> None:
    """Ray Serve runs the lifespan without the state extension, then passes each
    request an empty scope["state"]."""
    app = model_router(lifespan=load_model)
    to_app: anyio.abc.ObjectSendStream[Message]
    to_app, app_receives = anyio.create_memory_object_stream[Message](4)
    app_sends, from_app = anyio.create_memory_object_stream[Message](4)
    lifespan_scope = {"type": "lifespan", "asgi": {"version": "3.0"}}  # no "state"
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(app, lifespan_scope, app_receives.receive, app_sends.send)
        await to_app.send({"type": "lifespan.startup"})
        assert (await from_app.receive())["type"] == "lifespan.startup.complete"
        assert await get(app, "/model", state={}) == (200, b"tiny-model")
        assert await get(app, "/model") == (200, b"tiny-model")  # no "state" key at all
        # What the server put in the scope wins over the fallback.
        assert await get(app, "/model", state={"model": "served"}) == (200, b"served")
        await to_app.send({"type": "lifespan.shutdown"})
        assert (await from_app.receive())["type"] == "lifespan.shutdown.complete"


def test_server_without_lifespan_gets_one_warning_and_a_clear_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = TestClient(model_router(lifespan=load_model))  # not entered: no lifespan
    with caplog.at_level(logging.WARNING, logger="asgikit"):
        first = client.get("/model").text
        second = client.get("/model").text
    assert first == second
    assert first.startswith("LifespanNotRunError: request.state has no attribute 'model'")
    assert "the lifespan did not run: does the server support lifespan?" in first
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "lifespan did not run" in warnings[0].getMessage()
    assert issubclass(LifespanNotRunError, AttributeError)


def test_missing_state_is_a_plain_attribute_error_when_nothing_went_wrong(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="asgikit"):
        # No lifespan declared: nothing to warn about.
        assert TestClient(model_router()).get("/model").text == (
            "AttributeError: State has no attribute 'model'"
        )

        @contextlib.asynccontextmanager
        async def other_state(router: Router) -> AsyncIterator[Mapping[str, Any]]:
            yield {"tokenizer": "t"}

        # The lifespan ran; the attribute is simply not one it yielded.
        with TestClient(model_router(lifespan=other_state)) as client:
            assert client.get("/model").text == "AttributeError: State has no attribute 'model'"
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


def test_mounted_lifespan_counts_too(caplog: pytest.LogCaptureFixture) -> None:
    from asgikit import Mount

    app = Router([Mount("/sub", model_router(lifespan=load_model))])
    with caplog.at_level(logging.WARNING, logger="asgikit"):
        answer = TestClient(app).get("/sub/model").text
    assert answer.startswith("LifespanNotRunError")
    assert len(caplog.records) == 1


def test_route_prefix_root_redirects_like_a_mount() -> None:
    """Served below a prefix (root_path "/api"), GET /api gets a 307 to /api/."""
    router = Router()

    @router.get("/")
    async def index(request: Request) -> str:
        return "index"

    client = TestClient(router, root_path="/api", follow_redirects=False)
    answer = client.get("/api?page=2")
    assert answer.status_code == 307
    assert answer.headers["location"] == "http://testserver/api/?page=2"
    assert client.get("/api/").text == "index"
    assert TestClient(router, root_path="/api").get("/api").text == "index"
    # Nothing at the root: still a 404, not a redirect.
    assert TestClient(Router(), root_path="/api").get("/api").status_code == 404

"""Lifespan: state, mounted routers' lifespans, failures, servers without lifespan."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
import pytest
from helpers import Recorder, http_scope, receive_body, receive_lifespan

from asgikit import Mount, Request, Router
from asgikit.testing import AsyncTestClient, TestClient


def test_lifespan_state_reaches_requests_and_shutdown_runs() -> None:
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(router: Router) -> AsyncIterator[Mapping[str, Any]]:
        events.append("startup")
        yield {"model": "tiny-model"}
        events.append("shutdown")

    router = Router(lifespan=lifespan)

    @router.get("/")
    async def endpoint(request: Request) -> str:
        return str(request.state.model)

    with TestClient(router) as client:
        assert events == ["startup"]
        assert client.get("/").text == "tiny-model"
    assert events == ["startup", "shutdown"]


def test_per_request_state_is_a_copy() -> None:
    @contextlib.asynccontextmanager
    async def lifespan(router: Router) -> AsyncIterator[Mapping[str, Any]]:
        yield {"counter": 0}

    router = Router(lifespan=lifespan)

    @router.get("/")
    async def endpoint(request: Request) -> str:
        request.state.counter += 1
        request.state.scratch = "per request"
        return str(request.state.counter)

    with TestClient(router) as client:
        assert client.get("/").text == "1"
        assert client.get("/").text == "1"


def test_mounted_router_lifespan_runs_inside_parent() -> None:
    events: list[str] = []

    def make(name: str) -> Any:
        @contextlib.asynccontextmanager
        async def lifespan(router: Router) -> AsyncIterator[Mapping[str, Any]]:
            events.append(f"{name} up")
            yield {name: True}
            events.append(f"{name} down")

        return lifespan

    inner = Router(lifespan=make("inner"))

    @inner.get("/state")
    async def state(request: Request) -> dict[str, bool]:
        return {"outer": request.state.outer, "inner": request.state.inner}

    outer = Router([Mount("/sub", inner)], lifespan=make("outer"))
    with TestClient(outer) as client:
        assert client.get("/sub/state").json() == {"outer": True, "inner": True}
    assert events == ["outer up", "inner up", "inner down", "outer down"]


def test_startup_failure_reports_error_text(caplog: pytest.LogCaptureFixture) -> None:
    @contextlib.asynccontextmanager
    async def lifespan(router: Router) -> AsyncIterator[None]:
        raise RuntimeError("weights missing")
        yield

    router = Router(lifespan=lifespan)
    send = Recorder()
    with pytest.raises(RuntimeError):
        anyio.run(router, {"type": "lifespan", "state": {}}, receive_lifespan(), send)
    assert send.messages == [{"type": "lifespan.startup.failed", "message": "weights missing"}]
    # The server shows only the message: the type and the traceback are logged.
    (record,) = [r for r in caplog.records if r.name == "asgikit"]
    assert record.getMessage() == "Lifespan startup failed"
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError
    assert "in lifespan" in caplog.text  # the frame that raised
    with pytest.raises(RuntimeError, match="weights missing"), TestClient(router):
        pass


def test_shutdown_failure_is_reported() -> None:
    @contextlib.asynccontextmanager
    async def lifespan(router: Router) -> AsyncIterator[None]:
        yield
        raise RuntimeError("could not flush")

    router = Router(lifespan=lifespan)
    send = Recorder()
    with pytest.raises(RuntimeError):
        anyio.run(router, {"type": "lifespan", "state": {}}, receive_lifespan(), send)
    assert send.messages == [
        {"type": "lifespan.startup.complete"},
        {"type": "lifespan.shutdown.failed", "message": "could not flush"},
    ]


def test_lifespan_must_be_an_async_context_manager() -> None:
    def not_a_context(router: Router) -> None:
        return None

    router = Router(lifespan=not_a_context)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="asynccontextmanager"), TestClient(router):
        pass


def test_requests_work_without_lifespan_support() -> None:
    # Not entering the client: like a server that never sends lifespan events.
    router = Router()

    @router.get("/")
    async def endpoint(request: Request) -> dict[str, Any]:
        return {"has_model": "model" in request.state}

    assert TestClient(router).get("/").json() == {"has_model": False}


def test_router_without_lifespan_completes_the_protocol() -> None:
    send = Recorder()
    anyio.run(Router(), {"type": "lifespan"}, receive_lifespan(), send)
    assert send.types == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]


def test_state_without_server_state_support_falls_back_to_router() -> None:
    @contextlib.asynccontextmanager
    async def lifespan(router: Router) -> AsyncIterator[Mapping[str, Any]]:
        yield {"model": "m"}

    router = Router(lifespan=lifespan)

    @router.get("/")
    async def endpoint(request: Request) -> str:
        return str(request.state.model)

    send = Recorder()

    async def main() -> None:
        stop = anyio.Event()
        receive = receive_lifespan(stop)
        async with anyio.create_task_group() as group:
            group.start_soon(router, {"type": "lifespan"}, receive, send)  # no "state" key
            with anyio.fail_after(5):
                while not send.messages:  # lifespan.startup.complete
                    await anyio.sleep(0)

            await router(http_scope("/"), receive_body(), send)
            stop.set()

    anyio.run(main)
    assert send.messages[2]["body"] == b"m"


@pytest.mark.anyio
async def test_async_client_runs_lifespan() -> None:
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(router: Router) -> AsyncIterator[Mapping[str, Any]]:
        events.append("up")
        yield {"ready": True}
        events.append("down")

    router = Router(lifespan=lifespan)

    @router.get("/ready")
    async def ready(request: Request) -> dict[str, bool]:
        return {"ready": request.state.ready}

    async with AsyncTestClient(router) as client:
        assert (await client.get("/ready")).json() == {"ready": True}
    assert events == ["up", "down"]


def test_state_is_empty_again_after_shutdown() -> None:
    @contextlib.asynccontextmanager
    async def lifespan(router: Router) -> AsyncIterator[Mapping[str, Any]]:
        yield {"model": "m"}

    router = Router(lifespan=lifespan)

    @router.get("/")
    async def endpoint(request: Request) -> dict[str, bool]:
        return {"has_model": "model" in request.state}

    with TestClient(router) as client:
        assert client.get("/").json() == {"has_model": True}
    assert TestClient(router).get("/").json() == {"has_model": False}

"""Background tasks: after the last body byte, sync ones in the pool, errors logged."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator

import pytest

from asgikit import BackgroundTask, BackgroundTasks, Request, Response, Router, StreamingResponse
from asgikit.testing import AsyncTestClient, TestClient


def test_tasks_run_in_order_sync_ones_in_a_thread() -> None:
    log: list[tuple[str, bool]] = []
    main_thread = threading.get_ident()

    def sync_task(name: str) -> None:
        log.append((name, threading.get_ident() == main_thread))

    async def async_task(name: str) -> None:
        log.append((name, False))

    router = Router()

    @router.get("/")
    async def endpoint(request: Request) -> Response:
        tasks = BackgroundTasks()
        tasks.add_task(sync_task, "sync")
        tasks.add_task(async_task, name="async")
        return Response("done", background=tasks)

    with TestClient(router) as client:
        assert client.get("/").text == "done"
    assert log == [("sync", False), ("async", False)]


@pytest.mark.anyio
async def test_streaming_background_runs_after_last_chunk() -> None:
    order: list[str] = []

    async def chunks() -> AsyncIterator[bytes]:
        yield b"a"
        order.append("last chunk")

    router = Router()

    @router.get("/")
    async def endpoint(request: Request) -> StreamingResponse:
        return StreamingResponse(chunks(), background=BackgroundTask(order.append, "background"))

    async with AsyncTestClient(router) as client:
        assert (await client.get("/")).content == b"a"
    assert order == ["last chunk", "background"]


def test_failing_task_is_logged_and_response_intact(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> None:
        raise RuntimeError("could not write audit log")

    router = Router()
    router.add_route(
        "/", lambda request: Response("ok", background=BackgroundTask(broken)), methods=["GET"]
    )
    with caplog.at_level(logging.ERROR), TestClient(router, raise_server_exceptions=False) as c:
        response = c.get("/")
    assert response.status_code == 200 and response.text == "ok"
    assert "could not write audit log" in caplog.text


def test_failing_task_is_logged_response_kept_and_later_tasks_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from asgikit import PlainTextResponse

    ran: list[str] = []

    def explode() -> None:
        raise ValueError("task failed")

    def after() -> None:
        ran.append("after")

    router = Router()

    @router.get("/")
    async def endpoint(request: Request) -> PlainTextResponse:
        tasks = BackgroundTasks()
        tasks.add_task(explode)
        tasks.add_task(after)
        return PlainTextResponse("ok", background=tasks)

    with caplog.at_level(logging.ERROR, logger="asgikit"), TestClient(router) as client:
        response = client.get("/")
    assert (response.status_code, response.text) == (200, "ok")
    assert ran == ["after"]
    assert any(
        "task failed" in str(record.exc_info[1]) for record in caplog.records if record.exc_info
    )

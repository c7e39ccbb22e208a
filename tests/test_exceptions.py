"""Errors: JSON error bodies, handlers by status and class, 500s, logging, re-raising."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from helpers import Recorder, http_scope, receive_body

from asgikit import (
    HTTPException,
    JSONResponse,
    Middleware,
    PlainTextResponse,
    Request,
    Response,
    Router,
)
from asgikit.testing import TestClient
from asgikit.types import ASGIApp, Message, Receive, Scope, Send


class ModelError(Exception):
    pass


class ModelTimeout(ModelError):
    pass


def failing_router(exc: BaseException, **options: Any) -> Router:
    router = Router(**options)

    @router.get("/fail")
    async def fail(request: Request) -> None:
        raise exc

    return router


def test_http_exception_default_detail_is_the_reason_phrase() -> None:
    response = TestClient(failing_router(HTTPException(404))).get("/fail")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"detail": "Not Found"}


def test_http_exception_without_body_statuses() -> None:
    response = TestClient(failing_router(HTTPException(304))).get("/fail")
    assert response.status_code == 304
    assert response.content == b""


def test_unhandled_error_is_500_logged_and_reraised(caplog: pytest.LogCaptureFixture) -> None:
    router = failing_router(RuntimeError("secret database password"))
    with caplog.at_level(logging.ERROR, logger="asgikit"), pytest.raises(RuntimeError):
        TestClient(router).get("/fail")
    assert any(record.exc_info and "secret" in str(record.exc_info[1]) for record in caplog.records)
    response = TestClient(router, raise_server_exceptions=False).get("/fail")
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal Server Error"}
    assert "secret" not in response.text


def test_debug_shows_traceback() -> None:
    router = failing_router(RuntimeError("visible in debug"), debug=True)
    response = TestClient(router, raise_server_exceptions=False).get("/fail")
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("text/plain")
    assert "Traceback" in response.text and "visible in debug" in response.text


def test_handlers_by_status_code() -> None:
    async def not_found(request: Request, exc: HTTPException) -> Response:
        return PlainTextResponse(f"nothing at {request.url.path}", status_code=404)

    router = Router(exception_handlers={404: not_found})
    response = TestClient(router).get("/missing")
    assert (response.status_code, response.text) == (404, "nothing at /missing")


def test_most_specific_class_handler_wins() -> None:
    async def model_error(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": "model"}, status_code=502)

    def model_timeout(request: Request, exc: Exception) -> Response:  # sync handlers work too
        return JSONResponse({"error": "timeout"}, status_code=504)

    handlers = {ModelError: model_error, ModelTimeout: model_timeout}
    assert TestClient(failing_router(ModelTimeout(), exception_handlers=handlers)).get(
        "/fail"
    ).json() == {"error": "timeout"}
    assert TestClient(failing_router(ModelError(), exception_handlers=handlers)).get(
        "/fail"
    ).json() == {"error": "model"}


def test_http_exception_subclass_handler() -> None:
    class QuotaExceeded(HTTPException):
        def __init__(self) -> None:
            super().__init__(429, "quota")

    async def quota(request: Request, exc: Exception) -> Response:
        return PlainTextResponse("buy more", status_code=429)

    router = failing_router(QuotaExceeded(), exception_handlers={QuotaExceeded: quota})
    assert TestClient(router).get("/fail").text == "buy more"


def test_500_handler_shapes_the_answer_and_error_is_still_reraised() -> None:
    async def on_500(request: Request, exc: Exception) -> Response:
        return JSONResponse({"oops": type(exc).__name__}, status_code=500)

    router = failing_router(KeyError("k"), exception_handlers={500: on_500})
    with pytest.raises(KeyError):
        TestClient(router).get("/fail")
    assert TestClient(router, raise_server_exceptions=False).get("/fail").json() == {
        "oops": "KeyError"
    }


def test_failing_handler_gives_500() -> None:
    async def broken(request: Request, exc: Exception) -> Response:
        raise ValueError("handler broke")

    router = failing_router(ModelError(), exception_handlers={ModelError: broken})
    assert TestClient(router, raise_server_exceptions=False).get("/fail").status_code == 500


def test_exception_after_response_start_never_sends_a_second_start() -> None:
    class HalfResponse:
        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"partial", "more_body": True})
            raise RuntimeError("broke mid-stream")

    router = Router()

    @router.get("/half")
    async def half(request: Request) -> Any:
        return HalfResponse()

    sent = Recorder()

    async def main() -> None:
        with pytest.raises(RuntimeError, match="mid-stream"):
            await router(http_scope("/half"), receive_body(), sent)

    anyio.run(main)
    assert sent.types == ["http.response.start", "http.response.body"]


def test_background_error_is_logged_and_the_response_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from asgikit import BackgroundTask

    async def explode() -> None:
        raise RuntimeError("background failed")

    router = Router()

    @router.get("/")
    async def endpoint(request: Request) -> Response:
        return PlainTextResponse("done", background=BackgroundTask(explode))

    sent = Recorder()

    async def main() -> None:
        await router(http_scope("/"), receive_body(), sent)

    with caplog.at_level(logging.ERROR, logger="asgikit"):
        anyio.run(main)
    assert sent.status == 200 and sent.body == b"done"
    assert any(
        "background failed" in str(record.exc_info[1])
        for record in caplog.records
        if record.exc_info
    )


def test_error_raised_by_middleware_before_start_is_a_500() -> None:
    class Broken:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                raise RuntimeError("middleware broke")
            await self.app(scope, receive, send)

    router = Router(middleware=[Middleware(Broken)])
    response = TestClient(router, raise_server_exceptions=False).get("/")
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal Server Error"}


def test_endpoint_error_inside_middleware_is_answered_once() -> None:
    starts: list[int] = []

    class CountStarts:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            async def counting(message: Message) -> None:
                if message["type"] == "http.response.start":
                    starts.append(message["status"])
                await send(message)

            await self.app(scope, receive, counting)

    router = failing_router(RuntimeError("x"), middleware=[Middleware(CountStarts)])
    assert TestClient(router, raise_server_exceptions=False).get("/fail").status_code == 500
    assert starts == [500]


def test_streamed_error_after_start_reaches_the_test() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"first"
        raise RuntimeError("stream broke")

    class Streaming:
        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            async for chunk in body():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})

    router = Router()

    @router.get("/")
    async def endpoint(request: Request) -> Any:
        return Streaming()

    with pytest.raises(RuntimeError, match="stream broke"):
        TestClient(router).get("/")


def test_error_raised_by_route_middleware_is_answered() -> None:
    def failing(app: ASGIApp, exc: Exception) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            raise exc

        return middleware

    router = Router()

    @router.get("/crash", middleware=[Middleware(failing, exc=RuntimeError("mw"))])
    async def crash(request: Request) -> str:
        return "unreachable"

    @router.get("/deny", middleware=[Middleware(failing, exc=HTTPException(401, "who are you"))])
    async def deny(request: Request) -> str:
        return "unreachable"

    with pytest.raises(RuntimeError, match="mw"):
        TestClient(router).get("/crash")
    client = TestClient(router, raise_server_exceptions=False)
    crashed = client.get("/crash")
    assert crashed.status_code == 500
    assert crashed.json() == {"detail": "Internal Server Error"}
    denied = client.get("/deny")
    assert denied.status_code == 401
    assert denied.json() == {"detail": "who are you"}


def test_parent_handlers_apply_inside_mounted_routers() -> None:
    from asgikit import Mount

    async def not_found(request: Request, exc: Exception) -> Response:
        return PlainTextResponse("parent 404", status_code=404)

    async def model_error(request: Request, exc: Exception) -> Response:
        return PlainTextResponse("parent model error", status_code=502)

    async def teapot(request: Request, exc: Exception) -> Response:
        return PlainTextResponse("child teapot", status_code=418)

    child = Router(exception_handlers={418: teapot})

    @child.get("/model")
    async def model(request: Request) -> None:
        raise ModelTimeout()

    @child.get("/tea")
    async def tea(request: Request) -> None:
        raise HTTPException(418)

    parent = Router(
        [Mount("/child", child)], exception_handlers={404: not_found, ModelError: model_error}
    )
    client = TestClient(parent)
    assert client.get("/child/missing").text == "parent 404"
    assert client.get("/child/model").text == "parent model error"
    assert client.get("/child/tea").text == "child teapot"
    assert client.get("/elsewhere").text == "parent 404"


def test_oserror_before_the_response_started_is_a_500_not_a_disconnect() -> None:
    class Broken:
        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            raise PermissionError("cannot open the weights")

    router = Router()

    @router.get("/weights")
    async def weights(request: Request) -> Any:
        return Broken()

    with pytest.raises(PermissionError):
        TestClient(router).get("/weights")
    assert TestClient(router, raise_server_exceptions=False).get("/weights").status_code == 500


def _task_group_router(*errors: BaseException, nested: bool = False) -> Router:
    """An endpoint whose task group's tasks raise ``errors`` (each in its own task)."""
    router = Router()

    async def fail(error: BaseException) -> None:
        raise error

    @router.get("/fan-out")
    async def fan_out(request: Request) -> None:
        async with anyio.create_task_group() as group:
            for error in errors:
                group.start_soon(fail, error)
            if nested:
                group.start_soon(_task_group_failing, errors)
            await anyio.sleep(1)

    return router


async def _task_group_failing(errors: tuple[BaseException, ...]) -> None:
    async with anyio.create_task_group() as group:
        for error in errors:
            group.start_soon(_raise, error)
        await anyio.sleep(1)


async def _raise(error: BaseException) -> None:
    raise error


def test_a_task_group_of_http_exceptions_answers_the_first() -> None:
    from asgikit.serving import Overloaded

    router = _task_group_router(Overloaded(retry_after=3), Overloaded(retry_after=3))
    response = TestClient(router).get("/fan-out")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "3"
    assert response.json() == {"detail": "Server overloaded, retry later"}
    nested = _task_group_router(HTTPException(429, "slow down"), nested=True)
    response = TestClient(nested).get("/fan-out")
    assert (response.status_code, response.json()) == (429, {"detail": "slow down"})


def test_a_task_group_with_any_other_error_is_a_500(caplog: pytest.LogCaptureFixture) -> None:
    router = _task_group_router(HTTPException(429), ModelError("boom"))
    response = TestClient(router, raise_server_exceptions=False).get("/fan-out")
    assert response.status_code == 500
    assert "boom" in caplog.text  # logged, with the group


def test_a_status_handler_applies_to_a_task_groups_http_exception() -> None:
    async def too_many(request: Request, exc: HTTPException) -> PlainTextResponse:
        return PlainTextResponse(f"handled: {exc.detail}", status_code=429)

    router = Router(exception_handlers={429: too_many})
    router.mount("/", _task_group_router(HTTPException(429, "slow down")))
    response = TestClient(router).get("/fan-out")
    assert (response.status_code, response.text) == (429, "handled: slow down")

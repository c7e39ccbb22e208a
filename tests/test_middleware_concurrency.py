"""ConcurrencyLimitMiddleware: N in the app, M waiting, the rest shed with 503."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx
import pytest
from helpers import http_scope, receive_body

from asgikit import Middleware, Request, Router, StreamingResponse
from asgikit._receive import RELAY_KEY
from asgikit.middleware import ConcurrencyLimitMiddleware
from asgikit.middleware.concurrency import ConcurrencyStats
from asgikit.testing import AsyncTestClient

pytestmark = pytest.mark.anyio


async def until(condition: Callable[[], bool]) -> None:
    """Wait (bounded) until ``condition()`` holds; other tasks run meanwhile."""
    with anyio.fail_after(5):
        while not condition():
            await anyio.sleep(0.001)


def limited_app(
    release: anyio.Event,
    entered: list[str],
    limiters: list[ConcurrencyLimitMiddleware],
    **options: int,
) -> Router:
    def limited(app: Any, **options: Any) -> ConcurrencyLimitMiddleware:
        limiters.append(ConcurrencyLimitMiddleware(app, **options))
        return limiters[-1]

    router = Router(middleware=[Middleware(limited, **options)])

    @router.get("/work/{name}")
    async def work(request: Request) -> str:
        entered.append(request.path_params["name"])
        await release.wait()
        return request.path_params["name"]

    return router


async def test_one_runs_one_waits_rest_shed() -> None:
    release = anyio.Event()
    entered: list[str] = []
    limiters: list[ConcurrencyLimitMiddleware] = []
    app = limited_app(release, entered, limiters, max_concurrency=1, max_queue=1, retry_after=7)
    responses: dict[str, httpx.Response] = {}
    async with AsyncTestClient(app) as client:

        async def get(name: str) -> None:
            responses[name] = await client.get(f"/work/{name}")

        async with anyio.create_task_group() as tg:
            tg.start_soon(get, "first")
            await until(lambda: entered == ["first"])
            tg.start_soon(get, "queued")
            await until(lambda: limiters[0].stats.queued == 1)
            shed = await client.get("/work/shed")  # answered at once, while 2 are held
            assert entered == ["first"]  # the queued one waits its turn
            assert limiters[0].stats == ConcurrencyStats(
                running=1, queued=1, admitted=1, shed=1, abandoned=0
            )
            release.set()
    assert limiters[0].stats == ConcurrencyStats(
        running=0, queued=0, admitted=2, shed=1, abandoned=0
    )
    assert shed.status_code == 503
    assert shed.headers["retry-after"] == "7"
    assert "capacity" in shed.json()["detail"]
    assert responses["first"].text == "first"
    assert responses["queued"].text == "queued"
    assert entered == ["first", "queued"]


async def test_cancelled_waiter_leaves_the_queue() -> None:
    release = anyio.Event()
    calls: list[str] = []

    async def app(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
        calls.append(scope["path"])
        await release.wait()

    async def receive() -> dict[str, Any]:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    limiter = ConcurrencyLimitMiddleware(app, max_concurrency=1, max_queue=1)  # type: ignore[arg-type]
    scope = {"type": "http", "path": "/a"}
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(limiter, scope, receive, None)
            await until(lambda: limiter.active == 1)
            with anyio.CancelScope() as waiter:
                tg.start_soon(cancel_when_queued, limiter, waiter)
                await limiter({"type": "http", "path": "/b"}, receive, None)  # type: ignore[arg-type]
            assert waiter.cancelled_caught
            assert limiter.waiting == 0
            release.set()
    assert calls == ["/a"]
    assert limiter.active == 0
    assert limiter.stats.abandoned == 1 and limiter.stats.admitted == 1


async def cancel_when_queued(limiter: ConcurrencyLimitMiddleware, scope: anyio.CancelScope) -> None:
    await until(lambda: limiter.stats.queued == 1)
    scope.cancel()


async def test_lifespan_and_websocket_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
        seen.append(scope["type"])

    limiter = ConcurrencyLimitMiddleware(app, max_concurrency=1)  # type: ignore[arg-type]
    limiter._active = 1  # saturated: HTTP would be shed
    await limiter({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    await limiter({"type": "websocket"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan", "websocket"]
    assert limiter.stats.admitted == 0 and limiter.stats.shed == 0


def test_invalid_options() -> None:
    with pytest.raises(ValueError):
        ConcurrencyLimitMiddleware(Router(), max_concurrency=0)
    with pytest.raises(ValueError):
        ConcurrencyLimitMiddleware(Router(), max_concurrency=1, max_queue=-1)


async def test_a_queued_request_whose_client_leaves_gives_its_place_and_never_runs() -> None:
    release = anyio.Event()
    ran: list[str] = []
    sent: dict[str, list[dict[str, Any]]] = {"a": [], "b": [], "c": []}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        ran.append(scope["path"])
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    limiter = ConcurrencyLimitMiddleware(app, max_concurrency=1, max_queue=1)  # type: ignore[arg-type]
    b_leaves = anyio.Event()

    def connection(name: str, leaves: anyio.Event | None = None) -> tuple[Any, Any]:
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": b"", "more_body": False}
            if leaves is not None:
                await leaves.wait()
            else:
                await anyio.sleep_forever()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent[name].append(message)

        return receive, send

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(limiter, {"type": "http", "path": "/a"}, *connection("a"))
            await until(lambda: limiter.active == 1)
            group.start_soon(limiter, {"type": "http", "path": "/b"}, *connection("b", b_leaves))
            await until(lambda: limiter.waiting == 1)
            b_leaves.set()  # B's client goes away while queued
            await until(lambda: limiter.waiting == 0)
            group.start_soon(limiter, {"type": "http", "path": "/c"}, *connection("c"))
            await until(lambda: limiter.waiting == 1)  # C is queued, not shed
            release.set()
    assert ran == ["/a", "/c"]
    assert sent["b"] == []
    assert limiter.stats == ConcurrencyStats(running=0, queued=0, admitted=2, shed=0, abandoned=1)
    assert sent["c"][0]["status"] == 200


async def test_a_queued_request_body_still_goes_through_inner_middleware() -> None:
    from asgikit.types import Message, Receive, Scope, Send

    class Upper:  # an inner middleware that transforms the request body
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            async def upper() -> Message:
                message = await receive()
                if message["type"] == "http.request":
                    message = {**message, "body": message.get("body", b"").upper()}
                return message

            await self.app(scope, upper, send)

    limiters: list[ConcurrencyLimitMiddleware] = []

    def limited(app: Any, **options: Any) -> ConcurrencyLimitMiddleware:
        limiters.append(ConcurrencyLimitMiddleware(app, **options))
        return limiters[-1]

    release = anyio.Event()
    router = Router(
        middleware=[Middleware(limited, max_concurrency=1, max_queue=4), Middleware(Upper)]
    )

    @router.post("/hold")
    async def hold(request: Request) -> str:
        await release.wait()
        return "held"

    @router.post("/echo")
    async def echo(request: Request) -> bytes:
        return await request.body()

    results: dict[str, bytes] = {}
    async with AsyncTestClient(router) as client, anyio.create_task_group() as group:

        async def call(path: str, body: bytes) -> None:
            results[path] = (await client.post(path, content=body)).content

        group.start_soon(call, "/hold", b"x")
        await until(lambda: bool(limiters) and limiters[0].active == 1)
        group.start_soon(call, "/echo", b"abc")
        await until(lambda: limiters[0].waiting == 1)  # queued behind /hold, body read ahead
        release.set()
    assert results == {"/hold": b"held", "/echo": b"ABC"}


def one_slot_held_until(release: anyio.Event) -> Router:
    """A router with one slot (four may queue) and ``GET /hold``, which keeps the slot
    until ``release`` is set."""
    limit = Middleware(ConcurrencyLimitMiddleware, max_concurrency=1, max_queue=4)
    router = Router(middleware=[limit])

    @router.get("/hold")
    async def hold(request: Request) -> str:
        await release.wait()
        return "held"

    return router


@pytest.mark.parametrize("kind", ["plain", "short stream"])
async def test_a_queued_request_takes_its_relay_out_of_the_scope(kind: str) -> None:
    # While queued, the request's receive is watched through a relay put in the scope.
    # It goes when the request is over, whatever the response: left there it would hold
    # the server's receive (a bound method of the object holding the scope: a cycle).
    release = anyio.Event()
    router = one_slot_held_until(release)

    @router.get("/queued")
    async def queued(request: Request) -> Any:
        if kind == "plain":
            return "done"

        async def chunks() -> AsyncIterator[bytes]:
            yield b"done"

        return StreamingResponse(chunks())  # over before its listener would start

    scopes: list[dict[str, Any]] = []
    sent: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message.get("body", b""))

    async def request(path: str) -> None:
        scope = http_scope(path)
        scopes.append(scope)
        await router(scope, receive_body(b""), send)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(request, "/hold")
            await anyio.sleep(0.01)
            group.start_soon(request, "/queued")
            await until(lambda: RELAY_KEY in scopes[-1])  # queued, watched
            release.set()
    assert b"done" in sent and b"held" in sent
    assert [RELAY_KEY in scope for scope in scopes] == [False, False]


async def test_a_receive_that_fails_while_queued_is_not_a_disconnect() -> None:
    # The queue's watcher reads receive to notice the client leaving. A receive that
    # raises is the server's business (as for cancel_on_disconnect's watcher): the
    # request keeps its place and is served; no ExceptionGroup comes out of the queue.
    release = anyio.Event()
    router = one_slot_held_until(release)

    @router.post("/echo")
    async def echo(request: Request) -> bytes:
        return await request.body()

    calls = 0

    async def broken_after_the_body() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            return {"type": "http.request", "body": b"abc", "more_body": False}
        raise RuntimeError("the server's receive broke")

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = http_scope("/echo", method="POST")
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(router, http_scope("/hold"), receive_body(b""), send)
            await anyio.sleep(0.01)
            group.start_soon(router, scope, broken_after_the_body, send)
            await until(lambda: calls == 2)  # read ahead while queued, then broken
            release.set()
    statuses = [message["status"] for message in sent if message["type"] == "http.response.start"]
    assert statuses == [200, 200]
    assert {"type": "http.response.body", "body": b"abc"} in sent

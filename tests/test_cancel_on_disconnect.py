"""cancel_on_disconnect: an endpoint whose client left before the response started is
cancelled (its finally runs, nothing is sent, nothing is logged), in process on asyncio
and trio, and under uvicorn and hypercorn with a real client that closes its socket."""

from __future__ import annotations

import contextlib
import logging
import socket
import textwrap
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
from _server import serving
from helpers import wait_until

from asgikit import Middleware, Request, Route, Router
from asgikit.middleware import TimeoutMiddleware
from asgikit.serving import Batcher, run_in_threadpool
from asgikit.types import ASGIApp, Message

pytestmark = pytest.mark.anyio


class Client:
    """A scripted client: sends its body chunks when asked, then disconnects on cue."""

    def __init__(self, chunks: list[bytes] | None = None) -> None:
        self.chunks = list(chunks or [b""])
        self.chunk_ready = anyio.Event()
        self.gone = anyio.Event()
        self.sent: list[Message] = []
        if len(self.chunks) <= 1:
            self.chunk_ready.set()

    async def receive(self) -> Message:
        if len(self.chunks) == 1:  # the last chunk comes when the test says so
            await self.chunk_ready.wait()
        if self.chunks:  # (unless the test took it back: then the client leaves)
            chunk = self.chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(self.chunks)}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    def leave(self) -> None:
        self.gone.set()


def http_scope(method: str = "GET", path: str = "/work") -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"test")],
    }


async def serve(app: ASGIApp, client: Client, scope: dict[str, Any]) -> None:
    await app(scope, client.receive, client.send)


@contextlib.asynccontextmanager
async def request_in_background(
    app: ASGIApp, client: Client, scope: dict[str, Any]
) -> AsyncIterator[None]:
    """Serve ``client``'s request in a task while the block runs, all under a five-second
    bound (a missing cancellation fails instead of hanging); leaving waits for the app."""
    with anyio.fail_after(5):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(serve, app, client, scope)
            yield


class Work:
    """An endpoint that waits until released, and records how it ended."""

    def __init__(self) -> None:
        self.started = anyio.Event()
        self.release = anyio.Event()
        self.ended: list[str] = []

    async def __call__(self, request: Request) -> str:
        self.started.set()
        try:
            await self.release.wait()
        except BaseException:
            self.ended.append("cancelled")
            raise
        finally:
            self.ended.append("finally")
        return "done"


async def test_disconnect_cancels_the_endpoint_and_nothing_is_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    work = Work()
    router = Router(cancel_on_disconnect=True)
    router.add_route("/work", work)
    client = Client()
    with caplog.at_level(logging.WARNING, logger="asgikit"):
        async with request_in_background(router, client, http_scope()):
            await work.started.wait()
            client.leave()
    assert work.ended == ["cancelled", "finally"]
    assert client.sent == []
    assert caplog.records == []


async def test_a_request_after_the_watching_timer_went_idle_is_watched_again(
    anyio_backend: str,
) -> None:
    # The loop's watching timer stops when it has nothing to watch (asyncio); the next
    # request must start it again, or a disconnect would go unnoticed.
    from asgikit._dispatch import _WATCHING

    router = Router(cancel_on_disconnect=True)
    works = [Work(), Work()]
    router.add_route("/work/0", works[0])
    router.add_route("/work/1", works[1])
    for number, work in enumerate(works):
        client = Client()
        async with request_in_background(router, client, http_scope(path=f"/work/{number}")):
            await work.started.wait()
            client.leave()
        assert work.ended == ["cancelled", "finally"]
        assert client.sent == []
        if anyio_backend == "asyncio":
            with anyio.fail_after(5):  # until the timer found nothing to watch and stopped
                while _WATCHING.here.state.bound is not None:
                    await anyio.sleep(0.001)


async def test_off_by_default_the_endpoint_finishes() -> None:
    work = Work()
    router = Router([Route("/work", work)])
    client = Client()
    async with request_in_background(router, client, http_scope()):
        await work.started.wait()
        client.leave()
        await anyio.sleep(0.01)  # give a (wrong) cancellation every chance to land
        work.release.set()
    assert work.ended == ["finally"]
    assert client.sent[0]["status"] == 200


@pytest.mark.parametrize(
    ("router_setting", "route_setting", "cancelled"),
    [(False, True, True), (True, False, False), (True, None, True), (False, None, False)],
)
async def test_route_setting_overrides_the_router(
    router_setting: bool, route_setting: bool | None, cancelled: bool
) -> None:
    work = Work()
    router = Router(cancel_on_disconnect=router_setting)
    router.get("/work", cancel_on_disconnect=route_setting)(work)
    client = Client()
    async with request_in_background(router, client, http_scope()):
        await work.started.wait()
        client.leave()
        if not cancelled:
            await anyio.sleep(0.01)  # give a (wrong) cancellation every chance to land
            work.release.set()
        # Expected to be cancelled: never released, so only the cancellation ends it
        # (fail_after turns a missing cancellation into a failure, not a hang).
    assert ("cancelled" in work.ended) is cancelled
    assert bool(client.sent) is not cancelled


async def test_body_read_after_the_watch_started_is_intact() -> None:
    bodies: list[bytes] = []
    router = Router(cancel_on_disconnect=True)

    @router.post("/work")
    async def upload(request: Request) -> str:
        await anyio.sleep(0)  # suspend: the watcher starts and reads ahead
        await anyio.sleep(0)
        bodies.append(await request.body())
        return "ok"

    client = Client([b"ab", b"cd", b"ef"])
    client.chunk_ready.set()
    with anyio.fail_after(5):
        await serve(router, client, http_scope("POST"))
    assert bodies == [b"abcdef"]
    assert client.sent[0]["status"] == 200


async def wait_noting_the_end(events: list[str]) -> str:
    """An endpoint's wait that only a cancellation ends; its ``finally`` is noted."""
    try:
        await anyio.sleep_forever()
    finally:
        events.append("finally")
    return "never"


async def test_endpoint_reading_the_body_is_not_raced_then_is_watched() -> None:
    events: list[str] = []
    body_read = anyio.Event()
    router = Router(cancel_on_disconnect=True)

    @router.post("/work")
    async def upload(request: Request) -> str:
        body = await request.body()  # first suspension: inside the body read
        events.append(body.decode())
        body_read.set()
        return await wait_noting_the_end(events)

    client = Client([b"first ", b"second"])
    async with request_in_background(router, client, http_scope("POST")):
        await anyio.sleep(0.01)
        client.chunk_ready.set()  # the endpoint is waiting for this one
        await body_read.wait()
        client.leave()
    assert events == ["first second", "finally"]
    assert client.sent == []


async def test_an_endpoint_that_stopped_reading_part_way_is_watched() -> None:
    """A ``break`` out of ``stream()`` leaves the body unfinished but no read waiting on
    ``receive``: the watcher starts, and the client leaving cancels the endpoint."""
    events: list[str] = []
    first_read = anyio.Event()
    router = Router(cancel_on_disconnect=True)

    @router.post("/work")
    async def upload(request: Request) -> str:
        async for chunk in request.stream():
            events.append(chunk.decode())
            break
        first_read.set()
        return await wait_noting_the_end(events)

    client = Client([b"first", b"never read"])
    async with request_in_background(router, client, http_scope("POST")):
        await first_read.wait()
        client.chunks.clear()  # the rest never comes: the client leaves instead
        client.chunk_ready.set()
        client.leave()
    assert events == ["first", "finally"]
    assert client.sent == []


async def test_disconnect_during_the_body_read_is_a_quiet_client_disconnect() -> None:
    router = Router(cancel_on_disconnect=True)
    reached: list[str] = []

    @router.post("/work")
    async def upload(request: Request) -> str:
        try:
            await request.body()
        finally:
            reached.append("finally")
        return "never"

    client = Client([b"first ", b"never sent"])
    async with request_in_background(router, client, http_scope("POST")):
        await anyio.sleep(0.01)
        client.chunks.clear()  # the rest never comes: the client leaves instead
        client.chunk_ready.set()
        client.leave()
    assert reached == ["finally"]
    assert client.sent == []


async def test_a_fast_endpoint_answers_without_any_watcher(anyio_backend: str) -> None:
    router = Router(cancel_on_disconnect=True)

    @router.get("/work")
    async def fast(request: Request) -> str:
        return "fast"

    client = Client()
    scope = http_scope()
    with anyio.fail_after(5):
        await serve(router, client, scope)
    assert client.sent[1]["body"] == b"fast"
    if anyio_backend == "asyncio":  # never suspended: nothing was set up
        assert "asgikit.receive_relay" not in scope


async def test_an_awaited_batcher_call_is_withdrawn() -> None:
    batches: list[list[str]] = []
    model_free = anyio.Event()

    async def predict(items: list[str]) -> list[str]:
        batches.append(items)
        if "busy" in items:
            await model_free.wait()  # a batch is running: the client's call queues
        return items

    batcher = Batcher(predict, max_batch_size=8, max_wait=60)
    entered = anyio.Event()
    router = Router(cancel_on_disconnect=True)

    @router.get("/work")
    async def infer(request: Request) -> str:
        entered.set()
        return await batcher("from the client that leaves")

    client = Client()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(batcher, "busy")
            while not batches:
                await anyio.sleep(0.001)
            task_group.start_soon(serve, router, client, http_scope())
            await entered.wait()
            while batcher.stats.queued < 1:
                await anyio.sleep(0.001)
            client.leave()
            while batcher.stats.queued:  # withdrawn from the queue
                await anyio.sleep(0.001)
            model_free.set()
        await batcher.aclose()
    assert batches == [["busy"]]  # the withdrawn call never reached the model
    assert batcher.stats.cancelled == 1
    assert client.sent == []


async def test_sync_endpoint_stops_being_waited_for_and_its_result_is_dropped(
    anyio_backend: str,
) -> None:
    started = threading.Event()
    release = threading.Event()
    router = Router(cancel_on_disconnect=True)

    @router.get("/work")
    def blocking(request: Request) -> str:
        started.set()
        release.wait(5)
        return "too late"

    client = Client()
    answered = anyio.Event()

    async def serve_then_note() -> None:
        await serve(router, client, http_scope())
        answered.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(serve_then_note)
            while not started.is_set():
                await anyio.sleep(0.001)
            client.leave()
            # The request is over while the thread still runs (Python cannot stop it).
            await answered.wait()
            assert not release.is_set()
            release.set()
    assert client.sent == []


async def leave_once_started(
    task_group: anyio.abc.TaskGroup, app: ASGIApp, client: Client, started: threading.Event
) -> None:
    """Serve ``client``'s request in ``task_group``; the client leaves once the endpoint's
    thread has started (the caller's ``fail_after`` bounds the wait)."""
    task_group.start_soon(serve, app, client, http_scope())
    while not started.is_set():
        await anyio.sleep(0.001)
    client.leave()


async def test_an_awaited_run_in_threadpool_call_stops_waiting(anyio_backend: str) -> None:
    started = threading.Event()
    release = threading.Event()
    ended: list[str] = []
    router = Router(cancel_on_disconnect=True)

    def blocking() -> str:
        started.set()
        release.wait(5)
        return "too late"

    @router.get("/work")
    async def offloads(request: Request) -> str:
        try:
            return await run_in_threadpool(blocking)
        finally:
            ended.append("finally")

    client = Client()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as task_group:
            await leave_once_started(task_group, router, client, started)
            while not ended:  # the finally runs while the thread still waits
                await anyio.sleep(0.001)
            assert not release.is_set()
            release.set()
    assert client.sent == []


@pytest.mark.parametrize("anyio_backend", ["trio"])  # (asyncio: a native cancellation)
async def test_asgikit_thread_work_is_still_waited_for(anyio_backend: str) -> None:
    # Under the cancel scope that stops a run_in_threadpool wait, an UploadFile write
    # still runs to its end before the endpoint's cancellation goes on: the file is
    # closed after it, never under it.
    from asgikit import UploadFile

    started = threading.Event()
    release = threading.Event()
    ended: list[str] = []

    class SlowFile:
        closed = False

        def write(self, data: bytes) -> int:
            started.set()
            release.wait(5)
            ended.append("write")
            return len(data)

        def tell(self) -> int:
            return 0

    router = Router(cancel_on_disconnect=True)

    @router.get("/work")
    async def writes(request: Request) -> str:
        upload = UploadFile(SlowFile(), filename="f")  # type: ignore[arg-type]
        try:
            await upload.write(b"data")
        finally:
            ended.append("finally")
        return "written"

    client = Client()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as task_group:
            await leave_once_started(task_group, router, client, started)
            await anyio.sleep(0.05)
            assert ended == []  # still waiting for the write
            release.set()
    assert ended == ["write", "finally"]
    assert client.sent == []


async def test_other_cancellations_still_win_timeout_middleware() -> None:
    work = Work()
    router = Router(
        [Route("/work", work)],
        cancel_on_disconnect=True,
        middleware=[Middleware(TimeoutMiddleware, timeout=0.05)],
    )
    client = Client()  # stays connected: the timeout, not a disconnect, ends the endpoint
    with anyio.fail_after(5):
        await serve(router, client, http_scope())
    assert work.ended == ["cancelled", "finally"]
    assert client.sent[0]["status"] == 504


async def test_other_cancellations_still_wait_for_the_thread(anyio_backend: str) -> None:
    # Only the client leaving ends a run_in_threadpool wait early: a timeout (the
    # middleware's, or a scope in the endpoint) waits for the thread as without the
    # setting, and so does a task the endpoint starts elsewhere.
    released = threading.Event()
    events: list[str] = []

    def blocking(name: str) -> None:
        released.wait(0.3)
        events.append(f"{name} thread returned")

    async def timed(name: str) -> None:
        with anyio.move_on_after(0.01):
            await run_in_threadpool(blocking, name)
        events.append(f"{name} wait over")

    async with anyio.create_task_group() as app_tasks:
        router = Router(
            cancel_on_disconnect=True, middleware=[Middleware(TimeoutMiddleware, timeout=0.02)]
        )

        @router.get("/scope")
        async def in_a_scope(request: Request) -> str:
            await timed("scope")
            app_tasks.start_soon(timed, "task")
            return "ok"

        @router.get("/timeout")
        async def timed_out(request: Request) -> str:
            try:
                await run_in_threadpool(blocking, "timeout")
            finally:
                events.append("timeout finally")
            return "too late"

        with anyio.fail_after(5):
            await serve(router, Client(), http_scope(path="/scope"))
            client = Client()
            await serve(router, client, http_scope(path="/timeout"))
    assert client.sent[0]["status"] == 504
    for name in ("scope", "task"):  # each wait ended after its thread returned
        assert events.index(f"{name} thread returned") < events.index(f"{name} wait over")
    assert events.index("timeout thread returned") < events.index("timeout finally")


async def test_a_timed_out_endpoint_calling_threads_in_a_loop_ends(anyio_backend: str) -> None:
    # A cancellation under way wins over a new call: it is not hidden by the shield that
    # keeps a timeout from abandoning a thread already running. (5,000 thread hops take
    # far longer than the 50 ms deadline; a loop that ran them all was never stopped.)
    finished: list[str] = []
    timing_out = Router(
        cancel_on_disconnect=True, middleware=[Middleware(TimeoutMiddleware, timeout=0.05)]
    )
    router = Router(cancel_on_disconnect=True)

    async def hops(name: str) -> None:
        for _ in range(5_000):
            await run_in_threadpool(int)
        finished.append(name)

    @timing_out.get("/loop")
    async def timed_out(request: Request) -> str:
        await hops("timed out")
        return "too late"

    @router.get("/moves-on")
    async def moves_on(request: Request) -> str:
        with anyio.move_on_after(0.05):
            await hops("moved on")
        return "moved on"

    first, second = Client(), Client()
    with anyio.fail_after(30):
        await serve(timing_out, first, http_scope(path="/loop"))
        await serve(router, second, http_scope(path="/moves-on"))
    assert first.sent[0]["status"] == 504
    assert (second.sent[0]["status"], second.sent[1]["body"]) == (200, b"moved on")
    assert finished == []


async def test_tasks_outliving_a_request_whose_client_left_run_their_threads(
    anyio_backend: str,
) -> None:
    # Tasks started by the endpoint copy its context: after the request they (and their
    # own tasks, which may reuse the request task's id) wait for their threads as usual.
    calls: list[int] = []
    client = Client()

    async def job(index: int) -> None:
        await run_in_threadpool(calls.append, index)

    async def worker() -> None:
        await client.gone.wait()
        await anyio.sleep(0.01)  # the request is over
        async with anyio.create_task_group() as jobs:
            for index in range(200):
                jobs.start_soon(job, index)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as app_tasks:
            router = Router(cancel_on_disconnect=True)

            @router.get("/work")
            async def starts_a_worker(request: Request) -> str:
                app_tasks.start_soon(worker)
                await anyio.sleep(5)
                return "too late"

            app_tasks.start_soon(serve, router, client, http_scope())
            await anyio.sleep(0.05)
            client.leave()
    assert sorted(calls) == list(range(200))
    assert client.sent == []


async def test_many_requests_only_those_whose_client_left_are_cancelled(
    anyio_backend: str,
) -> None:
    # Requests of one loop are watched together (one timer per loop on asyncio): each
    # disconnect cancels its own endpoint and no other, and nothing is left running.
    tasks_before = _asyncio_tasks(anyio_backend)
    works = [Work() for _ in range(6)]
    router = Router(cancel_on_disconnect=True)
    for number, work in enumerate(works):
        router.add_route(f"/work/{number}", work)
    clients = [Client() for _ in works]
    with anyio.fail_after(5):
        async with anyio.create_task_group() as task_group:
            for number, client in enumerate(clients):
                task_group.start_soon(serve, router, client, http_scope(path=f"/work/{number}"))
            for work in works:
                await work.started.wait()
            await anyio.sleep(0.01)  # long enough for every watcher to have started
            for client in clients[::2]:
                client.leave()
            for work in works[::2]:
                while "finally" not in work.ended:
                    await anyio.sleep(0.001)
            for work in works[1::2]:
                assert work.ended == []  # still running: its client is still there
                work.release.set()
    for work, client in zip(works[::2], clients[::2], strict=True):
        assert work.ended == ["cancelled", "finally"]
        assert client.sent == []
    for work, client in zip(works[1::2], clients[1::2], strict=True):
        assert work.ended == ["finally"]
        assert client.sent[0]["status"] == 200
        assert client.sent[1]["body"] == b"done"
    with anyio.fail_after(5):  # the watchers were stopped with their requests
        while _asyncio_tasks(anyio_backend) != tasks_before:
            await anyio.sleep(0.001)


def _asyncio_tasks(anyio_backend: str) -> set[object]:
    if anyio_backend != "asyncio":
        return set()
    import asyncio

    return set(asyncio.all_tasks())


async def test_an_endpoint_that_waited_then_answers_is_sent_in_full(anyio_backend: str) -> None:
    # Waits past the moment its watcher starts, then answers: sent as usual.
    router = Router(cancel_on_disconnect=True)

    @router.get("/work")
    async def slowish(request: Request) -> str:
        await anyio.sleep(0.01)
        return "answer"

    client = Client()
    with anyio.fail_after(5):
        await serve(router, client, http_scope())
        await serve(router, client, http_scope())  # again, on the same loop
    assert [message.get("body") for message in client.sent[1::2]] == [b"answer", b"answer"]


# ------------------------------------------------------------------ real servers

APP = textwrap.dedent(
    """
    import threading
    from pathlib import Path

    import anyio
    from asgikit import Router
    from asgikit.serving import run_in_threadpool

    RELEASE = threading.Event()  # lets the thread of /slow-thread end (at teardown)

    MARKS = Path(__file__).parent / "marks"
    router = Router(cancel_on_disconnect=True)


    @router.get("/slow")
    async def slow(request):
        (MARKS / "started").touch()
        try:
            await anyio.sleep(60)
        finally:
            (MARKS / "finally").touch()
        return "too late"


    @router.get("/slow-thread")
    async def slow_thread(request):
        (MARKS / "started").touch()
        try:
            await run_in_threadpool(RELEASE.wait, 30)
        finally:
            (MARKS / "finally").touch()
        return "too late"


    @router.get("/release")
    def release(request):
        RELEASE.set()
        return "released"
    """
)

# The servers that run it (tests/_server.py commands): plain ``uvicorn`` picks httptools;
# hypercorn on trio too.
SERVERS = {
    "hypercorn": "hypercorn",
    "hypercorn-trio": "hypercorn-trio",
    "uvicorn": "uvicorn-httptools",
}


@pytest.fixture(params=sorted(SERVERS))
def slow_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """Serve the slow app on a free port of 127.0.0.1; always stopped by its PID."""
    (tmp_path / "slow_app.py").write_text(APP)
    marks = tmp_path / "marks"
    marks.mkdir()
    with serving(
        SERVERS[request.param], "slow_app:router", tmp_dir=tmp_path, cwd=tmp_path
    ) as server:
        yield server.port, marks


def test_real_client_closing_its_socket_cancels_the_endpoint(
    slow_server: tuple[int, Path],
) -> None:
    port, marks = slow_server
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert wait_until((marks / "started").exists), "the endpoint never started"
    # The socket is closed: the server reports http.disconnect, the endpoint is cancelled.
    assert wait_until((marks / "finally").exists), "the endpoint's finally did not run"


def test_real_client_leaving_stops_the_wait_for_a_thread(slow_server: tuple[int, Path]) -> None:
    port, marks = slow_server
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
            connection.sendall(b"GET /slow-thread HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert wait_until((marks / "started").exists), "the endpoint never started"
        # The thread waits for /release (30 s at most): the finally runs long before.
        assert wait_until((marks / "finally").exists), "the endpoint's finally did not run"
    finally:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
            connection.sendall(b"GET /release HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert connection.recv(65536).startswith(b"HTTP/1.1 200")


def test_two_loops_in_two_threads_each_cancel_their_own_endpoint() -> None:
    # The watching timer is per loop, found through the thread (asgikit._tasks): two
    # servers' loops in two threads, one router, each disconnect cancels its own request.
    router = Router(cancel_on_disconnect=True)
    works = {name: Work() for name in ("a", "b")}
    both_started = threading.Barrier(2, timeout=10)
    for name, work in works.items():
        router.add_route(f"/{name}", work)
    errors: list[BaseException] = []

    def serve_in_thread(name: str) -> None:
        async def main() -> None:
            client = Client()
            async with request_in_background(router, client, http_scope(path=f"/{name}")):
                await works[name].started.wait()
                await anyio.to_thread.run_sync(both_started.wait)
                client.leave()
            assert client.sent == []

        try:
            anyio.run(main)
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=serve_in_thread, args=(name,)) for name in works]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=15)
    assert not errors
    assert all(work.ended == ["cancelled", "finally"] for work in works.values())

"""MetricsMiddleware, metrics_endpoint and the serving collectors, read back from a registry."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import httpx
import pytest
from _uvicorn import run_uvicorn
from helpers import Recorder, http_scope, never_disconnects, receive_body, send_nothing
from prometheus_client import CollectorRegistry

from asgikit import FileResponse, Middleware, Mount, Router, StreamingResponse
from asgikit.middleware import ConcurrencyLimitMiddleware, MetricsMiddleware
from asgikit.middleware.metrics import (
    metrics_endpoint,
    register_batcher,
    register_concurrency_limit,
)
from asgikit.serving import Batcher, Overloaded
from asgikit.testing import AsyncTestClient, TestClient
from asgikit.types import Receive, Scope, Send

ROOT = Path(__file__).resolve().parent.parent


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


async def tagged_app(scope: Scope, receive: Receive, send: Send) -> None:
    """A plain ASGI app that records its own route, as the Router does."""
    if scope["type"] != "http":
        return  # lifespan: nothing to set up
    if scope["path"].startswith("/users/"):
        scope["route"] = SimpleNamespace(path_format="/users/{user_id}")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


def test_requests_are_labelled_by_the_route_template() -> None:
    registry = CollectorRegistry()
    app = MetricsMiddleware(tagged_app, registry=registry)
    with TestClient(app) as client:
        for user_id in range(5):
            assert client.get(f"/users/{user_id}").text == "hello"
        client.post("/users/9")
        client.get("/nothing/here")
    labels = {"method": "GET", "route": "/users/{user_id}"}
    assert sample(registry, "asgikit_requests_total", status="200", **labels) == 5
    assert sample(registry, "asgikit_request_duration_seconds_count", **labels) == 5
    assert sample(registry, "asgikit_response_size_bytes_sum", **labels) == 25
    assert (
        sample(
            registry,
            "asgikit_requests_total",
            method="POST",
            route="/users/{user_id}",
            status="200",
        )
        == 1
    )
    unmatched = {"method": "GET", "route": "<unmatched>", "status": "200"}
    assert sample(registry, "asgikit_requests_total", **unmatched) == 1
    assert sample(registry, "asgikit_requests_in_progress", method="GET") == 0
    # Not streamed: no stream series.
    assert sample(registry, "asgikit_stream_chunks_count", **labels) is None


def test_a_404_scan_is_one_series() -> None:
    registry = CollectorRegistry()
    router = Router(middleware=[Middleware(MetricsMiddleware, registry=registry)])
    router.add_route("/hello", lambda request: "hi")
    with TestClient(router) as client:
        for index in range(50):
            assert client.get(f"/scan/{index}/.env").status_code == 404
        assert client.request("PROPFIND", "/x").status_code == 404
    series = [
        sample_
        for metric in registry.collect()
        if metric.name == "asgikit_requests"
        for sample_ in metric.samples
        if sample_.name == "asgikit_requests_total"
    ]
    assert [(s.labels, s.value) for s in series] == [
        ({"method": "GET", "route": "<unmatched>", "status": "404"}, 50.0),
        ({"method": "OTHER", "route": "<unmatched>", "status": "404"}, 1.0),
    ]


def test_in_progress_counts_the_running_request() -> None:
    registry = CollectorRegistry()
    seen: list[float | None] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        seen.append(sample(registry, "asgikit_requests_in_progress", method="PUT"))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    with TestClient(MetricsMiddleware(app, registry=registry)) as client:
        client.put("/")
    assert seen == [1.0]
    assert sample(registry, "asgikit_requests_in_progress", method="PUT") == 0


def test_streamed_responses_record_chunks_and_stream_duration() -> None:
    registry = CollectorRegistry()
    router = Router(middleware=[Middleware(MetricsMiddleware, registry=registry)])

    async def tokens() -> Any:
        for word in ["one ", "two ", "three"]:
            yield word

    async def generate(request: Any) -> StreamingResponse:
        request.scope["route"] = SimpleNamespace(path_format="/generate")
        return StreamingResponse(tokens(), media_type="text/plain")

    router.add_route("/generate", generate)
    with TestClient(router) as client:
        assert client.get("/generate").text == "one two three"
    labels = {"method": "GET", "route": "/generate"}
    assert sample(registry, "asgikit_stream_chunks_count", **labels) == 1
    assert sample(registry, "asgikit_stream_chunks_sum", **labels) == 3
    assert sample(registry, "asgikit_stream_duration_seconds_count", **labels) == 1
    assert sample(registry, "asgikit_response_size_bytes_sum", **labels) == 13


def test_an_error_before_the_response_is_a_500() -> None:
    registry = CollectorRegistry()

    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        raise RuntimeError("model crashed")

    app = MetricsMiddleware(broken, registry=registry)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/").status_code == 500
    labels = {"method": "GET", "route": "<unmatched>"}
    assert sample(registry, "asgikit_requests_total", status="500", **labels) == 1


@pytest.mark.anyio
async def test_a_request_cancelled_before_answering_is_a_499() -> None:
    registry = CollectorRegistry()
    entered = anyio.Event()

    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        entered.set()
        await anyio.sleep_forever()

    app = MetricsMiddleware(slow, registry=registry)
    async with anyio.create_task_group() as group:
        group.start_soon(app, http_scope(), never_disconnects, send_nothing)
        await entered.wait()
        group.cancel_scope.cancel()
    labels = {"method": "GET", "route": "<unmatched>"}
    assert sample(registry, "asgikit_requests_total", status="499", **labels) == 1
    assert sample(registry, "asgikit_requests_in_progress", method="GET") == 0


def test_middleware_sharing_a_registry_share_the_metrics() -> None:
    registry = CollectorRegistry()
    first = MetricsMiddleware(tagged_app, registry=registry)
    second = MetricsMiddleware(tagged_app, registry=registry)  # no "duplicated timeseries"
    other = MetricsMiddleware(tagged_app, registry=registry, namespace="edge")
    for app in (first, second, other):
        with TestClient(app) as client:
            client.get("/users/1")
    labels = {"method": "GET", "route": "/users/{user_id}", "status": "200"}
    assert sample(registry, "asgikit_requests_total", **labels) == 2
    assert sample(registry, "edge_requests_total", **labels) == 1


def test_metrics_endpoint_answers_at_the_exact_path() -> None:
    registry = CollectorRegistry()
    router = Router(middleware=[Middleware(MetricsMiddleware, registry=registry)])
    router.add_route("/metrics", metrics_endpoint(registry))
    router.add_route("/hello", lambda request: "hi")
    with TestClient(router, follow_redirects=False) as client:
        client.get("/hello")
        response = client.get("/metrics")
        assert response.status_code == 200  # a route, not a mount: no 307 to /metrics/
        assert response.headers["content-type"].startswith("text/plain; version=")
        assert "asgikit_requests_total{" in response.text
        assert "# TYPE asgikit_request_duration_seconds histogram" in response.text
        openmetrics = client.get(
            "/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"}
        )
        assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
        assert openmetrics.text.endswith("# EOF\n")


def test_importing_the_middleware_does_not_need_prometheus_client() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["prometheus_client"] = None  # as if it were not installed
        from asgikit.middleware import MetricsMiddleware
        try:
            MetricsMiddleware(lambda scope, receive, send: None)
        except ImportError as exc:
            print(exc)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "'metrics' extra" in result.stdout and "[metrics]" in result.stdout


# Batcher and ConcurrencyLimitMiddleware, read at scrape time.


@pytest.mark.anyio
async def test_batcher_queue_depth_is_a_gauge() -> None:
    registry = CollectorRegistry()
    release = anyio.Event()

    async def held(items: list[int]) -> list[int]:
        await release.wait()
        return items

    batcher = Batcher(held, max_batch_size=4, max_wait=10.0)
    register_batcher(batcher, "echo", registry=registry)
    async with anyio.create_task_group() as group:
        group.start_soon(batcher, -1)  # the model is idle: this one runs at once
        with anyio.fail_after(5):
            while batcher.stats.running < 1:
                await anyio.sleep(0.001)
            for item in range(3):  # these queue behind the running batch
                group.start_soon(batcher, item)
            while batcher.queued < 3:
                await anyio.sleep(0.001)
        assert sample(registry, "asgikit_batcher_queued", batcher="echo") == 3
        release.set()
        group.cancel_scope.cancel()
    await batcher.aclose()


def _has_stats(owner: object, *fields: str) -> bool:
    stats = getattr(owner, "stats", None)
    return stats is not None and all(hasattr(stats, field) for field in fields)


@pytest.mark.anyio
async def test_batcher_counts_batches_items_and_sheds() -> None:
    registry = CollectorRegistry()
    release = anyio.Event()

    async def held(items: list[int]) -> list[int]:
        await release.wait()
        return items

    batcher = Batcher(held, max_batch_size=2, max_wait=0.01, max_queue=2)
    if not _has_stats(batcher, "batches", "items", "shed", "timed_out", "running"):
        pytest.xfail("needs Batcher.stats")
    register_batcher(batcher, "echo", registry=registry)
    results: list[int] = []
    shed = 0

    async def call(item: int) -> None:
        nonlocal shed
        try:
            results.append(await batcher(item))
        except Overloaded:
            shed += 1

    async with anyio.create_task_group() as group:
        group.start_soon(call, 0)  # the model is idle: this one runs at once
        with anyio.fail_after(5):
            while batcher.stats.running < 1:
                await anyio.sleep(0.001)
            for item in range(1, 4):  # two queue, the third is shed
                group.start_soon(call, item)
            while shed < 1:
                await anyio.sleep(0.001)
        release.set()
    await batcher.aclose()
    assert shed == 1 and len(results) == 3  # which one is shed depends on task order
    assert sample(registry, "asgikit_batcher_items_total", batcher="echo") == 3
    assert sample(registry, "asgikit_batcher_batches_total", batcher="echo") == 2
    assert sample(registry, "asgikit_batcher_shed_total", batcher="echo") == 1
    assert sample(registry, "asgikit_batcher_timed_out_total", batcher="echo") == 0
    assert sample(registry, "asgikit_batcher_running", batcher="echo") == 0


@pytest.mark.anyio
async def test_concurrency_limit_load_is_exposed() -> None:
    registry = CollectorRegistry()
    release = anyio.Event()
    inside = anyio.Event()

    async def held(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        inside.set()
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})

    limit = ConcurrencyLimitMiddleware(held, max_concurrency=1, max_queue=1)
    register_concurrency_limit(limit, "models", registry=registry)
    statuses: list[int] = []
    async with AsyncTestClient(limit) as client, anyio.create_task_group() as group:

        async def get() -> None:
            statuses.append((await client.get("/")).status_code)

        group.start_soon(get)
        await inside.wait()
        group.start_soon(get)
        with anyio.fail_after(5):
            while limit.waiting < 1:
                await anyio.sleep(0.001)
        assert sample(registry, "asgikit_concurrency_limit_active", limit="models") == 1
        assert sample(registry, "asgikit_concurrency_limit_waiting", limit="models") == 1
        assert (await client.get("/")).status_code == 503  # shed at once
        release.set()
    assert sorted(statuses) == [200, 200]
    assert sample(registry, "asgikit_concurrency_limit_active", limit="models") == 0
    if not _has_stats(limit, "shed"):
        pytest.xfail("needs ConcurrencyLimitMiddleware.stats")
    assert sample(registry, "asgikit_concurrency_limit_shed_total", limit="models") == 1


# Route identity from the Router itself (scope["route"], see API.md "Added in 0.2").


def _route_counts(registry: CollectorRegistry) -> dict[str, float]:
    return {
        sample_.labels["route"]: sample_.value
        for metric in registry.collect()
        if metric.name == "asgikit_requests"
        for sample_ in metric.samples
        if sample_.name == "asgikit_requests_total"
    }


def _assert_route_counts(registry: CollectorRegistry, expected: dict[str, float]) -> None:
    assert _route_counts(registry) == expected


def test_router_routes_are_labelled_by_template() -> None:
    registry = CollectorRegistry()
    router = Router(middleware=[Middleware(MetricsMiddleware, registry=registry)])

    @router.get("/users/{user_id:int}")
    async def user(request: Any) -> dict[str, int]:
        return {"id": request.path_params["user_id"]}

    with TestClient(router) as client:
        for user_id in (1, 2, 3):
            assert client.get(f"/users/{user_id}").json() == {"id": user_id}
        assert client.get("/users/not-a-number").status_code == 404
    _assert_route_counts(registry, {"/users/{user_id}": 3, "<unmatched>": 1})


def test_mounted_routes_carry_the_mount_prefix() -> None:
    registry = CollectorRegistry()
    sub = Router()

    @sub.get("/users/{user_id:int}")
    async def user(request: Any) -> dict[str, int]:
        return {"id": request.path_params["user_id"]}

    app = MetricsMiddleware(Router(routes=[Mount("/api/v2", sub)]), registry=registry)
    with TestClient(app) as client:
        assert client.get("/api/v2/users/7").json() == {"id": 7}
    _assert_route_counts(registry, {"/api/v2/users/{user_id}": 1})


# Several worker processes: PROMETHEUS_MULTIPROC_DIR, two uvicorn workers, one scrape.

MULTIPROCESS_APP = """
import os

from asgikit import Middleware, Router
from asgikit.middleware import MetricsMiddleware
from asgikit.middleware.metrics import metrics_endpoint

router = Router(middleware=[Middleware(MetricsMiddleware)])
router.add_route("/metrics", metrics_endpoint())


@router.get("/pid")
async def pid(request):
    request.scope.setdefault("route", type("Tag", (), {"path_format": "/pid"})())
    return str(os.getpid())
"""


def test_two_uvicorn_workers_are_counted_together(tmp_path: Path) -> None:
    (tmp_path / "multiapp.py").write_text(MULTIPROCESS_APP)
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    with run_uvicorn("multiapp:router", app_dir=tmp_path, workers=2, env=env) as url:
        pids: dict[str, int] = {}
        deadline = time.monotonic() + 60
        # A new connection per request, so both workers get some.
        with httpx.Client(base_url=url, limits=httpx.Limits(max_keepalive_connections=0)) as c:
            while (len(pids) < 2 or sum(pids.values()) < 40) and time.monotonic() < deadline:
                pid = c.get("/pid").text
                pids[pid] = pids.get(pid, 0) + 1
            assert len(pids) == 2, f"one worker answered everything: {pids}"
            exposition = c.get("/metrics").text
    served = sum(pids.values())
    line = f'asgikit_requests_total{{method="GET",route="/pid",status="200"}} {float(served)}'
    assert line in exposition.splitlines(), exposition


@pytest.mark.anyio
async def test_a_file_the_server_sends_counts_its_size(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    path = tmp_path / "weights.bin"
    path.write_bytes(b"w" * 1000)
    app = MetricsMiddleware(FileResponse(path), registry=registry)
    scope = http_scope("/weights.bin", extensions={"http.response.pathsend": {}})
    send = Recorder()
    with anyio.fail_after(5):
        await app(scope, receive_body(), send)
    assert send.types == [
        "http.response.start",
        "http.response.pathsend",
    ]
    labels = {"method": "GET", "route": "<unmatched>"}
    assert sample(registry, "asgikit_response_size_bytes_sum", **labels) == 1000

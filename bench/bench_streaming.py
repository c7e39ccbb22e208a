"""Streaming 1,000 small chunks and 1,000 SSE events: asgikit vs Starlette vs sse-starlette
vs raw ASGI, in process; then GET /hello latency beside never-awaiting streams (uvicorn).

Every app is driven through its own router (asgikit `Router`, Starlette `Starlette`) with a
uvicorn-like scope (ASGI spec 2.3, so Starlette listens for disconnects as asgikit always
does) and a ``send`` that only counts messages. Rounds alternate between the apps; each
round yields one chunks-per-second figure per app, and the table reports the median of the
per-round ratios (absolute speed drifts on shared machines, ratios measured in one run do
not).

Last, ``hello_beside_streams``: uvicorn (one worker, 127.0.0.1, a free port, stopped by
its PID) serves bench/busy_app.py; four client threads keep reading NDJSON streams over
100,000 in-memory rows (an iterator that never awaits) while one client times sequential
``GET /hello`` requests. Reported: /hello p50/p99 alone and beside the four streams.

    .venv/bin/python bench/bench_streaming.py [--rounds 15] [--requests 20] [--hellos 400]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from sse_starlette.sse import EventSourceResponse as SSEStarletteResponse
from starlette.applications import Starlette
from starlette.responses import StreamingResponse as StarletteStreamingResponse
from starlette.routing import Route as StarletteRoute

from asgikit import EventSourceResponse, Router, StreamingResponse

BENCH = Path(__file__).resolve().parent
CHUNKS = 1000
CHUNK = b"token "
TOKEN = "token"

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


async def byte_chunks() -> AsyncIterator[bytes]:
    for _ in range(CHUNKS):
        yield CHUNK


async def str_tokens() -> AsyncIterator[str]:
    for _ in range(CHUNKS):
        yield TOKEN


# --- asgikit -------------------------------------------------------------------------
asgikit_app = Router()


@asgikit_app.get("/stream")
async def asgikit_stream(request: Any) -> StreamingResponse:
    return StreamingResponse(byte_chunks(), media_type="text/plain")


@asgikit_app.get("/sse")
async def asgikit_sse(request: Any) -> EventSourceResponse:
    return EventSourceResponse(str_tokens())


# --- Starlette / sse-starlette --------------------------------------------------------
async def starlette_stream(request: Any) -> StarletteStreamingResponse:
    return StarletteStreamingResponse(byte_chunks(), media_type="text/plain")


async def starlette_sse(request: Any) -> SSEStarletteResponse:
    return SSEStarletteResponse(str_tokens())


starlette_app = Starlette(
    routes=[StarletteRoute("/stream", starlette_stream), StarletteRoute("/sse", starlette_sse)]
)


# --- raw ASGI: the floor, no disconnect watching ---------------------------------------
async def raw_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["path"] == "/stream":
        headers = [(b"content-type", b"text/plain; charset=utf-8")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        async for chunk in byte_chunks():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    else:
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        async for token in str_tokens():
            body = ("data: " + token + "\n\n").encode()
            await send({"type": "http.response.body", "body": body, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def make_scope(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"bench")],
        "client": ("127.0.0.1", 5000),
        "server": ("bench", 80),
        "state": {},
    }


async def run_requests(app: App, path: str, requests: int) -> float:
    """Seconds to serve ``requests`` streaming requests one after the other."""
    messages = 0
    never = asyncio.Event()  # the client never disconnects

    async def receive() -> dict[str, Any]:
        await never.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal messages
        messages += 1

    started = time.perf_counter()
    for _ in range(requests):
        await app(make_scope(path), receive, send)
    elapsed = time.perf_counter() - started
    expected = requests * (CHUNKS + 2)
    # sse-starlette sends no empty closing body: it ends with its last event.
    if messages not in (expected, expected - requests):
        raise AssertionError(f"{app} sent {messages} messages, expected {expected}")
    return elapsed


async def bench(path: str, apps: dict[str, App], rounds: int, requests: int) -> None:
    rates: dict[str, list[float]] = {name: [] for name in apps}
    for app in apps.values():  # warm up
        await run_requests(app, path, 3)
    for _ in range(rounds):
        for name, app in apps.items():
            rates[name].append(requests * CHUNKS / await run_requests(app, path, requests))
    reference = "asgikit"
    print(f"\n{path}: {CHUNKS} chunks per response, {requests} responses x {rounds} rounds")
    print(f"| {'app':<14} | {'chunks/s (median)':>17} | {'asgikit speed-up (median ratio)':>31} |")
    print(f"|{'-' * 16}|{'-' * 19}|{'-' * 33}|")
    for name, values in rates.items():
        ratio = statistics.median(a / b for a, b in zip(rates[reference], values, strict=True))
        print(f"| {name:<14} | {statistics.median(values):>17,.0f} | {ratio:>30.2f}x |")


def start_uvicorn(app: str) -> tuple[subprocess.Popen[str], str]:
    """uvicorn serving ``app`` from bench/ on a free port of 127.0.0.1, and its URL."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--app-dir",
            str(BENCH),
            app,
            "--port",
            "0",
            "--no-access-log",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    for line in process.stderr:
        found = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", line)
        if found:
            threading.Thread(target=process.stderr.read, daemon=True).start()
            return process, found.group(1)
    process.wait()
    raise RuntimeError("uvicorn did not start")


def hello_latencies(url: str, count: int) -> list[float]:
    """Seconds per sequential GET /hello on one keep-alive connection."""
    import httpx

    latencies = []
    with httpx.Client(base_url=url) as client:
        client.get("/hello")
        for _ in range(count):
            started = time.perf_counter()
            response = client.get("/hello")
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200
    return latencies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def hello_beside_streams(hellos: int, streams: int = 4) -> None:

    process, url = start_uvicorn("busy_app:router")
    stop = threading.Event()
    streamed = [0] * streams

    host, port = url.removeprefix("http://").split(":")
    request = b"GET /rows HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"

    def keep_streaming(index: int) -> None:
        # Plain sockets (recv releases the GIL): the readers cost the timing client little.
        while not stop.is_set():
            with socket.create_connection((host, int(port))) as sock:
                sock.sendall(request)
                while data := sock.recv(1 << 20):
                    streamed[index] += len(data)
                    if stop.is_set():
                        break

    try:
        alone = hello_latencies(url, hellos)
        readers = [threading.Thread(target=keep_streaming, args=(i,)) for i in range(streams)]
        for reader in readers:
            reader.start()
        while min(streamed) == 0:  # every stream is under way
            time.sleep(0.01)
        beside = hello_latencies(url, hellos)
        stop.set()
        for reader in readers:
            reader.join(60)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    print(f"\nGET /hello on one uvicorn worker, {hellos} sequential requests")
    print("| situation | p50 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|")
    for label, values in (("alone", alone), (f"beside {streams} NDJSON streams", beside)):
        print(
            f"| {label} | {percentile(values, 0.5) * 1e3:.2f} | "
            f"{percentile(values, 0.99) * 1e3:.2f} | {max(values) * 1e3:.2f} |"
        )
    print(f"(the streams moved {sum(streamed) / 2**20:,.0f} MiB meanwhile)")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--hellos", type=int, default=400, help="0 skips the uvicorn part")
    args = parser.parse_args()
    await bench(
        "/stream",
        {"asgikit": asgikit_app, "starlette": starlette_app, "raw ASGI": raw_app},
        args.rounds,
        args.requests,
    )
    await bench(
        "/sse",
        {"asgikit": asgikit_app, "sse-starlette": starlette_app, "raw ASGI": raw_app},
        args.rounds,
        args.requests,
    )
    if args.hellos:
        await asyncio.to_thread(hello_beside_streams, args.hellos)


if __name__ == "__main__":
    asyncio.run(main())

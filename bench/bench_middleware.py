"""Middleware benchmark: CORS + GZip + TrustedHost, asgikit vs Starlette vs raw ASGI.

Everything runs in one process on one event loop: each app's ASGI callable is awaited
directly with a prepared scope (a cross-origin ``GET /hello`` from a browser-like
client: ``Origin``, ``Accept-Encoding: gzip, deflate, br``, ``Host``), a constant
``receive`` and a ``send`` that discards. Scenarios:

- ``router``: ``/hello`` served by each framework's app with the three middleware
  (first listed outermost: CORS, GZip, TrustedHost), raw ASGI without any.
- ``chain``: the same three middleware around the raw ASGI hello app, so only the
  middleware differ.

Per scenario a batch size is calibrated so the slowest app's batch takes about
``--batch-seconds``; every round then runs one batch per app, app order rotated,
``gc.collect()`` first. Reported: median microseconds per request, and ratios as the
median of per-round ratios (this VM's absolute speed drifts; paired ratios do not).

    .venv/bin/python bench/bench_middleware.py
    .venv/bin/python bench/bench_middleware.py --rounds 30 --batch-seconds 0.1
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import inproc
import starlette
from starlette.applications import Starlette
from starlette.middleware import Middleware as StarletteMiddleware
from starlette.middleware.cors import CORSMiddleware as StarletteCORS
from starlette.middleware.gzip import GZipMiddleware as StarletteGZip
from starlette.middleware.trustedhost import (
    TrustedHostMiddleware as StarletteTrustedHost,
)
from starlette.requests import Request as StarletteRequest
from starlette.responses import PlainTextResponse as StarlettePlainText
from starlette.routing import Route as StarletteRoute

from asgikit import Middleware, PlainTextResponse, Request, Router
from asgikit.middleware import (
    CORSMiddleware,
    GZipMiddleware,
    TrustedHostMiddleware,
)

HELLO = "Hello, world!"
ORIGIN = "https://app.example.com"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "*.example.com"]
SCOPE: dict[str, Any] = inproc.make_scope(
    "/hello",
    headers=[
        (b"host", b"127.0.0.1:8000"),
        (b"user-agent", b"bench"),
        (b"accept", b"*/*"),
        (b"accept-encoding", b"gzip, deflate, br"),
        (b"origin", ORIGIN.encode()),
    ],
)


# ------------------------------------------------------------------ the apps


async def raw_hello(scope: Any, receive: Any, send: Any) -> None:
    body = HELLO.encode()
    headers = [
        (b"content-length", str(len(body)).encode()),
        (b"content-type", b"text/plain; charset=utf-8"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def asgikit_chain(app: Any) -> Any:
    app = TrustedHostMiddleware(app, allowed_hosts=ALLOWED_HOSTS)
    app = GZipMiddleware(app)
    return CORSMiddleware(app, allow_origins=[ORIGIN], allow_methods=["GET", "POST"])


def starlette_chain(app: Any) -> Any:
    app = StarletteTrustedHost(app, allowed_hosts=ALLOWED_HOSTS)
    app = StarletteGZip(app)
    return StarletteCORS(app, allow_origins=[ORIGIN], allow_methods=["GET", "POST"])


def asgikit_router() -> Any:
    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse(HELLO)

    router = Router(
        middleware=[
            Middleware(CORSMiddleware, allow_origins=[ORIGIN], allow_methods=["GET", "POST"]),
            Middleware(GZipMiddleware),
            Middleware(TrustedHostMiddleware, allowed_hosts=ALLOWED_HOSTS),
        ]
    )
    router.add_route("/hello", hello)
    return router


def starlette_app() -> Any:
    async def hello(request: StarletteRequest) -> StarlettePlainText:
        return StarlettePlainText(HELLO)

    return Starlette(
        routes=[StarletteRoute("/hello", hello)],
        middleware=[
            StarletteMiddleware(
                StarletteCORS, allow_origins=[ORIGIN], allow_methods=["GET", "POST"]
            ),
            StarletteMiddleware(StarletteGZip),
            StarletteMiddleware(StarletteTrustedHost, allowed_hosts=ALLOWED_HOSTS),
        ],
    )


SCENARIOS: dict[str, dict[str, Callable[[], Any]]] = {
    "router": {
        "raw": lambda: raw_hello,
        "starlette": starlette_app,
        "asgikit": asgikit_router,
    },
    "chain": {
        "raw": lambda: raw_hello,
        "starlette": lambda: starlette_chain(raw_hello),
        "asgikit": lambda: asgikit_chain(raw_hello),
    },
}


# ------------------------------------------------------------------ the harness


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def discard(message: dict[str, Any]) -> None:
    return None


async def check(app: Any, name: str, with_cors: bool) -> None:
    """Refuse to time an app that does not give the expected answer."""
    messages: list[dict[str, Any]] = []

    async def record(message: dict[str, Any]) -> None:
        messages.append(message)

    await app(dict(SCOPE), receive, record)
    start, body = messages[0], b"".join(m.get("body", b"") for m in messages[1:])
    headers = dict(start["headers"])
    if start["status"] != 200 or body != HELLO.encode():
        raise SystemExit(f"{name} answered {start['status']} {body!r}")
    if with_cors and headers.get(b"access-control-allow-origin") != ORIGIN.encode():
        raise SystemExit(f"{name} did not answer the CORS request: {headers}")


async def run_batch(app: Any, count: int) -> float:
    scopes = [dict(SCOPE) for _ in range(count)]  # apps may write into the scope
    gc.collect()
    start = time.perf_counter()
    for scope in scopes:
        await app(scope, receive, discard)
    return (time.perf_counter() - start) / count * 1e6


async def bench(apps: dict[str, Any], rounds: int, batch_seconds: float) -> dict[str, list[float]]:
    count = 200
    while True:  # calibrate on the slowest app
        slowest = max([await run_batch(app, count) for app in apps.values()])
        if slowest * count / 1e6 >= batch_seconds / 4 or count > 1_000_000:
            break
        count *= 2
    count = max(100, int(batch_seconds / (slowest / 1e6)))
    timings: dict[str, list[float]] = {name: [] for name in apps}
    names = list(apps)
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            timings[name].append(await run_batch(apps[name], count))
    return timings


def per_round_ratio(numerator: list[float], denominator: list[float]) -> float:
    return statistics.median(n / d for n, d in zip(numerator, denominator, strict=True))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--batch-seconds", type=float, default=0.05)
    parser.add_argument("--scenarios", nargs="*", default=list(SCENARIOS), choices=SCENARIOS)
    options = parser.parse_args()

    print(
        f"Python {platform.python_version()}, Starlette {starlette.__version__}, "
        f"{options.rounds} rounds of ~{options.batch_seconds}s per app"
    )
    header = (
        f"{'scenario':<8} {'raw µs':>8} {'starlette µs':>13} {'asgikit µs':>11} "
        f"{'asgikit vs starlette':>21} {'asgikit / raw':>14}"
    )
    print(header)
    print("-" * len(header))
    for scenario in options.scenarios:
        apps = {name: factory() for name, factory in SCENARIOS[scenario].items()}
        for name, app in apps.items():
            await check(app, f"{scenario}/{name}", with_cors=name != "raw")
        timings = await bench(apps, options.rounds, options.batch_seconds)
        medians = {name: statistics.median(values) for name, values in timings.items()}
        speedup = per_round_ratio(timings["starlette"], timings["asgikit"])
        over_raw = per_round_ratio(timings["asgikit"], timings["raw"])
        print(
            f"{scenario:<8} {medians['raw']:>8.2f} {medians['starlette']:>13.2f} "
            f"{medians['asgikit']:>11.2f} {speedup:>20.2f}x {over_raw:>13.2f}x"
        )


if __name__ == "__main__":
    asyncio.run(main())

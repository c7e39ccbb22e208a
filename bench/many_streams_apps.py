"""The apps `bench_many_streams.py` serves: one SSE endpoint that ticks once a second,
written with asgikit and with Starlette + sse-starlette, each behind the same probe.

``GET /probe`` (answered by the probe, not the app) reports the event-loop lag the
probe measured since the last ``GET /probe?reset=1``, and how many events the streams
produced since then. The lag monitor sleeps 5 ms at a time and records how late it
wakes up: with 1,000 open streams, a late wake-up is time the loop spent elsewhere.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from sse_starlette.sse import EventSourceResponse as SSEStarletteResponse
from starlette.applications import Starlette
from starlette.routing import Route as StarletteRoute

from asgikit import EventSourceResponse, Router

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
TICK_SECONDS = 1.0
MONITOR_INTERVAL = 0.005


class Probe:
    """Event counter and loop-lag monitor shared by the app it wraps."""

    def __init__(self) -> None:
        self.events = 0
        self.lags: list[float] = []
        self.task: asyncio.Task[None] | None = None

    async def monitor(self) -> None:
        # perf_counter, not loop.time(): uvloop's clock ticks in whole milliseconds.
        while True:
            start = time.perf_counter()
            await asyncio.sleep(MONITOR_INTERVAL)
            self.lags.append(max(0.0, time.perf_counter() - start - MONITOR_INTERVAL))

    def report(self) -> dict[str, float]:
        lags = sorted(self.lags) or [0.0]
        return {
            "events": self.events,
            "samples": len(self.lags),
            "lag_p50_ms": lags[len(lags) // 2] * 1000,
            "lag_p99_ms": lags[min(len(lags) - 1, int(len(lags) * 0.99))] * 1000,
            "lag_max_ms": lags[-1] * 1000,
        }


def with_probe(app: App, probe: Probe) -> App:
    """``app`` with ``GET /probe`` answered in front of it."""

    async def probed(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            if probe.task is None:
                probe.task = asyncio.get_running_loop().create_task(probe.monitor())
            if scope["path"] == "/probe":
                if scope["query_string"] == b"reset=1":
                    probe.lags.clear()
                    probe.events = 0
                body = json.dumps(probe.report()).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await app(scope, receive, send)

    return probed


async def ticks(probe: Probe) -> AsyncIterator[dict[str, Any]]:
    """One small JSON event a second, forever (the client leaving ends it)."""
    index = 0
    while True:
        await asyncio.sleep(TICK_SECONDS)
        index += 1
        probe.events += 1
        yield {"tick": index, "at": time.time()}


# --- asgikit -------------------------------------------------------------------------
asgikit_probe = Probe()
_asgikit_router = Router()


@_asgikit_router.get("/sse")
async def asgikit_sse(request: Any) -> EventSourceResponse:
    return EventSourceResponse(ticks(asgikit_probe))


asgikit_app = with_probe(_asgikit_router, asgikit_probe)


# --- Starlette + sse-starlette --------------------------------------------------------
starlette_probe = Probe()


async def starlette_ticks() -> AsyncIterator[dict[str, str]]:
    """`ticks` as sse-starlette takes it (the data already JSON text)."""
    index = 0
    while True:
        await asyncio.sleep(TICK_SECONDS)
        index += 1
        starlette_probe.events += 1
        item = {"tick": index, "at": time.time()}
        yield {"data": json.dumps(item, separators=(",", ":"))}


async def starlette_sse(request: Any) -> SSEStarletteResponse:
    return SSEStarletteResponse(starlette_ticks())


starlette_app = with_probe(
    Starlette(routes=[StarletteRoute("/sse", starlette_sse)]), starlette_probe
)

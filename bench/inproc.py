"""In-process benchmark: asgikit, Starlette and raw ASGI side by side in one run.

Each app's ASGI callable is awaited directly on one event loop with a uvicorn-like
scope and, per request, a fresh scope copy and receive/send pair (what a server does).
Per scenario a batch size is calibrated so the
slowest app's batch takes about ``--batch-seconds``; then every round runs one batch
per app (app order rotated, ``gc.collect()`` before each). Reported: median
microseconds per request and the ratio to raw as the median of per-round ratios (this
VM's absolute speed drifts by up to 1.8x; paired ratios do not).

    python bench/inproc.py                      # every scenario + routing curve
    python bench/inproc.py --scenarios hello --rounds 5
    python bench/inproc.py --scenarios stream,sse --stream-items 0   # fixed cost only
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import itertools
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scenarios

APPS = ("raw_app", "starlette_app", "falcon_app", "asgikit_app")


def make_scope(
    path: str,
    *,
    spec_version: str = "2.3",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> dict[str, Any]:
    """A GET scope shaped like uvicorn's (also used by the other bench scripts)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": spec_version},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "root_path": "",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers
        if headers is not None
        else [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench"), (b"accept", b"*/*")],
    }


REQUEST = {"type": "http.request", "body": b"", "more_body": False}
DISCONNECT = {"type": "http.disconnect"}


class Connection:
    """What a server does per request: a receive/send pair. ``receive`` hands over the
    (empty) body, then waits for the response to end and reports a disconnect, as
    uvicorn does; ``send`` notes the end of the response."""

    __slots__ = ("complete", "delivered", "waiter")

    def __init__(self) -> None:
        self.delivered = False
        self.complete = False
        self.waiter: asyncio.Future[None] | None = None

    async def receive(self) -> dict[str, Any]:
        if not self.delivered:
            self.delivered = True
            return REQUEST
        if not self.complete:
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        return DISCONNECT

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            self.complete = True
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(None)


class Recorder(Connection):
    __slots__ = ("body", "status")

    def __init__(self) -> None:
        super().__init__()
        self.status = 0
        self.body = b""

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")
        await super().send(message)


SCENARIOS: dict[str, tuple[Sequence[str], Callable[[str], bytes]]] = {
    "hello": (("/hello",), lambda path: scenarios.HELLO_BODY),
    "json": (
        ("/json",),
        lambda path: json.dumps(scenarios.JSON_DOC, separators=(",", ":")).encode(),
    ),
    "route": ((scenarios.ROUTE_PATH,), scenarios.route_body),
    "route-varied": (scenarios.ROUTE_VARIED_PATHS, scenarios.route_body),
    "stream": (("/stream",), lambda path: scenarios.STREAM_BODY),
    "sse": (("/sse",), lambda path: scenarios.SSE_BODY),
    "ndjson": (("/ndjson",), lambda path: scenarios.NDJSON_BODY),
}


async def check(
    app: Any, paths: Sequence[str], expected: Callable[[str], bytes], name: str
) -> None:
    for path in paths[:3]:
        recorder = Recorder()
        await app(make_scope(path), recorder.receive, recorder.send)
        if recorder.status != 200 or recorder.body != expected(path):
            raise SystemExit(f"{name} answered {recorder.status} {recorder.body!r} for {path}")


async def run_batch(app: Any, scopes: list[dict[str, Any]], count: int) -> float:
    """Microseconds per request for ``count`` sequential requests, cycling ``scopes``.

    Like a server, each request gets a fresh scope (apps may write into it, and the
    lifespan "state" is copied in) and a fresh receive/send pair: that work is timed too.
    """
    cycle = itertools.cycle(scopes)
    batch = [next(cycle) for _ in range(count)]
    gc.collect()
    start = time.perf_counter()
    for scope in batch:
        connection = Connection()
        await app({**scope, "state": {}}, connection.receive, connection.send)
    return (time.perf_counter() - start) / count * 1e6


async def measure(
    apps: dict[str, Any], paths: Sequence[str], rounds: int, batch_seconds: float
) -> dict[str, tuple[float, float]]:
    scopes = [make_scope(path) for path in paths]
    slowest = max([await run_batch(app, scopes, 200) for app in apps.values()])
    count = max(50, int(batch_seconds / (slowest / 1e6)))
    names = list(apps)
    times: dict[str, list[float]] = {name: [] for name in names}
    ratios: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(rounds):
        order = names[round_index % len(names) :] + names[: round_index % len(names)]
        this_round = {name: await run_batch(apps[name], scopes, count) for name in order}
        for name in names:
            times[name].append(this_round[name])
            ratios[name].append(this_round[name] / this_round[names[0]])
    return {
        name: (statistics.median(times[name]), statistics.median(ratios[name])) for name in names
    }


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--apps", default=",".join(APPS), help="first one is the ratio baseline")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--batch-seconds", type=float, default=0.05)
    parser.add_argument(
        "--routing", default="10,100,1000", help="route counts for the curve ('' skips)"
    )
    parser.add_argument(
        "--stream-items",
        type=int,
        default=scenarios.STREAM_CHUNKS,
        help="items per stream, SSE and NDJSON response (0: the fixed cost alone)",
    )
    args = parser.parse_args()
    scenarios.set_stream_items(args.stream_items)
    modules = {name: importlib.import_module(name) for name in args.apps.split(",")}
    apps = {name: module.app for name, module in modules.items()}
    print(
        f"# bench/inproc.py  python={platform.python_version()}  rounds={args.rounds}  "
        f"stream items={scenarios.STREAM_CHUNKS}  "
        f"(median us/request; x raw = median of per-round ratios)"
    )
    print(f"{'scenario':<13}| " + " | ".join(f"{name:>22}" for name in apps))
    for scenario in args.scenarios.split(","):
        paths, expected = SCENARIOS[scenario]
        for name, app in apps.items():
            await check(app, paths, expected, name)
        results = await measure(apps, paths, args.rounds, args.batch_seconds)
        cells = [f"{us:8.2f} us {ratio:6.2f}x raw" for us, ratio in results.values()]
        print(f"{scenario:<13}| " + " | ".join(cells))
    if args.routing:
        counts = [int(count) for count in args.routing.split(",")]
        print(f"\n# routing: GET {scenarios.ROUTE_PATH} (varied ids), the last of n routes")
        header = " | ".join(f"{count:>5} routes us" for count in counts)
        print(f"{'app':<14}| {header} | {counts[-1]}/{counts[0]}")
        paths = scenarios.ROUTE_VARIED_PATHS
        for name, module in modules.items():
            if name == "raw_app":
                continue
            routing_apps = {str(count): module.make_routing_app(count) for count in counts}
            for app in routing_apps.values():
                await check(app, paths, scenarios.route_body, name)
            results = await measure(routing_apps, paths, args.rounds, args.batch_seconds)
            cells = " | ".join(f"{results[str(count)][0]:15.2f}" for count in counts)
            print(f"{name:<14}| {cells} | {results[str(counts[-1])][1]:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())

"""The ML example's ``POST /predict`` under 64 concurrent clients, with and without the
`Batcher`: throughput and p50/p99 latency, in process.

Both variants are `examples/ml_serving.make_router` (``batching=True`` / ``False``), started
through the ASGI lifespan protocol and driven by 64 client tasks that each send requests
back to back through the raw ASGI interface (no HTTP client in the way: this measures
the server side). Rounds alternate between the variants; the speed-up is the median of
per-round throughput ratios.

    .venv/bin/python bench/bench_batching.py [--rounds 3] [--seconds 2] [--clients 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

from ml_serving import make_router

TEXTS = [
    "for key, value in sorted(mapping.items()):",
    "Return a new list containing all items from the iterable in ascending order.",
    "raise ValueError(f'invalid literal for int() with base {base}: {text!r}')",
    "The optional argument gives the number of characters to strip from the end.",
]


async def start(app: Any) -> tuple[dict[str, Any], asyncio.Task[None], asyncio.Queue[Any]]:
    """Run the app's lifespan startup; return its state, the lifespan task and inbox."""
    state: dict[str, Any] = {}
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.3"}, "state": state}
    task = asyncio.create_task(app(scope, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    message = await outbox.get()
    assert message["type"] == "lifespan.startup.complete", message
    return state, task, inbox


async def request(app: Any, state: dict[str, Any], body: bytes) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/predict",
        "raw_path": b"/predict",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"bench"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("bench", 80),
        "state": dict(state),
    }
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def load(app: Any, state: dict[str, Any], clients: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    bodies = [json.dumps({"text": text}).encode() for text in TEXTS]
    deadline = time.perf_counter() + seconds

    async def client(number: int) -> None:
        i = number
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            status = await request(app, state, bodies[i % len(bodies)])
            latencies.append(time.perf_counter() - began)
            if status != 200:
                raise AssertionError(f"/predict answered {status}")
            i += 1

    began = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50": latencies[len(latencies) // 2] * 1000,
        "p99": latencies[int(len(latencies) * 0.99)] * 1000,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--clients", type=int, default=64)
    args = parser.parse_args()
    variants = {
        "batched": make_router(batching=True, max_concurrency=1024, timeout=120),
        "unbatched": make_router(batching=False, max_concurrency=1024, timeout=120),
    }
    states = {}
    lifespans = []  # keep the lifespan tasks referenced while the bench runs
    for name, app in variants.items():
        states[name], task, inbox = await start(app)
        lifespans.append((task, inbox))
        await load(app, states[name], 8, 0.3)  # warm up
    results: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, app in variants.items():
            results[name].append(await load(app, states[name], args.clients, args.seconds))
    speedups = [
        b["rps"] / u["rps"] for b, u in zip(results["batched"], results["unbatched"], strict=True)
    ]
    print(
        f"\nPOST /predict, {args.clients} concurrent clients, {args.rounds} rounds "
        f"x {args.seconds:g} s"
    )
    print("| variant   | requests/s | p50 ms | p99 ms |")
    print("|-----------|-----------:|-------:|-------:|")
    for name, rounds in results.items():
        rps = statistics.median(r["rps"] for r in rounds)
        p50 = statistics.median(r["p50"] for r in rounds)
        p99 = statistics.median(r["p99"] for r in rounds)
        print(f"| {name:<9} | {rps:>10,.0f} | {p50:>6.1f} | {p99:>6.1f} |")
    print(f"\nbatched / unbatched throughput: {statistics.median(speedups):.1f}x (median ratio)")
    for task, inbox in lifespans:
        await inbox.put({"type": "lifespan.shutdown"})
        await task


if __name__ == "__main__":
    asyncio.run(main())

"""File serving in process: asgikit vs Starlette, side by side in one run.

Scenarios (each app's ASGI callable is awaited directly; ``send`` discards messages):

- ``large``: one 100 MB file with ``FileResponse`` (asgikit) / ``starlette.responses.FileResponse``.
- ``medium``: 300 requests for a 1 MiB file (streamed in 256 KiB reads) as uvicorn
  serves them: ASGI spec 2.3, so both frameworks watch for a disconnect meanwhile.
- ``small``: 10,000 requests for 1 KB files through ``StaticFiles`` (both), spread over
  100 files, the way a site's assets or a model zoo's cards are served.
- ``small-response``: the same 10,000 requests as a plain ``FileResponse`` per request.

Every round runs one batch per app, in alternating order; the ratio reported is the
median of per-round ratios Starlette time / asgikit time (>1 means asgikit is faster).
Files live in a temporary directory that is removed at the end.

    python bench/bench_files.py                 # every scenario, 5 rounds
    python bench/bench_files.py --rounds 3 --scenarios small
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import inproc
from starlette.responses import FileResponse as StarletteFileResponse
from starlette.staticfiles import StaticFiles as StarletteStaticFiles

from asgikit import FileResponse
from asgikit.staticfiles import StaticFiles

LARGE_SIZE = 100 * 1024 * 1024
MEDIUM_SIZE = 1024 * 1024
MEDIUM_REQUESTS = 300
SMALL_SIZE = 1024
SMALL_FILES = 100
SMALL_REQUESTS = 10_000


def make_scope(path: str) -> dict[str, Any]:
    return inproc.make_scope(
        path, spec_version="2.4", headers=[(b"host", b"127.0.0.1:8000"), (b"accept", b"*/*")]
    )


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


class Counter:
    """A ``send`` that only counts body bytes (to check every app sent everything)."""

    def __init__(self) -> None:
        self.body_bytes = 0

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            self.body_bytes += len(message.get("body", b""))


Batch = Callable[[Counter], Awaitable[None]]


def large_batches(directory: Path, requests: int) -> dict[str, Batch]:
    path = directory / "weights.bin"
    scope = make_scope("/weights.bin")

    async def asgikit_batch(send: Counter) -> None:
        for _ in range(requests):
            await FileResponse(path)(dict(scope), receive, send)

    async def starlette_batch(send: Counter) -> None:
        for _ in range(requests):
            await StarletteFileResponse(path)(dict(scope), receive, send)

    return {"asgikit": asgikit_batch, "starlette": starlette_batch}


def medium_batches(directory: Path) -> dict[str, Batch]:
    """1 MiB files, too large to read at once, served the way uvicorn serves them: ASGI
    spec 2.3 (a server whose send does not fail once the client has gone, so both
    frameworks watch for a disconnect) and a receive that waits for the response's end."""
    path = directory / "card.bin"
    scope = inproc.make_scope(
        "/card.bin", spec_version="2.3", headers=[(b"host", b"127.0.0.1:8000")]
    )

    def batch(response_class: Callable[[Path], Any]) -> Batch:
        async def run(send: Counter) -> None:
            for _ in range(MEDIUM_REQUESTS):
                connection = inproc.Connection()

                async def both(
                    message: dict[str, Any], connection: inproc.Connection = connection
                ) -> None:
                    await send(message)
                    await connection.send(message)

                await response_class(path)(dict(scope), connection.receive, both)

        return run

    return {"asgikit": batch(FileResponse), "starlette": batch(StarletteFileResponse)}


def small_static_batches(directory: Path) -> dict[str, Batch]:
    scopes = [make_scope(f"/small/{i % SMALL_FILES}.txt") for i in range(SMALL_REQUESTS)]
    ours = StaticFiles(directory=directory)
    theirs = StarletteStaticFiles(directory=directory)

    async def asgikit_batch(send: Counter) -> None:
        for scope in scopes:
            await ours(dict(scope), receive, send)

    async def starlette_batch(send: Counter) -> None:
        for scope in scopes:
            await theirs(dict(scope), receive, send)

    return {"asgikit": asgikit_batch, "starlette": starlette_batch}


def small_response_batches(directory: Path) -> dict[str, Batch]:
    paths = [directory / "small" / f"{i % SMALL_FILES}.txt" for i in range(SMALL_REQUESTS)]
    scope = make_scope("/file")

    async def asgikit_batch(send: Counter) -> None:
        for path in paths:
            await FileResponse(path)(dict(scope), receive, send)

    async def starlette_batch(send: Counter) -> None:
        for path in paths:
            await StarletteFileResponse(path)(dict(scope), receive, send)

    return {"asgikit": asgikit_batch, "starlette": starlette_batch}


async def measure(batches: dict[str, Batch], rounds: int, expected_bytes: int) -> dict[str, Any]:
    times: dict[str, list[float]] = {name: [] for name in batches}
    ratios: list[float] = []
    names = list(batches)
    for round_index in range(rounds + 1):  # round 0 warms up and is not counted
        order = names if round_index % 2 == 0 else names[::-1]
        this_round: dict[str, float] = {}
        for name in order:
            send = Counter()
            gc.collect()
            start = time.perf_counter()
            await batches[name](send)
            this_round[name] = time.perf_counter() - start
            assert send.body_bytes == expected_bytes, (name, send.body_bytes, expected_bytes)
        if round_index == 0:
            continue
        for name, seconds in this_round.items():
            times[name].append(seconds)
        ratios.append(this_round["starlette"] / this_round["asgikit"])
    return {
        "asgikit": statistics.median(times["asgikit"]),
        "starlette": statistics.median(times["starlette"]),
        "ratio": statistics.median(ratios),
        "min_ratio": min(ratios),
        "max_ratio": max(ratios),
    }


def create_files(directory: Path) -> None:
    chunk = os.urandom(1024 * 1024)
    with open(directory / "weights.bin", "wb") as file:
        for _ in range(LARGE_SIZE // len(chunk)):
            file.write(chunk)
    (directory / "card.bin").write_bytes(os.urandom(MEDIUM_SIZE))
    (directory / "small").mkdir()
    for i in range(SMALL_FILES):
        (directory / "small" / f"{i}.txt").write_bytes(os.urandom(SMALL_SIZE // 2).hex().encode())


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="asgikit-bench-files-") as temp:
        directory = Path(temp)
        create_files(directory)
        print(f"python {sys.version.split()[0]}, {args.rounds} rounds (+1 warm-up), ratio =")
        print("starlette time / asgikit time, median of per-round ratios (>1: asgikit faster)\n")
        print(f"{'scenario':<34} {'asgikit':>12} {'starlette':>12} {'ratio':>7} {'range':>13}")
        scenarios: dict[str, tuple[str, dict[str, Batch], int, str]] = {
            "large": (
                f"100 MB file x{args.large_requests} (FileResponse)",
                large_batches(directory, args.large_requests),
                LARGE_SIZE * args.large_requests,
                "MB/s",
            ),
            "medium": (
                f"{MEDIUM_REQUESTS} x 1 MiB, spec 2.3 (FileResponse)",
                medium_batches(directory),
                MEDIUM_SIZE * MEDIUM_REQUESTS,
                "req/s",
            ),
            "small": (
                f"{SMALL_REQUESTS:,} x 1 KB (StaticFiles)",
                small_static_batches(directory),
                SMALL_SIZE * SMALL_REQUESTS,
                "req/s",
            ),
            "small-response": (
                f"{SMALL_REQUESTS:,} x 1 KB (FileResponse)",
                small_response_batches(directory),
                SMALL_SIZE * SMALL_REQUESTS,
                "req/s",
            ),
        }
        for key in args.scenarios:
            label, batches, expected, unit = scenarios[key]
            result = await measure(batches, args.rounds, expected)

            count = MEDIUM_REQUESTS if key == "medium" else SMALL_REQUESTS

            def rate(seconds: float, unit: str = unit, count: int = count) -> str:
                if unit == "MB/s":
                    return f"{LARGE_SIZE * args.large_requests / seconds / 1e6:,.0f} MB/s"
                return f"{count / seconds:,.0f}/s"

            spread = f"{result['min_ratio']:.2f}-{result['max_ratio']:.2f}"
            print(
                f"{label:<34} {rate(result['asgikit']):>12} {rate(result['starlette']):>12} "
                f"{result['ratio']:>6.2f}x {spread:>13}"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--large-requests", type=int, default=2)
    parser.add_argument(
        "--scenarios",
        nargs="+",
        default=["large", "medium", "small", "small-response"],
        choices=["large", "medium", "small", "small-response"],
    )
    asyncio.run(main(parser.parse_args()))

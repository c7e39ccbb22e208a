"""Multipart upload parsing: asgikit ``request.form()`` versus Starlette's, side by side.

Each body is a ``multipart/form-data`` request with one small text field and one file
of 10 or 50 MiB (random bytes), split into 64 KiB ``http.request`` messages before
timing starts. Cases, run in the same process and the same rounds:

  asgikit request.form()     asgikit's parser (defnull's ``multipart`` push parser,
                             spooled UploadFile, one thread hop per MiB written)
  asgikit request.parts()    the same parser, the file part read as a stream of chunks
                             and only counted (nothing kept, nothing spooled)
  starlette request.form()   Starlette's parser (python-multipart, SpooledTemporaryFile
                             written through the thread pool, one hop per message)
  reference: push + spool    the floor for any form(): the push parser writing the file
                             part into a SpooledTemporaryFile(1 MiB) synchronously, no
                             event loop, no thread (the shared harness's reference row)

A second table times small forms (a 1 KiB and a 100 KiB image), where the fixed cost
per request matters more than throughput.

Throughput is the median over rounds; the ratio column is the median of the per-round
ratios to Starlette (this VM's absolute speed drifts, ratios measured together do not).
Peak memory is the tracemalloc peak of one separate run (Python allocations made while
parsing; the prepared messages are not counted, the page cache of temp files is not
Python memory).

    .venv/bin/python bench/bench_multipart.py            # 10 and 50 MiB, 5 rounds
    .venv/bin/python bench/bench_multipart.py --sizes 50 --rounds 9 --chunk-kib 16
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import random
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

MiB = 1024 * 1024
BOUNDARY = "asgikit-bench-3f9a1c"
FILE_FIELD = "image"

Message = dict[str, Any]
Case = Callable[[dict[str, Any], Callable[[], Awaitable[Message]]], Awaitable[int]]


def build_body(file_size: int) -> bytes:
    """A multipart body: a "label" text field, then FILE_FIELD with random bytes."""
    rng = random.Random(1234)
    content = rng.randbytes(file_size)
    while BOUNDARY.encode() in content:  # astronomically unlikely; keep the test honest
        content = rng.randbytes(file_size)
    head = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="label"\r\n\r\n'
        "cat\r\n"
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="{FILE_FIELD}"; filename="photo.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    return head + content + f"\r\n--{BOUNDARY}--\r\n".encode()


def build_request(body: bytes, chunk_size: int) -> tuple[dict[str, Any], list[Message]]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/classify",
        "raw_path": b"/classify",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"bench"),
            (b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode()),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    chunks = [body[i : i + chunk_size] for i in range(0, len(body), chunk_size)]
    messages: list[Message] = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]
    return scope, messages


async def asgikit_form(scope: dict[str, Any], receive: Callable[[], Awaitable[Message]]) -> int:
    from asgikit import Request, UploadFile

    request = Request(scope, receive)
    form = await request.form()
    try:
        upload = form[FILE_FIELD]
        assert isinstance(upload, UploadFile) and upload.size is not None
        return upload.size
    finally:
        await request.close()


async def asgikit_parts(scope: dict[str, Any], receive: Callable[[], Awaitable[Message]]) -> int:
    from asgikit import Request

    size = 0
    async for part in Request(scope, receive).parts():
        if part.name == FILE_FIELD:
            async for chunk in part.stream():
                size += len(chunk)
    return size


async def starlette_form(scope: dict[str, Any], receive: Callable[[], Awaitable[Message]]) -> int:
    from starlette.requests import Request

    async with Request(scope, receive).form() as form:  # type: ignore[arg-type]
        size: int = form[FILE_FIELD].size  # type: ignore[union-attr,assignment]
        return size


def push_and_spool(messages: list[Message]) -> int:
    """Reference: parse with the push parser, spool the file, no event loop."""
    from multipart import MultipartSegment, PushMultipartParser  # type: ignore[import-untyped]

    size = 0
    spooled: list[tempfile.SpooledTemporaryFile[bytes]] = []
    write: Callable[[bytes], object] = bytearray().extend
    with PushMultipartParser(BOUNDARY) as parser:
        for message in messages:
            for event in parser.parse(message["body"]):
                if isinstance(event, MultipartSegment):
                    if event.filename is None:
                        write = bytearray().extend
                    else:
                        spooled.append(tempfile.SpooledTemporaryFile(max_size=MiB))  # noqa: SIM115
                        write = spooled[-1].write
                elif event:
                    write(event)
    for file in spooled:
        size = file.tell()
        file.close()
    return size


def framework_run(
    loop: asyncio.AbstractEventLoop, case: Case, scope: dict[str, Any], messages: list[Message]
) -> Callable[[], int]:
    def run() -> int:
        feed = iter(messages)

        async def receive() -> Message:
            return next(feed, {"type": "http.disconnect"})

        return loop.run_until_complete(case(dict(scope), receive))

    return run


def timed(run: Callable[[], int]) -> float:
    gc.collect()
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def traced_peak_mib(run: Callable[[], int]) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / MiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10,50", help="file sizes in MiB (comma list)")
    parser.add_argument("--chunk-kib", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    print(
        f"# python {sys.version.split()[0]}, {args.chunk_kib} KiB messages, "
        f"{args.rounds} rounds, temp files in {tempfile.gettempdir()}"
    )
    header = (
        "| file | case | MiB/s (median) | x Starlette (median of per-round ratios) | peak MiB |"
    )
    print(header)
    print("|---|---|---:|---:|---:|")
    for size_mib in (int(size) for size in args.sizes.split(",")):
        file_size = size_mib * MiB
        scope, messages = build_request(build_body(file_size), args.chunk_kib * 1024)
        runs: dict[str, Callable[[], int]] = {
            "asgikit request.form()": framework_run(loop, asgikit_form, scope, messages),
            "asgikit request.parts()": framework_run(loop, asgikit_parts, scope, messages),
            "starlette request.form()": framework_run(loop, starlette_form, scope, messages),
            "reference: push + spool": functools.partial(push_and_spool, messages),
        }
        for label, run in runs.items():  # warm up and check the answer
            if run() != file_size:
                raise SystemExit(f"{label} parsed the wrong file size")
        times: dict[str, list[float]] = {label: [] for label in runs}
        for _ in range(args.rounds):
            for label, run in runs.items():
                times[label].append(timed(run))
        base = times["starlette request.form()"]
        for label, run in runs.items():
            speed = size_mib / statistics.median(times[label])
            ratio = statistics.median(b / t for b, t in zip(base, times[label], strict=True))
            peak = traced_peak_mib(run)
            print(f"| {size_mib} MiB | {label} | {speed:,.0f} | {ratio:.2f}x | {peak:.2f} |")
    print()
    print("| small form | case | us per form (median) | x Starlette (median of per-round ratios) |")
    print("|---|---|---:|---:|")
    for size_kib in (1, 100):
        scope, messages = build_request(build_body(size_kib * 1024), args.chunk_kib * 1024)
        cases = {"asgikit request.form()": asgikit_form, "starlette request.form()": starlette_form}
        per_form: dict[str, list[float]] = {label: [] for label in cases}
        for _ in range(args.rounds):
            for label, case in cases.items():
                per_form[label].append(
                    loop.run_until_complete(time_many(case, scope, messages, 300)) * 1e6
                )
        base = per_form["starlette request.form()"]
        for label, samples in per_form.items():
            ratio = statistics.median(b / t for b, t in zip(base, samples, strict=True))
            median = statistics.median(samples)
            print(f"| {size_kib} KiB file | {label} | {median:.1f} | {ratio:.2f}x |")
    loop.close()


async def time_many(case: Case, scope: dict[str, Any], messages: list[Message], n: int) -> float:
    """Seconds per form, over ``n`` forms parsed one after another on one event loop."""
    start = time.perf_counter()
    for _ in range(n):
        feed = iter(messages)

        async def receive() -> Message:
            return next(feed, {"type": "http.disconnect"})  # noqa: B023 - used at once

        await case(dict(scope), receive)
    return (time.perf_counter() - start) / n


if __name__ == "__main__":
    main()

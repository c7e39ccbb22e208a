"""Many concurrent SSE streams on one uvicorn process: asgikit vs Starlette + sse-starlette.

For each app in turn (rounds alternate between them), one uvicorn process (one worker,
pinned to CPU 0 when ``taskset`` exists) serves `many_streams_apps`; a client in this
process (pinned to CPU 1) opens ``--streams`` SSE connections on 127.0.0.1, each ticking
once a second, waits until every one has its first event, then measures for
``--window`` seconds:

- memory per open stream: (server RSS with the streams open - RSS before) / streams;
- CPU per event: the server's user+system CPU time over the window / events produced;
- event-loop lag: p50/p99/max of how late a 5 ms sleep wakes up in the server.

Then it closes every connection and stops the server by its PID.

    .venv/bin/python bench/bench_many_streams.py                 # 1,000 streams
    .venv/bin/python bench/bench_many_streams.py --streams 10000 --window 15
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
APPS = {"asgikit": "many_streams_apps:asgikit_app", "starlette": "many_streams_apps:starlette_app"}
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


class Server:
    """One uvicorn process serving ``target``, stopped by its own PID."""

    def __init__(self, target: str, streams: int) -> None:
        self.port = free_port()
        pin = ["taskset", "-c", "0"] if shutil.which("taskset") and os.cpu_count() != 1 else []
        command = [
            *pin,
            sys.executable,
            "-m",
            "uvicorn",
            target,
            "--app-dir",
            str(BENCH),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--no-access-log",
            "--log-level",
            "warning",
            "--backlog",
            str(max(2048, streams)),
            "--limit-concurrency",
            str(streams * 2),
        ]
        self.process = subprocess.Popen(
            command, preexec_fn=lambda: raise_fd_limit(streams * 2 + 1024)
        )
        self.pid = self.process.pid

    async def wait_ready(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                await http_get(self.port, "/probe")
                return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError("the server exited") from None
                await asyncio.sleep(0.1)
        raise RuntimeError("the server did not start in 20 s")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


async def http_get(port: int, path: str) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
        data = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"GET {path}: {head[:80]!r}")
    return dict(json.loads(body))


class Stream:
    """One SSE connection that counts the events it receives."""

    def __init__(self) -> None:
        self.events = 0
        self.first = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def run(self, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"GET /sse HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            if b" 200 " not in head.split(b"\r\n", 1)[0]:
                raise RuntimeError(f"stream refused: {head[:80]!r}")
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    return
                count = chunk.count(b"data:")
                if count:
                    self.events += count
                    self.first.set()
        finally:
            writer.close()


async def measure(name: str, streams: int, window: float) -> dict[str, float]:
    server = Server(APPS[name], streams)
    opened: list[Stream] = []
    try:
        await server.wait_ready()
        await http_get(server.port, "/probe?reset=1")
        await asyncio.sleep(0.5)
        rss_before = rss_bytes(server.pid)
        for start in range(0, streams, 250):  # open in waves: the accept backlog is finite
            wave = [Stream() for _ in range(min(250, streams - start))]
            for stream in wave:
                stream.task = asyncio.create_task(stream.run(server.port))
            opened.extend(wave)
            await asyncio.sleep(0.05)
        await asyncio.wait_for(
            asyncio.gather(*(stream.first.wait() for stream in opened)), timeout=60
        )
        failed = [s for s in opened if s.task is not None and s.task.done()]
        if failed:
            raise RuntimeError(f"{len(failed)} streams ended early")
        await http_get(server.port, "/probe?reset=1")
        cpu_start, wall_start = cpu_seconds(server.pid), time.monotonic()
        await asyncio.sleep(window)
        probe = await http_get(server.port, "/probe")
        cpu = cpu_seconds(server.pid) - cpu_start
        elapsed = time.monotonic() - wall_start
        rss_open = rss_bytes(server.pid)
        return {
            "rss_base_mb": rss_before / 2**20,
            "kib_per_stream": (rss_open - rss_before) / streams / 1024,
            "events": probe["events"],
            "events_per_s": probe["events"] / elapsed,
            "cpu_us_per_event": cpu / max(1, probe["events"]) * 1e6,
            "cpu_percent": cpu / elapsed * 100,
            "lag_p50_ms": probe["lag_p50_ms"],
            "lag_p99_ms": probe["lag_p99_ms"],
            "lag_max_ms": probe["lag_max_ms"],
        }
    finally:
        for stream in opened:
            if stream.task is not None:
                stream.task.cancel()
        await asyncio.gather(
            *(s.task for s in opened if s.task is not None), return_exceptions=True
        )
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--window", type=float, default=10.0, help="seconds measured")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, apps alternating")
    parser.add_argument("--apps", default="asgikit,starlette")
    args = parser.parse_args()
    raise_fd_limit(args.streams * 2 + 1024)
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    names = args.apps.split(",")
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for round_index in range(args.rounds):
        order = names if round_index % 2 == 0 else names[::-1]
        for name in order:
            result = asyncio.run(measure(name, args.streams, args.window))
            results[name].append(result)
            print(f"round {round_index + 1} {name}: {json.dumps(result)}", flush=True)
    print(
        f"\n{args.streams} open SSE streams, one event a second each, {args.window:.0f} s"
        f" windows, median of {args.rounds} rounds (one uvicorn process)\n"
    )
    columns = [
        ("kib_per_stream", "KiB/stream", "{:.1f}"),
        ("cpu_us_per_event", "CPU us/event", "{:.1f}"),
        ("cpu_percent", "CPU %", "{:.1f}"),
        ("lag_p99_ms", "loop lag p99 ms", "{:.2f}"),
        ("lag_max_ms", "lag max ms", "{:.1f}"),
        ("events_per_s", "events/s", "{:.0f}"),
    ]
    print("| app | " + " | ".join(title for _, title, _ in columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for name in names:
        cells = [
            fmt.format(statistics.median(r[key] for r in results[name])) for key, _, fmt in columns
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

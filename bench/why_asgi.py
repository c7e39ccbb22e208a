"""Why ASGI for model serving: one endpoint under gunicorn (sync, gthread) and uvicorn.

The same three endpoints are written twice, as a WSGI app (``wsgi_app``) and as an
asgikit app (``asgi_app``), and each runs in ONE server process on 127.0.0.1:

- ``/remote``: the model is a remote call that takes ``--remote-delay`` (100 ms); WSGI
  blocks its thread in ``time.sleep``, asgikit awaits ``anyio.sleep``;
- ``/cpu``: the model is CPU-bound pure Python that holds the GIL (about 5 ms); WSGI
  runs it in the worker thread, asgikit offloads it with ``run_in_threadpool``;
- ``/stream``: ``--tokens`` tokens ``--token-interval`` apart (20 x 0.1 s = 2 s), sent
  as they are produced (time to first token matters).

For every scenario, server and number of concurrent clients (1, 16, 64, 256) a fresh
server is started, an asyncio load generator (a minimal HTTP/1.1 keep-alive client, so
the client is not the bottleneck) runs closed-loop clients for ``--duration`` seconds
(``--stream-duration`` for ``/stream``), and the server is stopped by its PID.
Requests/s counts the responses completed in the window. Latency and time to first token
(TTFT) percentiles cover every request started in the window; a request still unfinished
``--grace`` seconds after the window is counted at its elapsed time and the figure is
printed as ``>x`` (a lower bound).

    .venv/bin/python bench/why_asgi.py              # about 4 minutes on 2 cores
    .venv/bin/python bench/why_asgi.py --duration 1 --stream-duration 3 --concurrency 1 16
    .venv/bin/python bench/why_asgi.py --markdown /tmp/table.md --plot docs/img/why_asgi.png

Needs the ``bench`` extra (gunicorn, matplotlib): ``make bench-why``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from asgikit import Request, Router, StreamingResponse
from asgikit.serving import run_in_threadpool

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# The servers read the scenario parameters from the environment the bench sets.
REMOTE_DELAY = float(os.environ.get("WHY_ASGI_REMOTE_DELAY", "0.1"))
CPU_ITERATIONS = int(os.environ.get("WHY_ASGI_CPU_ITERATIONS", "60000"))
TOKENS = int(os.environ.get("WHY_ASGI_TOKENS", "20"))
TOKEN_INTERVAL = float(os.environ.get("WHY_ASGI_TOKEN_INTERVAL", "0.1"))

SCENARIOS = ("remote", "cpu", "stream")
SERVERS = ("gunicorn sync", "gunicorn gthread", "uvicorn asgikit")


def predict() -> int:
    """A CPU-bound 'model': pure Python, holds the GIL the whole time."""
    total = 0
    for number in range(CPU_ITERATIONS):
        total += number * number % 7
    return total


# --- WSGI --------------------------------------------------------------------------


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    if path == "/remote":
        time.sleep(REMOTE_DELAY)  # a blocking HTTP client waiting on the model server
        body = b'{"label":"cat"}'
    elif path == "/cpu":
        body = b'{"label":"%d"}' % predict()
    elif path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return wsgi_tokens()
    else:
        body = b"ok"
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def wsgi_tokens() -> Iterator[bytes]:
    for index in range(TOKENS):
        time.sleep(TOKEN_INTERVAL)
        yield b"token%d " % index


# --- ASGI (asgikit) ----------------------------------------------------------------

asgi_app = Router()


@asgi_app.get("/remote")
async def remote(request: Request) -> dict[str, str]:
    await anyio.sleep(REMOTE_DELAY)  # an async HTTP client waiting on the model server
    return {"label": "cat"}


@asgi_app.get("/cpu")
async def cpu(request: Request) -> dict[str, str]:
    return {"label": str(await run_in_threadpool(predict))}


@asgi_app.get("/stream")
async def stream(request: Request) -> StreamingResponse:
    async def tokens() -> AsyncIterator[bytes]:
        for index in range(TOKENS):
            await anyio.sleep(TOKEN_INTERVAL)
            yield b"token%d " % index

    return StreamingResponse(tokens(), media_type="text/plain")


@asgi_app.get("/health")
async def health(request: Request) -> str:
    return "ok"


# --- servers -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_command(server: str, port: int, threads: int) -> list[str]:
    bind = f"127.0.0.1:{port}"
    gunicorn = [sys.executable, "-m", "gunicorn", "--chdir", str(HERE), "-w", "1"]
    gunicorn += ["-b", bind, "--backlog", "2048", "--log-level", "warning"]
    gunicorn += ["--graceful-timeout", "1", "--timeout", "120"]
    if server == "gunicorn sync":
        return [*gunicorn, "-k", "sync", "why_asgi:wsgi_app"]
    if server == "gunicorn gthread":
        return [*gunicorn, "-k", "gthread", "--threads", str(threads), "why_asgi:wsgi_app"]
    return [
        sys.executable, "-m", "uvicorn", "--app-dir", str(HERE), "why_asgi:asgi_app",
        "--host", "127.0.0.1", "--port", str(port), "--backlog", "2048",
        "--log-level", "warning", "--no-access-log", "--lifespan", "off",
    ]  # fmt: skip


class Server:
    """One server process on a free port, stopped by its own PID."""

    def __init__(self, server: str, env: dict[str, str], threads: int) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            server_command(server, self.port, threads),
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
        )

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if sock.recv(64).startswith(b"HTTP/1.1 200"):
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        # gunicorn's worker is in the master's session; make sure it is gone too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


# --- load generator ----------------------------------------------------------------


@dataclass
class Sample:
    started: float
    first_byte: float | None = None
    finished: float | None = None


@dataclass
class Cell:
    scenario: str
    server: str
    clients: int
    duration: float
    samples: list[Sample] = field(default_factory=list)
    errors: int = 0
    start: float = 0.0
    end: float = 0.0

    def completed_in_window(self) -> int:
        window_end = self.start + self.duration
        return sum(1 for s in self.samples if s.finished is not None and s.finished <= window_end)

    def requests_per_second(self) -> float:
        return self.completed_in_window() / self.duration

    def percentile(self, quantile: float, *, first_byte: bool) -> tuple[float, bool]:
        """(seconds, exact); exact is False when the value is a lower bound."""
        values: list[tuple[float, bool]] = []
        for sample in self.samples:
            mark = sample.first_byte if first_byte else sample.finished
            if mark is None:
                values.append((self.end - sample.started, False))
            else:
                values.append((mark - sample.started, True))
        if not values:
            return float("nan"), True
        values.sort()
        index = min(len(values) - 1, max(0, round(quantile * len(values)) - 1))
        return values[index]


async def read_response(reader: asyncio.StreamReader, sample: Sample) -> bool:
    """Read one response; return True when the connection stays open."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/1.1 200"):
        raise RuntimeError(lines[0])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip().lower()
    keep_alive = headers.get("connection") != "close"
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
        sample.first_byte = time.perf_counter()
    elif headers.get("transfer-encoding") == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            await reader.readexactly(size + 2)
            if sample.first_byte is None:
                sample.first_byte = time.perf_counter()
    else:  # body until EOF
        while await reader.read(65536):
            if sample.first_byte is None:
                sample.first_byte = time.perf_counter()
        keep_alive = False
    sample.finished = time.perf_counter()
    return keep_alive


async def client(port: int, path: str, cell: Cell, deadline: float) -> None:
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    writer: asyncio.StreamWriter | None = None
    reader: asyncio.StreamReader | None = None
    try:
        while time.perf_counter() < deadline:
            sample = Sample(started=time.perf_counter())
            cell.samples.append(sample)
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                assert reader is not None
                writer.write(request)
                if not await read_response(reader, sample):
                    writer.close()
                    writer = None
            except (OSError, asyncio.IncompleteReadError, RuntimeError, ValueError):
                cell.samples.remove(sample)
                cell.errors += 1
                if writer is not None:
                    writer.close()
                    writer = None
                await asyncio.sleep(0.01)
    finally:
        if writer is not None:
            writer.close()


async def run_cell(cell: Cell, port: int, grace: float) -> None:
    warm_up = Cell("health", cell.server, 1, 0.2)
    await client(port, "/health", warm_up, time.perf_counter() + 0.2)  # not counted
    cell.start = time.perf_counter()
    deadline = cell.start + cell.duration
    tasks = [
        asyncio.ensure_future(client(port, f"/{cell.scenario}", cell, deadline))
        for _ in range(cell.clients)
    ]
    done, pending = await asyncio.wait(tasks, timeout=cell.duration + grace)
    cell.end = time.perf_counter()
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        task.result()


def measure(args: argparse.Namespace) -> list[Cell]:
    env = dict(os.environ)
    env.update(
        WHY_ASGI_REMOTE_DELAY=str(args.remote_delay),
        WHY_ASGI_CPU_ITERATIONS=str(args.cpu_iterations),
        WHY_ASGI_TOKENS=str(args.tokens),
        WHY_ASGI_TOKEN_INTERVAL=str(args.token_interval),
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")])),
    )
    cells = []
    for scenario in args.scenarios:
        duration = args.stream_duration if scenario == "stream" else args.duration
        for clients in args.concurrency:
            for server_name in args.servers:
                server = Server(server_name, env, args.threads)
                try:
                    server.wait_ready()
                    cell = Cell(scenario, server_name, clients, duration)
                    asyncio.run(run_cell(cell, server.port, args.grace))
                finally:
                    server.stop()
                cells.append(cell)
                print(row(cell), flush=True)
    return cells


# --- report ------------------------------------------------------------------------


def seconds(value: tuple[float, bool]) -> str:
    number, exact = value
    text = f"{number * 1000:.0f} ms" if number < 10 else f"{number:.0f} s"
    return text if exact else f">{text}"


def row(cell: Cell) -> str:
    return (
        f"| {cell.scenario} | {cell.clients} | {cell.server} "
        f"| {cell.requests_per_second():.1f} "
        f"| {seconds(cell.percentile(0.5, first_byte=False))} "
        f"| {seconds(cell.percentile(0.99, first_byte=False))} "
        f"| {seconds(cell.percentile(0.5, first_byte=True))} "
        f"| {seconds(cell.percentile(0.99, first_byte=True))} "
        f"| {cell.errors} |"
    )


HEADER = (
    "| scenario | clients | server | req/s | p50 | p99 | TTFT p50 | TTFT p99 | errors |\n"
    "|---|---:|---|---:|---:|---:|---:|---:|---:|"
)


def plot(cells: list[Cell], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = sorted({c.scenario for c in cells}, key=SCENARIOS.index)
    figure, axes = plt.subplots(2, len(scenarios), figsize=(4.5 * len(scenarios), 7), squeeze=False)
    for column, scenario in enumerate(scenarios):
        for server in SERVERS:
            series = [c for c in cells if c.scenario == scenario and c.server == server]
            if not series:
                continue
            clients = [c.clients for c in series]
            axes[0][column].plot(
                clients, [c.requests_per_second() for c in series], "o-", label=server
            )
            metric = [c.percentile(0.99, first_byte=scenario == "stream") for c in series]
            line = axes[1][column].plot(clients, [value for value, _ in metric], "o-", label=server)
            bounds = [
                (n, value) for n, (value, exact) in zip(clients, metric, strict=True) if not exact
            ]
            if bounds:  # lower bounds: requests still unanswered when the cell ended
                axes[1][column].plot(
                    *zip(*bounds, strict=True),
                    "^",
                    markersize=11,
                    color=line[0].get_color(),
                    fillstyle="none",
                )
        axes[0][column].set_title(scenario)
        axes[0][column].set_ylabel("requests/s")
        axes[0][column].set_ylim(bottom=0)
        axes[1][column].set_ylabel(
            "p99 time to first token (s)" if scenario == "stream" else "p99 latency (s)"
        )
        for axis in (axes[0][column], axes[1][column]):
            axis.set_xscale("log", base=2)
            axis.set_xticks(list(clients), [str(n) for n in clients])
            axis.set_xlabel("concurrent clients")
            axis.grid(True, alpha=0.3)
        axes[1][column].set_yscale("log")
    axes[0][0].legend(fontsize=8)
    figure.suptitle(
        "One process each: gunicorn (WSGI) vs uvicorn + asgikit (ASGI)\n"
        "hollow triangles: lower bounds (requests still unanswered when the run ended)"
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per remote/cpu cell")
    parser.add_argument(
        "--stream-duration", type=float, default=5.0, help="seconds per stream cell"
    )
    parser.add_argument("--grace", type=float, default=3.0, help="seconds to let requests finish")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64, 256])
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS))
    parser.add_argument("--threads", type=int, default=32, help="gthread threads")
    parser.add_argument("--remote-delay", type=float, default=REMOTE_DELAY)
    parser.add_argument("--cpu-iterations", type=int, default=CPU_ITERATIONS)
    parser.add_argument("--tokens", type=int, default=TOKENS)
    parser.add_argument("--token-interval", type=float, default=TOKEN_INTERVAL)
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    parser.add_argument("--json", type=Path, help="also write the raw figures to this file")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "img" / "why_asgi.png")
    args = parser.parse_args()

    started = time.monotonic()
    print(HEADER, flush=True)
    cells = measure(args)
    elapsed = time.monotonic() - started
    footer = (
        f"\n{os.cpu_count()} CPUs, Python {sys.version.split()[0]}; "
        f"{args.duration:g} s per cell ({args.stream_duration:g} s for stream), "
        f"gthread with {args.threads} threads; whole run {elapsed:.0f} s."
    )
    print(footer)
    if args.markdown:
        table = "\n".join([HEADER, *(row(c) for c in cells)])
        args.markdown.write_text(table + "\n" + footer + "\n")
    if args.json:
        figures = [
            {
                "scenario": c.scenario,
                "server": c.server,
                "clients": c.clients,
                "requests_per_second": c.requests_per_second(),
                "p50": c.percentile(0.5, first_byte=False),
                "p99": c.percentile(0.99, first_byte=False),
                "ttft_p50": c.percentile(0.5, first_byte=True),
                "ttft_p99": c.percentile(0.99, first_byte=True),
                "errors": c.errors,
            }
            for c in cells
        ]
        args.json.write_text(json.dumps(figures, indent=1))
    if args.plot:
        plot(cells, args.plot)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()

"""One model served three ways over real HTTP: asgikit + `Batcher`, asgikit unbatched, and
LitServe (batch 32, 5 ms), at 1, 16 and 64 closed-loop clients.

The model is a numpy MLP whose cost is dominated by reading its weights (one BLAS thread:
``OPENBLAS_NUM_THREADS=1`` and friends are set in every server's environment), so a batch
of 32 costs a few times one input, not 32 times. Each server is a separate process on the
CPUs ``--server-cpus`` (default: all; ``--server-cpus 0`` gives each one core, the load
generator then runs on the others). All servers
run for the whole bench; rounds interleave them (for each round, for each client count, for
each server), so drift on the machine hits every server alike. Every response is checked
against the label and score computed in this process.

Reported per server and client count: requests/s, p50 and p99 latency, mean batch size
and "model busy" (the share of the wall time the model function was computing; both are
logged inside the model function, also for LitServe), and requests/s as a share of the
model's own items/s at batch 32, measured alone (no server load) in a process with the same
pinning and environment at the start of the same round (median over rounds).

    .venv/bin/python bench/bench_serving_peers.py [--rounds 4] [--seconds 2.5] [--clients 1,16,64]

About two and a half minutes with the defaults. "model busy" sums overlapping calls, so it
passes 100% for the unbatched server, whose requests run the model in parallel threads.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ONE_THREAD = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
}
INPUTS = 16  # distinct request bodies, each with a known answer
FEATURES = 64
HIDDEN = 4096
LAYERS = 3
CLASSES = 10
SERVERS = ("asgikit+Batcher", "asgikit unbatched", "LitServe")


class MLP:
    """A ReLU MLP with ``LAYERS`` square hidden layers: at small batch sizes its cost is
    reading its ~200 MB of float32 weights, once per call whatever the batch size."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        sizes = [FEATURES] + [HIDDEN] * LAYERS + [CLASSES]
        self.weights = [
            (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(np.float32)
            for n_in, n_out in itertools.pairwise(sizes)
        ]
        log = os.environ.get("BENCH_BATCH_LOG")
        self.log = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT) if log else None

    def predict(self, inputs: list[list[float]]) -> list[dict[str, Any]]:
        began = time.perf_counter()
        hidden = np.asarray(inputs, dtype=np.float32)
        for weights in self.weights[:-1]:
            hidden = np.maximum(hidden @ weights, 0.0)
        logits = hidden @ self.weights[-1]
        logits -= logits.max(axis=1, keepdims=True)
        probabilities = np.exp(logits)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        labels = probabilities.argmax(axis=1)
        if self.log is not None:  # batch size and seconds in the model, for the report
            os.write(self.log, b"%d %.6f\n" % (len(inputs), time.perf_counter() - began))
        return [
            {"label": int(label), "score": float(row[label])}
            for label, row in zip(labels, probabilities, strict=True)
        ]


def request_inputs() -> list[list[float]]:
    rng = np.random.default_rng(1)
    return rng.standard_normal((INPUTS, FEATURES)).round(4).tolist()  # type: ignore[no-any-return]


# --- the servers (each runs in its own process: `bench_serving_peers.py serve KIND PORT`) ---


def asgikit_app(batched: bool) -> Any:
    from asgikit import HTTPException, Request, Router
    from asgikit.serving import Batcher, run_in_threadpool

    @contextlib.asynccontextmanager
    async def lifespan(router: Router) -> Any:
        model = MLP()
        # max_wait stays at its default: it never delays a batch with one batch slot.
        async with Batcher(model.predict, max_batch_size=32) as batcher:
            yield {"model": model, "batcher": batcher}

    router = Router(lifespan=lifespan)

    @router.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        payload = await request.json()
        if not isinstance(payload, dict) or not isinstance(payload.get("input"), list):
            raise HTTPException(422, detail='send {"input": [numbers]}')
        if batched:
            result: dict[str, Any] = await request.state.batcher(payload["input"])
        else:
            result = (await run_in_threadpool(request.state.model.predict, [payload["input"]]))[0]
        return result

    return router


try:  # LitServe's worker processes unpickle the API class: it must live at module level
    import litserve
except ImportError:  # pragma: no cover - the bench extra is not installed
    litserve = None

if litserve is not None:

    class MLPAPI(litserve.LitAPI):  # type: ignore[misc]
        def setup(self, device: str) -> None:
            self.model = MLP()

        # Unannotated on purpose: LitServe then hands over the parsed JSON body.
        def decode_request(self, request):  # type: ignore[no-untyped-def]
            return request["input"]

        def batch(self, inputs: list[list[float]]) -> list[list[float]]:
            return inputs

        def predict(self, inputs: list[list[float]]) -> list[dict[str, Any]]:
            return self.model.predict(inputs)

        def unbatch(self, outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return outputs

        def encode_response(self, output: dict[str, Any]) -> dict[str, Any]:
            return output


def serve(kind: str, port: int) -> None:
    if kind == "LitServe":
        server = litserve.LitServer(
            MLPAPI(max_batch_size=32, batch_timeout=0.005), accelerator="cpu", workers_per_device=1
        )
        server.run(
            host="127.0.0.1",
            port=port,
            num_api_servers=1,
            generate_client_file=False,
            log_level="warning",
        )
    else:
        import uvicorn

        # The model thread shares the GIL with the event loop: with Python's default 5 ms
        # switch interval it waits for the loop to finish sending a batch's responses
        # before it can start the next batch (LitServe's model has a process of its own).
        interval = float(os.environ.get("BENCH_SWITCH_INTERVAL", "0"))
        if interval > 0:
            sys.setswitchinterval(interval)
        app = asgikit_app(batched=kind == "asgikit+Batcher")
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def measure_model(seconds: float) -> None:
    """Print the model's own cost at batch 1 and 32 (run in a pinned subprocess)."""
    os.environ.pop("BENCH_BATCH_LOG", None)
    model = MLP()
    inputs = request_inputs()
    figures: dict[str, float] = {}
    for size in (1, 32):
        batch = [inputs[i % INPUTS] for i in range(size)]
        for _ in range(5):
            model.predict(batch)
        calls = 0
        began = time.perf_counter()
        while time.perf_counter() - began < seconds:
            model.predict(batch)
            calls += 1
        elapsed = time.perf_counter() - began
        figures[f"ms_batch{size}"] = elapsed / calls * 1000
        figures[f"items_per_s_batch{size}"] = calls * size / elapsed
    print(json.dumps(figures))


# --- the driver ---


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(cpus: set[int]) -> Any:
    def pin() -> None:
        os.setsid()  # its own process group: stopped with everything it started
        os.sched_setaffinity(0, cpus)

    return pin


@contextlib.contextmanager
def running_server(kind: str, cpus: set[int], log: Path, switch_interval: float) -> Iterator[int]:
    port = free_port()
    env = {
        **os.environ,
        **ONE_THREAD,
        "BENCH_BATCH_LOG": str(log),
        "BENCH_SWITCH_INTERVAL": str(switch_interval),
    }
    process = subprocess.Popen(
        [sys.executable, __file__, "serve", kind, str(port)],
        env=env,
        preexec_fn=pinned(cpus),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{kind} exited with {process.returncode} during startup")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind} did not start listening within 120 s")
            time.sleep(0.2)
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class Expected:
    def __init__(self) -> None:
        inputs = request_inputs()
        answers = MLP().predict(inputs)
        self.requests = [
            self.http_request(json.dumps({"input": vector}).encode()) for vector in inputs
        ]
        self.answers = answers

    @staticmethod
    def http_request(body: bytes) -> bytes:
        head = (
            "POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    def check(self, index: int, status: int, body: bytes) -> None:
        if status != 200:
            raise AssertionError(f"status {status}: {body[:200]!r}")
        got = json.loads(body)
        want = self.answers[index]
        if got["label"] != want["label"] or abs(got["score"] - want["score"]) > 1e-3:
            raise AssertionError(f"input {index}: got {got}, expected {want}")


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def load(port: int, expected: Expected, clients: int, seconds: float) -> dict[str, float]:
    """``clients`` keep-alive connections, each sending its next request when the last
    answer is in, for ``seconds``; every answer is checked."""
    latencies: list[float] = []
    connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(clients)]
    deadline = time.perf_counter() + seconds

    async def client(number: int) -> None:
        reader, writer = connections[number]
        index = number
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            writer.write(expected.requests[index % INPUTS])
            status, body = await read_response(reader)
            latencies.append(time.perf_counter() - began)
            expected.check(index % INPUTS, status, body)
            index += 1

    began = time.perf_counter()
    try:
        await asyncio.gather(*(client(n) for n in range(clients)))
    finally:
        for _, writer in connections:
            writer.close()
    elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "elapsed": elapsed,
        "rps": len(latencies) / elapsed,
        "p50": latencies[len(latencies) // 2] * 1000,
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    }


def batch_log_position(log: Path) -> tuple[int, int, float]:
    """(batches, items, seconds in the model) logged so far by a server's model."""
    lines = log.read_text().splitlines() if log.exists() else []
    sizes = [int(line.split()[0]) for line in lines]
    return len(sizes), sum(sizes), sum(float(line.split()[1]) for line in lines)


def model_alone(cpus: set[int], seconds: float) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, __file__, "model", str(seconds)],
        env={**os.environ, **ONE_THREAD},
        preexec_fn=pinned(cpus),
        capture_output=True,
        check=True,
        text=True,
    )
    return json.loads(output.stdout)  # type: ignore[no-any-return]


def parse_cpus(text: str) -> set[int]:
    return {int(cpu) for cpu in text.split(",") if cpu}


async def bench(args: argparse.Namespace) -> None:
    server_cpus = parse_cpus(args.server_cpus)
    available = os.sched_getaffinity(0)
    client_cpus = parse_cpus(args.client_cpus) if args.client_cpus else available - server_cpus
    client_cpus = client_cpus or available
    os.sched_setaffinity(0, client_cpus)
    expected = Expected()
    client_counts = [int(n) for n in args.clients.split(",")]
    alone: list[dict[str, float]] = []
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as directory, contextlib.ExitStack() as stack:
        ports: dict[str, int] = {}
        logs: dict[str, Path] = {}
        for kind in args.servers.split(","):
            logs[kind] = Path(directory) / f"{len(logs)}.log"
            ports[kind] = stack.enter_context(
                running_server(kind, server_cpus, logs[kind], args.switch_interval)
            )
            await load(ports[kind], expected, 16, args.warmup)
        for round_number in range(args.rounds):
            # The model alone, once per round: the machine may be busier in some rounds
            # than in others, and each round is compared with its own figure.
            alone.append(model_alone(server_cpus, args.model_seconds))
            limit = alone[-1]["items_per_s_batch32"]
            for clients in client_counts:
                for kind, port in ports.items():
                    before = batch_log_position(logs[kind])
                    result = await load(port, expected, clients, args.seconds)
                    after = batch_log_position(logs[kind])
                    batches, items = after[0] - before[0], after[1] - before[1]
                    result["busy"] = (after[2] - before[2]) / result["elapsed"]
                    result["batch"] = items / batches if batches else float("nan")
                    result["share"] = result["rps"] / limit
                    results.setdefault((kind, clients), []).append(result)
                    print(
                        f"round {round_number + 1} {kind:<18} {clients:>3} clients: "
                        f"{result['rps']:7.0f} req/s p50 {result['p50']:6.1f} ms "
                        f"p99 {result['p99']:6.1f} ms batch {result['batch']:.1f} "
                        f"model busy {result['busy']:.0%}",
                        file=sys.stderr,
                    )
    per_round = ", ".join(f"{f['items_per_s_batch32']:,.0f}" for f in alone)
    print(
        f"\nModel alone (one BLAS thread, CPUs {sorted(server_cpus)}), median of rounds: "
        f"batch 1 {statistics.median(f['ms_batch1'] for f in alone):.1f} ms, batch 32 "
        f"{statistics.median(f['ms_batch32'] for f in alone):.1f} ms = "
        f"{statistics.median(f['items_per_s_batch32'] for f in alone):,.0f} items/s "
        f"(per round: {per_round})"
    )
    print(
        f"Servers on CPUs {sorted(server_cpus)}, clients on CPUs {sorted(client_cpus)}; "
        f"asgikit switch interval {args.switch_interval or 0.005:g} s; "
        f"{args.rounds} interleaved rounds x {args.seconds:g} s; medians of the rounds.\n"
    )
    print(
        "| server            | clients | req/s | p50 ms | p99 ms | mean batch | model busy "
        "| of model limit |"
    )
    print(
        "|-------------------|--------:|------:|-------:|-------:|-----------:|-----------:"
        "|---------------:|"
    )
    for clients in client_counts:
        for kind in ports:
            rounds = results[(kind, clients)]
            rps = statistics.median(r["rps"] for r in rounds)
            p50 = statistics.median(r["p50"] for r in rounds)
            p99 = statistics.median(r["p99"] for r in rounds)
            batch = statistics.median(r["batch"] for r in rounds)
            share = statistics.median(r["share"] for r in rounds)
            busy = statistics.median(r["busy"] for r in rounds)
            print(
                f"| {kind:<17} | {clients:>7} | {rps:>5,.0f} | {p50:>6.1f} | {p99:>6.1f} "
                f"| {batch:>10.1f} | {busy:>10.0%} | {share:>14.0%} |"
            )
    # Paired per-round comparisons: a busy machine slows every server of a round alike.
    batched, unbatched, peer = SERVERS
    most = max(client_counts)

    def paired(kind: str, other: str, clients: int, figure: str) -> str:
        if (kind, clients) not in results or (other, clients) not in results:
            return "n/a"
        ratios = [
            mine[figure] / theirs[figure]
            for mine, theirs in zip(
                results[(kind, clients)], results[(other, clients)], strict=True
            )
        ]
        rounds = ", ".join(f"{ratio:.2f}" for ratio in ratios)
        return f"{statistics.median(ratios):.2f} (rounds: {rounds})"

    least = min(client_counts)
    print("\nPer-round ratios, median (each round's own figures compared):")
    light = paired(batched, unbatched, least, "p50")
    print(f"- {batched} / {unbatched} p50 at {least} client(s): {light}")
    print(f"- {batched} / {peer} req/s at {most} clients: {paired(batched, peer, most, 'rps')}")
    print(f"- {batched} / {peer} p99 at {most} clients: {paired(batched, peer, most, 'p99')}")
    if (batched, most) in results:
        shares = ", ".join(f"{r['share']:.0%}" for r in results[(batched, most)])
        print(f"- {batched} at {most} clients, of the round's model limit: {shares}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "model":
        measure_model(float(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=2.5, help="per server and round")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--model-seconds", type=float, default=2.0)
    parser.add_argument("--clients", default="1,16,64")
    parser.add_argument(
        "--switch-interval",
        type=float,
        default=0.0005,
        help="sys.setswitchinterval() in the asgikit servers (0: Python's default, 5 ms)",
    )
    parser.add_argument("--servers", default=",".join(SERVERS))
    every = ",".join(str(cpu) for cpu in sorted(os.sched_getaffinity(0)))
    parser.add_argument("--server-cpus", default=every, help="comma-separated CPU ids")
    parser.add_argument("--client-cpus", default="", help="default: the others, or all")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()

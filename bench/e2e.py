"""End to end: each app under a real ASGI server on 127.0.0.1, driven by ``wrk``.

For every server kind (uvicorn with httptools + uvloop, uvicorn with h11 + asyncio, granian),
one server process (one worker) per app is started on a free loopback port, pinned to
CPU 0 while wrk runs on CPU 1 (when ``taskset`` exists and there are two CPUs or more).
Every app's answer to every scenario is checked over HTTP before any timing; an app
that answers wrongly is left out of that server's table, loudly. Then, per scenario, each
app gets a warm-up run and ``--rounds`` timed rounds, interleaved app by app (and the app
order rotated every round): this machine's speed drifts in spells of seconds (and it is
shared: the load average is printed), so many short rounds (7 x 1 s) beat a few long ones;
the table shows the median over rounds of req/s and of p99 latency, and each app's req/s
relative to raw ASGI as the median of per-round ratios. Every server is stopped by its own PID
(SIGTERM, a bounded wait, then SIGKILL to the process group it leads).
Under each server's table, a second one gives the server's minor page faults per
request (read from /proc around every timed run): pages the server touched fresh from
the kernel. Most scenarios touch none; a 10 MiB upload arrives in 256,000-byte body
messages, and how often glibc hands their memory back to the kernel and faults it in
again is where apps differ there (docs/deployment.md, "Large uploads").

Scenarios (paths served by every ``*_app.py`` in this folder, see ``scenarios.py``):

  hello         GET  /hello                 "Hello, world!"
  json          GET  /json                  a small JSON document
  route-varied  GET  /users/{i}/items/{j}   4,096 paths cycled (lua/route_varied.lua),
                                            the target route after 100 parametric decoys
  stream        GET  /stream                100 chunks of 16 B (chunked encoding)
  sse           GET  /sse                   100 server-sent events ("data: token 042")
  echo-json     POST /echo-json             a ~1 KB JSON body parsed and echoed
  upload        POST /upload                10 MiB multipart file part (4 connections)

    python bench/e2e.py                     # the full run: about 14 minutes
    python bench/e2e.py --quick             # 1 round of 1 s: about 4 minutes
    python bench/e2e.py --servers granian --scenarios hello,stream --rounds 5
    python bench/e2e.py --scenarios upload --env MALLOC_MMAP_THRESHOLD_=4194304 \
        --env MALLOC_TRIM_THRESHOLD_=33554432   # glibc tuned (docs/deployment.md)
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import importlib.metadata
import itertools
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import scenarios  # noqa: E402

SERVERS = ("uvicorn-httptools", "uvicorn-h11", "granian")
APPS = ("raw_app", "starlette_app", "falcon_app", "blacksheep_app", "asgikit_app")
BASELINE = "raw_app"
TARGET_APP = "asgikit_app"
TARGET_SERVERS = ("uvicorn-httptools", "granian")  # where the targets apply
TARGET_RATIO = 0.9


@dataclass(frozen=True)
class Scenario:
    name: str
    method: str
    path: str  # the path wrk requests (route-varied: its lua script picks the paths)
    answer: Callable[[str], bytes]  # path -> the exact expected response body
    body: bytes = b""
    content_type: str = ""
    lua: str = ""  # a script in lua/
    check_paths: tuple[str, ...] = ()  # paths checked before timing (default: path)
    upload: bool = False  # few connections: each request is 10 MiB


def _json_answer(doc: object) -> Callable[[str], bytes]:
    return lambda path: json.dumps(doc, separators=(",", ":")).encode()


def build_scenarios() -> dict[str, Scenario]:
    echo = scenarios.echo_json_body()
    varied = scenarios.ROUTE_VARIED_PATHS
    return {
        s.name: s
        for s in (
            Scenario("hello", "GET", "/hello", lambda path: scenarios.HELLO_BODY),
            Scenario("json", "GET", "/json", _json_answer(scenarios.JSON_DOC)),
            Scenario(
                "route-varied",
                "GET",
                varied[0],
                scenarios.route_body,
                lua="route_varied.lua",
                check_paths=(varied[0], varied[1], varied[999], varied[4095]),
            ),
            Scenario("stream", "GET", "/stream", lambda path: scenarios.STREAM_BODY),
            Scenario("sse", "GET", "/sse", lambda path: scenarios.SSE_BODY),
            Scenario(
                "echo-json",
                "POST",
                "/echo-json",
                _json_answer(json.loads(echo)),
                body=echo,
                content_type="application/json",
                lua="post_body.lua",
            ),
            Scenario(
                "upload",
                "POST",
                "/upload",
                lambda path: str(scenarios.UPLOAD_SIZE).encode(),
                body=scenarios.upload_body(),
                content_type=scenarios.UPLOAD_CONTENT_TYPE,
                lua="post_body.lua",
                upload=True,
            ),
        )
    }


# --------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_command(server: str, app: str, port: int) -> list[str]:
    py = sys.executable
    target = f"{app}:app"
    common = ["--host", "127.0.0.1", "--port", str(port)]
    if server == "uvicorn-httptools":
        return [py, "-m", "uvicorn", target, "--app-dir", str(BENCH_DIR), *common,
                "--loop", "uvloop", "--http", "httptools", "--no-access-log",
                "--log-level", "warning"]  # fmt: skip
    if server == "uvicorn-h11":  # what a plain `pip install uvicorn` gives: asyncio + h11
        return [py, "-m", "uvicorn", target, "--app-dir", str(BENCH_DIR), *common,
                "--loop", "asyncio", "--http", "h11", "--no-access-log",
                "--log-level", "warning"]  # fmt: skip
    if server == "granian":  # a supervisor process and one worker process
        return [py, "-m", "granian", "--interface", "asgi", *common, "--workers", "1",
                "--loop", "uvloop", "--http", "1", "--no-ws", "--log-level", "warning",
                "--working-dir", str(BENCH_DIR), target]  # fmt: skip
    raise SystemExit(f"unknown server {server!r}; known: {', '.join(SERVERS)}")


class Server:
    """One server process serving one app; it leads its own process group."""

    def __init__(
        self, server: str, app: str, pin: list[str], log_dir: Path, env: dict[str, str]
    ) -> None:
        self.name = f"{server}/{app}"
        self.port = free_port()
        self.log_path = log_dir / f"server-{server}-{app}.log"
        self._log = self.log_path.open("wb")
        # taskset execs the server, so the child's PID is the server's own.
        self.proc = subprocess.Popen(
            [*pin, *server_command(server, app, self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=BENCH_DIR,
            env={**os.environ, **env},
        )

    def wait_listening(self, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.1)
        return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                # Last resort: the group this server leads (it and its own workers).
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()


# --------------------------------------------------------------------------- checks


def check_app(port: int, scenario: Scenario) -> str | None:
    """None if every checked path answers exactly right, else what went wrong."""
    for path in scenario.check_paths or (scenario.path,):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            headers = {"content-type": scenario.content_type} if scenario.content_type else {}
            conn.request(scenario.method, path, body=scenario.body or None, headers=headers)
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            return f"{scenario.name} {path}: {exc!r}"
        finally:
            conn.close()
        expected = scenario.answer(path)
        if scenario.name in ("json", "echo-json"):  # same document, any JSON spacing
            ok = response.status == 200 and _loads(body) == json.loads(expected)
        else:
            ok = response.status == 200 and body == expected
        if not ok:
            return f"{scenario.name} {path}: {response.status} {body[:120]!r}"
    return None


def _loads(body: bytes) -> object:
    try:
        return json.loads(body)
    except ValueError:
        return None


# --------------------------------------------------------------------------- wrk


@dataclass
class Run:
    rps: float
    p99_ms: float
    errors: int
    requests: int = 0  # completed in the run
    faults: float = float("nan")  # the server's minor page faults per request


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    return float(match.group(1)) * _UNITS[match.group(2)] if match else float("nan")


def parse_wrk(output: str) -> Run:
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    requests = re.search(r"^\s*(\d+) requests in", output, re.M)
    errors = 0
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if non2xx:
        errors += int(non2xx.group(1))
    sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if sock:
        errors += sum(int(n) for n in sock.groups())
    return Run(
        float(rps.group(1)) if rps else 0.0,
        _ms(p99.group(1)) if p99 else float("nan"),
        errors,
        int(requests.group(1)) if requests else 0,
    )


def page_faults(pid: int) -> int | None:
    """Minor page faults so far of process ``pid`` and every process below it (granian's
    worker is a child of the process started): each is a page of memory touched for the
    first time (fresh from the kernel, zeroed), which the allocator's reuse decides.
    None where /proc is missing (not Linux)."""
    total = 0
    stack = [pid]
    while stack:
        current = stack.pop()
        proc = Path(f"/proc/{current}")
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            if current == pid:
                return None
            continue  # a child that ended meanwhile
        total += int(stat.rsplit(")", 1)[1].split()[7])  # field 10, minflt
        for children in proc.glob("task/*/children"):
            with contextlib.suppress(OSError):
                stack += (int(child) for child in children.read_text().split())
    return total


def run_wrk(
    scenario: Scenario, port: int, seconds: int, conns: int, pin: list[str], bodies: Path
) -> tuple[Run, str]:
    cmd = [*pin, "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--timeout", "10s", "--latency"]
    if scenario.lua:
        cmd += ["-s", str(BENCH_DIR / "lua" / scenario.lua)]
    cmd.append(f"http://127.0.0.1:{port}{scenario.path}")
    env = dict(os.environ)
    if scenario.body:
        env["BODY_FILE"] = str(bodies / f"{scenario.name}.body")
        env["CONTENT_TYPE"] = scenario.content_type
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=seconds + 60)
    output = done.stdout + done.stderr
    return parse_wrk(output), output


# --------------------------------------------------------------------------- report


def versions() -> str:
    names = ("uvicorn", "uvloop", "httptools", "h11", "granian", "starlette", "falcon",
             "blacksheep", "asgikit")  # fmt: skip
    found = []
    for name in names:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found.append(f"{name}={importlib.metadata.version(name)}")
    return " ".join(found)


def load_average() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def round_ratios(got: list[Run], base: list[Run]) -> list[float]:
    """Per-round req/s ratios (round i of one app over round i of the baseline)."""
    return [r.rps / b.rps for r, b in zip(got, base, strict=False) if b.rps > 0]


def short(app: str) -> str:
    return app.removesuffix("_app")


def server_table(
    server: str, apps: list[str], names: list[str], runs: dict[tuple[str, str, str], list[Run]]
) -> list[str]:
    """A markdown table: per scenario, each app's req/s, p99 and ratio to raw."""
    head = ["scenario"] + [short(a) for a in apps]
    lines = [
        "| " + " | ".join(head) + " |",
        "|---|" + "---:|" * len(apps),
    ]
    for name in names:
        base = runs.get((server, BASELINE, name), [])
        cells = [name]
        for app in apps:
            got = runs.get((server, app, name), [])
            if not got:
                cells.append("-")
                continue
            rps = statistics.median(r.rps for r in got)
            p99 = statistics.median(r.p99_ms for r in got)
            cell = f"{rps:,.0f} /s, p99 {p99:.1f} ms"
            ratios = round_ratios(got, base)
            if app != BASELINE and ratios:
                cell += f", **{statistics.median(ratios):.2f}x**"
            errors = sum(r.errors for r in got)
            if errors:
                cell += f" ({errors} errors)"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def faults_table(
    server: str, apps: list[str], names: list[str], runs: dict[tuple[str, str, str], list[Run]]
) -> list[str]:
    """A markdown table: per scenario, each app's server page faults per request."""
    lines = [
        "| minor page faults per request | " + " | ".join(short(a) for a in apps) + " |",
        "|---|" + "---:|" * len(apps),
    ]
    for name in names:
        cells = [name]
        for app in apps:
            got = [r.faults for r in runs.get((server, app, name), []) if r.faults == r.faults]
            cells.append(f"{statistics.median(got):,.1f}" if got else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def target_lines(
    servers: list[str],
    apps: list[str],
    names: list[str],
    runs: dict[tuple[str, str, str], list[Run]],
) -> list[str]:
    """The issue's targets for asgikit: >= 0.9x raw req/s and ahead of every peer."""
    lines = []
    if TARGET_APP not in apps or BASELINE not in apps:
        return lines
    peers = [a for a in apps if a not in (BASELINE, TARGET_APP)]
    for server in servers:
        if server not in TARGET_SERVERS:
            continue
        for name in names:
            ours = runs.get((server, TARGET_APP, name), [])
            base = runs.get((server, BASELINE, name), [])
            if not ours or not base:
                continue
            ratio = statistics.median(round_ratios(ours, base))
            # Ahead of a peer: a higher ratio to raw (both medians of per-round ratios,
            # steadier than comparing req/s medians on a drifting machine).
            behind = [
                short(p)
                for p in peers
                if runs.get((server, p, name))
                and statistics.median(round_ratios(runs[(server, p, name)], base)) >= ratio
            ]
            ok = ratio >= TARGET_RATIO and not behind
            why = [] if ratio >= TARGET_RATIO else [f"{ratio:.2f}x raw < {TARGET_RATIO}x"]
            why += [f"behind {p}" for p in behind]
            verdict = "met" if ok else "MISSED: " + ", ".join(why)
            lines.append(f"- {server} {name}: {ratio:.2f}x raw, {verdict}")
    return lines


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    all_scenarios = build_scenarios()
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--apps", default=",".join(APPS), help=f"baseline: {BASELINE}")
    parser.add_argument("--scenarios", default=",".join(all_scenarios))
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds per scenario")
    parser.add_argument("--duration", type=int, default=1, help="seconds of one timed wrk run")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of the warm-up run")
    parser.add_argument("--conns", type=int, default=32, help="wrk connections")
    parser.add_argument("--upload-conns", type=int, default=4, help="wrk connections, upload")
    parser.add_argument("--quick", action="store_true", help="1 round of 1 s, 1 s warm-up")
    parser.add_argument("--out", type=Path, help="also write the tables (markdown) here")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set in every server's environment (repeatable), e.g. glibc's "
        "MALLOC_MMAP_THRESHOLD_=4194304 (docs/deployment.md)",
    )
    args = parser.parse_args()
    # Stopped with SIGTERM (a CI timeout, pkill): unwind, so every server started is
    # stopped by its PID in the `finally` below instead of outliving the run.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 1, 1
    if any("=" not in item for item in args.env):
        parser.error("--env takes NAME=VALUE")
    server_env = dict(item.split("=", 1) for item in args.env)
    servers = args.servers.split(",")
    apps = args.apps.split(",")
    if BASELINE in apps:  # the baseline first
        apps.remove(BASELINE)
        apps.insert(0, BASELINE)
    names = args.scenarios.split(",")
    for name in names:
        if name not in all_scenarios:
            parser.error(f"unknown scenario {name!r}; known: {', '.join(all_scenarios)}")
    if shutil.which("wrk") is None:
        parser.error("wrk not found (make bench-e2e installs it: apt-get install -y wrk)")
    two_cpus = shutil.which("taskset") and (os.cpu_count() or 1) >= 2
    pin_server = ["taskset", "-c", "0"] if two_cpus else []
    pin_load = ["taskset", "-c", "1"] if two_cpus else []

    work = Path(tempfile.mkdtemp(prefix="asgikit-e2e-"))
    bodies = work / "bodies"
    bodies.mkdir()
    for scenario in all_scenarios.values():
        if scenario.body:
            (bodies / f"{scenario.name}.body").write_bytes(scenario.body)

    header = [
        f"# bench/e2e.py {time.strftime('%Y-%m-%d %H:%M:%S %Z')}  {platform.platform()}  "
        f"cpus={os.cpu_count()}  python={platform.python_version()}",
        f"# {versions()}",
        f"# rounds={args.rounds} x {args.duration}s, warm-up {args.warmup}s, "
        f"{args.conns} connections ({args.upload_conns} for upload), wrk -t1; "
        f"server pinned {pin_server[2] if pin_server else 'no'}, "
        f"wrk pinned {pin_load[2] if pin_load else 'no'}",
        f"# load average at start (1/5/15 min): {load_average()}  (shared machine)",
        *([f"# server environment: {' '.join(args.env)}"] if args.env else []),
        f"# raw wrk output and server logs: {work}",
    ]
    print("\n".join(header), flush=True)

    runs: dict[tuple[str, str, str], list[Run]] = {}
    loads: dict[str, str] = {}
    for server in servers:
        live: dict[str, Server] = {}
        started: list[Server] = []
        try:
            for app in apps:
                proc = Server(server, app, pin_server, work, server_env)
                started.append(proc)
                if not proc.wait_listening():
                    print(f"!! {proc.name} did not start; see {proc.log_path}", flush=True)
                    continue
                live[app] = proc
            for app, proc in list(live.items()):
                for name in names:
                    problem = check_app(proc.port, all_scenarios[name])
                    if problem:
                        print(f"!! {proc.name} answers wrongly, left out: {problem}", flush=True)
                        del live[app]
                        break
            order = list(live)
            for name in names:
                scenario = all_scenarios[name]
                conns = args.upload_conns if scenario.upload else args.conns
                for app in order:
                    run_wrk(scenario, live[app].port, args.warmup, conns, pin_load, bodies)
                for round_no in range(args.rounds):
                    shift = round_no % len(order)
                    for app in itertools.chain(order[shift:], order[:shift]):
                        pid = live[app].proc.pid
                        faults_before = page_faults(pid)
                        run, output = run_wrk(
                            scenario, live[app].port, args.duration, conns, pin_load, bodies
                        )
                        faults_after = page_faults(pid)
                        if faults_before is not None and faults_after is not None:
                            run.faults = (faults_after - faults_before) / max(run.requests, 1)
                        (work / f"wrk-{server}-{app}-{name}-{round_no}.txt").write_text(output)
                        runs.setdefault((server, app, name), []).append(run)
                        print(
                            f"  {server:<18} {short(app):<11} {name:<13} round {round_no + 1}"
                            f" {run.rps:>10,.0f} req/s  p99 {run.p99_ms:8.2f} ms"
                            + (f"  errors {run.errors}" if run.errors else ""),
                            flush=True,
                        )
        finally:
            for proc in started:
                proc.stop()
        loads[server] = load_average()

    report = [*header, ""]
    for server in servers:
        report += [
            f"## {server} (load average after: {loads.get(server, '?')})",
            "",
            *server_table(server, apps, names, runs),
            "",
            *faults_table(server, apps, names, runs),
            "",
        ]
    targets = target_lines(servers, apps, names, runs)
    if targets:
        report += [
            f"## targets: {short(TARGET_APP)} >= {TARGET_RATIO}x raw req/s and ahead of every "
            "peer (ratio to raw), under " + " and ".join(TARGET_SERVERS),
            "",
            *targets,
            "",
        ]
    text = "\n".join(report)
    print("\n" + text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

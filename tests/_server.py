"""Start a real server as a subprocess on 127.0.0.1 and always stop it, by its PID.

One helper for every test that runs a server (uvicorn, hypercorn, daphne, granian,
gunicorn, nginx; tests/servers/ and tests/_uvicorn.py): pick a free port, start the
command with its log in a file (a full pipe could block it), poll until the port
answers, hand over, then SIGTERM, wait, and SIGKILL if it hangs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SERVERS = ROOT / "tests" / "servers"  # the apps of the server conformance suite

# Commands per server, ``{port}`` filled in. ``{app}`` is "module:attribute", imported
# from the working directory the caller gives.
SERVER_COMMANDS: dict[str, list[str]] = {
    "uvicorn-h11": [
        *("-m", "uvicorn", "{app}", "--host", "127.0.0.1", "--port", "{port}"),
        *("--http", "h11", "--loop", "asyncio", "--ws", "websockets-sansio", "--lifespan", "on"),
    ],
    "uvicorn-httptools": [
        *("-m", "uvicorn", "{app}", "--host", "127.0.0.1", "--port", "{port}"),
        *("--http", "httptools", "--loop", "uvloop", "--ws", "auto", "--lifespan", "on"),
    ],
    "hypercorn": ["-m", "hypercorn", "{app}", "--bind", "127.0.0.1:{port}"],
    "hypercorn-trio": [
        *("-m", "hypercorn", "--worker-class", "trio", "{app}", "--bind", "127.0.0.1:{port}"),
    ],
    "daphne": ["-m", "daphne", "-b", "127.0.0.1", "-p", "{port}", "{app}"],
    "granian": [
        *("-m", "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", "{port}"),
        "{app}",
    ],
}


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_answers(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class RunningServer:
    """A started server: its process, port and log file."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start(
    name: str,
    command: Sequence[str],
    *,
    cwd: Path,
    log_path: Path,
    port: int,
    env: Mapping[str, str] | None = None,
    ready_timeout: float = 30.0,
) -> RunningServer:
    """Start ``command`` (its own process group) and wait until ``port`` accepts."""
    log_file = log_path.open("wb")
    process = subprocess.Popen(
        list(command),
        cwd=cwd,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        start_new_session=True,  # its workers share this group: nothing is left behind
    )
    log_file.close()
    server = RunningServer(name, process, port, log_path)
    deadline = time.monotonic() + ready_timeout
    while not port_answers(port):
        if process.poll() is not None or time.monotonic() > deadline:
            stop(server)
            raise RuntimeError(f"{name} did not start on port {port}:\n{server.log()}")
        time.sleep(0.05)
    return server


def wait_for_log(server: RunningServer, text: str, count: int = 1, timeout: float = 30.0) -> None:
    """Wait until ``text`` appears ``count`` times in the server's log (e.g. once per worker)."""
    deadline = time.monotonic() + timeout
    while server.log().count(text) < count:
        if server.process.poll() is not None or time.monotonic() > deadline:
            log = server.log()
            raise RuntimeError(f"{server.name} never logged {text!r} {count} times:\n{log}")
        time.sleep(0.05)


def stop(server: RunningServer, timeout: float = 15.0) -> int:
    """SIGTERM the server's PID and wait; SIGKILL it and its workers if it hangs."""
    process = server.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # A hung server: kill it and its workers, the process group it leads (not
            # reaped yet, so the group is certainly the one this helper created).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return int(process.returncode)


@contextlib.contextmanager
def serving(
    name: str,
    app: str,
    *,
    tmp_dir: Path,
    cwd: Path = SERVERS,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    ready_timeout: float = 30.0,
) -> Iterator[RunningServer]:
    """Serve ``app`` with the server ``name`` of `SERVER_COMMANDS`; always stop it."""
    port = free_port()
    command = [
        sys.executable,
        *(part.format(app=app, port=port) for part in SERVER_COMMANDS[name]),
        *extra_args,
    ]
    log_path = tmp_dir / f"{name}.log"
    server = start(
        name, command, cwd=cwd, log_path=log_path, port=port, env=env, ready_timeout=ready_timeout
    )
    try:
        yield server
    finally:
        stop(server)

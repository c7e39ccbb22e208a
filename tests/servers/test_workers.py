"""Worker processes: uvicorn --workers 2, gunicorn + uvicorn-worker, granian --workers 2.

Each serves examples/ml_serving.py (mounted in workers_app.py, which adds ``/pid`` and a
slow stream). Checked: one lifespan per worker, every worker answers, the example works,
and SIGTERM with streams in flight is graceful (settings: docs/deployment.md).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from _server import EXAMPLES, ROOT, SERVERS, RunningServer, free_port, start, stop

WORKERS = 2
GRACE = 3  # workers_app.GRACE: seconds in-flight requests get after SIGTERM
SLOW_CHUNKS = 20  # workers_app.SLOW_CHUNKS: a stream that ends well within GRACE
# Servers that kill a worker whose requests outlast the grace (no cancellation first).
KILLED_AT_GRACE = {"granian"}
DEADLINE = 30.0

COMMANDS = {
    "uvicorn": [
        *("-m", "uvicorn", "workers_app:app", "--host", "127.0.0.1", "--port", "{port}"),
        *("--workers", str(WORKERS), "--timeout-graceful-shutdown", str(GRACE)),
    ],
    "gunicorn": [
        *("-m", "gunicorn", "workers_app:app", "--bind", "127.0.0.1:{port}"),
        *("--worker-class", "workers_app.GracefulUvicornWorker", "--workers", str(WORKERS)),
        *("--graceful-timeout", str(GRACE + 2)),  # the worker cancels at GRACE
    ],
    "granian": [
        *("-m", "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", "{port}"),
        *("--workers", str(WORKERS), "--workers-kill-timeout", str(GRACE)),
        "workers_app:app",
    ],
}


def lifespan_pids(workers_dir: Path) -> list[int]:
    path = workers_dir / "lifespans"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


@pytest.fixture(scope="module", params=sorted(COMMANDS))
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningServer, Path]]:
    workers_dir = tmp_path_factory.mktemp(f"workers-{request.param}")
    port = free_port()
    command = [sys.executable, *(part.format(port=port) for part in COMMANDS[request.param])]
    env = {"WORKERS_DIR": str(workers_dir), "PYTHONPATH": str(EXAMPLES)}
    running = start(
        request.param,
        command,
        cwd=SERVERS,
        log_path=workers_dir / "server.log",
        port=port,
        env=env,
        ready_timeout=60,
    )
    try:
        # The port answers once the first worker is up: wait for every lifespan.
        deadline = time.monotonic() + DEADLINE
        while len(lifespan_pids(workers_dir)) < WORKERS:
            assert time.monotonic() < deadline, f"workers did not start:\n{running.log()}"
            time.sleep(0.05)
        yield running, workers_dir
    finally:
        stop(running, timeout=GRACE + 5)


def test_every_worker_ran_its_lifespan_once_and_answers(
    server: tuple[RunningServer, Path],
) -> None:
    running, workers_dir = server
    started = lifespan_pids(workers_dir)
    assert len(started) == WORKERS and len(set(started)) == WORKERS, started
    seen: set[int] = set()
    for _ in range(200):  # a new connection each time: the kernel spreads them
        with httpx.Client(base_url=running.url, timeout=DEADLINE) as client:
            seen.add(client.get("/pid").json()["pid"])
        if seen == set(started):
            break
    assert seen == set(started)


def test_the_example_answers(server: tuple[RunningServer, Path]) -> None:
    running, _ = server
    with httpx.Client(base_url=running.url, timeout=DEADLINE) as client:
        assert client.get("/readyz").json()["status"] == "ready"
        prediction = client.post("/predict", json={"text": "for key, value in items.items():"})
        assert prediction.json()["label"] == "code"
        prose = client.post("/predict", json={"text": "Return the number of items in the list."})
        assert prose.json()["label"] == "prose"
        with client.stream("GET", "/generate", params={"max_tokens": 5}) as response:
            lines = [line for line in response.iter_lines() if line.startswith("event:")]
        assert lines == ["event: token"] * 5 + ["event: done"]


def test_sigterm_with_streams_in_flight(server: tuple[RunningServer, Path]) -> None:
    """Streams that end within the grace period finish; one that outlasts it is stopped.

    Runs last for its server (tests run in file order per server): it stops the server.
    """
    running, workers_dir = server
    tokens = [uuid.uuid4().hex for _ in range(4)]
    endless_token = uuid.uuid4().hex
    with contextlib.ExitStack() as stack:
        clients = [
            stack.enter_context(httpx.Client(base_url=running.url, timeout=DEADLINE))
            for _ in range(len(tokens) + 1)
        ]
        responses = [
            stack.enter_context(client.stream("GET", f"/slow/{token}"))
            for client, token in zip(clients, tokens, strict=False)
        ]
        endless = stack.enter_context(clients[-1].stream("GET", f"/endless/{endless_token}"))
        lines = [response.iter_lines() for response in responses]
        for stream_lines in lines:
            assert next(stream_lines) == "chunk 0"  # every stream is in flight
        endless_lines = endless.iter_lines()
        assert next(endless_lines) == "tick"

        running.process.send_signal(signal.SIGTERM)
        for response, stream_lines in zip(responses, lines, strict=True):
            assert response.status_code == 200
            assert list(stream_lines) == [f"chunk {index}" for index in range(1, SLOW_CHUNKS)]
        # The endless stream is cut when the grace period ends: a truncated body, no 500.
        assert endless.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            for line in endless_lines:
                assert line == "tick"
    try:
        running.process.wait(timeout=GRACE + 5)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{running.name} did not exit within its grace period:\n{running.log()}")
    for token in tokens:
        assert (workers_dir / f"ending-{token}").read_text() == "completed"
    if running.name in KILLED_AT_GRACE:
        assert not (workers_dir / f"ending-{endless_token}").exists()
        pytest.skip(
            f"{running.name} kills a worker whose streams outlast the grace period: their "
            "finally does not run (documented in docs/deployment.md)"
        )
    assert (workers_dir / f"ending-{endless_token}").read_text() == "closed"


def test_docs_give_the_tested_settings() -> None:
    """docs/deployment.md names every option these tests run the servers with."""
    page = (ROOT / "docs" / "deployment.md").read_text()
    for command in COMMANDS.values():
        for option in command:
            if option.startswith("--") and option != "--port":
                assert option in page, f"docs/deployment.md does not mention {option}"
    assert '"timeout_graceful_shutdown"' in page  # the gunicorn worker recipe
